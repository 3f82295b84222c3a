import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { spawnService, type ServiceProcess } from '../scripts/lib/service-process.js';
import { freePort } from '../src/main/embedded-postgres.js';
import { startTestApp, withTestApp, type TestApp } from './helpers/app.js';
import { createTask, newChannel, slackPayload, startFakeSlack, waitForStatus, type FakeSlack } from './helpers/engine.js';
import { startFakeServer, underLocalhostName, type FakeServer } from './helpers/fake-server.js';
import { eventually } from './helpers/poll.js';
import { registerAndLogin, type RegisteredUser } from './helpers/users.js';

// GET /metrics: Prometheus's text format, behind METRICS_TOKEN, with counters that move as tasks
// run. The API and an in-process worker share one registry, as in `npm start`.

const TOKEN = randomBytes(24).toString('hex');

/** The value of one sample, e.g. `autonomos_tasks_created_total{kind="task",action="post_to_slack"}`; 0 when absent. */
function sample(metrics: string, name: string, labels: Record<string, string> = {}): number {
  const wanted = Object.entries(labels).map(([key, value]) => `${key}="${value}"`);
  for (const line of metrics.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const labelText = /\{([^}]*)\}/.exec(line)?.[1] ?? '';
    if (wanted.every((label) => labelText.split(',').includes(label))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return 0;
}

describe('GET /metrics', () => {
  let app: TestApp;
  let slack: FakeSlack;
  let receiver: FakeServer;
  let user: RegisteredUser;
  const scrape = async () => {
    const response = await app.get('/metrics', { token: TOKEN });
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    return response.body as string;
  };

  before(async () => {
    slack = await startFakeSlack();
    receiver = await startFakeServer();
    app = await startTestApp({
      env: { METRICS_TOKEN: TOKEN, SLACK_WEBHOOK_URL: underLocalhostName(slack.url), RETRY_DELAYS_SECONDS: '1', CALLBACK_ALLOW_PRIVATE_NETWORKS: 'true' },
      worker: true,
    });
    user = await registerAndLogin(app, 'metrics');
  });

  after(async () => {
    await app?.close();
    await slack?.close();
    await receiver?.close();
  });

  test('needs the token: none or a wrong one is 401', async () => {
    for (const token of [undefined, 'x'.repeat(48)]) {
      const response = await app.get('/metrics', token ? { token } : {});
      assert.equal(response.status, 401);
      assert.equal(response.headers.get('www-authenticate'), 'Bearer');
    }
    // A user's own JWT is no metrics token either.
    assert.equal((await app.get('/metrics', { token: user.token })).status, 401);
  });

  test('task counters and histograms move as tasks are created, run, fail, retry and are canceled', async () => {
    const action = { kind: 'task', action: 'post_to_slack' };
    const before = await scrape();
    const succeeding = await createTask(app, user.token, { payload: slackPayload(newChannel('ok')), callback_url: `${receiver.url}/hook` });
    const failingChannel = newChannel('failing');
    slack.reply = (request) => (request.body?.channel === failingChannel ? { status: 500, body: 'no' } : { status: 200, body: 'ok' });
    const failing = await createTask(app, user.token, { payload: slackPayload(failingChannel), max_retries: 1 });
    const canceled = await createTask(app, user.token, { payload: slackPayload(newChannel('later')), delay_seconds: 3600 });
    await app.delete(`/api/v1/tasks/${canceled.id}`, { token: user.token });
    await waitForStatus(app, user.token, succeeding.id, 'success');
    await waitForStatus(app, user.token, failing.id, 'failed');
    await eventually(() => (receiver.requests.length > 0 ? true : undefined), { message: 'the callback' });

    const after = await eventually(async () => {
      const metrics = await scrape();
      return sample(metrics, 'autonomos_callbacks_total', { outcome: 'sent' }) >= 1 ? metrics : undefined;
    });
    const moved = (name: string, labels: Record<string, string> = action) => sample(after, name, labels) - sample(before, name, labels);
    assert.equal(moved('autonomos_tasks_created_total'), 3);
    assert.equal(moved('autonomos_tasks_started_total'), 3, 'the success, and the failing task twice');
    assert.equal(moved('autonomos_tasks_succeeded_total'), 1);
    assert.equal(moved('autonomos_tasks_retried_total'), 1);
    assert.equal(moved('autonomos_tasks_failed_total'), 1);
    assert.equal(moved('autonomos_tasks_canceled_total'), 1);
    assert.equal(moved('autonomos_task_duration_seconds_count', { ...action, outcome: 'succeeded' }), 1);
    assert.equal(moved('autonomos_task_pickup_seconds_count', { kind: 'task' }), 3);
    assert.equal(moved('autonomos_callbacks_total', { outcome: 'sent' }), 1);
  });

  test('HTTP requests are counted by route template, never by the ids in the path', async () => {
    const task = await createTask(app, user.token, { payload: slackPayload(newChannel('http')), delay_seconds: 3600 });
    await app.get(`/api/v1/tasks/${task.id}`, { token: user.token });
    await app.get(`/no/such/${task.id}`);
    const metrics = await scrape();
    assert.ok(sample(metrics, 'autonomos_http_requests_total', { method: 'GET', route: '/api/v1/tasks/:id', status: '200' }) >= 1);
    assert.ok(sample(metrics, 'autonomos_http_requests_total', { method: 'GET', route: 'unmatched', status: '404' }) >= 1);
    assert.ok(sample(metrics, 'autonomos_http_request_duration_seconds_count', { method: 'POST', route: '/api/v1/tasks' }) >= 1);
    assert.doesNotMatch(metrics, new RegExp(task.id));
  });

  test('queue depth by state and the process metrics are there', async () => {
    const metrics = await scrape();
    for (const state of ['deferred', 'ready', 'active', 'failed']) assert.match(metrics, new RegExp(`autonomos_queue_jobs\\{queue="tasks",state="${state}"\\}`));
    assert.match(metrics, /^autonomos_process_cpu_seconds_total /m);
    assert.match(metrics, /^autonomos_nodejs_heap_size_used_bytes /m);
  });
});

test('without METRICS_TOKEN there is no /metrics', () =>
  withTestApp({}, async (app) => {
    assert.equal((await app.get('/metrics')).status, 404);
  }));

describe('a worker process started alone, with WORKER_HTTP_PORT', () => {
  let app: TestApp;
  let worker: ServiceProcess | undefined;

  before(async () => {
    app = await startTestApp();
  });

  after(async () => {
    worker?.child.kill('SIGTERM');
    await worker?.exited;
    await app?.close();
  });

  test('serves its own /health/worker and /metrics on that port', async () => {
    const port = await freePort();
    worker = spawnService('worker', { DATABASE_URL: app.database.url, WORKER_HTTP_PORT: String(port), HOST: '127.0.0.1', METRICS_TOKEN: TOKEN });
    const base = `http://127.0.0.1:${port}`;
    const health = await eventually(
      async () => {
        const response = await fetch(`${base}/health/worker`).catch(() => undefined);
        return response?.status === 200 ? response : undefined;
      },
      { timeoutMs: 30_000, message: `the worker's /health/worker (output: ${worker.output().slice(-500)})` },
    );
    assert.equal(((await health.json()) as { status: string }).status, 'ok');
    const metrics = await fetch(`${base}/metrics`, { headers: { Authorization: `Bearer ${TOKEN}` } });
    assert.equal(metrics.status, 200);
    assert.match(await metrics.text(), /^# HELP autonomos_tasks_started_total /m);
    assert.equal((await fetch(`${base}/metrics`)).status, 401);
    assert.equal((await fetch(`${base}/api/v1/tasks`)).status, 404, 'no API on the worker port');
  });
});
