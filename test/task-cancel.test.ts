import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestApp, type TestApp } from './helpers/app.js';
import {
  createTask,
  getTask,
  logMessages,
  newChannel,
  slackPayload,
  startFakeSlack,
  waitForRetryWait,
  waitForStatus,
  type FakeSlack,
} from './helpers/engine.js';
import { eventually } from './helpers/poll.js';
import { registerAndLogin, type RegisteredUser } from './helpers/users.js';

// DELETE /api/v1/tasks/{id}: queued, scheduled, waiting-for-retry and running tasks are canceled
// (their pg-boss job too, a running action aborted within 1 s), and canceled stays final.
// Finished tasks answer 409 and change nothing.
//
// The app starts WITHOUT a worker, so the first test can cancel a task no worker has seen; the
// other tests start one through `withWorker()`.

const RETRY_DELAY_SECONDS = 2;
const CANCELED_RESULT = { message: 'Task canceled by user' };

let slack: FakeSlack;
let app: TestApp;
let workerStarted = false;

before(async () => {
  slack = await startFakeSlack();
  app = await startTestApp({ env: { SLACK_WEBHOOK_URL: slack.url, RETRY_DELAYS_SECONDS: String(RETRY_DELAY_SECONDS) } });
});

after(async () => {
  await app?.close();
  await slack?.close();
});

async function withWorker(): Promise<void> {
  if (workerStarted) return;
  workerStarted = true;
  await app.startWorker();
}

async function jobState(id: string): Promise<string | undefined> {
  const [job] = await app.boss.findJobs('tasks', { id });
  return job?.state;
}

async function cancel(user: RegisteredUser, id: string) {
  return app.delete(`/api/v1/tasks/${id}`, { token: user.token });
}

function assertCanceled(task: any) {
  assert.equal(task.status, 'canceled');
  assert.deepEqual(task.result, CANCELED_RESULT);
  assert.ok(task.finished_at, 'finished_at is set on cancel');
}

describe('canceling tasks that have not started', () => {
  test('a queued task canceled before any worker runs is canceled with its job, and never runs once a worker starts', async () => {
    assert.equal(workerStarted, false, 'this test needs the app without a worker');
    const user = await registerAndLogin(app, 'cancel-queued');
    const channel = newChannel('never');
    const controlChannel = newChannel('control');

    const task = await createTask(app, user.token, { payload: slackPayload(channel) });
    assert.equal(await jobState(task.id), 'created');

    const response = await cancel(user, task.id);
    assert.equal(response.status, 200, JSON.stringify(response.body));
    assertCanceled(response.body);
    assert.equal(response.body.id, task.id);
    assert.equal(response.body.started_at, null);
    assert.deepEqual(await getTask(app, user.token, task.id), response.body);
    assert.equal(await jobState(task.id), 'cancelled');
    assert.equal((await logMessages(app, task.id)).at(-1), 'Task canceled by user request');

    // A task created after it, still queued: once it has run, the worker has fetched past the canceled one.
    const control = await createTask(app, user.token, { payload: slackPayload(controlChannel) });
    await withWorker();
    const controlDone = await waitForStatus(app, user.token, control.id, ['success', 'failed']);
    assert.equal(controlDone.status, 'success');

    assert.deepEqual(await getTask(app, user.token, task.id), response.body, 'the canceled task is untouched');
    assert.equal(slack.requestsFor(channel).length, 0, 'the canceled task never posted');
    assert.ok(!(await logMessages(app, task.id)).includes('Task execution started'));
    assert.equal(await jobState(task.id), 'cancelled');
  });

  test('a task scheduled 60 s ahead is canceled with its job', async () => {
    await withWorker();
    const user = await registerAndLogin(app, 'cancel-scheduled');
    const task = await createTask(app, user.token, { payload: slackPayload(newChannel('later')), delay_seconds: 60 });
    assert.ok(task.scheduled_for);
    const due = Date.parse(task.scheduled_for) - Date.parse(task.created_at);
    assert.ok(Math.abs(due - 60_000) < 2_000, `scheduled ${due} ms after creation`);
    assert.equal(await jobState(task.id), 'created');

    const response = await cancel(user, task.id);
    assert.equal(response.status, 200);
    assertCanceled(response.body);
    assert.equal(response.body.started_at, null);
    assert.equal(await jobState(task.id), 'cancelled');
    assert.equal((await logMessages(app, task.id)).at(-1), 'Task canceled by user request');
  });

  test('a scheduled task canceled before its time never runs, while its twin runs on time', async () => {
    await withWorker();
    const user = await registerAndLogin(app, 'cancel-scheduled-run');
    const channel = newChannel('sched-canceled');
    const twinChannel = newChannel('sched-twin');
    const task = await createTask(app, user.token, { payload: slackPayload(channel), delay_seconds: 1 });
    const twin = await createTask(app, user.token, { payload: slackPayload(twinChannel), delay_seconds: 1 });

    const response = await cancel(user, task.id);
    assert.equal(response.status, 200);
    assertCanceled(response.body);

    // The twin was due no earlier than the canceled task: once it has run, the canceled one's time has passed.
    const twinDone = await waitForStatus(app, user.token, twin.id, ['success', 'failed'], 5_000);
    assert.equal(twinDone.status, 'success');
    assert.ok(Date.parse(twinDone.started_at) >= Date.parse(twin.scheduled_for) - 50, 'the twin waited for its time');
    assert.deepEqual(await getTask(app, user.token, task.id), response.body);
    assert.equal(slack.requestsFor(channel).length, 0);
    assert.ok(!(await logMessages(app, task.id)).includes('Task execution started'));
  });

  test('a task waiting for its retry is canceled and not retried', async () => {
    await withWorker();
    const user = await registerAndLogin(app, 'cancel-retry');
    const channel = newChannel('retry-cancel');
    slack.route(channel, () => ({ status: 500, body: 'down' }));
    const task = await createTask(app, user.token, { payload: slackPayload(channel), max_retries: 3 });

    const waiting = await waitForRetryWait(app, user.token, task.id, 1);
    const response = await cancel(user, task.id);
    assert.equal(response.status, 200, JSON.stringify(response.body));
    assertCanceled(response.body);
    assert.equal(response.body.retry_count, 1);
    assert.equal(await jobState(task.id), 'cancelled');

    // A task due when the retry would have been: once it has run, the retry's time has passed.
    const control = await createTask(app, user.token, { payload: slackPayload(newChannel('retry-control')), delay_seconds: RETRY_DELAY_SECONDS });
    assert.ok(Date.parse(control.scheduled_for) >= Date.parse(waiting.scheduled_for));
    assert.equal((await waitForStatus(app, user.token, control.id, ['success', 'failed'], 6_000)).status, 'success');

    assert.equal(slack.requestsFor(channel).length, 1, 'no retry ran after the cancel');
    assert.deepEqual(await getTask(app, user.token, task.id), response.body);
    const messages = await logMessages(app, task.id);
    assert.equal(messages.at(-1), 'Task canceled by user request');
    assert.ok(!messages.includes('Task permanently failed after all retries'));
  });
});

describe('canceling a running task', () => {
  test('DELETE on a task whose Slack call hangs cancels it and aborts the call within 1 s', async (t) => {
    await withWorker();
    const user = await registerAndLogin(app, 'cancel-running');
    const channel = newChannel('hang');
    slack.route(channel, () => ({ hang: true }));
    const task = await createTask(app, user.token, { payload: slackPayload(channel) });

    await waitForStatus(app, user.token, task.id, 'in_progress', 5_000);
    const request = await eventually(() => slack.requestsFor(channel)[0], { timeoutMs: 5_000, message: 'the Slack call' });
    assert.equal(request.aborted, false);

    const response = await cancel(user, task.id);
    const canceledAt = Date.now();
    assert.equal(response.status, 200, JSON.stringify(response.body));
    assertCanceled(response.body);
    assert.ok(response.body.started_at);

    await eventually(() => (request.aborted ? true : undefined), { timeoutMs: 3_000, intervalMs: 5, message: 'the Slack call aborted' });
    const latency = Date.now() - canceledAt;
    t.diagnostic(`running cancel: Slack call aborted ${latency} ms after DELETE answered`);
    assert.ok(latency < 1_000, `aborted ${latency} ms after the cancel`);

    assert.deepEqual(await getTask(app, user.token, task.id), response.body);
    const messages = await logMessages(app, task.id);
    assert.equal(messages.at(-1), 'Task canceled by user request');
    assert.ok(!messages.some((message) => message.startsWith('Task failed with error')), JSON.stringify(messages));
    assert.equal(await jobState(task.id), 'cancelled');
  });

  test('a canceled task stays canceled after its Slack call would have answered', async (t) => {
    await withWorker();
    const user = await registerAndLogin(app, 'cancel-late-answer');
    const channel = newChannel('late');
    slack.route(channel, () => ({ status: 200, body: 'ok', delayMs: 1_500 }));
    const task = await createTask(app, user.token, { payload: slackPayload(channel) });

    await waitForStatus(app, user.token, task.id, 'in_progress', 5_000);
    const request = await eventually(() => slack.requestsFor(channel)[0], { timeoutMs: 5_000, message: 'the Slack call' });
    const response = await cancel(user, task.id);
    const canceledAt = Date.now();
    assert.equal(response.status, 200);
    assertCanceled(response.body);
    const logsAtCancel = await logMessages(app, task.id);
    assert.equal(logsAtCancel.at(-1), 'Task canceled by user request');

    await eventually(() => (request.aborted ? true : undefined), { timeoutMs: 3_000, intervalMs: 5, message: 'the Slack call aborted' });
    t.diagnostic(`late-answer cancel: Slack call aborted ${Date.now() - canceledAt} ms after DELETE answered`);
    // Wait until the fake Slack's answer came due (it is dropped, the client having gone).
    await eventually(() => request.answeredAt, { timeoutMs: 5_000, message: 'the Slack answer coming due' });

    assert.deepEqual(await getTask(app, user.token, task.id), response.body, 'still canceled, nothing rewritten');
    assert.deepEqual(await logMessages(app, task.id), logsAtCancel);
    assert.equal(slack.requestsFor(channel).length, 1);
  });
});

describe('canceling finished tasks', () => {
  async function assertNotCancelable(user: RegisteredUser, id: string, status: string) {
    const before = await getTask(app, user.token, id);
    const logsBefore = await logMessages(app, id);
    assert.equal(before.status, status);
    const response = await cancel(user, id);
    assert.equal(response.status, 409, JSON.stringify(response.body));
    assert.deepEqual(response.body, { detail: `Task cannot be canceled in status ${status}` });
    assert.deepEqual(await getTask(app, user.token, id), before, 'task unchanged, updated_at included');
    assert.deepEqual(await logMessages(app, id), logsBefore, 'no audit entry added');
  }

  test('cancel of a successful task is 409 and changes nothing', async () => {
    await withWorker();
    const user = await registerAndLogin(app, 'cancel-409-success');
    const task = await createTask(app, user.token, { payload: slackPayload(newChannel('done')) });
    assert.equal((await waitForStatus(app, user.token, task.id, ['success', 'failed'])).status, 'success');
    await assertNotCancelable(user, task.id, 'success');
  });

  test('cancel of a failed task is 409 and changes nothing', async () => {
    await withWorker();
    const user = await registerAndLogin(app, 'cancel-409-failed');
    const channel = newChannel('failed');
    slack.route(channel, () => ({ status: 500 }));
    const task = await createTask(app, user.token, { payload: slackPayload(channel) });
    assert.equal((await waitForStatus(app, user.token, task.id, ['success', 'failed'])).status, 'failed');
    await assertNotCancelable(user, task.id, 'failed');
  });

  test('cancel of a canceled task is 409 and changes nothing', async () => {
    await withWorker();
    const user = await registerAndLogin(app, 'cancel-409-canceled');
    const task = await createTask(app, user.token, { payload: slackPayload(newChannel('twice')), delay_seconds: 60 });
    assert.equal((await cancel(user, task.id)).status, 200);
    await assertNotCancelable(user, task.id, 'canceled');
  });
});
