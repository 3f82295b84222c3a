import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { SignJWT } from 'jose';
import { TOKEN_AUDIENCE, TOKEN_ISSUER } from '../src/auth/tokens.js';
import { startTestApp, type TestApp } from './helpers/app.js';
import { aoaTasks, assertConflict, getTask, startFakeDcl, waitForStatus, type FakeDcl } from './helpers/dcl.js';
import { eventually } from './helpers/poll.js';
import { registerAndLogin, type RegisteredUser } from './helpers/users.js';

// AOA with two tenants: no tenant reaches another's AOA task, the tenant sent to the Legacy DCL
// is always the caller's own (whatever the caller claims), and nothing AOA works without a token.

let dcl: FakeDcl;
let app: TestApp;
let alice: RegisteredUser;
let bob: RegisteredUser;

before(async () => {
  dcl = await startFakeDcl();
  app = await startTestApp({ env: { LEGACY_DCL_BASE_URL: dcl.url }, worker: true });
  alice = await registerAndLogin(app, 'aoa-alice');
  bob = await registerAndLogin(app, 'aoa-bob');
});

after(async () => {
  await dcl?.close();
  await app?.close();
});

const AOA_CALLS = [
  { method: 'GET', path: '/api/v1/aoa/state', json: undefined },
  { method: 'POST', path: '/api/v1/aoa/run', json: undefined },
  { method: 'POST', path: '/api/v1/aoa/reset', json: undefined },
  { method: 'POST', path: '/api/v1/aoa/prod-mode', json: { enabled: true } },
] as const;

describe('authentication', () => {
  test('every AOA endpoint is 401 without a valid token, and nothing reaches the DCL', async () => {
    const claims = { user_id: alice.userId, tenant_id: alice.tenantId, ver: 0, sub: alice.email, iss: TOKEN_ISSUER, aud: TOKEN_AUDIENCE };
    const now = Math.floor(Date.now() / 1000);
    const sign = (secret: string, expiresAt: number) =>
      new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuedAt(now - 3600).setExpirationTime(expiresAt).sign(new TextEncoder().encode(secret));
    const forged = await sign('another-secret-that-is-long-enough-for-hs256!!', now + 600);
    const expired = await sign(app.config.jwtSecret, now - 60);
    // The same claims with the right secret and a future expiry are accepted: what the refusals
    // below refuse is the signature or the expiry, nothing else.
    const genuine = await app.get('/api/v1/aoa/state', { token: await sign(app.config.jwtSecret, now + 600) });
    assert.equal(genuine.status, 200, JSON.stringify(genuine.body));
    const callsBefore = dcl.requests.length;
    const unsigned = `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${Buffer.from(
      JSON.stringify({ user_id: alice.userId, tenant_id: alice.tenantId, sub: alice.email }),
    ).toString('base64url')}.`;
    const credentials: { name: string; token?: string }[] = [
      { name: 'no token' },
      { name: 'garbage token', token: 'not-a-jwt' },
      { name: 'token signed with another secret', token: forged },
      { name: 'unsigned token', token: unsigned },
      { name: 'expired token', token: expired },
    ];
    for (const call of AOA_CALLS) {
      for (const credential of credentials) {
        const response = await app.request(call.method, call.path, {
          ...(credential.token ? { token: credential.token } : {}),
          ...(call.json ? { json: call.json } : {}),
        });
        assert.equal(response.status, 401, `${call.method} ${call.path} with ${credential.name}: ${JSON.stringify(response.body)}`);
        assert.equal(typeof response.body.detail, 'string');
        assert.equal(response.headers.get('www-authenticate'), 'Bearer');
      }
    }
    assert.equal(dcl.requests.length, callsBefore, 'no call reached the DCL');
    assert.deepEqual(await aoaTasks(app, alice.tenantId), [], 'no AOA task was created');
  });
});

describe('tenant isolation', () => {
  test("another tenant gets 404 on GET, DELETE and logs of an AOA task, and cannot cancel it", async () => {
    // Alice's job is held in progress for the whole test.
    dcl.route(alice.tenantId, () => ({ hang: true }));
    const created = await app.post('/api/v1/aoa/run', undefined, { token: alice.token });
    assert.equal(created.status, 202, JSON.stringify(created.body));
    const taskId = created.body.id;
    await waitForStatus(app, alice.token, taskId, 'in_progress');
    const held = await eventually(() => dcl.callsFor(alice.tenantId).find((call) => call.path === '/connect'), { message: "Alice's call" });

    for (const [method, path] of [
      ['GET', `/api/v1/tasks/${taskId}`],
      ['DELETE', `/api/v1/tasks/${taskId}`],
      ['GET', `/api/v1/tasks/${taskId}/logs`],
    ] as const) {
      const response = await app.request(method, path, { token: bob.token });
      assert.equal(response.status, 404, `${method} ${path}: ${JSON.stringify(response.body)}`);
      assert.deepEqual(response.body, { detail: 'Task not found' });
    }

    // Untouched: still Alice's, still running, its slot still hers alone.
    const task = await getTask(app, alice.token, taskId);
    assert.equal(task.status, 'in_progress');
    assert.equal(held.aborted, false);
    const logs = await app.get(`/api/v1/tasks/${taskId}/logs`, { token: alice.token });
    assert.equal(logs.status, 200);
    for (const log of logs.body) assert.equal(log.tenant_id, alice.tenantId);
    assert.ok(!logs.body.some((log: any) => /cancel/i.test(log.message)), 'no cancel was recorded');
    assertConflict(await app.post('/api/v1/aoa/reset', undefined, { token: alice.token }), taskId);

    // Bob's own slot is his: his job runs, and his 409 names his task, never Alice's.
    dcl.route(bob.tenantId, () => ({ status: 200, body: {}, delayMs: 1_000 }));
    const bobs = await app.post('/api/v1/aoa/run', undefined, { token: bob.token });
    assert.equal(bobs.status, 202, JSON.stringify(bobs.body));
    assertConflict(await app.post('/api/v1/aoa/run', undefined, { token: bob.token }), bobs.body.id);
    await waitForStatus(app, bob.token, bobs.body.id, 'success');

    const canceled = await app.delete(`/api/v1/tasks/${taskId}`, { token: alice.token });
    assert.equal(canceled.status, 200, JSON.stringify(canceled.body));
    await eventually(() => (held.aborted ? true : undefined), { message: "Alice's call aborted" });
    dcl.route(alice.tenantId, () => ({ status: 200, body: {} }));
  });

  test("the DCL only ever sees the caller's tenant, whatever the caller sends", async () => {
    const carol = await registerAndLogin(app, 'aoa-carol');
    const dave = await registerAndLogin(app, 'aoa-dave');
    const requestIds = new Map<string, string>();
    for (const [user, other] of [
      [carol, dave],
      [dave, carol],
    ] as const) {
      // Every call claims to be the other tenant in every place a caller controls.
      const spoof = { 'X-Tenant-ID': other.tenantId, 'X-Tenant-Id': other.tenantId };
      const state = await app.get('/api/v1/aoa/state', { token: user.token, headers: spoof });
      assert.equal(state.status, 200, JSON.stringify(state.body));
      requestIds.set(state.headers.get('x-request-id')!, user.tenantId);
      for (const call of AOA_CALLS.filter((item) => item.method === 'POST')) {
        const body = call.json ? { ...call.json, tenant_id: other.tenantId } : { tenant_id: other.tenantId };
        const response = await app.post(call.path, body, { token: user.token, headers: spoof });
        assert.equal(response.status, 202, `${call.path}: ${JSON.stringify(response.body)}`);
        requestIds.set(response.headers.get('x-request-id')!, user.tenantId);
        assert.equal(JSON.stringify(response.body.payload).includes(other.tenantId), false, 'the payload ignores the claimed tenant');
        await waitForStatus(app, user.token, response.body.id, 'success');
        const row = await app.db.selectFrom('tasks').select('tenant_id').where('id', '=', response.body.id).executeTakeFirstOrThrow();
        assert.equal(row.tenant_id, user.tenantId);
      }
    }

    const seen = dcl.requests.filter((request) => requestIds.has(String(request.headers['x-request-id'])));
    assert.equal(seen.length, 8, 'four calls per tenant reached the DCL');
    for (const request of seen) {
      const owner = requestIds.get(String(request.headers['x-request-id']))!;
      const other = owner === carol.tenantId ? dave.tenantId : carol.tenantId;
      assert.equal(request.headers['x-tenant-id'], owner, `${request.method} ${request.path}`);
      assert.equal(JSON.stringify(request.headers).includes(other), false, `${request.path}: no header names the other tenant`);
      assert.equal(JSON.stringify(request.body ?? null).includes(other), false, `${request.path}: the body does not name the other tenant`);
    }
    const toggles = seen.filter((request) => request.path === '/toggle_dev_mode');
    for (const toggle of toggles) assert.deepEqual(toggle.body, { enabled: true });
  });
});
