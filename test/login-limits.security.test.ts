import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { PASSWORD_HASHES_ADMITTED } from '../src/auth/auth.service.js';
import { deleteEndedWindows } from '../src/auth/throttle.js';
import { startTestApp, withTestApp, type TestApp } from './helpers/app.js';
import { createTask, slackPayload } from './helpers/engine.js';
import { registerAndLogin, uniqueSuffix, type RegisteredUser } from './helpers/users.js';

// Sign-in and registration throttling, and the bounded line for password hashing: an attacker
// guessing passwords, or flooding the service with them, gets 429s and 503s, not Argon2 time.


const login = (app: TestApp, email: string, password: string, headers: Record<string, string> = {}) =>
  app.post('/api/v1/auth/login', { email, password }, { headers });

/** A 429 naming the limit, whose Retry-After is when the limit's window (15 minutes unless said) ends. */
function assertTooMany(response: { status: number; headers: Headers; body: any }, detail: RegExp, windowSeconds = 15 * 60) {
  assert.equal(response.status, 429, JSON.stringify(response.body));
  assert.match(response.body.detail, detail);
  const retryAfter = Number(response.headers.get('retry-after'));
  assert.ok(Number.isInteger(retryAfter) && retryAfter > windowSeconds - 60 && retryAfter <= windowSeconds, `Retry-After ${retryAfter}`);
}

describe('failed sign-ins (LOGIN_FAILURE_LIMIT=3)', () => {
  let app: TestApp;
  let user: RegisteredUser;

  before(async () => {
    app = await startTestApp({ env: { LOGIN_FAILURE_LIMIT: '3', TRUST_PROXY: '1' } });
    user = await registerAndLogin(app, 'throttled');
  });

  after(async () => {
    await app?.close();
  });

  // Each case signs in from an address of its own (the app trusts one proxy), so the per-address
  // limit of one case does not spill into the next.
  let nextAddress = 10;
  const fromNewAddress = () => ({ 'X-Forwarded-For': `198.51.100.${nextAddress++}` });

  test('an account is refused after 3 failures, even with the right password, and says for how long', async () => {
    const victim = await registerAndLogin(app, 'victim');
    for (let attempt = 1; attempt <= 3; attempt++) {
      assert.equal((await login(app, victim.email, 'wrong password!', fromNewAddress())).status, 401);
    }
    assertTooMany(await login(app, victim.email, 'wrong password!', fromNewAddress()), /Too many failed sign-in attempts for this account/);
    assertTooMany(await login(app, victim.email, victim.password, fromNewAddress()), /for this account/);
    // Another account is not affected.
    assert.equal((await login(app, user.email, user.password, fromNewAddress())).status, 200);
  });

  test("a success resets the account's count", async () => {
    const account = await registerAndLogin(app, 'forgetful');
    const headers = fromNewAddress();
    for (let attempt = 1; attempt <= 2; attempt++) assert.equal((await login(app, account.email, 'wrong password!', headers)).status, 401);
    assert.equal((await login(app, account.email, account.password, fromNewAddress())).status, 200);
    for (let attempt = 1; attempt <= 3; attempt++) {
      assert.equal((await login(app, account.email, 'wrong password!', fromNewAddress())).status, 401, `failure ${attempt} after the reset`);
    }
    assertTooMany(await login(app, account.email, 'wrong password!', fromNewAddress()), /for this account/);
  });

  test('an address is refused after 3 failures, whichever accounts it tries (unknown ones too)', async () => {
    const headers = fromNewAddress();
    for (let attempt = 1; attempt <= 3; attempt++) {
      assert.equal((await login(app, `nobody-${uniqueSuffix()}@example.com`, 'wrong password!', headers)).status, 401);
    }
    assertTooMany(await login(app, user.email, user.password, headers), /Too many failed sign-in attempts from this address/);
    assert.equal((await login(app, user.email, user.password, fromNewAddress())).status, 200);
  });

  test('simultaneous guesses cannot slip past the limit: of 30 at once, exactly 3 are tried', async () => {
    const target = await registerAndLogin(app, 'stormed');
    const responses = await Promise.all(
      Array.from({ length: 30 }, () => login(app, target.email, 'wrong password!', fromNewAddress())),
    );
    const statuses = responses.map((response) => response.status).sort();
    assert.deepEqual(statuses, [...Array(3).fill(401), ...Array(27).fill(429)]);
  });

  test('the form route (/token) is throttled by the same counts', async () => {
    const account = await registerAndLogin(app, 'form');
    const headers = fromNewAddress();
    for (let attempt = 1; attempt <= 3; attempt++) assert.equal((await login(app, account.email, 'wrong password!', headers)).status, 401);
    const form = await app.request('POST', '/token', {
      body: new URLSearchParams({ username: account.email, password: account.password }),
      headers: { ...fromNewAddress(), 'Content-Type': 'application/x-www-form-urlencoded' },
    });
    assertTooMany(form, /for this account/);
  });

  test('counts are stored in the database, so every API process shares them', async () => {
    const account = await registerAndLogin(app, 'shared');
    const headers = fromNewAddress();
    for (let attempt = 1; attempt <= 3; attempt++) assert.equal((await login(app, account.email, 'wrong password!', headers)).status, 401);
    const { rows } = await sql<{ attempts: number }>`select attempts from auth_throttle where key = ${`login:account:${account.email}`}`.execute(app.db);
    assert.deepEqual(rows, [{ attempts: 3 }]);
  });
});

describe('housekeeping', () => {
  test('counts whose window has ended are deleted; live ones stay', () =>
    withTestApp({}, async (app) => {
      await sql`insert into auth_throttle (key, attempts, window_ends_at) values
                ('login:account:ended@example.com', 4, now() - interval '1 second'),
                ('login:account:live@example.com', 4, now() + interval '10 minutes')`.execute(app.db);
      assert.equal(await deleteEndedWindows(app.db), 1);
      const { rows } = await sql<{ key: string }>`select key from auth_throttle`.execute(app.db);
      assert.deepEqual(rows, [{ key: 'login:account:live@example.com' }]);
    }));
});

describe('client addresses and proxies', () => {
  test('without TRUST_PROXY, X-Forwarded-For is ignored: a client cannot pose as many', () =>
    withTestApp({ env: { LOGIN_FAILURE_LIMIT: '2' } }, async (app) => {
      for (let attempt = 1; attempt <= 2; attempt++) {
        const spoofed = { 'X-Forwarded-For': `203.0.113.${attempt}` };
        assert.equal((await login(app, `nobody-${uniqueSuffix()}@example.com`, 'wrong password!', spoofed)).status, 401);
      }
      assertTooMany(
        await login(app, `nobody-${uniqueSuffix()}@example.com`, 'wrong password!', { 'X-Forwarded-For': '203.0.113.99' }),
        /from this address/,
      );
    }));

  test('with TRUST_PROXY=1, the address the proxy appended counts, not what the client wrote before it', () =>
    withTestApp({ env: { LOGIN_FAILURE_LIMIT: '2', TRUST_PROXY: 'true' } }, async (app) => {
      for (let attempt = 1; attempt <= 2; attempt++) {
        // The client prepends a different address each time; the proxy's entry (last) is the same.
        const headers = { 'X-Forwarded-For': `192.0.2.${attempt}, 203.0.113.7` };
        assert.equal((await login(app, `nobody-${uniqueSuffix()}@example.com`, 'wrong password!', headers)).status, 401);
      }
      assertTooMany(
        await login(app, `nobody-${uniqueSuffix()}@example.com`, 'wrong password!', { 'X-Forwarded-For': '192.0.2.200, 203.0.113.7' }),
        /from this address/,
      );
      assert.equal(
        (await login(app, `nobody-${uniqueSuffix()}@example.com`, 'wrong password!', { 'X-Forwarded-For': '203.0.113.8' })).status,
        401,
      );
    }));
});

describe('LOGIN_FAILURE_LIMIT=0 turns the limit off', () => {
  test('every failure is a 401', () =>
    withTestApp({ env: { LOGIN_FAILURE_LIMIT: '0' } }, async (app) => {
      const user = await registerAndLogin(app, 'unlimited');
      for (let attempt = 1; attempt <= 12; attempt++) assert.equal((await login(app, user.email, 'wrong password!')).status, 401);
      assert.equal((await login(app, user.email, user.password)).status, 200);
    }));
});

describe('registrations per address (REGISTRATION_LIMIT_PER_HOUR=2)', () => {
  test('the third registration from an address in an hour is refused, before any work', () =>
    withTestApp({ env: { REGISTRATION_LIMIT_PER_HOUR: '2' } }, async (app) => {
      const register = (route: string, body: Record<string, string>) => app.post(route, body);
      const suffix = uniqueSuffix();
      assert.equal((await register('/api/v1/auth/register', { name: `r1 ${suffix}`, email: `r1-${suffix}@example.com`, password: 'long enough' })).status, 201);
      assert.equal((await register('/users/register', { tenant_name: `r2 ${suffix}`, email: `r2-${suffix}@example.com`, password: 'long enough' })).status, 201);
      const refused = await register('/api/v1/auth/register', { name: `r3 ${suffix}`, email: `r3-${suffix}@example.com`, password: 'long enough' });
      assertTooMany(refused, /Too many registrations from this address/, 60 * 60);
      const { rows } = await sql<{ n: number }>`select count(*)::int as n from users where email = ${`r3-${suffix}@example.com`}`.execute(app.db);
      assert.deepEqual(rows, [{ n: 0 }]);
    }));
});

describe('password hashing has a bounded line', () => {
  test('a flood of sign-ins gets 503 with Retry-After beyond it, never a 500, while other routes keep answering', () =>
    withTestApp({ env: { LOGIN_FAILURE_LIMIT: '0' } }, async (app) => {
      const user = await registerAndLogin(app, 'flooded');
      const task = await createTask(app, user.token, { payload: slackPayload('#flood') });
      const flood = Promise.all(Array.from({ length: PASSWORD_HASHES_ADMITTED + 20 }, () => login(app, user.email, 'wrong password!')));
      const during = await app.get(`/api/v1/tasks/${task.id}`, { token: user.token });
      const health = await app.get('/health/api');
      const responses = await flood;
      assert.equal(during.status, 200);
      assert.equal(health.status, 200);
      const statuses = new Set(responses.map((response) => response.status));
      assert.deepEqual([...statuses].sort(), [401, 503], `statuses: ${[...statuses].join(', ')}`);
      for (const response of responses.filter((candidate) => candidate.status === 503)) {
        assert.equal(response.headers.get('retry-after'), '1');
        assert.match(response.body.detail, /Too many sign-ins and registrations in progress/);
      }
      // The line drains: the next sign-in works.
      assert.equal((await login(app, user.email, user.password)).status, 200);
    }));
});
