import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { spawnService, type ServiceProcess } from '../scripts/lib/service-process.js';
import { silentLogger } from '../src/logger.js';
import { RETENTION_QUEUE, TASK_QUEUE, CALLBACK_QUEUE } from '../src/queue/task-queue.js';
import { deleteExpiredTasks } from '../src/tasks/task-retention.js';
import { finishedJobKeepSeconds, RETENTION_CRON, startRetention } from '../src/worker/retention.js';
import { startTestApp, withTestApp, type TestApp } from './helpers/app.js';
import { createTask, newChannel, slackPayload, startFakeSlack, waitForStatus, type FakeSlack } from './helpers/engine.js';
import { eventually } from './helpers/poll.js';
import { registerAndLogin, type RegisteredUser } from './helpers/users.js';

// Retention deletes finished tasks past TASK_RETENTION_DAYS with their audit trails. The tasks
// here ran through the real engine; their times are then moved into the past, as if they had
// run weeks ago.

const DAY_SECONDS = 24 * 60 * 60;

let slack: FakeSlack;
let app: TestApp;
let alice: RegisteredUser;
let bob: RegisteredUser;

before(async () => {
  slack = await startFakeSlack();
  // The tests run retention themselves: the worker keeps no schedule that could run it meanwhile.
  app = await startTestApp({ env: { SLACK_WEBHOOK_URL: slack.url, TASK_RETENTION_DAYS: '0' }, worker: true });
  [alice, bob] = await Promise.all([registerAndLogin(app, 'retention-a'), registerAndLogin(app, 'retention-b')]);
});

after(async () => {
  await app?.close();
  await slack?.close();
});

/** Moves a task's creation (and, when it finished, its end) this many days into the past. */
async function age(user: RegisteredUser, id: string, days: { created: number; finished?: number }) {
  await sql`
    update tasks set created_at = now() - make_interval(days => ${days.created}),
                     finished_at = case when finished_at is null then null else now() - make_interval(days => ${days.finished ?? days.created}) end
    where tenant_id = ${user.tenantId} and id = ${id}
  `.execute(app.db);
}

async function finished(user: RegisteredUser, body: Record<string, unknown>, status = 'success') {
  const task = await createTask(app, user.token, body);
  const done = await waitForStatus(app, user.token, task.id, ['success', 'failed', 'canceled']);
  assert.equal(done.status, status);
  return done;
}

async function remaining(ids: string[]): Promise<Set<string>> {
  const rows = await app.db.selectFrom('tasks').select('id').where('id', 'in', ids).execute();
  return new Set(rows.map((row) => row.id));
}

async function logCounts(ids: string[]): Promise<Map<string, number>> {
  const rows = await app.db
    .selectFrom('task_logs')
    .select(['task_id', sql<number>`count(*)::int`.as('count')])
    .where('task_id', 'in', ids)
    .groupBy('task_id')
    .execute();
  return new Map(rows.map((row) => [row.task_id, row.count]));
}

describe('deleting finished tasks', () => {
  test('exactly the tasks finished before the cutoff go, with their audit trails, in batches', async () => {
    const failing = newChannel('retention-fail');
    slack.route(failing, () => ({ status: 500, body: 'down' }));
    const ok = () => ({ payload: slackPayload(newChannel('retention')) });

    const oldSuccess = await finished(alice, ok());
    const oldFailed = await finished(alice, { payload: slackPayload(failing) }, 'failed');
    const scheduled = await createTask(app, alice.token, { ...ok(), delay_seconds: 3600 });
    const oldCanceled = (await app.delete(`/api/v1/tasks/${scheduled.id}`, { token: alice.token })).body;
    assert.equal(oldCanceled.status, 'canceled');
    // Finished a day short of the cutoff, though created long before it.
    const recentlyFinished = await finished(alice, ok());
    const recent = await finished(alice, ok());
    // Unfinished tasks stay however old.
    const oldQueued = await createTask(app, alice.token, { ...ok(), delay_seconds: 3600 });
    // A chain whose two tasks are both old, and one whose parent is old but whose child is not.
    const oldParent = await finished(alice, { ...ok(), on_success_next_task: ok() });
    const oldChild = await waitForStatus(app, alice.token, oldParent.next_task_id, 'success');
    const parent = await finished(alice, { ...ok(), on_success_next_task: ok() });
    const child = await waitForStatus(app, alice.token, parent.next_task_id, 'success');
    const bobsOld = await finished(bob, ok());
    const bobsRecent = await finished(bob, ok());

    for (const task of [oldSuccess, oldFailed, oldCanceled, oldParent, oldChild, parent]) await age(alice, task.id, { created: 40, finished: 31 });
    await age(alice, recentlyFinished.id, { created: 40, finished: 29 });
    await age(alice, oldQueued.id, { created: 400 });
    await age(bob, bobsOld.id, { created: 31 });

    const expired = [oldSuccess, oldFailed, oldCanceled, oldParent, oldChild, parent, bobsOld].map((task) => task.id);
    const kept = [recentlyFinished, recent, oldQueued, child, bobsRecent].map((task) => task.id);
    const all = [...expired, ...kept];
    const logsBefore = await logCounts(all);
    for (const id of all) assert.ok(logsBefore.get(id)! > 0, `task ${id} has an audit trail`);

    const outcome = await deleteExpiredTasks(app.db, { retentionDays: 30, batchSize: 2 });
    assert.equal(outcome.tasks, expired.length);
    assert.equal(outcome.logs, expired.reduce((sum, id) => sum + logsBefore.get(id)!, 0));
    assert.equal(outcome.complete, true);
    // Alice's 6 take three full batches and a last one finding none; Bob's one, one short batch.
    assert.equal(outcome.statements, 4 + 1);

    assert.deepEqual(await remaining(all), new Set(kept));
    const logsAfter = await logCounts(all);
    for (const id of expired) assert.equal(logsAfter.get(id), undefined, `task ${id}'s audit trail is gone`);
    for (const id of kept) assert.equal(logsAfter.get(id), logsBefore.get(id), `task ${id}'s audit trail is whole`);

    // The child of a deleted parent is a task like any other.
    const kid = await app.get(`/api/v1/tasks/${child.id}`, { token: alice.token });
    assert.equal(kid.status, 200);
    assert.equal((await app.get(`/api/v1/tasks/${child.id}/logs`, { token: alice.token })).body.length, logsBefore.get(child.id));
    assert.equal((await app.get(`/api/v1/tasks/${parent.id}`, { token: alice.token })).status, 404);

    const again = await deleteExpiredTasks(app.db, { retentionDays: 30, batchSize: 2 });
    assert.equal(again.tasks, 0);
  });

  test("deleting a chained task clears its parent's link, whichever of the two goes first", async () => {
    const parent = await finished(alice, { payload: slackPayload(newChannel('retention')), on_success_next_task: { payload: slackPayload(newChannel('retention')) } });
    const child = await waitForStatus(app, alice.token, parent.next_task_id, 'success');
    // Only the child is past the cutoff: a parent finishes before its child starts, but nothing may depend on it.
    await age(alice, child.id, { created: 40, finished: 31 });
    const outcome = await deleteExpiredTasks(app.db, { retentionDays: 30 });
    assert.equal(outcome.tasks, 1);
    const kept = await app.get(`/api/v1/tasks/${parent.id}`, { token: alice.token });
    assert.equal(kept.status, 200);
    assert.equal(kept.body.next_task_id, null);
    assert.equal(kept.body.status, 'success');
  });

  test('a task another transaction holds is skipped, never waited for, and deleted by a later run', async () => {
    const held = await finished(alice, { payload: slackPayload(newChannel('retention')) });
    const other = await finished(alice, { payload: slackPayload(newChannel('retention')) });
    for (const task of [held, other]) await age(alice, task.id, { created: 40, finished: 31 });
    await app.db.transaction().execute(async (trx) => {
      await trx.selectFrom('tasks').select('id').where('tenant_id', '=', alice.tenantId).where('id', '=', held.id).forUpdate().execute();
      const outcome = await deleteExpiredTasks(app.db, { retentionDays: 30 });
      assert.equal(outcome.tasks, 1);
    });
    assert.deepEqual(await remaining([held.id, other.id]), new Set([held.id]));
    assert.equal((await deleteExpiredTasks(app.db, { retentionDays: 30 })).tasks, 1);
    assert.deepEqual(await remaining([held.id]), new Set());
  });

  test('a run stops between statements when its signal aborts', async () => {
    const tasks = [];
    for (let index = 0; index < 3; index += 1) tasks.push(await finished(bob, { payload: slackPayload(newChannel('retention')) }));
    for (const task of tasks) await age(bob, task.id, { created: 40, finished: 31 });
    const stopped = new AbortController();
    stopped.abort();
    const outcome = await deleteExpiredTasks(app.db, { retentionDays: 30, signal: stopped.signal });
    assert.deepEqual(outcome, { tasks: 0, logs: 0, statements: 0, complete: false });
    assert.equal((await remaining(tasks.map((task) => task.id))).size, 3);
    assert.equal((await deleteExpiredTasks(app.db, { retentionDays: 30 })).tasks, 3);
  });

  test('0 days is refused: it would mean every finished task, not none', async () => {
    await assert.rejects(deleteExpiredTasks(app.db, { retentionDays: 0 }), RangeError);
  });
});

describe('the retention schedule', () => {
  test('a worker process keeps the hourly schedule and runs it; API processes do not; 0 days removes it', { timeout: 120_000 }, async () => {
    await withTestApp({}, async (apiOnly) => {
      // The API (this test app runs no worker) neither keeps the schedule nor changes the queues.
      assert.deepEqual(await apiOnly.boss.getSchedules(RETENTION_QUEUE), []);
      assert.equal((await apiOnly.boss.getQueue(TASK_QUEUE.task))!.deleteAfterSeconds, finishedJobKeepSeconds(0));

      const user = await registerAndLogin(apiOnly, 'retention-schedule');
      const id = randomUUID();
      await apiOnly.db
        .insertInto('tasks')
        .values({
          id,
          tenant_id: user.tenantId,
          status: 'success',
          payload: JSON.stringify(slackPayload('#old')),
          created_at: new Date(Date.now() - 4 * DAY_SECONDS * 1000),
          finished_at: new Date(Date.now() - 3 * DAY_SECONDS * 1000),
        })
        .execute();

      let worker: ServiceProcess | undefined;
      try {
        worker = spawnService('worker', { DATABASE_URL: apiOnly.database.url, TASK_RETENTION_DAYS: '2' });
        const started = worker;
        await eventually(() => (started.output().includes('"worker started"') ? true : undefined), { timeoutMs: 60_000, message: 'worker start' });
        const [schedule, ...others] = await apiOnly.boss.getSchedules(RETENTION_QUEUE);
        assert.equal(others.length, 0);
        assert.equal(schedule!.cron, RETENTION_CRON);
        for (const queue of [TASK_QUEUE.task, TASK_QUEUE.aoa, CALLBACK_QUEUE]) {
          assert.equal((await apiOnly.boss.getQueue(queue))!.deleteAfterSeconds, 2 * DAY_SECONDS, `${queue} keeps finished jobs as long as tasks`);
        }

        // What the schedule sends, the worker runs.
        await apiOnly.boss.send(RETENTION_QUEUE, null);
        await eventually(() => (started.output().includes('"finished tasks deleted"') ? true : undefined), {
          timeoutMs: 30_000,
          message: 'a retention run in the worker',
        });
        assert.equal(await apiOnly.db.selectFrom('tasks').select('id').where('id', '=', id).executeTakeFirst(), undefined);
        started.child.kill('SIGTERM');
        assert.equal(await started.exited, 0, started.output());
      } finally {
        if (worker && worker.child.exitCode === null) {
          worker.child.kill('SIGKILL');
          await worker.exited;
        }
      }

      await startRetention({ db: apiOnly.db, boss: apiOnly.boss, config: { ...apiOnly.config, taskRetentionDays: 0 }, logger: silentLogger, watch: apiOnly.watch });
      assert.deepEqual(await apiOnly.boss.getSchedules(RETENTION_QUEUE), []);
      assert.equal((await apiOnly.boss.getQueue(TASK_QUEUE.task))!.deleteAfterSeconds, 7 * DAY_SECONDS);
    });
  });
});
