import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import type { Database } from '../src/db/schema.js';
import { createTaskQuotas } from '../src/tasks/task-quotas.js';
import { withTestApp, type TestApp } from './helpers/app.js';
import { startFakeDcl, type FakeDcl } from './helpers/dcl.js';
import { slackPayload } from './helpers/engine.js';
import { eventually } from './helpers/poll.js';
import { registerAndLogin, type RegisteredUser } from './helpers/users.js';

// Per-tenant limits on creation: a noisy tenant is refused (429, naming the limit) and its
// neighbours do not notice. No worker runs: created tasks stay unfinished.

let dcl: FakeDcl | undefined;

after(async () => {
  await dcl?.close();
});

const create = (app: TestApp, user: RegisteredUser, message = 'hello') =>
  app.post('/api/v1/tasks', { payload: slackPayload('#quota', message) }, { token: user.token });

async function storedTasks(app: TestApp, user: RegisteredUser): Promise<number> {
  const { rows } = await sql<{ n: number }>`select count(*)::int as n from tasks where tenant_id = ${user.tenantId}`.execute(app.db);
  return rows[0]!.n;
}

describe('TENANT_RATE_LIMIT_PER_SECOND', () => {
  test('a burst beyond twice the rate is refused with 429 and Retry-After; nothing is stored for it', () =>
    withTestApp({ env: { TENANT_RATE_LIMIT_PER_SECOND: '1' } }, async (app) => {
      const [noisy, quiet] = await Promise.all([registerAndLogin(app, 'noisy'), registerAndLogin(app, 'quiet')]);
      const responses = await Promise.all(Array.from({ length: 8 }, (_, index) => create(app, noisy, `burst ${index}`)));
      const created = responses.filter((response) => response.status === 201);
      const refused = responses.filter((response) => response.status === 429);
      // A burst of 2 (twice the rate), and at most one more token refilled while the 8 were handled.
      assert.ok(created.length >= 2 && created.length <= 3, `${created.length} created`);
      assert.equal(created.length + refused.length, 8);
      for (const response of refused) {
        assert.match(response.body.detail, /TENANT_RATE_LIMIT_PER_SECOND/);
        assert.equal(response.headers.get('retry-after'), '1');
      }
      assert.equal(await storedTasks(app, noisy), created.length);
      // Another tenant has its own bucket.
      assert.equal((await create(app, quiet)).status, 201);
      // The bucket refills at the rate.
      await eventually(async () => ((await create(app, noisy, 'later')).status === 201 ? true : undefined), { timeoutMs: 5_000, intervalMs: 250 });
    }));

  test('AOA jobs draw on the same bucket', async () => {
    dcl = await startFakeDcl();
    await withTestApp({ env: { TENANT_RATE_LIMIT_PER_SECOND: '1', LEGACY_DCL_BASE_URL: dcl.url } }, async (app) => {
      const user = await registerAndLogin(app, 'aoa-rate');
      const tasks = await Promise.all([create(app, user, 'one'), create(app, user, 'two')]);
      assert.deepEqual(tasks.map((response) => response.status), [201, 201]);
      const aoa = await app.post('/api/v1/aoa/run', undefined, { token: user.token });
      assert.equal(aoa.status, 429, JSON.stringify(aoa.body));
      assert.match(aoa.body.detail, /TENANT_RATE_LIMIT_PER_SECOND/);
    });
  });
});

describe('TENANT_MAX_QUEUED_TASKS', () => {
  test("a tenant's unfinished tasks are capped; a finished one makes room; others are not affected", () =>
    withTestApp({ env: { TENANT_MAX_QUEUED_TASKS: '5' } }, async (app) => {
      const [busy, other] = await Promise.all([registerAndLogin(app, 'busy'), registerAndLogin(app, 'other')]);
      const first = [];
      for (let index = 0; index < 5; index++) {
        const response = await create(app, busy, `task ${index}`);
        assert.equal(response.status, 201);
        first.push(response.body.id as string);
      }
      const refused = await create(app, busy, 'one too many');
      assert.equal(refused.status, 429);
      assert.match(refused.body.detail, /5 unfinished tasks.*TENANT_MAX_QUEUED_TASKS/);
      assert.ok(Number(refused.headers.get('retry-after')) >= 1);
      // All at once while full: every one refused.
      const burst = await Promise.all(Array.from({ length: 6 }, () => create(app, busy)));
      assert.deepEqual(burst.map((response) => response.status), Array(6).fill(429));
      assert.equal(await storedTasks(app, busy), 5);

      assert.equal((await create(app, other)).status, 201);
      assert.equal((await app.delete(`/api/v1/tasks/${first[0]}`, { token: busy.token })).status, 200);
      assert.equal((await create(app, busy, 'room again')).status, 201);
    }));

  test('with a rate limit, a tenant is counted again only once the quota could be near', () =>
    withTestApp({}, async (app) => {
      const user = await registerAndLogin(app, 'counted');
      const statements: string[] = [];
      const db = new Kysely<Database>({
        dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: app.database.url, max: 2 }) }),
        log: (event) => void statements.push(event.query.sql),
      });
      try {
        const counts = () => statements.filter((statement) => statement.includes("status = 'in_progress'")).length;
        // Rate 10/s, quota 515: a count of 0 bounds the tenant at one batch (500, more than the
        // burst of 20) plus 10/s from then on, so single creations need no count for a while.
        const quotas = createTaskQuotas(db, { ratePerSecond: 10, maxUnfinished: 515 });
        for (let round = 0; round < 5; round++) assert.deepEqual(await quotas.admit([user.tenantId]), [undefined]);
        assert.equal(counts(), 1, 'counted once, at the first creation');
        // 15 more at once could pass 515 (500 + 15 and what the rate refilled): counted again.
        await quotas.admit(Array(15).fill(user.tenantId));
        assert.equal(counts(), 2);
        // Without a rate limit nothing bounds what was added since: every batch is counted.
        const unmetered = createTaskQuotas(db, { ratePerSecond: 0, maxUnfinished: 100 });
        for (let round = 0; round < 3; round++) await unmetered.admit([user.tenantId]);
        assert.equal(counts(), 5);
      } finally {
        await db.destroy();
      }
    }));
});

describe('MAX_TASK_PAYLOAD_BYTES', () => {
  test('a task body over the limit is 413, announced or streamed; one under it is created', () =>
    withTestApp({ env: { MAX_TASK_PAYLOAD_BYTES: '2048' } }, async (app) => {
      const user = await registerAndLogin(app, 'big');
      const big = await create(app, user, 'x'.repeat(4_000));
      assert.equal(big.status, 413);
      assert.match(big.body.detail, /Task body exceeds 2048 bytes/);
      // Without a Content-Length (a streamed body), the limit still holds.
      const body = JSON.stringify({ payload: slackPayload('#quota', 'y'.repeat(4_000)) });
      const streamed = await fetch(`${app.url}/api/v1/tasks`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${user.token}`, 'Content-Type': 'application/json' },
        body: new Blob([body]).stream(),
        duplex: 'half',
      } as RequestInit);
      assert.equal(streamed.status, 413);
      assert.equal((await create(app, user, 'z'.repeat(1_500))).status, 201);
      assert.equal(await storedTasks(app, user), 1);
    }));

  test('0 leaves only the general body limit', () =>
    withTestApp({ env: { MAX_TASK_PAYLOAD_BYTES: '0' } }, async (app) => {
      const user = await registerAndLogin(app, 'unbounded');
      assert.equal((await create(app, user, 'x'.repeat(30_000))).status, 201);
    }));
});
