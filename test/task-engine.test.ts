import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestApp, type TestApp } from './helpers/app.js';
import {
  count,
  createTask,
  getTask,
  logMessages,
  newChannel,
  slackPayload,
  startFakeSlack,
  taskLogs,
  waitForRetryWait,
  waitForStatus,
  type FakeSlack,
} from './helpers/engine.js';
import { eventually } from './helpers/poll.js';
import { registerAndLogin } from './helpers/users.js';

// The task engine as a user sees it through the API, with an in-process worker and a fake Slack:
// each status transition, the retry schedule (RETRY_DELAYS_SECONDS=1,2), permanent failures,
// timeouts that abort the action, and the worker health check.

const RETRY_DELAYS = [1, 2];

let slack: FakeSlack;
let app: TestApp;

before(async () => {
  slack = await startFakeSlack();
  app = await startTestApp({
    env: { SLACK_WEBHOOK_URL: slack.url, RETRY_DELAYS_SECONDS: RETRY_DELAYS.join(',') },
    worker: true,
  });
});

after(async () => {
  await app?.close();
  await slack?.close();
});

const ms = (iso: string) => Date.parse(iso);

describe('status transitions', () => {
  test('a task goes queued → in_progress → success, with started_at and finished_at', async () => {
    const user = await registerAndLogin(app, 'engine-success');
    const channel = newChannel('ok');
    // Slack answers late, so the task is observably in_progress for a while.
    slack.route(channel, () => ({ status: 200, body: 'ok', delayMs: 800 }));

    const created = await createTask(app, user.token, { payload: slackPayload(channel, 'first message') });
    assert.equal(created.started_at, null);
    assert.equal(created.finished_at, null);
    assert.equal(created.result, null);
    assert.equal(created.retry_count, 0);

    const running = await waitForStatus(app, user.token, created.id, 'in_progress', 5_000);
    assert.ok(running.started_at, 'started_at is set once the task runs');
    assert.equal(running.finished_at, null);
    assert.ok(ms(running.started_at) >= ms(created.created_at));

    const done = await waitForStatus(app, user.token, created.id, ['success', 'failed'], 5_000);
    assert.equal(done.status, 'success', JSON.stringify(done));
    assert.deepEqual(done.result, { message: 'Successfully posted to Slack', channel, slack_response_status: 200 });
    assert.equal(done.started_at, running.started_at);
    assert.ok(done.finished_at, 'finished_at is set on a final state');
    assert.ok(ms(done.finished_at) - ms(done.started_at) >= 700, 'finished after Slack answered');
    assert.equal(done.retry_count, 0);

    const posted = slack.requestsFor(channel);
    assert.equal(posted.length, 1);
    assert.equal(posted[0]!.method, 'POST');
    assert.deepEqual(posted[0]!.body, { text: 'first message', channel });

    const messages = await logMessages(app, created.id);
    assert.deepEqual(messages.slice(1), [
      'Task execution started',
      `Attempting to post message to Slack channel ${channel}`,
      'Successfully posted to Slack with status 200',
    ]);
    assert.match(messages[0]!, /^Task created by user /);
  });

  test('a task goes queued → in_progress → failed when Slack answers 500 and no retries are allowed', async () => {
    const user = await registerAndLogin(app, 'engine-fail');
    const channel = newChannel('fail');
    slack.route(channel, () => ({ status: 500, body: 'boom', delayMs: 800 }));

    const created = await createTask(app, user.token, { payload: slackPayload(channel), max_retries: 0 });
    const running = await waitForStatus(app, user.token, created.id, 'in_progress', 5_000);
    assert.ok(running.started_at);
    assert.equal(running.finished_at, null);

    const done = await waitForStatus(app, user.token, created.id, ['success', 'failed'], 5_000);
    assert.equal(done.status, 'failed');
    assert.deepEqual(done.result, { error: 'Slack returned status 500' });
    assert.ok(done.finished_at);
    assert.equal(done.retry_count, 0);
    assert.equal(slack.requestsFor(channel).length, 1);

    const messages = await logMessages(app, created.id);
    assert.deepEqual(messages.slice(1), [
      'Task execution started',
      `Attempting to post message to Slack channel ${channel}`,
      'Task failed with error: Slack returned status 500',
      'Task permanently failed after all retries',
    ]);
  });
});

describe('retries', () => {
  test('a task that keeps failing is retried after 1 s then 2 s, then fails for good', async (t) => {
    const user = await registerAndLogin(app, 'engine-retry');
    const channel = newChannel('retry');
    slack.route(channel, () => ({ status: 500, body: 'down' }));

    const created = await createTask(app, user.token, { payload: slackPayload(channel), max_retries: 2 });

    // Between attempts the task waits as queued, with retry_count counted and its next run scheduled.
    const waiting = await waitForRetryWait(app, user.token, created.id, 1);
    assert.ok(waiting.scheduled_for, 'a retry waits for its scheduled time');
    assert.deepEqual(waiting.result, { error: 'Slack returned status 500' });

    const done = await waitForStatus(app, user.token, created.id, ['success', 'failed'], 15_000);
    assert.equal(done.status, 'failed');
    assert.equal(done.retry_count, 2);
    assert.deepEqual(done.result, { error: 'Slack returned status 500' });
    assert.ok(done.finished_at);

    const attempts = slack.requestsFor(channel);
    assert.equal(attempts.length, 3, 'one first attempt and two retries');
    const gaps = [attempts[1]!.receivedAt - attempts[0]!.receivedAt, attempts[2]!.receivedAt - attempts[1]!.receivedAt];
    RETRY_DELAYS.forEach((delay, index) => {
      const gap = gaps[index]! / 1000;
      assert.ok(gap >= delay - 0.1 && gap <= delay + 1, `retry ${index + 1} came ${gap} s after the previous attempt, expected ~${delay} s`);
    });
    t.diagnostic(`retry gaps measured: ${gaps.map((gap) => `${gap} ms`).join(', ')}`);

    const messages = await logMessages(app, created.id);
    const failure = 'Task failed with error: Slack returned status 500';
    assert.deepEqual(
      messages.filter((message) => message !== `Attempting to post message to Slack channel ${channel}`).slice(1),
      [
        'Task execution started',
        failure,
        'Scheduling retry 1/2',
        'Task execution started',
        failure,
        'Scheduling retry 2/2',
        'Task execution started',
        failure,
        'Task permanently failed after all retries',
      ],
    );
  });

  test('a task that fails once then succeeds ends in success with retry_count 1', async () => {
    const user = await registerAndLogin(app, 'engine-recover');
    const channel = newChannel('recover');
    slack.route(channel, (_request, index) => (index === 0 ? { status: 500, body: 'hiccup' } : { status: 200, body: 'ok' }));

    const created = await createTask(app, user.token, { payload: slackPayload(channel), max_retries: 2 });
    const done = await waitForStatus(app, user.token, created.id, ['success', 'failed'], 10_000);
    assert.equal(done.status, 'success', JSON.stringify(done));
    assert.equal(done.retry_count, 1);
    assert.deepEqual(done.result, { message: 'Successfully posted to Slack', channel, slack_response_status: 200 });

    const attempts = slack.requestsFor(channel);
    assert.equal(attempts.length, 2);
    const gap = (attempts[1]!.receivedAt - attempts[0]!.receivedAt) / 1000;
    assert.ok(gap >= RETRY_DELAYS[0]! - 0.1 && gap <= RETRY_DELAYS[0]! + 1, `retry came after ${gap} s`);

    const messages = await logMessages(app, created.id);
    assert.ok(messages.includes('Task failed with error: Slack returned status 500'));
    assert.ok(messages.includes('Scheduling retry 1/2'));
    assert.ok(!messages.includes('Scheduling retry 2/2'));
    assert.ok(!messages.includes('Task permanently failed after all retries'));
    assert.equal(messages.at(-1), 'Successfully posted to Slack with status 200');
    assert.equal(count(messages, (message) => message === 'Task execution started'), 2);
  });
});

describe('timeouts', () => {
  test('a hanging Slack call is aborted at timeout_seconds and the task fails within 1 s of the deadline', async (t) => {
    const user = await registerAndLogin(app, 'engine-timeout');
    const channel = newChannel('hang');
    slack.route(channel, () => ({ hang: true }));

    const created = await createTask(app, user.token, { payload: slackPayload(channel), timeout_seconds: 1, max_retries: 0 });
    const done = await waitForStatus(app, user.token, created.id, ['success', 'failed'], 5_000);
    assert.equal(done.status, 'failed');
    assert.deepEqual(done.result, { error: 'Task timed out after 1 seconds' });
    const ran = ms(done.finished_at) - ms(done.started_at);
    assert.ok(ran >= 950, `failed only after the deadline (ran ${ran} ms)`);
    assert.ok(ran < 2_000, `failure recorded within 1 s of the deadline (ran ${ran} ms)`);

    const request = slack.requestsFor(channel)[0];
    assert.ok(request, 'Slack got the request');
    await eventually(() => (request.aborted ? true : undefined), { timeoutMs: 2_000, message: 'the Slack request being aborted' });
    t.diagnostic(`timeout: failure recorded ${ran} ms after start (deadline 1000 ms), Slack call aborted`);

    const messages = await logMessages(app, created.id);
    assert.ok(messages.includes('Task failed with error: Task timed out after 1 seconds'), JSON.stringify(messages));
    assert.ok(messages.includes('Task permanently failed after all retries'));
    assert.ok(!messages.some((message) => message.startsWith('Successfully posted')));
  });

  test('a timed-out attempt is retried while retries remain, each attempt aborted', async () => {
    const user = await registerAndLogin(app, 'engine-timeout-retry');
    const channel = newChannel('hang-retry');
    slack.route(channel, () => ({ hang: true }));

    const created = await createTask(app, user.token, { payload: slackPayload(channel), timeout_seconds: 1, max_retries: 1 });
    const done = await waitForStatus(app, user.token, created.id, ['success', 'failed'], 10_000);
    assert.equal(done.status, 'failed');
    assert.equal(done.retry_count, 1);
    assert.deepEqual(done.result, { error: 'Task timed out after 1 seconds' });

    const attempts = slack.requestsFor(channel);
    assert.equal(attempts.length, 2);
    await eventually(() => (attempts.every((request) => request.aborted) ? true : undefined), {
      timeoutMs: 2_000,
      message: 'both Slack requests being aborted',
    });
    // Second attempt: 1 s timeout + 1 s retry delay after the first one started.
    const gap = (attempts[1]!.receivedAt - attempts[0]!.receivedAt) / 1000;
    assert.ok(gap >= 2 - 0.1 && gap <= 3, `second attempt ${gap} s after the first`);

    const messages = await logMessages(app, created.id);
    assert.equal(count(messages, (message) => message === 'Task failed with error: Task timed out after 1 seconds'), 2);
    assert.ok(messages.includes('Scheduling retry 1/1'));
    assert.equal(messages.at(-1), 'Task permanently failed after all retries');
  });
});

describe('worker health', () => {
  test('GET /health/worker is 200 with a worker count and last_seen while a worker runs', async () => {
    const response = await app.get('/health/worker');
    assert.equal(response.status, 200, JSON.stringify(response.body));
    assert.equal(response.body.status, 'ok');
    assert.equal(response.body.queue, 'connected');
    assert.ok(response.body.workers >= 1, `workers: ${response.body.workers}`);
    assert.ok(Math.abs(Date.now() - ms(response.body.last_seen)) < 30_000, `last_seen ${response.body.last_seen} is recent`);
  });
});

describe('without a Slack webhook', () => {
  let bare: TestApp;

  before(async () => {
    bare = await startTestApp({ worker: true });
  });

  after(async () => {
    await bare?.close();
  });

  test('a post_to_slack task fails with a clear error when SLACK_WEBHOOK_URL is unset', async () => {
    assert.equal(bare.config.slackWebhookUrl, undefined);
    const user = await registerAndLogin(bare, 'engine-nowebhook');
    const created = await createTask(bare, user.token, { payload: slackPayload('#general'), max_retries: 0 });
    const done = await waitForStatus(bare, user.token, created.id, ['success', 'failed'], 5_000);
    assert.equal(done.status, 'failed');
    assert.deepEqual(done.result, { error: 'SLACK_WEBHOOK_URL is not configured' });
    assert.ok(done.finished_at);

    const rows = await taskLogs(bare, created.id);
    const messages = rows.map((row) => row.message);
    assert.ok(messages.includes('Task failed with error: SLACK_WEBHOOK_URL is not configured'), JSON.stringify(messages));
    assert.equal(messages.at(-1), 'Task permanently failed after all retries');
    assert.ok(rows.every((row) => row.tenant_id === user.tenantId));
  });
});
