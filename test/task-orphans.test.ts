import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sql } from 'kysely';
import { createTaskQueue, TASK_QUEUE } from '../src/queue/task-queue.js';
import { createTaskExecution, ORPHANED_ERROR } from '../src/tasks/task-execution.js';
import { sweepOrphanedTasks } from '../src/worker/worker.js';
import { startTestApp, type TestApp } from './helpers/app.js';
import { createTask, getTask, logMessages, slackPayload } from './helpers/engine.js';
import { registerAndLogin, type RegisteredUser } from './helpers/users.js';

// The safety net for tasks the queue has given up on (deliveries used up by repeated crashes, or
// a job deleted by retention while no worker ran): a worker's periodic sweep fails them, so no
// task stays queued or in_progress for ever. The app runs without a worker; the sweep is called
// directly.

let app: TestApp;
let user: RegisteredUser;

before(async () => {
  app = await startTestApp();
  user = await registerAndLogin(app, 'orphans');
});

after(async () => {
  await app.close();
});

const sweep = () => sweepOrphanedTasks(app.db, createTaskExecution({ db: app.db, queue: createTaskQueue(app.boss), config: app.config, metrics: app.metrics }));

async function backdate(taskId: string, minutes: number) {
  await app.db.updateTable('tasks').set({ updated_at: sql`now() - make_interval(mins => ${minutes})` }).where('id', '=', taskId).execute();
}

async function dropJob(taskId: string) {
  await app.boss.deleteJob(TASK_QUEUE.task, taskId);
}

test('a due task whose job is gone is failed with a clear error and audit entries', async () => {
  const orphan = await createTask(app, user.token, { payload: slackPayload('#orphan') });
  const running = await createTask(app, user.token, { payload: slackPayload('#orphan-running') });
  await app.db.updateTable('tasks').set({ status: 'in_progress', started_at: sql`now()`, claimed_delivery: 0 }).where('id', '=', running.id).execute();
  for (const task of [orphan, running]) {
    await dropJob(task.id);
    await backdate(task.id, 3);
  }

  assert.equal(await sweep(), 2);

  for (const task of [orphan, running]) {
    const swept = await getTask(app, user.token, task.id);
    assert.equal(swept.status, 'failed');
    assert.deepEqual(swept.result, { error: ORPHANED_ERROR });
    assert.ok(swept.finished_at);
    const messages = await logMessages(app, task.id);
    assert.deepEqual(messages.slice(-2), [`Task failed with error: ${ORPHANED_ERROR}`, 'Task permanently failed after all retries']);
  }
  assert.equal(await sweep(), 0, 'a second sweep finds nothing');
});

test('tasks with a live job, recently changed tasks and tasks scheduled for later are left alone', async () => {
  const live = await createTask(app, user.token, { payload: slackPayload('#live') });
  await backdate(live.id, 3);

  const recent = await createTask(app, user.token, { payload: slackPayload('#recent') });
  await dropJob(recent.id);

  const later = await createTask(app, user.token, { payload: slackPayload('#later'), delay_seconds: 3600 });
  await dropJob(later.id);
  await backdate(later.id, 3);

  assert.equal(await sweep(), 0);
  for (const task of [live, recent, later]) assert.equal((await getTask(app, user.token, task.id)).status, 'queued');
});
