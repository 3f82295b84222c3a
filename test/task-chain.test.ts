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
  taskLogs,
  tenantTasks,
  waitForStatus,
  type FakeSlack,
} from './helpers/engine.js';
import { eventually } from './helpers/poll.js';
import { registerAndLogin } from './helpers/users.js';

// on_success_next_task: a success creates and enqueues the next task (next_task_id points to it);
// a failed or canceled task never chains. Exactly-once under duplicate delivery is in
// task-delivery.test.ts.

let slack: FakeSlack;
let app: TestApp;

before(async () => {
  slack = await startFakeSlack();
  app = await startTestApp({ env: { SLACK_WEBHOOK_URL: slack.url }, worker: true });
});

after(async () => {
  await app?.close();
  await slack?.close();
});

describe('task chaining', () => {
  test('a 3-step chain runs each step once, in order, linked by next_task_id', async () => {
    const user = await registerAndLogin(app, 'chain-3');
    const [one, two, three] = [newChannel('step1'), newChannel('step2'), newChannel('step3')];
    const stepThree = { payload: slackPayload(three, 'Step 3') };
    const stepTwo = { payload: slackPayload(two, 'Step 2'), max_retries: 1, timeout_seconds: 30, on_success_next_task: stepThree };
    const first = await createTask(app, user.token, { payload: slackPayload(one, 'Step 1'), on_success_next_task: stepTwo });
    assert.equal(first.next_task_id, null);
    assert.deepEqual(first.on_success_next_task, stepTwo);

    const a = await waitForStatus(app, user.token, first.id, ['success', 'failed']);
    assert.equal(a.status, 'success');
    assert.ok(a.next_task_id, 'the first task points to the second');
    const b = await waitForStatus(app, user.token, a.next_task_id, ['success', 'failed']);
    assert.equal(b.status, 'success');
    assert.deepEqual(b.payload, stepTwo.payload);
    assert.equal(b.max_retries, 1, 'each step keeps its own retry policy');
    assert.equal(b.timeout_seconds, 30, 'each step keeps its own timeout');
    assert.deepEqual(b.on_success_next_task, stepThree);
    assert.ok(b.next_task_id, 'the second task points to the third');
    const c = await waitForStatus(app, user.token, b.next_task_id, ['success', 'failed']);
    assert.equal(c.status, 'success');
    assert.deepEqual(c.payload, stepThree.payload);
    assert.equal(c.max_retries, 0);
    assert.equal(c.on_success_next_task, null);
    assert.equal(c.next_task_id, null, 'the last task points nowhere');
    assert.equal((await getTask(app, user.token, first.id)).next_task_id, b.id, 'next_task_id is stable');

    const rows = await tenantTasks(app, user.tenantId);
    assert.deepEqual(rows.map((row) => row.id).sort(), [a.id, b.id, c.id].sort(), 'exactly three tasks');
    assert.ok(rows.every((row) => row.created_by === user.userId), 'chained tasks are created on behalf of the same user');

    const posted = slack.requests.filter((request) => [one, two, three].includes(request.body?.channel));
    assert.deepEqual(
      posted.map((request) => request.body),
      [
        { text: 'Step 1', channel: one },
        { text: 'Step 2', channel: two },
        { text: 'Step 3', channel: three },
      ],
    );
    assert.ok(Date.parse(b.started_at) >= Date.parse(a.finished_at) && Date.parse(c.started_at) >= Date.parse(b.finished_at));

    for (const [task, next] of [[a, b], [b, c]] as const) {
      const messages = await logMessages(app, task.id);
      assert.deepEqual(messages.slice(-3), [
        'Successfully posted to Slack with status 200',
        'Task succeeded, creating chained task',
        `Created and enqueued chained task ${next.id}`,
      ]);
      assert.equal((await logMessages(app, next.id))[0], `Task created by the success of task ${task.id}`);
    }
    const last = await logMessages(app, c.id);
    assert.ok(!last.includes('Task succeeded, creating chained task'));
    for (const task of [a, b, c]) {
      assert.ok((await taskLogs(app, task.id)).every((row) => row.tenant_id === user.tenantId));
    }
  });

  test('a failing step does not chain', async () => {
    const user = await registerAndLogin(app, 'chain-fail');
    const [one, two, three] = [newChannel('ok'), newChannel('broken'), newChannel('unreached')];
    slack.route(two, () => ({ status: 500, body: 'down' }));
    const first = await createTask(app, user.token, {
      payload: slackPayload(one),
      on_success_next_task: { payload: slackPayload(two), on_success_next_task: { payload: slackPayload(three) } },
    });

    const a = await waitForStatus(app, user.token, first.id, ['success', 'failed']);
    assert.equal(a.status, 'success');
    const b = await waitForStatus(app, user.token, a.next_task_id, ['success', 'failed']);
    assert.equal(b.status, 'failed');
    assert.equal(b.next_task_id, null);

    const rows = await tenantTasks(app, user.tenantId);
    assert.deepEqual(rows.map((row) => row.id).sort(), [a.id, b.id].sort(), 'no task created after the failed step');
    assert.equal(slack.requestsFor(three).length, 0);
    const messages = await logMessages(app, b.id);
    assert.equal(messages.at(-1), 'Task permanently failed after all retries');
    assert.ok(!messages.includes('Task succeeded, creating chained task'));
  });

  test('a first step that fails creates no other task', async () => {
    const user = await registerAndLogin(app, 'chain-fail-first');
    const [one, two] = [newChannel('broken-first'), newChannel('unreached')];
    slack.route(one, () => ({ status: 500 }));
    const first = await createTask(app, user.token, { payload: slackPayload(one), on_success_next_task: { payload: slackPayload(two) } });
    const a = await waitForStatus(app, user.token, first.id, ['success', 'failed']);
    assert.equal(a.status, 'failed');
    assert.equal(a.next_task_id, null);
    assert.equal((await tenantTasks(app, user.tenantId)).length, 1);
    assert.equal(slack.requestsFor(two).length, 0);
  });

  test('a task canceled while running never chains, even though its action would have succeeded', async () => {
    const user = await registerAndLogin(app, 'chain-cancel');
    const [one, two] = [newChannel('slow'), newChannel('unreached')];
    slack.route(one, () => ({ status: 200, body: 'ok', delayMs: 1_500 }));
    const first = await createTask(app, user.token, { payload: slackPayload(one), on_success_next_task: { payload: slackPayload(two) } });
    await waitForStatus(app, user.token, first.id, 'in_progress', 5_000);
    const request = await eventually(() => slack.requestsFor(one)[0], { timeoutMs: 5_000, message: 'the Slack call' });

    const response = await app.delete(`/api/v1/tasks/${first.id}`, { token: user.token });
    assert.equal(response.status, 200);
    assert.equal(response.body.status, 'canceled');
    await eventually(() => request.answeredAt, { timeoutMs: 5_000, message: 'the Slack answer coming due' });

    const task = await getTask(app, user.token, first.id);
    assert.equal(task.status, 'canceled');
    assert.equal(task.next_task_id, null);
    assert.equal((await tenantTasks(app, user.tenantId)).length, 1);
    assert.ok(!(await logMessages(app, first.id)).includes('Task succeeded, creating chained task'));
  });

  test('a task canceled while queued never chains', async () => {
    const user = await registerAndLogin(app, 'chain-cancel-queued');
    const first = await createTask(app, user.token, {
      payload: slackPayload(newChannel('later')),
      delay_seconds: 60,
      on_success_next_task: { payload: slackPayload(newChannel('unreached')) },
    });
    assert.equal((await app.delete(`/api/v1/tasks/${first.id}`, { token: user.token })).status, 200);
    const task = await getTask(app, user.token, first.id);
    assert.equal(task.status, 'canceled');
    assert.equal(task.next_task_id, null);
    assert.equal((await tenantTasks(app, user.tenantId)).length, 1);
  });

  test('a chained step with delay_seconds is scheduled from its parent’s success', async () => {
    const user = await registerAndLogin(app, 'chain-delay');
    const [one, two] = [newChannel('now'), newChannel('delayed')];
    const first = await createTask(app, user.token, {
      payload: slackPayload(one),
      on_success_next_task: { payload: slackPayload(two), delay_seconds: 1 },
    });
    const a = await waitForStatus(app, user.token, first.id, ['success', 'failed']);
    assert.equal(a.status, 'success');
    const queued = await getTask(app, user.token, a.next_task_id);
    assert.equal(queued.status, 'queued', 'the chained task waits for its time');
    assert.equal(queued.started_at, null);
    assert.ok(queued.scheduled_for);
    const delay = Date.parse(queued.scheduled_for) - Date.parse(a.finished_at);
    assert.ok(delay >= 900 && delay <= 1_500, `scheduled ${delay} ms after the parent finished`);
    const b = await waitForStatus(app, user.token, a.next_task_id, ['success', 'failed'], 5_000);
    assert.equal(b.status, 'success');
    const waited = Date.parse(b.started_at) - Date.parse(a.finished_at);
    assert.ok(waited >= 950 && waited <= 2_000, `the chained task started ${waited} ms after its parent finished`);
  });
});
