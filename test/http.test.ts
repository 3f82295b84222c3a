import assert from 'node:assert/strict';
import { createMetrics } from '../src/metrics/metrics.js';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runInNewContext } from 'node:vm';
import { createDb, type Db } from '../src/db/client.js';
import { createApp } from '../src/http/app.js';
import { createLogger, silentLogger } from '../src/logger.js';
import { createBoss } from '../src/queue/boss.js';
import { startTestApp, testConfig, type TestApp, type TestResponse } from './helpers/app.js';
import { databaseUrl } from './helpers/database.js';
import { registerAndLogin, type RegisteredUser } from './helpers/users.js';

// The HTTP contract of issue 2, item 6 and 7: JSON errors, body limit, request ids, CORS, docs,
// health. Everything here goes over a real socket except the unreachable-database cases.

const MAX_BODY_BYTES = 1024;
const APP_ORIGIN = 'https://app.example.com';
const ADMIN_ORIGIN = 'https://admin.example.com';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Every route issue 2 documents: method and path as the OpenAPI document spells them. */
const DOCUMENTED = [
  'post /users/register',
  'post /token',
  'get /users/me',
  'post /api/v1/auth/register',
  'post /api/v1/auth/login',
  'get /api/v1/auth/me',
  'get /health/api',
  'get /health/worker',
];

let app: TestApp;
let user: RegisteredUser;

before(async () => {
  app = await startTestApp({
    env: {
      MAX_BODY_BYTES: String(MAX_BODY_BYTES),
      // A trailing slash and spaces are how people write origins in an env file.
      ALLOWED_WEB_ORIGIN: ` ${APP_ORIGIN}, ${ADMIN_ORIGIN}/ `,
    },
  });
  user = await registerAndLogin(app, 'http');
});

after(async () => {
  await app.close();
});

/** An error answer: JSON `{"detail": …}`, a request id, and nothing from the inside of the server. */
function assertCleanError(response: TestResponse, status: number, label = '') {
  assert.equal(response.status, status, `${label} ${JSON.stringify(response.body)}`);
  assert.match(response.headers.get('content-type') ?? '', /^application\/json/, label);
  assert.equal(typeof response.body, 'object', label);
  assert.ok('detail' in response.body, `${label} has detail`);
  assert.match(response.headers.get('x-request-id') ?? '', /.+/, `${label} has a request id`);
  assertNoInternals(JSON.stringify(response.body), label);
}

function assertNoInternals(text: string, label = '') {
  assert.doesNotMatch(text, /\bat .+\(.+:\d+:\d+\)|\.ts:\d+|node_modules|stack/i, `${label} leaks a stack trace: ${text}`);
  assert.doesNotMatch(text, /\b(select|insert|update|delete)\b.+\b(from|into|set)\b|postgres|ECONN|SyntaxError/i, `${label} leaks internals: ${text}`);
}

function rawPost(path: string, body: string | ReadableStream<Uint8Array>, contentType?: string) {
  const headers: Record<string, string> = contentType ? { 'Content-Type': contentType } : {};
  return fetch(`${app.url}${path}`, { method: 'POST', headers, body, duplex: 'half' } as RequestInit);
}

async function asTestResponse(response: Response): Promise<TestResponse> {
  const text = await response.text();
  const isJson = (response.headers.get('content-type') ?? '').includes('application/json');
  return { status: response.status, headers: response.headers, body: isJson ? JSON.parse(text) : text };
}

/** A body sent in chunks with no Content-Length, so the limit must be enforced while reading. */
function chunked(totalBytes: number, chunkBytes = 256): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream({
    pull(controller) {
      if (sent >= totalBytes) return controller.close();
      const size = Math.min(chunkBytes, totalBytes - sent);
      controller.enqueue(new TextEncoder().encode('x'.repeat(size)));
      sent += size;
    },
  });
}

/** A login JSON body padded to exactly `bytes` bytes. */
function loginBodyOfSize(bytes: number): string {
  const skeleton = JSON.stringify({ email: 'nobody@example.com', password: '' });
  const body = JSON.stringify({ email: 'nobody@example.com', password: 'p'.repeat(bytes - skeleton.length) });
  assert.equal(Buffer.byteLength(body), bytes);
  return body;
}

describe('errors are JSON', () => {
  test('an unknown route is 404 {"detail": ...}', async () => {
    for (const [method, path] of [
      ['GET', '/nope'],
      ['POST', '/api/v1/nothing-here'],
      ['GET', '/users/me/extra'],
      ['DELETE', '/'],
    ] as const) {
      const response = await app.request(method, path);
      assertCleanError(response, 404, `${method} ${path}`);
      assert.deepEqual(response.body, { detail: 'Not Found' });
    }
  });

  test('a wrong method is 405 with an Allow header', async () => {
    const cases: [string, string, string[]][] = [
      ['PUT', '/api/v1/auth/login', ['POST']],
      ['GET', '/token', ['POST']],
      ['GET', '/users/register', ['POST']],
      ['DELETE', '/users/me', ['GET']],
      ['POST', '/api/v1/auth/me', ['GET']],
      ['PATCH', '/health/api', ['GET']],
    ];
    for (const [method, path, allowed] of cases) {
      const response = await app.request(method, path);
      assertCleanError(response, 405, `${method} ${path}`);
      const allow = (response.headers.get('allow') ?? '').split(',').map((item) => item.trim());
      for (const expected of allowed) assert.ok(allow.includes(expected), `${method} ${path}: Allow ${allow}`);
      assert.ok(!allow.includes(method), `${method} ${path}: Allow ${allow} must not list ${method}`);
    }
  });

  test('malformed JSON is 400', async () => {
    for (const path of ['/api/v1/auth/login', '/api/v1/auth/register', '/users/register']) {
      for (const body of ['{"email":', '{email: "a@b.c"}', "{'a': 1}", '']) {
        const response = await asTestResponse(await rawPost(path, body, 'application/json'));
        assertCleanError(response, 400, `${path} ${JSON.stringify(body)}`);
        assert.equal(typeof response.body.detail, 'string');
      }
    }
  });

  test('a non-JSON content type on a JSON route is 415', async () => {
    const json = JSON.stringify({ email: user.email, password: user.password });
    for (const contentType of ['text/plain', 'application/x-www-form-urlencoded', 'application/xml', undefined]) {
      const response = await asTestResponse(await rawPost('/api/v1/auth/login', json, contentType));
      assertCleanError(response, 415, `content type ${contentType}`);
    }
    // The form route wants a form, not JSON.
    const formRoute = await asTestResponse(await rawPost('/token', json, 'application/json'));
    assertCleanError(formRoute, 415, '/token with JSON');
    // JSON with parameters and +json suffixes is still JSON.
    const withCharset = await asTestResponse(await rawPost('/api/v1/auth/login', json, 'application/json; charset=utf-8'));
    assert.equal(withCharset.status, 200, JSON.stringify(withCharset.body));
  });

  test('a body over MAX_BODY_BYTES is 413; one at the limit is not', async () => {
    const atLimit = await asTestResponse(await rawPost('/api/v1/auth/login', loginBodyOfSize(MAX_BODY_BYTES), 'application/json'));
    assert.equal(atLimit.status, 401, 'a body of exactly MAX_BODY_BYTES is read and judged');

    const overLimit = await asTestResponse(await rawPost('/api/v1/auth/login', loginBodyOfSize(MAX_BODY_BYTES + 1), 'application/json'));
    assertCleanError(overLimit, 413, 'one byte over');

    const twoKb = await asTestResponse(await rawPost('/api/v1/auth/register', loginBodyOfSize(2048), 'application/json'));
    assertCleanError(twoKb, 413, '2 KB JSON');
    assert.match(twoKb.body.detail, /1024/);

    const form = await asTestResponse(
      await rawPost('/token', `username=a%40b.c&password=${'p'.repeat(2048)}`, 'application/x-www-form-urlencoded'),
    );
    assertCleanError(form, 413, '2 KB form');

    // Unknown routes do not get to read big bodies either.
    const unknown = await asTestResponse(await rawPost('/nowhere', 'x'.repeat(2048), 'application/json'));
    assert.ok([404, 413].includes(unknown.status));
  });

  test('a refused upload over MAX_BODY_BYTES is answered with Connection: close', async () => {
    // Its body is never read, and the server drops the connection half a second later: announced
    // as kept alive, a client's next request on it would be lost mid-flight.
    const refused = await rawPost('/api/v1/auth/login', loginBodyOfSize(1024 * 1024), 'application/json');
    assertCleanError(await asTestResponse(refused), 413, '1 MiB');
    assert.equal(refused.headers.get('connection'), 'close');
  });

  test('a chunked body without Content-Length is limited while it is read', async () => {
    const big = await rawPost('/api/v1/auth/login', chunked(4 * MAX_BODY_BYTES), 'application/json');
    assert.equal(big.headers.get('content-type'), 'application/json');
    const bigResponse = await asTestResponse(big);
    assertCleanError(bigResponse, 413, 'chunked 4 KB');

    // A small chunked body goes through the usual path (here: malformed JSON, 400).
    const small = await asTestResponse(await rawPost('/api/v1/auth/login', chunked(100, 10), 'application/json'));
    assertCleanError(small, 400, 'chunked 100 B');
  });

  test('validation errors are 422 with {loc, msg, type} naming the failing fields', async () => {
    const response = await app.post('/api/v1/auth/register', { name: 42, email: 'not-an-email', password: 'short' });
    assertCleanError(response, 422, 'register');
    assert.ok(Array.isArray(response.body.detail));
    for (const issue of response.body.detail) {
      assert.deepEqual(Object.keys(issue).sort(), ['loc', 'msg', 'type']);
      assert.ok(Array.isArray(issue.loc));
      assert.equal(typeof issue.msg, 'string');
      assert.ok(issue.msg.length > 0);
      assert.equal(typeof issue.type, 'string');
    }
    const fields = response.body.detail.map((issue: any) => issue.loc.join('.')).sort();
    assert.deepEqual(fields, ['body.email', 'body.name', 'body.password']);
    // A valid field is not reported.
    const partial = await app.post('/api/v1/auth/register', { name: 'Fine Name', email: 'fine@example.com', password: 'short' });
    assert.deepEqual(partial.body.detail.map((issue: any) => issue.loc.join('.')), ['body.password']);
    // A body that is JSON but not an object is a validation error, not a crash.
    for (const body of ['null', '[1,2]', '"text"', '42']) {
      const odd = await asTestResponse(await rawPost('/api/v1/auth/login', body, 'application/json'));
      assertCleanError(odd, 422, `body ${body}`);
      assert.ok(Array.isArray(odd.body.detail));
    }
  });
});

describe('request ids', () => {
  test('every response carries an X-Request-ID, a fresh one per request', async () => {
    const responses = await Promise.all([
      app.get('/health/api'),
      app.get('/health/api'),
      app.get('/nope'),
      app.request('PUT', '/token'),
      app.get('/users/me'),
      app.get('/users/me', { token: user.token }),
      app.post('/api/v1/auth/login', {}),
      app.get('/openapi.json'),
    ]);
    const ids = responses.map((response) => response.headers.get('x-request-id'));
    for (const [index, id] of ids.entries()) assert.match(id ?? '', UUID, `response ${index}`);
    assert.equal(new Set(ids).size, ids.length, 'ids are unique');
  });

  test('a sane incoming X-Request-ID is echoed; anything else is replaced', async () => {
    for (const id of ['abc-123', 'trace.id:42_x', 'a'.repeat(128)]) {
      const response = await app.get('/health/api', { headers: { 'X-Request-ID': id } });
      assert.equal(response.headers.get('x-request-id'), id);
      // Errors echo it too.
      const error = await app.get('/nope', { headers: { 'X-Request-ID': id } });
      assert.equal(error.headers.get('x-request-id'), id);
    }
    for (const id of ['has space', 'a'.repeat(129), '<script>', 'semi;colon', '']) {
      const response = await app.get('/health/api', { headers: { 'X-Request-ID': id } });
      const echoed = response.headers.get('x-request-id');
      assert.notEqual(echoed, id);
      assert.match(echoed ?? '', UUID);
    }
  });
});

describe('CORS', () => {
  function preflight(origin: string, path = '/api/v1/auth/me', method = 'GET') {
    return app.request('OPTIONS', path, {
      headers: { Origin: origin, 'Access-Control-Request-Method': method, 'Access-Control-Request-Headers': 'Authorization' },
    });
  }

  test('an allowed origin passes the preflight, with credentials and Authorization', async () => {
    for (const origin of [APP_ORIGIN, ADMIN_ORIGIN]) {
      for (const [path, method] of [
        ['/api/v1/auth/me', 'GET'],
        ['/api/v1/auth/login', 'POST'],
      ] as const) {
        const response = await preflight(origin, path, method);
        assert.ok(response.status === 200 || response.status === 204, `${origin} ${path}: ${response.status}`);
        assert.equal(response.headers.get('access-control-allow-origin'), origin);
        assert.equal(response.headers.get('access-control-allow-credentials'), 'true');
        const allowHeaders = (response.headers.get('access-control-allow-headers') ?? '').toLowerCase().split(/\s*,\s*/);
        for (const header of ['authorization', 'content-type', 'idempotency-key', 'last-event-id']) {
          assert.ok(allowHeaders.includes(header), `allow-headers: ${allowHeaders}`);
        }
        const allowMethods = (response.headers.get('access-control-allow-methods') ?? '').split(/\s*,\s*/);
        assert.ok(allowMethods.includes(method), `allow-methods: ${allowMethods}`);
        assert.match(response.headers.get('vary') ?? '', /origin/i);
      }
    }
  });

  test('an allowed origin gets the CORS headers on actual requests, errors included', async () => {
    for (const origin of [APP_ORIGIN, ADMIN_ORIGIN]) {
      const me = await app.get('/api/v1/auth/me', { token: user.token, headers: { Origin: origin } });
      assert.equal(me.status, 200);
      assert.equal(me.headers.get('access-control-allow-origin'), origin);
      assert.equal(me.headers.get('access-control-allow-credentials'), 'true');
      assert.match(me.headers.get('access-control-expose-headers') ?? '', /x-request-id/i);
      assert.match(me.headers.get('access-control-expose-headers') ?? '', /retry-after/i);
      assert.match(me.headers.get('vary') ?? '', /origin/i);

      const login = await app.post('/api/v1/auth/login', { email: user.email, password: user.password }, { headers: { Origin: origin } });
      assert.equal(login.status, 200);
      assert.equal(login.headers.get('access-control-allow-origin'), origin);

      // A browser must be able to read the 401 to know it has to log in again.
      const unauthorised = await app.get('/api/v1/auth/me', { headers: { Origin: origin } });
      assert.equal(unauthorised.status, 401);
      assert.equal(unauthorised.headers.get('access-control-allow-origin'), origin);
    }
  });

  test('any other origin gets no CORS headers at all', async () => {
    const strangers = [
      'https://evil.example.com',
      'http://app.example.com',
      'https://app.example.com.evil.com',
      'https://app.example.com:8443',
      'null',
      '*',
    ];
    for (const origin of strangers) {
      const pre = await preflight(origin);
      const actual = await app.get('/api/v1/auth/me', { token: user.token, headers: { Origin: origin } });
      for (const response of [pre, actual]) {
        for (const header of ['allow-origin', 'allow-credentials', 'allow-methods', 'allow-headers', 'expose-headers']) {
          assert.equal(response.headers.get(`access-control-${header}`), null, `${header} for ${origin}`);
        }
      }
    }
    const noOrigin = await app.get('/health/api');
    assert.equal(noOrigin.headers.get('access-control-allow-origin'), null);
    assert.equal(noOrigin.headers.get('access-control-allow-credentials'), null);
  });
});

describe('API documentation', () => {
  let doc: any;

  before(async () => {
    const response = await app.get('/openapi.json');
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /application\/json/);
    doc = response.body;
  });

  function operation(key: string) {
    const [method, path] = key.split(' ') as [string, string];
    const op = doc.paths?.[path]?.[method];
    assert.ok(op, `${key} is documented`);
    return op;
  }

  test('/openapi.json is OpenAPI 3.1.0 with info and bearer security scheme', () => {
    assert.equal(doc.openapi, '3.1.0');
    assert.equal(typeof doc.info?.title, 'string');
    assert.equal(typeof doc.info?.version, 'string');
    assert.deepEqual(doc.components?.securitySchemes?.bearerAuth, { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' });
  });

  test('every documented route is in the document, and every route the app registers is documented', () => {
    for (const key of DOCUMENTED) operation(key);

    // The app itself, built in-process, says which routes exist.
    const db = createDb('postgres://postgres@127.0.0.1:1/unused', { max: 1 });
    try {
      const inProcess = createApp({ db, boss: app.boss, config: app.config, logger: silentLogger, notifications: app.notifications, metrics: createMetrics() });
      const registered = new Set(
        inProcess.routes
          // The docs and the dashboard (/app) are pages for browsers, not API operations.
          .filter((route) => route.method !== 'ALL' && !['/openapi.json', '/docs', '/redoc', '/docs/assets/:file'].includes(route.path) && !route.path.startsWith('/app'))
          .map((route) => `${route.method.toLowerCase()} ${route.path.replace(/:(\w+)/g, '{$1}')}`),
      );
      for (const key of DOCUMENTED) assert.ok(registered.has(key), `${key} is a real route`);
      for (const key of registered) operation(key);
      const documented = Object.entries(doc.paths as Record<string, Record<string, unknown>>).flatMap(([path, methods]) =>
        Object.keys(methods).map((method) => `${method} ${path}`),
      );
      assert.deepEqual(new Set(documented), registered, 'the document lists exactly the registered routes');
    } finally {
      void db.destroy();
    }
  });

  test('request bodies are documented from the validation schemas', () => {
    const cases: [string, string, string[]][] = [
      ['post /users/register', 'application/json', ['tenant_name', 'email', 'password']],
      ['post /users/register', 'application/json', ['invite_token', 'email', 'password']],
      ['post /api/v1/auth/register', 'application/json', ['name', 'email', 'password']],
      ['post /api/v1/auth/register', 'application/json', ['invite_token', 'email', 'password']],
      ['post /api/v1/auth/login', 'application/json', ['email', 'password']],
      ['post /token', 'application/x-www-form-urlencoded', ['username', 'password']],
    ];
    /** A body's shapes: a registration founds a tenant or joins one by invitation, one shape each. */
    const shapes = (key: string, contentType: string): any[] => {
      const schema = operation(key).requestBody?.content?.[contentType]?.schema;
      assert.ok(schema, `${key} has a ${contentType} body`);
      return schema.oneOf ?? [schema];
    };
    for (const [key, contentType, required] of cases) {
      const schema = shapes(key, contentType).find((shape) => shape.required?.includes(required[0]));
      assert.equal(schema?.type, 'object', `${key} has a shape with ${required[0]}`);
      for (const field of required) {
        assert.equal(schema.properties?.[field]?.type, 'string', `${key}.${field}`);
        assert.ok(schema.required?.includes(field), `${key}.${field} is required`);
      }
      assert.ok(operation(key).responses['422'], `${key} documents its validation error`);
    }
    // The password bounds the validator enforces are the ones the document shows.
    for (const shape of shapes('post /users/register', 'application/json')) {
      assert.equal(shape.properties.password.minLength, 8);
      assert.equal(shape.properties.password.maxLength, 128);
    }
    for (const shape of shapes('post /api/v1/auth/register', 'application/json')) assert.equal(shape.properties.email.format, 'email');
  });

  test('response shapes are documented', () => {
    for (const key of ['post /users/register', 'post /api/v1/auth/register']) {
      const schema = operation(key).responses['201']?.content?.['application/json']?.schema;
      assert.deepEqual(Object.keys(schema?.properties ?? {}).sort(), ['created_at', 'email', 'id', 'role', 'tenant', 'tenant_id'], key);
      assert.ok(operation(key).responses['409'], `${key} documents the tenant conflict`);
    }
    for (const key of ['get /users/me', 'get /api/v1/auth/me']) {
      const schema = operation(key).responses['200']?.content?.['application/json']?.schema;
      assert.deepEqual(Object.keys(schema?.properties ?? {}).sort(), ['created_at', 'email', 'id', 'role', 'tenant', 'tenant_id'], key);
    }
    for (const key of ['post /token', 'post /api/v1/auth/login']) {
      const schema = operation(key).responses['200']?.content?.['application/json']?.schema;
      assert.deepEqual(Object.keys(schema?.properties ?? {}).sort(), ['access_token', 'token_type'], key);
      assert.ok(operation(key).responses['401'], `${key} documents the 401`);
    }
    for (const key of DOCUMENTED) {
      const op = operation(key);
      assert.ok(Object.keys(op.responses).length > 0, `${key} has responses`);
      for (const response of Object.values(op.responses) as any[]) assert.equal(typeof response.description, 'string');
      assert.equal(typeof op.operationId, 'string');
    }
    const operationIds = DOCUMENTED.map((key) => operation(key).operationId);
    assert.equal(new Set(operationIds).size, operationIds.length, 'operationIds are unique');
  });

  test('every error answer is documented as {"detail": ...}, a 422 as the list of failing fields', () => {
    const resolve = (schema: any) => {
      if (!schema?.$ref) return schema;
      assert.match(schema.$ref, /^#\/components\/schemas\//);
      return doc.components.schemas[schema.$ref.split('/').pop()];
    };
    let validationErrors = 0;
    for (const [path, methods] of Object.entries(doc.paths as Record<string, Record<string, any>>)) {
      for (const [method, op] of Object.entries(methods)) {
        for (const [status, response] of Object.entries(op.responses as Record<string, any>)) {
          if (Number(status) < 400) continue;
          const schema = resolve(response.content?.['application/json']?.schema);
          assert.ok(schema?.properties?.detail, `${method} ${path} ${status} has a detail`);
          if (status !== '422') continue;
          validationErrors += 1;
          const shapes = schema.properties.detail.anyOf ?? schema.properties.detail.oneOf;
          assert.ok(shapes.some((shape: any) => shape.type === 'string'), `${method} ${path} 422: a message`);
          const list = shapes.find((shape: any) => shape.type === 'array');
          assert.deepEqual([...list.items.required].sort(), ['loc', 'msg', 'type'], `${method} ${path} 422: the failing fields`);
        }
      }
    }
    assert.ok(validationErrors >= 4, 'the routes with a body document their 422');
    for (const key of ['get /users/me', 'post /api/v1/auth/logout']) {
      for (const status of ['401', '403']) assert.ok(operation(key).responses[status], `${key} documents its ${status}`);
    }
  });

  test('bearer security is on the /me routes and only there', () => {
    for (const key of ['get /users/me', 'get /api/v1/auth/me']) {
      assert.deepEqual(operation(key).security, [{ bearerAuth: [] }], key);
      assert.ok(operation(key).responses['401'], `${key} documents the 401`);
    }
    for (const key of DOCUMENTED.filter((item) => !item.endsWith('/me'))) {
      assert.equal(operation(key).security, undefined, `${key} needs no token`);
    }
  });

  /** The URLs a page loads: script sources, stylesheets and any other href or src. */
  function referencedUrls(html: string): string[] {
    return [...html.matchAll(/\b(?:src|href)=["']([^"']*)["']/gi)].map((match) => match[1]!);
  }

  /** Fetches an asset a page references, checking it is served as what it is and may be cached. */
  async function asset(url: string): Promise<Response> {
    const response = await fetch(new URL(url, app.url));
    assert.equal(response.status, 200, url);
    const type = url.split('?')[0]!.endsWith('.css') ? /^text\/css/ : /^text\/javascript/;
    assert.match(response.headers.get('content-type') ?? '', type, url);
    assert.match(response.headers.get('cache-control') ?? '', /max-age=\d{6,}/, url);
    return response;
  }

  test('/docs serves Swagger UI pointed at /openapi.json, from our own assets', async () => {
    const response = await app.get('/docs');
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^text\/html/);
    assert.match(response.body, /<div id="swagger-ui">/);
    // No inline script: everything the page runs is a file of ours.
    assert.doesNotMatch(response.body, /<script(?![^>]*\bsrc=)[^>]*>/i);

    const urls = referencedUrls(response.body);
    assert.equal(urls.length, 3, urls.join(' '));
    const bundle = urls.find((url) => url.includes('swagger-ui-bundle.js'));
    const init = urls.find((url) => url.includes('swagger-init.js'));
    const css = urls.find((url) => url.includes('swagger-ui.css'));
    assert.ok(bundle && init && css, urls.join(' '));
    for (const url of urls) await asset(url);

    // Swagger UI's own files, byte for byte as the package ships them.
    for (const [url, file] of [[bundle, 'swagger-ui-dist/swagger-ui-bundle.js'], [css, 'swagger-ui-dist/swagger-ui.css']] as const) {
      const served = Buffer.from(await (await asset(url)).arrayBuffer());
      assert.ok(served.equals(readFileSync(fileURLToPath(import.meta.resolve(file)))), `${url} is ${file}`);
    }

    // The start-up script, run against a stand-in for the bundle: it starts Swagger UI on the
    // page's element, with the document at /openapi.json and no third-party validator.
    const script = await (await asset(init)).text();
    const started: any[] = [];
    const window: Record<string, unknown> = {};
    runInNewContext(script, { window, SwaggerUIBundle: (options: unknown) => (started.push(options), 'ui') });
    assert.equal(started.length, 1);
    assert.equal(started[0].url, '/openapi.json');
    assert.equal(started[0].dom_id, '#swagger-ui');
    assert.equal(started[0].validatorUrl, null);
    assert.equal(window.ui, 'ui');
  });

  test('/redoc serves ReDoc pointed at /openapi.json, from our own assets', async () => {
    const response = await app.get('/redoc');
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^text\/html/);
    assert.match(response.body, /<redoc[^>]+spec-url=["']\/openapi\.json["']/i);
    assert.doesNotMatch(response.body, /<script(?![^>]*\bsrc=)[^>]*>/i);

    const urls = referencedUrls(response.body);
    assert.equal(urls.length, 1, urls.join(' '));
    assert.match(urls[0]!, /redoc\.standalone\.js/);
    const served = Buffer.from(await (await asset(urls[0]!)).arrayBuffer());
    assert.ok(served.equals(readFileSync(fileURLToPath(import.meta.resolve('redoc/bundles/redoc.standalone.js')))), 'the package\'s standalone bundle');
  });

  test('the docs load nothing from another host', async () => {
    for (const page of ['/docs', '/redoc']) {
      const html = (await app.get(page)).body as string;
      assert.doesNotMatch(html, /\/\/[a-z0-9.-]+\.[a-z]{2,}|https?:/i, `${page} names no other host`);
      for (const url of referencedUrls(html)) {
        assert.match(url, /^\/docs\/assets\/[\w.-]+(\?v=[\w-]+)?$/, `${page} loads ${url} from us`);
        if (!url.includes('.css')) continue;
        // A stylesheet may pull in fonts and images: only inline ones.
        const css = await (await asset(url)).text();
        for (const [, target] of css.matchAll(/url\(\s*["']?([^"')]*)/g)) assert.match(target!, /^data:/, `${url} loads ${target}`);
      }
    }
  });

  test('an unknown asset is a JSON 404', async () => {
    for (const path of ['/docs/assets/nope.js', '/docs/assets/..%2F..%2Fpackage.json', '/docs/assets/swagger-ui-bundle.js.map']) {
      assertCleanError(await app.get(path), 404, path);
    }
  });
});

describe('health', () => {
  test('GET /health/api is 200 {"status":"ok"} when the database answers', async () => {
    const response = await app.get('/health/api');
    assert.equal(response.status, 200);
    assert.deepEqual(response.body, { status: 'ok' });
  });

  describe('with the database unreachable', () => {
    let deadDb: Db;
    let unreachable: ReturnType<typeof createApp>;
    const logLines: string[] = [];

    before(() => {
      deadDb = createDb('postgres://postgres@127.0.0.1:1/nope', { max: 1 });
      unreachable = createApp({
        db: deadDb,
        // Never started: the health check must not depend on the queue.
        boss: createBoss('postgres://postgres@127.0.0.1:1/nope', silentLogger, { supervise: false }),
        config: testConfig('postgres://postgres@127.0.0.1:1/nope'),
        logger: createLogger({ write: (line) => void logLines.push(line) }),
        notifications: app.notifications,
        metrics: createMetrics(),
      });
    });

    after(async () => {
      await deadDb.destroy();
    });

    test('GET /health/api is 503', async () => {
      const response = await unreachable.request('/health/api');
      assert.equal(response.status, 503);
      const body = (await response.json()) as Record<string, unknown>;
      assert.notEqual(body.status, 'ok');
      assertNoInternals(JSON.stringify(body));
      assert.match(response.headers.get('x-request-id') ?? '', UUID);
    });

    test('a route that needs the database is 503 Database unavailable, at once', async () => {
      const started = Date.now();
      const response = await unreachable.request('/api/v1/auth/login', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ email: 'someone@example.com', password: 'whatever-password' }),
      });
      assert.equal(response.status, 503);
      assert.ok(Date.now() - started < 2_000, `answered after ${Date.now() - started} ms`);
      assert.deepEqual(await response.json(), { detail: 'Database unavailable' });
      assert.equal(response.headers.get('retry-after'), '2');
      assert.doesNotMatch(logLines.join(''), /whatever-password/);
    });
  });

  describe('with a database that refuses the query for another reason', () => {
    let wrongDb: Db;
    let misconfigured: ReturnType<typeof createApp>;
    const logLines: string[] = [];

    before(() => {
      // A database that does not exist is a configuration mistake, not an outage.
      const url = databaseUrl(`autonomos_missing_${randomBytes(4).toString('hex')}`);
      wrongDb = createDb(url, { max: 1 });
      misconfigured = createApp({
        db: wrongDb,
        boss: createBoss(url, silentLogger, { supervise: false }),
        config: testConfig(url),
        logger: createLogger({ write: (line) => void logLines.push(line) }),
        notifications: app.notifications,
        metrics: createMetrics(),
      });
    });

    after(async () => {
      await wrongDb.destroy();
    });

    test('is a generic 500; the cause goes to the log only', async () => {
      const response = await misconfigured.request('/api/v1/auth/login', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ email: 'someone@example.com', password: 'whatever-password' }),
      });
      assert.equal(response.status, 500);
      assert.deepEqual(await response.json(), { detail: 'Internal Server Error' });
      const requestId = response.headers.get('x-request-id');
      const errorLine = logLines.map((line) => JSON.parse(line)).find((line) => line.level === 'error' && line.request_id === requestId);
      assert.ok(errorLine, `an error line for ${requestId}`);
      assert.match(JSON.stringify(errorLine), /does not exist/);
      assert.doesNotMatch(logLines.join(''), /whatever-password/);
    });
  });
});

test('no error response carries a 500 or a stack trace', async () => {
  const probes: [string, string, Record<string, string>, string | undefined][] = [
    ['POST', '/api/v1/auth/login', { 'Content-Type': 'application/json' }, '{"email": "a@b.c", "password": {"$gt": ""}}'],
    ['POST', '/api/v1/auth/login', { 'Content-Type': 'application/json' }, '{"email": ["a@b.c"], "password": "x"}'],
    ['POST', '/api/v1/auth/register', { 'Content-Type': 'application/json' }, '{"name": "x", "email": "a@b.c", "password": null}'],
    ['POST', '/users/register', { 'Content-Type': 'application/json' }, `{"tenant_name": "${'n'.repeat(300)}", "email": "a@b.c", "password": "xxxxxxxx"}`],
    ['POST', '/token', { 'Content-Type': 'application/x-www-form-urlencoded' }, 'username=&password='],
    ['POST', '/token', { 'Content-Type': 'multipart/form-data; boundary=zzz' }, '--zzz\r\nbroken'],
    ['POST', '/token', { 'Content-Type': 'application/x-www-form-urlencoded' }, '%%%=%%%'],
    ['POST', '/api/v1/auth/login', { 'Content-Type': 'application/json' }, '\u0000\u0001'],
    ['POST', '/api/v1/auth/login', { 'Content-Type': 'application/json', 'Content-Encoding': 'gzip' }, 'not gzip'],
    ['GET', '/users/me', { Authorization: 'Bearer' }, undefined],
    ['GET', '/users/me', { Authorization: 'Bearer a b' }, undefined],
    ['GET', '/users/me', { Authorization: `Bearer ${'x'.repeat(4000)}` }, undefined],
    ['GET', '/api/v1/auth/me', { Authorization: 'Bearer eyJhbGciOiJIUzI1NiJ9.eyJ0ZW5hbnRfaWQiOiIxJyBvciAxPTEifQ.x' }, undefined],
    ['GET', '/%E0%A4%A', {}, undefined],
    ['GET', '/users/me?x=%ZZ', {}, undefined],
  ];
  for (const [method, path, headers, body] of probes) {
    const response = await asTestResponse(await fetch(`${app.url}${path}`, { method, headers, body: body ?? null }));
    const label = `${method} ${path} ${body?.slice(0, 40) ?? ''}`;
    assert.ok(response.status >= 400 && response.status < 500, `${label}: ${response.status} ${JSON.stringify(response.body)}`);
    assertCleanError(response, response.status, label);
  }
});
