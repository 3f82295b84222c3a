import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestApp, type TestApp } from './helpers/app.js';
import {
  count,
  createTask,
  getTask,
  newChannel,
  slackPayload,
  startFakeSlack,
  tenantTasks,
  waitForLog,
  type FakeSlack,
} from './helpers/engine.js';
import { startFakeServer, underLocalhostName, type FakeServer, type RecordedRequest, type Reply } from './helpers/fake-server.js';
import { eventually } from './helpers/poll.js';
import { registerAndLogin, uniqueSuffix } from './helpers/users.js';

// callback_url: after success, failure or cancel the task JSON (as GET shows it) is POSTed once;
// the outcome is audited and never changes the task. Callbacks to non-public addresses are
// refused unless CALLBACK_ALLOW_PRIVATE_NETWORKS=true; the fake receivers live on 127.0.0.1, so
// most tests use an app that allows them. Which addresses count as public, and the refusal of
// Slack's and the DCL's own hosts, are tested in outbound.security.test.ts.

let slack: FakeSlack;
let receiver: FakeServer;
const receiverRoutes = new Map<string, () => Reply>();

before(async () => {
  slack = await startFakeSlack();
  receiver = await startFakeServer((request) => receiverRoutes.get(request.path)?.() ?? { status: 200, body: { received: true } });
});

after(async () => {
  await slack?.close();
  await receiver?.close();
});

/** A callback URL of its own on the fake receiver. */
function callbackTarget(reply?: () => Reply) {
  const path = `/callbacks/${uniqueSuffix()}`;
  if (reply) receiverRoutes.set(path, reply);
  return { path, url: `${receiver.url}${path}`, received: (): RecordedRequest[] => receiver.requests.filter((r) => r.path === path) };
}

describe('callbacks (private networks allowed)', () => {
  let app: TestApp;

  before(async () => {
    app = await startTestApp({
      env: {
        // Slack is named localhost: a callback may never go to the host Slack is configured on,
        // and the receivers are on 127.0.0.1.
        SLACK_WEBHOOK_URL: underLocalhostName(slack.url),
        CALLBACK_ALLOW_PRIVATE_NETWORKS: 'true',
        CALLBACK_TIMEOUT_SECONDS: '1',
        RETRY_DELAYS_SECONDS: '1',
      },
      worker: true,
    });
  });

  after(async () => {
    await app?.close();
  });

  test('a successful task POSTs its final JSON, as GET shows it, to callback_url', async () => {
    const user = await registerAndLogin(app, 'callback-success');
    const target = callbackTarget();
    // The receiver is on 127.0.0.1: sent only because CALLBACK_ALLOW_PRIVATE_NETWORKS=true.
    assert.equal(new URL(target.url).hostname, '127.0.0.1');
    assert.equal(app.config.callbackAllowPrivateNetworks, true);
    const task = await createTask(app, user.token, { payload: slackPayload(newChannel('cb-ok')), callback_url: target.url });
    assert.equal(task.callback_url, target.url);

    const messages = await waitForLog(app, task.id, /^Successfully sent callback/);
    const [callback] = target.received();
    assert.ok(callback);
    assert.equal(target.received().length, 1, 'sent once');
    assert.equal(callback.method, 'POST');
    assert.match(String(callback.headers['content-type']), /^application\/json/);
    assert.equal(callback.body.status, 'success');
    assert.deepEqual(callback.body, await getTask(app, user.token, task.id), 'same shape and values as GET /api/v1/tasks/{id}');
    assert.ok(callback.body.finished_at);

    assert.deepEqual(messages.slice(-2), [`Attempting to send callback to ${target.url}`, 'Successfully sent callback with status 200']);
    const successAt = messages.indexOf('Successfully posted to Slack with status 200');
    assert.ok(successAt >= 0 && successAt < messages.indexOf(`Attempting to send callback to ${target.url}`), 'sent after the task finished');
  });

  test('a failed task POSTs its final JSON once, after the last retry, not after each attempt', async () => {
    const user = await registerAndLogin(app, 'callback-failed');
    const channel = newChannel('cb-fail');
    slack.route(channel, () => ({ status: 500, body: 'down' }));
    const target = callbackTarget();
    const task = await createTask(app, user.token, { payload: slackPayload(channel), max_retries: 1, callback_url: target.url });

    const messages = await waitForLog(app, task.id, /^Successfully sent callback/, 10_000);
    assert.equal(target.received().length, 1);
    const body = target.received()[0]!.body;
    assert.equal(body.status, 'failed');
    assert.equal(body.retry_count, 1);
    assert.deepEqual(body.result, { error: 'Slack returned status 500' });
    assert.deepEqual(body, await getTask(app, user.token, task.id));
    assert.equal(count(messages, (message) => message.startsWith('Attempting to send callback')), 1);
    assert.ok(messages.indexOf('Task permanently failed after all retries') < messages.indexOf(`Attempting to send callback to ${target.url}`));
  });

  test('a canceled task with callback_url gets a callback too', async () => {
    const user = await registerAndLogin(app, 'callback-canceled');
    const target = callbackTarget();
    const task = await createTask(app, user.token, { payload: slackPayload(newChannel('cb-cancel')), delay_seconds: 60, callback_url: target.url });
    const canceled = await app.delete(`/api/v1/tasks/${task.id}`, { token: user.token });
    assert.equal(canceled.status, 200);

    await waitForLog(app, task.id, 'Successfully sent callback with status 200');
    assert.equal(target.received().length, 1);
    const body = target.received()[0]!.body;
    assert.equal(body.status, 'canceled');
    assert.deepEqual(body.result, { message: 'Task canceled by user' });
    assert.deepEqual(body, canceled.body);
  });

  test('a chained task’s callback carries its next_task_id', async () => {
    const user = await registerAndLogin(app, 'callback-chain');
    const target = callbackTarget();
    const task = await createTask(app, user.token, {
      payload: slackPayload(newChannel('cb-chain-1')),
      callback_url: target.url,
      on_success_next_task: { payload: slackPayload(newChannel('cb-chain-2')) },
    });
    await waitForLog(app, task.id, 'Successfully sent callback with status 200');
    const body = target.received()[0]!.body;
    assert.equal(body.status, 'success');
    assert.ok(body.next_task_id);
    assert.deepEqual(body, await getTask(app, user.token, task.id));
  });

  test('a receiver answering 500 is logged as a failure and leaves the task as it was', async () => {
    const user = await registerAndLogin(app, 'callback-500');
    const target = callbackTarget(() => ({ status: 500, body: 'receiver broke' }));
    const task = await createTask(app, user.token, { payload: slackPayload(newChannel('cb-500')), callback_url: target.url });

    const messages = await waitForLog(app, task.id, /^Callback failed with error/);
    assert.equal(messages.at(-1), 'Callback failed with error: receiver answered with status 500');
    assert.ok(!messages.some((message) => message.startsWith('Successfully sent callback')));
    assert.equal(target.received().length, 1, 'not retried');
    const final = await getTask(app, user.token, task.id);
    assert.equal(final.status, 'success');
    assert.deepEqual(final, target.received()[0]!.body, 'the task did not change after the callback');
  });

  test('a receiver that never answers is given up after CALLBACK_TIMEOUT_SECONDS', async () => {
    const user = await registerAndLogin(app, 'callback-hang');
    const target = callbackTarget(() => ({ hang: true }));
    const task = await createTask(app, user.token, { payload: slackPayload(newChannel('cb-hang')), callback_url: target.url });

    const messages = await waitForLog(app, task.id, /^Callback failed with error/, 5_000);
    assert.equal(messages.at(-1), 'Callback failed with error: no answer within 1 s');
    assert.equal((await getTask(app, user.token, task.id)).status, 'success');
    await eventually(() => (target.received()[0]?.aborted ? true : undefined), { timeoutMs: 2_000, message: 'the callback request closed' });
  });
});

describe('callbacks with the default configuration (SSRF guard)', () => {
  let app: TestApp;

  before(async () => {
    app = await startTestApp({ env: { SLACK_WEBHOOK_URL: slack.url }, worker: true });
    assert.equal(app.config.callbackAllowPrivateNetworks, false);
  });

  after(async () => {
    await app?.close();
  });

  for (const [label, host] of [
    ['127.0.0.1', () => new URL(receiver.url).host],
    ['an IPv4-mapped IPv6 loopback', () => `[::ffff:127.0.0.1]:${new URL(receiver.url).port}`],
    ['the cloud metadata address', () => '169.254.169.254'],
  ] as const) {
    test(`a callback to ${label} (an IP literal) is refused at creation with 422, and nothing is stored`, async () => {
      const user = await registerAndLogin(app, 'callback-ssrf');
      const channel = newChannel('ssrf-literal');
      const url = `http://${host()}/hook`;
      for (const [body, loc] of [
        [{ payload: slackPayload(channel), callback_url: url }, ['body', 'callback_url']],
        [
          { payload: slackPayload(channel), on_success_next_task: { payload: slackPayload(channel), callback_url: url } },
          ['body', 'on_success_next_task', 'callback_url'],
        ],
      ] as const) {
        const response = await app.post('/api/v1/tasks', body, { token: user.token });
        assert.equal(response.status, 422, JSON.stringify(response.body));
        const issue = response.body.detail[0];
        assert.deepEqual(issue.loc, loc);
        assert.match(issue.msg, /public address/);
        assert.match(issue.msg, /CALLBACK_ALLOW_PRIVATE_NETWORKS/);
      }
      assert.equal((await tenantTasks(app, user.tenantId)).length, 0, 'nothing was stored');
    });
  }

  test('a callback to a name that resolves to loopback (localhost) is refused when sent, logged, and never sent', async () => {
    const user = await registerAndLogin(app, 'callback-ssrf');
    const target = callbackTarget();
    const url = `http://localhost:${new URL(receiver.url).port}${target.path}`;
    const task = await createTask(app, user.token, { payload: slackPayload(newChannel('ssrf')), callback_url: url });

    const messages = await waitForLog(app, task.id, /refused/);
    const attempt = messages.find((message) => message.startsWith('Attempting to send callback to'));
    assert.ok(attempt, JSON.stringify(messages));
    const refusal = messages.at(-1)!;
    assert.match(refusal, /refused/);
    assert.match(refusal, /not a public address/);
    assert.ok(!refusal.includes('resolves to'), 'how the name resolved stays out of the tenant-visible audit trail');
    assert.match(refusal, /CALLBACK_ALLOW_PRIVATE_NETWORKS/);
    assert.ok(!messages.some((message) => message.startsWith('Successfully sent callback')));
    assert.equal(target.received().length, 0, 'the receiver got nothing');
    assert.equal((await getTask(app, user.token, task.id)).status, 'success', 'a refused callback does not change the task');
  });
});
