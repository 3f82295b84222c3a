import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestApp, type TestApp } from './helpers/app.js';
import { appWithEnv } from './helpers/dcl.js';
import { createTask, taskLogs, waitForLog, waitForStatus } from './helpers/engine.js';
import { startFakeServer, underLocalhostName, type FakeServer } from './helpers/fake-server.js';
import { startHostileServer, type Hostility, type HostileServer } from './helpers/hostile-server.js';
import { eventually } from './helpers/poll.js';
import { registerAndLogin, type RegisteredUser } from './helpers/users.js';

/**
 * Slack, the Legacy DCL and callback receivers at their worst: silent, trickling a byte a second,
 * streaming without end, 20 MB answers, connection resets, redirects. Every call ends within its
 * one deadline (short here), reads no more than it needs, and never wedges the worker.
 */

const SLACK_TIMEOUT_SECONDS = 2;
const CALLBACK_TIMEOUT_SECONDS = 2;
const DCL_TIMEOUT_SECONDS = 1;
/** A deadline may be overshot by scheduling and a busy machine, never by the server's pace. */
const SLACK_MARGIN_MS = 3_000;

let hostile: HostileServer;
/** Gets the requests the DCL's redirect points to: none must arrive. */
let redirectTarget: FakeServer;
let app: TestApp;
let user: RegisteredUser;

/**
 * Slack on the hostile server, named localhost: a callback may never go to the host Slack is
 * configured on, and the callback receivers are on 127.0.0.1.
 */
const slackUrl = () => `${underLocalhostName(hostile.url)}/slack`;

/** Slack's behaviour is named by the channel, a callback receiver's and the DCL's by the path. */
function hostilityOf(path: string, body: any): Hostility {
  if (path.startsWith('/slack')) return (body?.channel as string).slice(1) as Hostility;
  return path.split('/')[2] as Hostility;
}

before(async () => {
  redirectTarget = await startFakeServer();
  hostile = await startHostileServer((request, body) => hostilityOf(request.url ?? '', body), `${redirectTarget.url}/metadata`);
  app = await startTestApp({
    env: {
      SLACK_WEBHOOK_URL: slackUrl(),
      SLACK_TIMEOUT_SECONDS: String(SLACK_TIMEOUT_SECONDS),
      CALLBACK_TIMEOUT_SECONDS: String(CALLBACK_TIMEOUT_SECONDS),
      CALLBACK_ALLOW_PRIVATE_NETWORKS: 'true',
    },
    worker: true,
  });
  user = await registerAndLogin(app, 'hostile');
});

after(async () => {
  await hostile?.close();
  await redirectTarget?.close();
  await app?.close();
});

const exchangeOf = (predicate: (path: string, body: any) => boolean) =>
  eventually(() => hostile.exchanges.find((exchange) => predicate(exchange.path, exchange.body)), { timeoutMs: 10_000, message: 'the outbound call' });

describe('Slack', () => {
  const failures: [Hostility, RegExp][] = [
    ['silent', new RegExp(`^Slack did not answer within ${SLACK_TIMEOUT_SECONDS} s$`)],
    ['slow-headers', new RegExp(`^Slack did not answer within ${SLACK_TIMEOUT_SECONDS} s$`)],
    ['trickle', new RegExp(`^Slack did not answer within ${SLACK_TIMEOUT_SECONDS} s$`)],
    ['reset', /^Could not reach Slack: /],
    ['error', /^Slack returned status 500$/],
    ['redirect', /^Slack returned status 302$/],
  ];
  for (const [hostility, error] of failures) {
    test(`${hostility}: the attempt fails within the deadline, with a clear error`, async () => {
      const task = await createTask(app, user.token, { payload: { action: 'post_to_slack', channel: `#${hostility}`, message: `slack ${hostility}` } });
      const failed = await waitForStatus(app, user.token, task.id, 'failed', SLACK_TIMEOUT_SECONDS * 1000 + SLACK_MARGIN_MS + 5_000);
      assert.match(failed.result.error, error);
      const ranFor = Date.parse(failed.finished_at) - Date.parse(failed.started_at);
      assert.ok(ranFor < SLACK_TIMEOUT_SECONDS * 1000 + SLACK_MARGIN_MS, `the attempt ran ${ranFor} ms`);
    });
  }

  test('endless: the status is all that counts; the body is read only a little, then dropped', async () => {
    const task = await createTask(app, user.token, { payload: { action: 'post_to_slack', channel: '#endless', message: 'slack endless' } });
    const done = await waitForStatus(app, user.token, task.id, 'success', 10_000);
    assert.equal(done.result.slack_response_status, 200);
    const exchange = await exchangeOf((path, body) => path.startsWith('/slack') && body?.text === 'slack endless');
    await eventually(() => exchange.closedAt, { timeoutMs: 2_000, message: 'the connection dropped by the client' });
    assert.ok(exchange.bytesWritten < 16 * 1024 * 1024, `the server got to write ${exchange.bytesWritten} bytes`);
  });
});

describe('the Legacy DCL', () => {
  const dcl = (hostility: Hostility) => appWithEnv(app, { LEGACY_DCL_BASE_URL: `${hostile.url}/dcl/${hostility}`, LEGACY_DCL_TIMEOUT_SECONDS: String(DCL_TIMEOUT_SECONDS) });
  const cases: [Hostility, number, RegExp][] = [
    ['silent', 504, new RegExp(`did not answer /state within ${DCL_TIMEOUT_SECONDS} s`)],
    ['slow-headers', 504, new RegExp(`did not answer /state within ${DCL_TIMEOUT_SECONDS} s`)],
    ['trickle', 504, new RegExp(`did not answer /state within ${DCL_TIMEOUT_SECONDS} s`)],
    ['endless', 502, /answer to GET \/state exceeds 1048576 bytes/],
    ['huge', 502, /answer to GET \/state exceeds 1048576 bytes/],
    ['reset', 502, /unreachable/],
    ['error', 502, /status 500/],
    ['redirect', 502, /redirect \(status 302\), which is not followed/],
  ];
  for (const [hostility, status, detail] of cases) {
    test(`GET /api/v1/aoa/state, ${hostility}: ${status} within the deadline`, async () => {
      const started = Date.now();
      const response = await dcl(hostility).get('/api/v1/aoa/state', user.token);
      const elapsed = Date.now() - started;
      assert.equal(response.status, status, JSON.stringify(response.body));
      assert.match(response.body.detail, detail);
      assert.ok(elapsed < DCL_TIMEOUT_SECONDS * 1000 + 2_000, `answered after ${elapsed} ms`);
    });
  }

  test('a redirect is never followed, however tempting its target', async () => {
    await dcl('redirect').get('/api/v1/aoa/state', user.token);
    assert.equal(redirectTarget.requests.length, 0);
  });

  test('an oversized answer is not buffered: the connection is dropped once the cap is read', async () => {
    await dcl('endless').get('/api/v1/aoa/state', user.token);
    const exchange = hostile.exchanges.filter((candidate) => candidate.path === '/dcl/endless/state').at(-1)!;
    await eventually(() => exchange.closedAt, { timeoutMs: 2_000, message: 'the connection dropped by the client' });
    assert.ok(exchange.bytesWritten < 16 * 1024 * 1024, `the server got to write ${exchange.bytesWritten} bytes`);
  });
});

describe('callback receivers', () => {
  const outcomes: [Hostility, string][] = [
    ['silent', `Callback failed with error: no answer within ${CALLBACK_TIMEOUT_SECONDS} s`],
    ['slow-headers', `Callback failed with error: no answer within ${CALLBACK_TIMEOUT_SECONDS} s`],
    ['trickle', 'Successfully sent callback with status 200'],
    ['endless', 'Successfully sent callback with status 200'],
    ['error', 'Callback failed with error: receiver answered with status 500'],
    ['redirect', 'Callback failed with error: receiver answered with status 302'],
  ];
  for (const [hostility, outcome] of outcomes) {
    test(`${hostility}: "${outcome}", within the deadline, the answer's body unread`, async () => {
      const task = await createTask(app, user.token, {
        payload: { action: 'post_to_slack', channel: '#ok', message: `callback ${hostility}` },
        callback_url: `${hostile.url}/callback/${hostility}`,
      });
      await waitForLog(app, task.id, outcome, CALLBACK_TIMEOUT_SECONDS * 1000 + 5_000);
      const rows = await taskLogs(app, task.id);
      const attempt = rows.find((row) => row.message.startsWith('Attempting to send callback'))!;
      const result = rows.find((row) => row.message === outcome)!;
      const took = result.timestamp.getTime() - attempt.timestamp.getTime();
      assert.ok(took < CALLBACK_TIMEOUT_SECONDS * 1000 + 1_500, `the callback took ${took} ms`);
      const exchange = await exchangeOf((path) => path === `/callback/${hostility}`);
      await eventually(() => exchange.closedAt, { timeoutMs: 3_000, message: 'the connection closed by the client' });
      if (hostility === 'trickle' || hostility === 'endless') {
        assert.ok(exchange.closedAt! - exchange.receivedAt < 1_000, 'the body was not waited for');
      }
    });
  }

  test('reset: recorded as a failure at once', async () => {
    const task = await createTask(app, user.token, {
      payload: { action: 'post_to_slack', channel: '#ok', message: 'callback reset' },
      callback_url: `${hostile.url}/callback/reset`,
    });
    const messages = await waitForLog(app, task.id, /^Callback failed with error: /, 5_000);
    assert.ok(!messages.some((message) => message.startsWith('Successfully sent callback')));
  });
});

describe('one tenant stalling its callback receivers', () => {
  let fairApp: TestApp;
  let fast: FakeServer;

  before(async () => {
    fast = await startFakeServer();
    // The default 10 s callback deadline: tenant A's receivers hold their deliveries that long.
    fairApp = await startTestApp({
      env: { SLACK_WEBHOOK_URL: slackUrl(), CALLBACK_ALLOW_PRIVATE_NETWORKS: 'true' },
      worker: true,
    });
  });

  after(async () => {
    await fast?.close();
    await fairApp?.close();
  });

  test("does not delay another tenant's callback: it arrives within 1 s of its task finishing", async (t) => {
    const [tenantA, tenantB] = [await registerAndLogin(fairApp, 'stalling'), await registerAndLogin(fairApp, 'bystander')];
    t.diagnostic(`tenant A ${tenantA.tenantId}`);
    for (let index = 0; index < 10; index++) {
      await createTask(fairApp, tenantA.token, {
        payload: { action: 'post_to_slack', channel: '#ok', message: `stalled ${index}` },
        callback_url: `${hostile.url}/callback/${index % 2 === 0 ? 'silent' : 'slow-headers'}`,
      });
    }
    const stalled = () => hostile.exchanges.filter((exchange) => exchange.path.startsWith('/callback/') && exchange.body?.payload?.message?.startsWith('stalled'));
    await eventually(() => (stalled().length >= 2 ? true : undefined), {
      timeoutMs: 10_000,
      message: "tenant A's receivers holding callbacks",
    });

    const task = await createTask(fairApp, tenantB.token, {
      payload: { action: 'post_to_slack', channel: '#ok', message: 'bystander' },
      callback_url: `${fast.url}/done`,
    });
    const delivered = await eventually(() => fast.requests.find((request) => request.body?.id === task.id), { timeoutMs: 10_000, message: "tenant B's callback" });
    const finished = await waitForStatus(fairApp, tenantB.token, task.id, 'success', 5_000);
    const lag = delivered.receivedAt - Date.parse(finished.finished_at);
    t.diagnostic(`tenant B's callback arrived ${lag} ms after its task finished`);
    assert.ok(lag < 1_000, `arrived ${lag} ms after the task finished`);
    // Its outcome is recorded just after the receiver answered.
    await waitForLog(fairApp, task.id, 'Successfully sent callback with status 200', 5_000);
  });
});
