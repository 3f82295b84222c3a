import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { createTokenVersions, USER_TOKENS_CHANNEL } from '../src/auth/token-versions.js';
import type { Database } from '../src/db/schema.js';
import { createNotifications } from '../src/db/notifications.js';
import { createApp } from '../src/http/app.js';
import { silentLogger } from '../src/logger.js';
import { startTestApp, type TestApp } from './helpers/app.js';
import { startFakeDcl, type FakeDcl } from './helpers/dcl.js';
import { createTask, slackPayload } from './helpers/engine.js';
import { eventually } from './helpers/poll.js';
import { registerAndLogin, type RegisteredUser } from './helpers/users.js';

// A revoked token, or the token of a user who no longer exists, is refused on every route from
// the next request on, by every API process: not when it expires.

let app: TestApp;
let dcl: FakeDcl;
/** A second API process on the same database: only notifications tell it what the first changed. */
let secondApi: ReturnType<typeof createApp>;
let secondNotifications: ReturnType<typeof createNotifications>;

before(async () => {
  dcl = await startFakeDcl();
  app = await startTestApp({ env: { LEGACY_DCL_BASE_URL: dcl.url } });
  secondNotifications = createNotifications(app.database.url, { watch: app.watch });
  await secondNotifications.ready;
  secondApi = createApp({ db: app.db, boss: app.boss, config: app.config, logger: silentLogger, notifications: secondNotifications, metrics: app.metrics });
});

after(async () => {
  await secondNotifications?.close();
  await app?.close();
  await dcl?.close();
});

/** Every authenticated route, as the user sees it: its status for this token. */
async function statusesWith(token: string, taskId: string, call = app.request.bind(app)) {
  const routes: [string, string, unknown?][] = [
    ['GET', '/api/v1/auth/me'],
    ['GET', '/users/me'],
    ['GET', `/api/v1/tasks/${taskId}`],
    ['GET', `/api/v1/tasks/${taskId}/logs`],
    ['POST', '/api/v1/tasks', { payload: slackPayload('#revoked') }],
    ['DELETE', `/api/v1/tasks/${taskId}`],
    ['GET', '/api/v1/aoa/state'],
    ['POST', '/api/v1/aoa/run'],
    ['POST', '/api/v1/aoa/reset'],
    ['POST', '/api/v1/aoa/prod-mode', { enabled: true }],
    ['POST', '/api/v1/auth/logout'],
  ];
  const statuses: Record<string, number> = {};
  for (const [method, path, json] of routes) {
    const response = await call(method, path, { token, ...(json !== undefined ? { json } : {}) });
    statuses[`${method} ${path}`] = response.status;
    if (response.status === 401) assert.equal(response.headers.get('www-authenticate'), 'Bearer');
  }
  return statuses;
}

function assertAllRefused(statuses: Record<string, number>) {
  for (const [route, status] of Object.entries(statuses)) assert.equal(status, 401, `${route} answered ${status}`);
}

/** The second API process, called in-process, shaped like the test app's request helper. */
async function onSecondApi(method: string, path: string, init: { token?: string; json?: unknown } = {}) {
  const response = await secondApi.request(path, {
    method,
    headers: { Authorization: `Bearer ${init.token}`, 'Content-Type': 'application/json' },
    ...(init.json !== undefined ? { body: JSON.stringify(init.json) } : {}),
  });
  return { status: response.status, headers: response.headers, body: await response.text() };
}

describe('revoking tokens (POST /api/v1/auth/logout)', () => {
  let user: RegisteredUser;
  let taskId: string;

  before(async () => {
    user = await registerAndLogin(app, 'revoker');
    taskId = (await createTask(app, user.token, { payload: slackPayload('#kept') })).id;
  });

  test('the token works, then after a logout it is refused on every route, at once, by every API process', async () => {
    const other = await app.post('/api/v1/auth/login', { email: user.email, password: user.password });
    const secondToken: string = other.body.access_token;
    // Both processes have seen (and remembered) the user's tokens as valid.
    assert.equal((await app.get('/api/v1/auth/me', { token: user.token })).status, 200);
    assert.equal((await onSecondApi('GET', '/api/v1/auth/me', { token: secondToken })).status, 200);

    const logout = await app.post('/api/v1/auth/logout', undefined, { token: user.token });
    assert.equal(logout.status, 204);
    assertAllRefused(await statusesWith(user.token, taskId));
    // Every token issued before the logout goes with it, in the other process too.
    await eventually(async () => ((await onSecondApi('GET', '/api/v1/auth/me', { token: secondToken })).status === 401 ? true : undefined), {
      timeoutMs: 2_000,
      message: 'the second API process refusing the revoked token',
    });
    assertAllRefused(await statusesWith(secondToken, taskId, onSecondApi));

    // Signing in again gives a token that works; the tenant's data is all still there.
    const fresh = await app.post('/api/v1/auth/login', { email: user.email, password: user.password });
    assert.equal((await app.get(`/api/v1/tasks/${taskId}`, { token: fresh.body.access_token })).status, 200);
    assert.equal((await onSecondApi('GET', `/api/v1/tasks/${taskId}`, { token: fresh.body.access_token })).status, 200);
  });
});

describe('a user who no longer exists', () => {
  test('is refused on every route (creating a task is a 401, not a 500), in every process', async () => {
    const user = await registerAndLogin(app, 'removed');
    const taskId = (await createTask(app, user.token, { payload: slackPayload('#orphan') })).id;
    assert.equal((await app.get(`/api/v1/tasks/${taskId}`, { token: user.token })).status, 200);
    assert.equal((await onSecondApi('GET', `/api/v1/tasks/${taskId}`, { token: user.token })).status, 200);

    // Removed by an operator, with SQL: the tenant's tasks stay, without their creator.
    await sql`delete from users where id = ${user.userId}`.execute(app.db);
    for (const call of [app.request.bind(app), onSecondApi]) {
      await eventually(async () => ((await call('GET', `/api/v1/tasks/${taskId}`, { token: user.token })).status === 401 ? true : undefined), {
        timeoutMs: 2_000,
        message: 'the removed user refused',
      });
      assertAllRefused(await statusesWith(user.token, taskId, call));
    }
    const { rows } = await sql<{ created_by: string | null }>`select created_by from tasks where id = ${taskId}`.execute(app.db);
    assert.deepEqual(rows, [{ created_by: null }]);
  });
});

describe('what a process remembers', () => {
  /** Notifications whose connection the test controls. */
  function fakeNotifications() {
    const handlers = new Map<string, (payload: string) => void>();
    const listeners: (() => void)[] = [];
    return {
      listening: true,
      subscribe(channel: string, handler: (payload: string) => void) {
        handlers.set(channel, handler);
        return () => {};
      },
      onListening(listener: () => void) {
        listeners.push(listener);
        return () => {};
      },
      async close() {},
      notify: (channel: string, payload: string) => handlers.get(channel)?.(payload),
      listeningAgain() {
        this.listening = true;
        for (const listener of listeners) listener();
      },
    };
  }

  test('a user is looked up once, again when told of a change, and every time while nothing can tell', async () => {
    const user = await registerAndLogin(app, 'remembered');
    const lookups: string[] = [];
    const db = new Kysely<Database>({
      dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: app.database.url, max: 2 }) }),
      log: (event) => void lookups.push(event.query.sql),
    });
    const notifications = fakeNotifications();
    const versions = createTokenVersions(db, notifications);
    try {
      const holder = { tenantId: user.tenantId, tokenVersion: 0, role: 'owner' };
      assert.deepEqual(await Promise.all([versions.holder(user.userId), versions.holder(user.userId)]), [holder, holder]);
      assert.deepEqual(await versions.holder(user.userId), holder);
      assert.equal(lookups.length, 1, 'one lookup for simultaneous and later requests');

      await sql`update users set token_version = token_version + 1 where id = ${user.userId}`.execute(app.db);
      notifications.notify(USER_TOKENS_CHANNEL, user.userId);
      assert.deepEqual(await versions.holder(user.userId), { ...holder, tokenVersion: 1 });
      assert.equal(lookups.length, 2);

      notifications.listening = false;
      await versions.holder(user.userId);
      await versions.holder(user.userId);
      assert.equal(lookups.length, 4, 'looked up at every request while notifications may be missed');

      notifications.listeningAgain();
      await versions.holder(user.userId);
      await versions.holder(user.userId);
      assert.equal(lookups.length, 5);
    } finally {
      await db.destroy();
    }
  });

  test('a lost listening connection is made again, and changes are heard through it', async () => {
    const user = await registerAndLogin(app, 'relistened');
    const notifications = createNotifications(app.database.url, { applicationName: 'autonomos-relisten-test', watch: app.watch });
    await notifications.ready;
    const api = createApp({ db: app.db, boss: app.boss, config: app.config, logger: silentLogger, notifications, metrics: app.metrics });
    const me = async () => (await api.request('/api/v1/auth/me', { headers: { Authorization: `Bearer ${user.token}` } })).status;
    const listenerPid = async () =>
      (await sql<{ pid: number }>`select pid from pg_stat_activity where application_name = 'autonomos-relisten-test'`.execute(app.db)).rows[0]?.pid;
    try {
      const first = await listenerPid();
      await sql`select pg_terminate_backend(${first}::int)`.execute(app.db);
      await eventually(async () => {
        const pid = await listenerPid();
        return pid !== undefined && pid !== first && notifications.listening ? true : undefined;
      }, { timeoutMs: 5_000, message: 'listening on a new connection' });
      assert.equal(await me(), 200);
      await sql`update users set token_version = token_version + 1 where id = ${user.userId}`.execute(app.db);
      await eventually(async () => ((await me()) === 401 ? true : undefined), { timeoutMs: 2_000, message: 'the change heard' });
    } finally {
      await notifications.close();
    }
  });
});
