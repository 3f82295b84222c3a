import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestApp, type TestApp } from './helpers/app.js';
import { createTask, getTask, logMessages, tenantTasks, waitForStatus, waitForTask } from './helpers/engine.js';
import { startFakeServer, type FakeServer } from './helpers/fake-server.js';
import { registerAndLogin, uniqueSuffix, type RegisteredUser } from './helpers/users.js';

// The delay action: the task succeeds `seconds` after it starts. While it waits it is in_progress
// with scheduled_for saying until when, and no worker holds it: the app runs ONE fetch loop and
// lets a tenant run ONE task at a time, so a delay that held its slot would stop everything else.

let app: TestApp;
let server: FakeServer;

before(async () => {
  server = await startFakeServer();
  app = await startTestApp({
    env: { WORKER_CONCURRENCY: '1', TENANT_MAX_ACTIVE_TASKS: '1', CALLBACK_ALLOW_PRIVATE_NETWORKS: 'true' },
    worker: true,
  });
});

after(async () => {
  await app?.close();
  await server?.close();
});

const delay = (seconds: number) => ({ action: 'delay', seconds });

/** Polls until the task is in_progress and waiting (held by no worker until its scheduled_for). */
function waitingTask(user: RegisteredUser, id: string): Promise<any> {
  return waitForTask(app, user.token, id, (task) => task.status === 'in_progress' && task.scheduled_for !== null, { message: `task ${id} waiting` });
}

describe('delay', () => {
  test('succeeds after its seconds, waiting in_progress with scheduled_for; the wait spends no retry and no timeout', async () => {
    const user = await registerAndLogin(app, 'delay-basic');
    const sent = Date.now();
    // timeout_seconds bounds each run of the action, not the wait between them.
    const task = await createTask(app, user.token, { payload: delay(2), timeout_seconds: 1 });

    const waiting = await waitingTask(user, task.id);
    const waitMs = Date.parse(waiting.scheduled_for) - Date.parse(waiting.started_at);
    assert.ok(waitMs >= 2_000 && waitMs < 3_000, `waits until ${waitMs} ms after it started`);
    assert.equal(waiting.result, null);

    const done = await waitForStatus(app, user.token, task.id, ['success', 'failed'], 10_000);
    assert.equal(done.status, 'success', JSON.stringify(done.result));
    assert.ok(Date.now() - sent >= 2_000);
    assert.ok(Date.parse(done.finished_at) - Date.parse(done.started_at) >= 2_000);
    assert.equal(done.started_at, waiting.started_at, 'one attempt, started once');
    assert.equal(done.retry_count, 0);
    assert.equal(done.scheduled_for, null);
    assert.deepEqual(done.result, { seconds: 2, waited_until: waiting.scheduled_for });
    assert.deepEqual((await logMessages(app, task.id)).slice(1), [
      'Task execution started',
      `Task waiting 2 s, until ${waiting.scheduled_for}`,
      'Task execution resumed',
      'Delay of 2 s finished',
    ]);

    // This file's first delay: started (an attempt) once, though claimed twice.
    const metrics = (await app.metrics.render()).body;
    assert.match(metrics, /autonomos_tasks_started_total\{kind="task",action="delay"\} 1\n/);
    assert.match(metrics, /autonomos_tasks_succeeded_total\{kind="task",action="delay"\} 1\n/);
  });

  test("holds no worker while it waits: with one fetch loop and one running task per tenant, the tenant's next task runs meanwhile", async () => {
    assert.equal(app.config.workerConcurrency, 1);
    assert.equal(app.config.tenantMaxActiveTasks, 1);
    const user = await registerAndLogin(app, 'delay-slot');
    const waiter = await createTask(app, user.token, { payload: delay(3) });
    await waitForStatus(app, user.token, waiter.id, 'in_progress');

    const path = `/meanwhile/${uniqueSuffix()}`;
    const other = await createTask(app, user.token, { payload: { action: 'http_request', method: 'GET', url: `${server.url}${path}` } });
    const otherDone = await waitForStatus(app, user.token, other.id, ['success', 'failed'], 2_500);
    assert.equal(otherDone.status, 'success', JSON.stringify(otherDone.result));
    assert.equal((await getTask(app, user.token, waiter.id)).status, 'in_progress', 'the delay was still waiting');

    const waiterDone = await waitForStatus(app, user.token, waiter.id, ['success', 'failed'], 10_000);
    assert.equal(waiterDone.status, 'success');
    assert.ok(Date.parse(otherDone.finished_at) < Date.parse(waiterDone.finished_at));
  });

  test('canceled while it waits, it is canceled with its job and never completes', async () => {
    const user = await registerAndLogin(app, 'delay-cancel');
    const task = await createTask(app, user.token, { payload: delay(2) });
    const waiting = await waitingTask(user, task.id);

    const response = await app.delete(`/api/v1/tasks/${task.id}`, { token: user.token });
    assert.equal(response.status, 200, JSON.stringify(response.body));
    assert.equal(response.body.status, 'canceled');
    assert.deepEqual(response.body.result, { message: 'Task canceled by user' });
    assert.equal(response.body.scheduled_for, null);
    const [job] = await app.boss.findJobs('tasks', { id: task.id });
    assert.equal(job?.state, 'cancelled');

    // A twin waits as long from later: once it has succeeded, the canceled one's time has passed.
    const twin = await createTask(app, user.token, { payload: delay(2) });
    assert.equal((await waitForStatus(app, user.token, twin.id, ['success', 'failed'], 10_000)).status, 'success');
    assert.deepEqual(await getTask(app, user.token, task.id), response.body, 'the canceled task is untouched');
    assert.deepEqual((await logMessages(app, task.id)).slice(1), [
      'Task execution started',
      `Task waiting 2 s, until ${waiting.scheduled_for}`,
      'Task canceled by user request',
    ]);
  });

  test('as a step of a chain, the next step is created only once the delay is over', async () => {
    const user = await registerAndLogin(app, 'delay-chain');
    const suffix = uniqueSuffix();
    const request = (step: string) => ({ action: 'http_request', method: 'POST', url: `${server.url}/chain/${suffix}/${step}`, json: { step } });
    const first = await createTask(app, user.token, {
      payload: request('one'),
      on_success_next_task: { payload: delay(1), on_success_next_task: { payload: request('three') } },
    });

    const one = await waitForStatus(app, user.token, first.id, ['success', 'failed']);
    assert.equal(one.status, 'success');
    const two = await waitForStatus(app, user.token, one.next_task_id, ['success', 'failed']);
    assert.equal(two.status, 'success');
    const three = await waitForStatus(app, user.token, two.next_task_id, ['success', 'failed']);
    assert.equal(three.status, 'success', JSON.stringify(three.result));

    const sentAt = (step: string) => server.requests.find((request) => request.path === `/chain/${suffix}/${step}`)!.receivedAt;
    assert.ok(sentAt('three') - sentAt('one') >= 1_000, `step three ran ${sentAt('three') - sentAt('one')} ms after step one`);
    assert.ok(Date.parse(three.created_at) >= Date.parse(two.result.waited_until), 'created once the delay was over');
    assert.deepEqual((await logMessages(app, two.id)).map((message) => message.replace(/until \S+$/, 'until …')), [
      `Task created by the success of task ${first.id}`,
      'Task execution started',
      'Task waiting 1 s, until …',
      'Task execution resumed',
      'Delay of 1 s finished',
      'Task succeeded, creating chained task',
      `Created and enqueued chained task ${three.id}`,
    ]);
    assert.equal((await tenantTasks(app, user.tenantId)).length, 3);
  });

  test('seconds must be a whole number from 1 to 86400', async () => {
    const user = await registerAndLogin(app, 'delay-invalid');
    for (const seconds of [0, 86_401, 1.5, '5', null, undefined]) {
      const response = await app.post('/api/v1/tasks', { payload: { action: 'delay', seconds } }, { token: user.token });
      assert.equal(response.status, 422, `${seconds}: ${JSON.stringify(response.body)}`);
      assert.deepEqual(response.body.detail[0].loc, ['body', 'payload', 'seconds']);
    }
    assert.equal((await tenantTasks(app, user.tenantId)).length, 0);
  });
});
