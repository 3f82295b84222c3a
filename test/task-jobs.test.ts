import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sql } from 'kysely';
import { completeTaskJobs, TASK_QUEUE } from '../src/queue/task-queue.js';
import { createTasks, type NewTask } from '../src/tasks/task-creation.js';
import { startTestApp, type TestApp } from './helpers/app.js';
import { slackPayload } from './helpers/engine.js';
import { registerAndLogin, type RegisteredUser } from './helpers/users.js';

// Task creation enqueues its jobs with its own INSERT into pg-boss's job table (insertTaskJobs),
// and a success completes its job with its own UPDATE (completeTaskJobs), so that a task and its
// job change in one statement. Each must write what pg-boss's insert() or complete() writes for
// the same job: a column pg-boss fills (now or after an upgrade) and we do not would make our jobs
// behave unlike its own.

let app: TestApp;
let user: RegisteredUser;

before(async () => {
  app = await startTestApp({ env: { LEGACY_DCL_BASE_URL: 'http://127.0.0.1:9' } });
  user = await registerAndLogin(app, 'task-jobs');
});

after(async () => {
  await app?.close();
});

type JobRow = Record<string, unknown> & { id: string; name: string };

/** The jobs as stored, in the order of `ids`, but for the columns that hold the time of a change (and `without`). */
async function jobRows(ids: string[], without: string[] = []): Promise<JobRow[]> {
  const { rows } = await sql<{ job: JobRow }>`
    select to_jsonb(job) - 'created_on' - ${['started_on', 'heartbeat_on', 'completed_on', ...without]}::text[] as job
    from pgboss.job where id = any(${ids}::uuid[]) order by array_position(${ids}::uuid[], id)
  `.execute(app.db);
  return rows.map((row) => row.job);
}

const plainTask = (channel: string): NewTask => ({
  tenantId: user.tenantId,
  kind: 'task',
  createdBy: user.userId,
  body: { payload: slackPayload(channel) as NewTask['body']['payload'] },
});

test("a created task's job is the row pg-boss's insert() writes for the same job", async () => {
  const tasks: NewTask[] = [
    plainTask('jobs-plain'),
    {
      tenantId: user.tenantId,
      kind: 'task',
      createdBy: user.userId,
      body: { payload: slackPayload('jobs-later') as NewTask['body']['payload'], max_retries: 3, timeout_seconds: 30, priority: 5, delay_seconds: 60 },
    },
    {
      tenantId: user.tenantId,
      kind: 'aoa',
      createdBy: user.userId,
      body: { payload: { action: 'aoa_connect' } as unknown as NewTask['body']['payload'], max_retries: 2 },
    },
  ];
  const created = await createTasks(app.db, tasks);
  const ids = created.map((task) => (task instanceof Error ? assert.fail(task) : task.id));
  const ours = await jobRows(ids);
  assert.equal(ours.length, 3, 'every task has its job');

  // The same jobs again, through pg-boss, in place of ours.
  await sql`delete from pgboss.job where id = any(${ids}::uuid[])`.execute(app.db);
  for (const job of ours) {
    const inserted = await app.boss.insert(job.name, [
      {
        id: job.id,
        data: job.data as object,
        priority: job.priority as number,
        startAfter: String(job.start_after),
        ...(job.singleton_key ? { singletonKey: job.singleton_key as string } : {}),
        ...(job.group_id ? { group: { id: job.group_id as string } } : {}),
        retryLimit: job.retry_limit as number,
        retryDelay: job.retry_delay as number,
        heartbeatSeconds: job.heartbeat_seconds as number,
        expireInSeconds: job.expire_seconds as number,
      },
    ], { returnId: true });
    assert.deepEqual(inserted, [job.id]);
  }
  assert.deepEqual(await jobRows(ids), ours);

  // And what those jobs say, against the tasks.
  const [plain, later, aoa] = ours;
  assert.deepEqual(
    [plain!.name, plain!.group_id, plain!.singleton_key, plain!.retry_limit, later!.retry_limit, later!.expire_seconds],
    [TASK_QUEUE.task, user.tenantId, null, 4, 10, 35],
  );
  assert.deepEqual([aoa!.name, aoa!.singleton_key, aoa!.group_id, aoa!.policy], [TASK_QUEUE.aoa, user.tenantId, null, 'exclusive']);
});

test("a finished task's job is completed as pg-boss's complete() completes it, and only under the delivery that holds it", async () => {
  const created = await createTasks(app.db, [plainTask('jobs-ours'), plainTask('jobs-theirs')]);
  const [ours, theirs] = created.map((task) => (task instanceof Error ? assert.fail(task) : task.id));
  const fetched = await app.boss.fetch(TASK_QUEUE.task, { batchSize: 10 });
  const attempt = new Map(fetched.map((job) => [job.id, job.retryCount]));
  assert.ok(attempt.has(ours!) && attempt.has(theirs!), 'both jobs are active');

  const complete = (id: string, delivery: number) => sql`
    with finished as (select * from (values (${id}::uuid, 'task', ${delivery}::int)) as task(id, kind, claimed_delivery)),
    completed as (${completeTaskJobs('finished')})
    select 1
  `.execute(app.db);
  await complete(ours!, attempt.get(ours!)! + 1);
  assert.equal((await jobRows([ours!]))[0]!.state, 'active', 'a delivery that does not hold the job changes nothing');

  await complete(ours!, attempt.get(ours!)!);
  await app.boss.complete(TASK_QUEUE.task, { id: theirs!, retryCount: attempt.get(theirs!)! }, null);
  const [oursNow, theirsNow] = await jobRows([ours!, theirs!], ['id', 'data', 'priority', 'start_after', 'keep_until']);
  assert.equal(oursNow!.state, 'completed');
  assert.deepEqual(oursNow, theirsNow);
});
