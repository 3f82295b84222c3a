import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestApp, type TestApp, type TestResponse } from './helpers/app.js';
import { registerAndLogin, type RegisteredUser } from './helpers/users.js';

// Security headers on every response, no caching of anything but the docs' static files, and API
// docs that can be switched off.

let app: TestApp;
let user: RegisteredUser;

before(async () => {
  app = await startTestApp();
  user = await registerAndLogin(app, 'headers');
});

after(async () => {
  await app?.close();
});

function assertHardened(response: TestResponse, what: string) {
  const header = (name: string) => response.headers.get(name);
  assert.equal(header('x-content-type-options'), 'nosniff', what);
  assert.equal(header('x-frame-options'), 'DENY', what);
  assert.match(header('content-security-policy') ?? '', /frame-ancestors 'none'/, what);
  assert.equal(header('referrer-policy'), 'no-referrer', what);
  assert.match(header('strict-transport-security') ?? '', /max-age=\d+/, what);
  assert.equal(header('cache-control'), 'no-store', what);
}

describe('response headers', () => {
  test('every kind of answer carries them: tokens, the user, tasks, errors, health', async () => {
    const login = await app.request('POST', '/token', { body: new URLSearchParams({ username: user.email, password: user.password }) });
    assert.equal(login.status, 200, JSON.stringify(login.body));
    assertHardened(login, 'POST /token');
    const jsonLogin = await app.post('/api/v1/auth/login', { email: user.email, password: user.password });
    assertHardened(jsonLogin, 'POST /api/v1/auth/login');
    assertHardened(await app.get('/users/me', { token: user.token }), 'GET /users/me');
    assertHardened(await app.get('/api/v1/auth/me', { token: user.token }), 'GET /api/v1/auth/me');
    assertHardened(await app.get('/api/v1/tasks/00000000-0000-4000-8000-000000000000', { token: user.token }), 'a 404');
    assertHardened(await app.get('/api/v1/auth/me'), 'a 401');
    assertHardened(await app.post('/api/v1/tasks', { payload: {} }, { token: user.token }), 'a 422');
    assertHardened(await app.get('/health/api'), 'health');
  });
});

describe('API_DOCS', () => {
  test('by default /docs, /redoc and /openapi.json are served', async () => {
    for (const path of ['/docs', '/redoc', '/openapi.json']) assert.equal((await app.get(path)).status, 200, path);
  });

  test('the docs pages are not cached; the files they load are, and are hardened too', async () => {
    const page = await app.get('/docs');
    assertHardened(page, 'GET /docs');
    const script = /src="(\/docs\/assets\/swagger-ui-bundle\.js[^"]*)"/.exec(page.body)?.[1];
    assert.ok(script, 'the page loads the Swagger UI bundle');
    const response = await app.get(script);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('cache-control'), 'public, max-age=31536000, immutable');
    assert.equal(response.headers.get('x-content-type-options'), 'nosniff');
    assert.match(response.headers.get('content-security-policy') ?? '', /frame-ancestors 'none'/);
  });

  test('API_DOCS=false makes them 404, and nothing else changes', async () => {
    const quiet = await startTestApp({ env: { API_DOCS: 'false' } });
    try {
      for (const path of ['/docs', '/redoc', '/openapi.json', '/docs/assets/swagger-ui-bundle.js']) {
        const response = await quiet.get(path);
        assert.equal(response.status, 404, path);
        assert.deepEqual(response.body, { detail: 'Not Found' });
      }
      assert.equal((await quiet.get('/health/api')).status, 200);
    } finally {
      await quiet.close();
    }
  });
});
