import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestApp, type TestApp, type TestResponse } from './helpers/app.js';
import { registerAndLogin, uniqueSuffix } from './helpers/users.js';

// A port of the reference's tests/test_auth.py (its ten cases first), then what issue 2 adds:
// the tenant-name 409, email normalisation, password bounds, both route sets, Argon2id at rest.

const PASSWORD = 'secure_password_123';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const BAD_CREDENTIALS = 'Incorrect email or password';

let app: TestApp;

before(async () => {
  app = await startTestApp();
});

after(async () => {
  await app.close();
});

function fresh(label: string) {
  const suffix = uniqueSuffix();
  return { email: `${label}-${suffix}@example.com`, tenantName: `${label} ${suffix}` };
}

/** Logs in through the OAuth2 password form, as the reference's `POST /token` did. */
function tokenForm(username: string, password: string): Promise<TestResponse> {
  return app.request('POST', '/token', {
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ username, password }).toString(),
  });
}

function assertUserOut(body: any, expected: { email: string; tenantName: string }) {
  assert.deepEqual(Object.keys(body).sort(), ['created_at', 'email', 'id', 'role', 'tenant', 'tenant_id']);
  // Whoever registers a tenant owns it.
  assert.equal(body.role, 'owner');
  assert.match(body.id, UUID);
  assert.equal(body.email, expected.email);
  assert.match(body.tenant_id, UUID);
  assert.deepEqual(body.tenant, { id: body.tenant_id, name: expected.tenantName });
  assert.ok(!Number.isNaN(Date.parse(body.created_at)), `created_at is a timestamp: ${body.created_at}`);
  assert.ok(Math.abs(Date.now() - Date.parse(body.created_at)) < 60_000, 'created_at is now');
  const text = JSON.stringify(body);
  assert.doesNotMatch(text, /hash|argon2|password/i, 'the user JSON never carries the hash');
}

async function countUsers(email: string): Promise<number> {
  const row = await app.db
    .selectFrom('users')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('email', '=', email)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

describe('reference test_auth.py', () => {
  test('registration creates a tenant and a user', async () => {
    const { email, tenantName } = fresh('register');
    const response = await app.post('/users/register', { tenant_name: tenantName, email, password: PASSWORD });
    assert.equal(response.status, 201, JSON.stringify(response.body));
    assert.match(response.headers.get('content-type') ?? '', /application\/json/);
    assertUserOut(response.body, { email, tenantName });

    const tenant = await app.db.selectFrom('tenants').selectAll().where('id', '=', response.body.tenant_id).executeTakeFirst();
    assert.equal(tenant?.name, tenantName);
    const user = await app.db.selectFrom('users').selectAll().where('id', '=', response.body.id).executeTakeFirst();
    assert.equal(user?.tenant_id, response.body.tenant_id);
    assert.equal(user?.email, email);
  });

  test('a duplicate email is rejected', async () => {
    const { email, tenantName } = fresh('dup-email');
    const first = await app.post('/users/register', { tenant_name: tenantName, email, password: PASSWORD });
    assert.equal(first.status, 201);
    const second = await app.post('/users/register', { tenant_name: `${tenantName} other`, email, password: PASSWORD });
    assert.equal(second.status, 400);
    assert.deepEqual(second.body, { detail: 'Email already registered' });
    // The second attempt must not have left a tenant behind either.
    const orphan = await app.db.selectFrom('tenants').select('id').where('name', '=', `${tenantName} other`).executeTakeFirst();
    assert.equal(orphan, undefined);
  });

  test('a password shorter than 8 characters is refused', async () => {
    const { email, tenantName } = fresh('short-pw');
    const response = await app.post('/users/register', { tenant_name: tenantName, email, password: 'short' });
    assert.equal(response.status, 422);
    assert.ok(Array.isArray(response.body.detail));
    assert.ok(
      response.body.detail.some((issue: any) => issue.loc.join('.') === 'body.password'),
      JSON.stringify(response.body),
    );
    assert.equal(await countUsers(email), 0);
  });

  test('login with valid credentials returns a bearer token', async () => {
    const { email, tenantName } = fresh('login');
    assert.equal((await app.post('/users/register', { tenant_name: tenantName, email, password: PASSWORD })).status, 201);
    const response = await tokenForm(email, PASSWORD);
    assert.equal(response.status, 200, JSON.stringify(response.body));
    assert.deepEqual(Object.keys(response.body).sort(), ['access_token', 'token_type']);
    assert.equal(response.body.token_type, 'bearer');
    assert.match(response.body.access_token, /^[\w-]+\.[\w-]+\.[\w-]+$/);
  });

  test('login with a wrong password is 401', async () => {
    const user = await registerAndLogin(app, 'wrong-pw');
    const response = await tokenForm(user.email, 'not the password');
    assert.equal(response.status, 401);
    assert.deepEqual(response.body, { detail: BAD_CREDENTIALS });
    assert.equal(response.headers.get('www-authenticate'), 'Bearer');
  });

  test('login with an unknown user is 401 with the same text as a wrong password', async () => {
    const user = await registerAndLogin(app, 'enum');
    const wrongPassword = await tokenForm(user.email, 'not the password');
    const unknownUser = await tokenForm(`nobody-${uniqueSuffix()}@example.com`, PASSWORD);
    assert.equal(unknownUser.status, 401);
    assert.deepEqual(unknownUser.body, wrongPassword.body);
    assert.deepEqual(unknownUser.body, { detail: BAD_CREDENTIALS });
    assert.equal(unknownUser.headers.get('www-authenticate'), wrongPassword.headers.get('www-authenticate'));
  });

  test('a valid token gives access to /users/me', async () => {
    const user = await registerAndLogin(app, 'me');
    const response = await app.get('/users/me', { token: user.token });
    assert.equal(response.status, 200, JSON.stringify(response.body));
    assertUserOut(response.body, { email: user.email, tenantName: user.tenantName });
    assert.equal(response.body.id, user.userId);
    assert.equal(response.body.tenant_id, user.tenantId);
  });

  test('a missing token is 401 with WWW-Authenticate: Bearer', async () => {
    for (const path of ['/users/me', '/api/v1/auth/me']) {
      const response = await app.get(path);
      assert.equal(response.status, 401, path);
      assert.equal(response.headers.get('www-authenticate'), 'Bearer', path);
      assert.equal(typeof response.body.detail, 'string', path);
    }
  });

  test('an invalid token is 401', async () => {
    for (const path of ['/users/me', '/api/v1/auth/me']) {
      const response = await app.get(path, { token: 'invalid_token_12345' });
      assert.equal(response.status, 401, path);
      assert.equal(response.headers.get('www-authenticate'), 'Bearer', path);
      assert.equal(typeof response.body.detail, 'string', path);
    }
  });

  test('an Authorization header that is not a bearer credential is 403', async () => {
    const user = await registerAndLogin(app, 'malformed');
    for (const path of ['/users/me', '/api/v1/auth/me']) {
      for (const header of ['NotBearer xyz', `Basic ${Buffer.from('a:b').toString('base64')}`, user.token]) {
        const response = await app.get(path, { headers: { Authorization: header } });
        assert.equal(response.status, 403, `${path} with ${header.slice(0, 12)}`);
        assert.equal(typeof response.body.detail, 'string');
      }
    }
  });
});

describe('issue 2 additions', () => {
  test('the /api/v1/auth route set: register 201, JSON login, me', async () => {
    const { email, tenantName } = fresh('v1');
    const registered = await app.post('/api/v1/auth/register', { name: tenantName, email, password: PASSWORD });
    assert.equal(registered.status, 201, JSON.stringify(registered.body));
    assertUserOut(registered.body, { email, tenantName });

    const login = await app.post('/api/v1/auth/login', { email, password: PASSWORD });
    assert.equal(login.status, 200, JSON.stringify(login.body));
    assert.deepEqual(Object.keys(login.body).sort(), ['access_token', 'token_type']);
    assert.equal(login.body.token_type, 'bearer');

    const me = await app.get('/api/v1/auth/me', { token: login.body.access_token });
    assert.equal(me.status, 200);
    assert.deepEqual(me.body, registered.body);
    // Both route sets are one user store: the legacy routes accept the same user and token.
    const legacyMe = await app.get('/users/me', { token: login.body.access_token });
    assert.deepEqual(legacyMe.body, registered.body);
    const formLogin = await tokenForm(email, PASSWORD);
    assert.equal(formLogin.status, 200);
  });

  test('JSON login: wrong password and unknown user are the same 401', async () => {
    const user = await registerAndLogin(app, 'v1-enum');
    const wrong = await app.post('/api/v1/auth/login', { email: user.email, password: 'not the password' });
    const unknown = await app.post('/api/v1/auth/login', { email: `ghost-${uniqueSuffix()}@example.com`, password: PASSWORD });
    for (const response of [wrong, unknown]) {
      assert.equal(response.status, 401);
      assert.deepEqual(response.body, { detail: BAD_CREDENTIALS });
      assert.equal(response.headers.get('www-authenticate'), 'Bearer');
    }
  });

  test('the v1 route set refuses a duplicate email and a short password too', async () => {
    const user = await registerAndLogin(app, 'v1-dup');
    const duplicate = await app.post('/api/v1/auth/register', { name: `other ${uniqueSuffix()}`, email: user.email, password: PASSWORD });
    assert.equal(duplicate.status, 400);
    assert.deepEqual(duplicate.body, { detail: 'Email already registered' });
    const short = await app.post('/api/v1/auth/register', { name: `x ${uniqueSuffix()}`, email: `s-${uniqueSuffix()}@example.com`, password: '1234567' });
    assert.equal(short.status, 422);
  });

  test('a tenant name with invisible or control characters is 422, whoever holds the visible name', async () => {
    const suffix = uniqueSuffix();
    for (const [label, name] of [
      ['zero-width space', `Acme\u200b ${suffix}`],
      ['right-to-left override', `Acme \u202e${suffix}`],
      ['byte order mark', `\ufeffAcme ${suffix}`],
      ['escape (a control character)', `Acme\u001b[31m ${suffix}`],
    ]) {
      const email = `invisible-${uniqueSuffix()}@example.com`;
      const response = await app.post('/api/v1/auth/register', { name, email, password: PASSWORD });
      assert.equal(response.status, 422, `${label}: ${JSON.stringify(response.body)}`);
      assert.deepEqual(response.body.detail[0].loc, ['body', 'name']);
      assert.match(response.body.detail[0].msg, /control or invisible/);
      assert.equal(await countUsers(email), 0);
    }
  });

  test('a tenant name already registered is 409 and no user is created', async () => {
    const suffix = uniqueSuffix();
    const tenantName = `Acme Corp ${suffix}`;
    const owner = `owner-${suffix}@example.com`;
    assert.equal((await app.post('/users/register', { tenant_name: tenantName, email: owner, password: PASSWORD })).status, 201);

    const attempts: [string, Record<string, string>][] = [
      ['/users/register', { tenant_name: tenantName, email: `intruder1-${suffix}@example.com`, password: PASSWORD }],
      ['/api/v1/auth/register', { name: tenantName, email: `intruder2-${suffix}@example.com`, password: PASSWORD }],
      ['/users/register', { tenant_name: `ACME corp ${suffix}`, email: `intruder3-${suffix}@example.com`, password: PASSWORD }],
      ['/api/v1/auth/register', { name: `  acme CORP ${suffix}  `, email: `intruder4-${suffix}@example.com`, password: PASSWORD }],
      // Full-width letters and an ideographic space (NFKC), and doubled inner whitespace.
      ['/api/v1/auth/register', { name: `Ａｃｍｅ\u3000Ｃｏｒｐ ${suffix}`, email: `intruder5-${suffix}@example.com`, password: PASSWORD }],
      ['/users/register', { tenant_name: `Acme \t  Corp ${suffix}`, email: `intruder6-${suffix}@example.com`, password: PASSWORD }],
    ];
    for (const [path, body] of attempts) {
      const response = await app.post(path, body);
      assert.equal(response.status, 409, `${path} ${JSON.stringify(body)}: ${JSON.stringify(response.body)}`);
      assert.deepEqual(response.body, { detail: 'Tenant name already registered' });
      assert.equal(await countUsers(body.email!), 0, `${body.email} was not created`);
      // And the intruder cannot log in to anything.
      assert.equal((await tokenForm(body.email!, PASSWORD)).status, 401);
    }
    const members = await app.db
      .selectFrom('users')
      .innerJoin('tenants', 'tenants.id', 'users.tenant_id')
      .select('users.email')
      .where('tenants.name', '=', tenantName)
      .execute();
    assert.deepEqual(members.map((row) => row.email), [owner]);
    const tenants = await app.db.selectFrom('tenants').select('id').where('name', 'ilike', `%acme corp ${suffix}%`).execute();
    assert.equal(tenants.length, 1);
  });

  test('emails are trimmed and lower-cased, and login accepts any casing', async () => {
    const suffix = uniqueSuffix();
    const typed = `  Alice-${suffix}@Example.COM `;
    const normalised = `alice-${suffix}@example.com`;
    const response = await app.post('/users/register', { tenant_name: `Alice ${suffix}`, email: typed, password: PASSWORD });
    assert.equal(response.status, 201, JSON.stringify(response.body));
    assert.equal(response.body.email, normalised);
    const stored = await app.db.selectFrom('users').select('email').where('id', '=', response.body.id).executeTakeFirstOrThrow();
    assert.equal(stored.email, normalised);

    for (const variant of [normalised, `ALICE-${suffix}@EXAMPLE.COM`, ` Alice-${suffix}@example.com`]) {
      const form = await tokenForm(variant, PASSWORD);
      assert.equal(form.status, 200, `form login as ${JSON.stringify(variant)}`);
      const json = await app.post('/api/v1/auth/login', { email: variant, password: PASSWORD });
      assert.equal(json.status, 200, `JSON login as ${JSON.stringify(variant)}`);
      const me = await app.get('/api/v1/auth/me', { token: json.body.access_token });
      assert.equal(me.body.email, normalised);
    }

    // The same address in other casing is the same account.
    const again = await app.post('/api/v1/auth/register', { name: `Alice again ${suffix}`, email: `ALICE-${suffix}@example.com`, password: PASSWORD });
    assert.equal(again.status, 400);
    assert.deepEqual(again.body, { detail: 'Email already registered' });
  });

  test('an invalid email is 422 naming the email field', async () => {
    for (const email of ['not-an-email', '', 'a@', '@example.com', 'two words@example.com']) {
      for (const [path, body] of [
        ['/users/register', { tenant_name: `bad ${uniqueSuffix()}`, email, password: PASSWORD }],
        ['/api/v1/auth/register', { name: `bad ${uniqueSuffix()}`, email, password: PASSWORD }],
      ] as const) {
        const response = await app.post(path, body);
        assert.equal(response.status, 422, `${path} ${JSON.stringify(email)}`);
        assert.ok(
          response.body.detail.some((issue: any) => issue.loc.join('.') === 'body.email'),
          JSON.stringify(response.body),
        );
      }
    }
  });

  test('passwords must be 8 to 128 characters', async () => {
    const cases: [string, number][] = [
      ['x'.repeat(7), 422],
      ['x'.repeat(129), 422],
      ['x'.repeat(8), 201],
      ['y'.repeat(128), 201],
    ];
    for (const [password, status] of cases) {
      for (const path of ['/users/register', '/api/v1/auth/register']) {
        const { email, tenantName } = fresh('pwlen');
        const body = path === '/users/register' ? { tenant_name: tenantName, email, password } : { name: tenantName, email, password };
        const response = await app.post(path, body);
        assert.equal(response.status, status, `${path} password of ${password.length}: ${JSON.stringify(response.body)}`);
        if (status === 422) {
          assert.ok(response.body.detail.some((issue: any) => issue.loc.join('.') === 'body.password'));
          assert.equal(await countUsers(email), 0);
        }
      }
    }
    // The 128-character password really is the password: it logs in.
    const { email, tenantName } = fresh('pw128');
    const long = 'z'.repeat(128);
    assert.equal((await app.post('/api/v1/auth/register', { name: tenantName, email, password: long })).status, 201);
    assert.equal((await app.post('/api/v1/auth/login', { email, password: long })).status, 200);
  });

  test('missing fields are 422 naming each of them', async () => {
    const legacy = await app.post('/users/register', {});
    assert.equal(legacy.status, 422);
    const legacyLocs = legacy.body.detail.map((issue: any) => issue.loc.join('.')).sort();
    assert.deepEqual(legacyLocs, ['body.email', 'body.password', 'body.tenant_name']);

    const v1 = await app.post('/api/v1/auth/register', {});
    assert.equal(v1.status, 422);
    assert.deepEqual(v1.body.detail.map((issue: any) => issue.loc.join('.')).sort(), ['body.email', 'body.name', 'body.password']);

    const form = await app.request('POST', '/token', {
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: 'username=someone%40example.com',
    });
    assert.equal(form.status, 422);
    assert.deepEqual(form.body.detail.map((issue: any) => issue.loc.join('.')), ['body.password']);
  });

  test('passwords are stored as Argon2id hashes', async () => {
    const user = await registerAndLogin(app, 'argon');
    const row = await app.db.selectFrom('users').select('hashed_password').where('id', '=', user.userId).executeTakeFirstOrThrow();
    assert.match(row.hashed_password, /^\$argon2id\$/);
    assert.ok(!row.hashed_password.includes(user.password));
  });
});
