import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import pg from 'pg';
import { isDatabaseUnavailable } from '../src/db/availability.js';
import { TASKS_QUEUED_CHANNEL } from '../src/queue/task-queue.js';
import { AoaSlotTakenError, createTaskCreator, type NewTask } from '../src/tasks/task-creation.js';
import { startTestApp, type TestApp } from './helpers/app.js';
import { newChannel, slackPayload, startFakeSlack, type FakeSlack } from './helpers/engine.js';
import { eventually } from './helpers/poll.js';
import { registerAndLogin, type RegisteredUser } from './helpers/users.js';

// The batched write path: concurrent creations share one statement, and still each succeeds or
// fails on its own.

let app: TestApp;
let slack: FakeSlack;
let user: RegisteredUser;

before(async () => {
  slack = await startFakeSlack();
  // No worker: these tests look at what creation stores.
  app = await startTestApp({ env: { SLACK_WEBHOOK_URL: slack.url, LEGACY_DCL_BASE_URL: 'http://127.0.0.1:9' } });
  user = await registerAndLogin(app, 'batching');
});

after(async () => {
  await app?.close();
  await slack?.close();
});

const NO_LIMITS = { ratePerSecond: 0, maxUnfinished: 0 };

const plainTask = (tenant: RegisteredUser, channel: string, index: number): NewTask => ({
  tenantId: tenant.tenantId,
  body: { payload: slackPayload(channel, `message ${index}`) as NewTask['body']['payload'] },
  kind: 'task',
  createdBy: tenant.userId,
});

const aoaTask = (tenant: RegisteredUser): NewTask => ({
  tenantId: tenant.tenantId,
  body: { payload: { action: 'aoa_connect' } as unknown as NewTask['body']['payload'], max_retries: 3 },
  kind: 'aoa',
  createdBy: tenant.userId,
});

/** Starts every creation in the same turn of the event loop, so they land in one batch. */
function createAtOnce(creator: ReturnType<typeof createTaskCreator>, tasks: NewTask[]) {
  return Promise.allSettled(tasks.map((task) => creator.create(task)));
}

/** What is stored for these task ids: rows, audit entries and jobs. */
async function stored(ids: string[]) {
  const { rows } = await sql<{ id: string; created_at: Date; logs: number; jobs: number }>`
    select t.id, t.created_at,
      (select count(*)::int from task_logs l where l.task_id = t.id) as logs,
      (select count(*)::int from pgboss.job j where j.id = t.id) as jobs
    from tasks t where t.id = any(${ids}::uuid[])
  `.execute(app.db);
  return rows;
}

async function storedByTenant(tenantId: string, channel: string) {
  const { rows } = await sql<{ id: string }>`
    select id from tasks where tenant_id = ${tenantId} and payload->>'channel' = ${channel}
  `.execute(app.db);
  return rows.map((row) => row.id);
}

describe('batched task creation', () => {
  test('tasks created at once share one statement; each gets its own task, job and audit entry', async () => {
    const creator = createTaskCreator({ db: app.db, limits: NO_LIMITS, metrics: app.metrics });
    const channel = newChannel('together');
    const results = await createAtOnce(creator, Array.from({ length: 20 }, (_, index) => plainTask(user, channel, index)));
    const tasks = results.map((result) => (result.status === 'fulfilled' ? result.value : assert.fail(String(result.reason))));
    assert.deepEqual(
      tasks.map((task) => (task.payload as { message: string }).message),
      Array.from({ length: 20 }, (_, index) => `message ${index}`),
      'each creation answers with its own task',
    );
    const rows = await stored(tasks.map((task) => task.id));
    assert.equal(rows.length, 20);
    // now() is the transaction's start: one value for all of them means one transaction.
    assert.equal(new Set(rows.map((row) => row.created_at.toISOString())).size, 1, 'one transaction wrote them all');
    for (const row of rows) assert.deepEqual([row.logs, row.jobs], [1, 1], `task ${row.id}: one audit entry and one job`);
  });

  test('one failing task does not fail its batch-mates', async () => {
    const creator = createTaskCreator({ db: app.db, limits: NO_LIMITS, metrics: app.metrics });
    const channel = newChannel('one-bad');
    // created_by names no user: the database refuses that row (a foreign key), and only that row.
    const bad: NewTask = { ...plainTask(user, channel, 99), createdBy: randomUUID() };
    const tasks = [plainTask(user, channel, 0), plainTask(user, channel, 1), bad, plainTask(user, channel, 2)];
    const results = await createAtOnce(creator, tasks);
    assert.deepEqual(
      results.map((result) => result.status),
      ['fulfilled', 'fulfilled', 'rejected', 'fulfilled'],
    );
    assert.match(String((results[2] as PromiseRejectedResult).reason), /foreign key/);
    const ids = await storedByTenant(user.tenantId, channel);
    assert.equal(ids.length, 3, 'the three good tasks are stored, the bad one is not');
    for (const row of await stored(ids)) assert.deepEqual([row.logs, row.jobs], [1, 1]);
  });

  test('a request that fails validation is answered 422 while its concurrent neighbours are created', async () => {
    const channel = newChannel('validation');
    const bodies = [0, 1, 2, 3].map((index) => ({ payload: slackPayload(channel, `m${index}`) }));
    const invalid = { payload: slackPayload(channel, 'bad'), priority: 11 };
    const responses = await Promise.all([...bodies, invalid].map((body) => app.post('/api/v1/tasks', body, { token: user.token })));
    assert.deepEqual(
      responses.map((response) => response.status),
      [201, 201, 201, 201, 422],
    );
    assert.equal(responses[4]!.body.detail[0].msg, 'priority must be between -10 and 10');
    assert.equal((await storedByTenant(user.tenantId, channel)).length, 4);
  });

  test('a database lost in the middle of a batch fails exactly that batch, as unavailable, and leaves nothing half-written', async () => {
    const channel = newChannel('lost');
    // The first batch's connection dies after its jobs are in and while its rows go in, as in a
    // database restart: a trigger on this channel's first row terminates its own backend.
    await sql`create sequence lost_batch_rows`.execute(app.db);
    await sql`
      create function lose_first_batch() returns trigger language plpgsql as $$
      begin
        if nextval('lost_batch_rows') = 1 then
          perform pg_terminate_backend(pg_backend_pid());
          perform pg_sleep(5);
        end if;
        return new;
      end $$
    `.execute(app.db);
    await sql`
      create trigger lose_first_batch before insert on tasks for each row
      when (new.payload->>'channel' = ${sql.lit(channel)}) execute function lose_first_batch()
    `.execute(app.db);
    const creator = createTaskCreator({ db: app.db, limits: NO_LIMITS, metrics: app.metrics });
    const first = await createAtOnce(creator, [0, 1, 2].map((index) => plainTask(user, channel, index)));
    for (const result of first) {
      assert.equal(result.status, 'rejected');
      assert.ok(isDatabaseUnavailable(result.reason), `answered as unavailable (503): ${String(result.reason)}`);
    }
    assert.deepEqual(await storedByTenant(user.tenantId, channel), [], 'no row of the failed batch was stored');
    const { rows: jobs } = await sql<{ n: number }>`
      select count(*)::int as n from pgboss.job where data->>'tenant_id' = ${user.tenantId}
        and not exists (select 1 from tasks where tasks.id = job.id)
    `.execute(app.db);
    assert.equal(jobs[0]!.n, 0, 'no job of the failed batch was stored');

    const second = await createAtOnce(creator, [3, 4].map((index) => plainTask(user, channel, index)));
    assert.deepEqual(
      second.map((result) => result.status),
      ['fulfilled', 'fulfilled'],
      'the next batch is written',
    );
    const ids = await storedByTenant(user.tenantId, channel);
    assert.equal(ids.length, 2);
    for (const row of await stored(ids)) assert.deepEqual([row.logs, row.jobs], [1, 1]);
  });

  test('an AOA conflict inside a batch refuses only the second AOA job of that tenant', async () => {
    const other = await registerAndLogin(app, 'batching-aoa');
    const creator = createTaskCreator({ db: app.db, limits: NO_LIMITS, metrics: app.metrics });
    const channel = newChannel('aoa-mates');
    const results = await createAtOnce(creator, [
      aoaTask(user),
      plainTask(user, channel, 0),
      aoaTask(user),
      aoaTask(other),
      plainTask(user, channel, 1),
    ]);
    assert.deepEqual(
      results.map((result) => result.status),
      ['fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled'],
    );
    assert.ok((results[2] as PromiseRejectedResult).reason instanceof AoaSlotTakenError);
    const { rows } = await sql<{ tenant_id: string; n: number }>`
      select tenant_id, count(*)::int as n from tasks where kind = 'aoa' and tenant_id in (${user.tenantId}, ${other.tenantId})
      group by tenant_id
    `.execute(app.db);
    assert.deepEqual(Object.fromEntries(rows.map((row) => [row.tenant_id, row.n])), { [user.tenantId]: 1, [other.tenantId]: 1 });
    const { rows: orphanLogs } = await sql<{ n: number }>`
      select count(*)::int as n from task_logs l where not exists (select 1 from tasks t where t.id = l.task_id)
    `.execute(app.db);
    assert.equal(orphanLogs[0]!.n, 0, 'the refused job left no audit entries behind');

    // Through the API, the refusal is the reference's 409 naming the active job.
    const conflict = await app.post('/api/v1/aoa/run', undefined, { token: user.token });
    assert.equal(conflict.status, 409, JSON.stringify(conflict.body));
    assert.equal(conflict.body.task_id, (results[0] as PromiseFulfilledResult<{ id: string }>).value.id);
  });

  test("a creation announces the tenants whose tasks are due now, once per batch, for the workers' wake-ups", async () => {
    const other = await registerAndLogin(app, 'batching-announced');
    const listener = new pg.Client({ connectionString: app.database.url });
    await listener.connect();
    const announced: string[] = [];
    listener.on('notification', (message) => announced.push(message.payload ?? ''));
    await listener.query(`listen ${TASKS_QUEUED_CHANNEL}`);
    try {
      const creator = createTaskCreator({ db: app.db, limits: NO_LIMITS, metrics: app.metrics });
      const channel = newChannel('announced');
      const due = plainTask(user, channel, 99);
      const later: NewTask = { ...due, body: { ...due.body, delay_seconds: 600 } };
      // Scheduled for later: nothing to run now, so nothing announced.
      await creator.create(later);
      const batch = await createAtOnce(creator, [plainTask(user, channel, 0), plainTask(other, channel, 1), plainTask(user, channel, 2), aoaTask(other)]);
      assert.deepEqual(batch.map((result) => result.status), ['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled']);
      await eventually(() => (announced.length > 0 ? true : undefined), { message: 'an announcement' });
      // Notifications arrive in commit order: one more creation, and everything before it has arrived.
      await creator.create(plainTask(other, channel, 3));
      await eventually(() => (announced.length > 1 ? true : undefined), { message: 'a second announcement' });
      assert.equal(announced.length, 2, 'one per batch with due plain tasks, none for the scheduled one');
      assert.deepEqual(announced[0]!.split(',').sort(), [user.tenantId, other.tenantId].sort(), 'each tenant once');
      assert.equal(announced[1], other.tenantId);
    } finally {
      await listener.end();
    }
  });
});
