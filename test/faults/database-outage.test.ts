import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { httpJson, registerTenant } from '../../scripts/lib/http-json.js';
import { startPrivatePostgres, type PrivatePostgres } from '../../scripts/lib/private-postgres.js';
import { spawnService, type ServiceProcess } from '../../scripts/lib/service-process.js';
import { freePort } from '../../src/main/embedded-postgres.js';
import { startFakeSlack, type FakeSlack } from '../helpers/engine.js';
import { eventually } from '../helpers/poll.js';

/**
 * The API and the worker as separate processes on a PostgreSQL of the test's own, which is
 * stopped (fast shutdown, as `pg_ctl stop -m fast`) while a task is in flight, then started again.
 */
describe('a database restart under a running service', () => {
  let database: PrivatePostgres;
  let slack: FakeSlack;
  let api: ServiceProcess;
  let worker: ServiceProcess;
  let base: string;
  let token: string;

  const query = async (text: string, values: unknown[] = []) => {
    const client = new pg.Client({ connectionString: database.url });
    client.on('error', () => {});
    await client.connect();
    try {
      return (await client.query(text, values)).rows;
    } finally {
      await client.end();
    }
  };
  const task = async (id: string) => (await httpJson(base, 'GET', `/api/v1/tasks/${id}`, { token })).body;
  const waitForStatus = (id: string, status: string, timeoutMs = 15_000) =>
    eventually(async () => ((await task(id)).status === status ? task(id) : undefined), { timeoutMs, intervalMs: 50, message: `task ${id} ${status}` });
  /** The worker's listening session, which carries the job wake-ups (and the other notifications). */
  const listeners = async () =>
    Number(
      (
        await query(
          `select count(*) as n from pg_stat_activity
            where datname = current_database() and application_name = 'autonomos-worker-listen'`,
        )
      )[0].n,
    );

  before(async () => {
    database = await startPrivatePostgres();
    slack = await startFakeSlack();
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    const env = { DATABASE_URL: database.url, PORT: String(port), HOST: '127.0.0.1', SLACK_WEBHOOK_URL: slack.url, LOG_LEVEL: 'info' };
    const secret = { SECRET_KEY: 'outage-test-secret-of-at-least-32-characters' };
    api = spawnService('api', { ...env, ...secret });
    worker = spawnService('worker', { ...env, ...secret });
    await eventually(async () => ((await httpJson(base, 'GET', '/health/worker')).status === 200 ? true : undefined), {
      timeoutMs: 30_000,
      intervalMs: 200,
      message: 'the service healthy',
    });
    ({ token } = await registerTenant(base, 'outage'));
  });

  after(async () => {
    for (const service of [api, worker]) service?.child.kill('SIGKILL');
    await Promise.all([api, worker].map((service) => service?.exited));
    await slack?.close();
    await database?.destroy();
  });

  test('nothing exits or hangs while it is down, and everything resumes by itself within 10 s', async (t) => {
    assert.ok((await listeners()) >= 1, 'LISTEN sessions before the restart');
    // A chained task whose Slack call is in flight when the database stops: its outcome can only
    // be recorded after the restart. No retries, so a lost attempt would show as a failure.
    let answerSlack!: () => void;
    const slackAnswered = new Promise<void>((resolve) => (answerSlack = resolve));
    slack.route('#in-flight', () => ({ status: 200, body: 'ok', after: slackAnswered }));
    const created = await httpJson(base, 'POST', '/api/v1/tasks', {
      token,
      json: {
        payload: { action: 'post_to_slack', channel: '#in-flight', message: 'across the restart' },
        on_success_next_task: { payload: { action: 'post_to_slack', channel: '#after-restart', message: 'chained' } },
      },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const inFlight = created.body.id as string;
    await eventually(() => slack.requestsFor('#in-flight')[0], { timeoutMs: 10_000, message: 'the Slack call in flight' });

    await database.stop();
    answerSlack();

    // While it is down: clear 503s within 2 s, health says why, no process exits.
    const probes = [
      httpJson(base, 'POST', '/api/v1/tasks', { token, json: { payload: { action: 'post_to_slack', channel: '#x', message: 'x' } } }),
      httpJson(base, 'GET', `/api/v1/tasks/${inFlight}`, { token }),
      httpJson(base, 'GET', `/api/v1/tasks/${inFlight}/logs`, { token }),
      httpJson(base, 'POST', '/api/v1/auth/login', { json: { email: 'nobody@example.com', password: 'whatever-it-is' } }),
    ];
    for (const response of await Promise.all(probes)) {
      assert.equal(response.status, 503, JSON.stringify(response.body));
      assert.deepEqual(response.body, { detail: 'Database unavailable' });
      assert.ok(response.ms < 2_000, `answered after ${Math.round(response.ms)} ms`);
    }
    const apiHealth = await httpJson(base, 'GET', '/health/api');
    assert.equal(apiHealth.status, 503);
    assert.deepEqual(apiHealth.body, { status: 'unavailable', database: 'unreachable', detail: 'Database unavailable' });
    assert.ok(apiHealth.ms < 2_000);
    const workerHealth = await httpJson(base, 'GET', '/health/worker');
    assert.equal(workerHealth.status, 503);
    assert.deepEqual(workerHealth.body, { status: 'unavailable', queue: 'unreachable', workers: 0, last_seen: null, detail: 'Database unavailable' });
    // Down for a few seconds, as a restart is: long enough for every poll and heartbeat to fail.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    assert.equal(api.child.exitCode, null, api.output().slice(-2000));
    assert.equal(worker.child.exitCode, null, worker.output().slice(-2000));

    await database.start();
    const restartedAt = Date.now();
    await eventually(
      async () => {
        const [a, w] = await Promise.all([httpJson(base, 'GET', '/health/api'), httpJson(base, 'GET', '/health/worker')]);
        return a.status === 200 && w.status === 200 ? true : undefined;
      },
      { timeoutMs: 10_000, intervalMs: 100, message: 'health back within 10 s' },
    );
    t.diagnostic(`health back ${Date.now() - restartedAt} ms after the restart`);

    // The attempt in flight is recorded once the database answers: success on its first attempt,
    // one chained task, which runs too.
    const finished = await waitForStatus(inFlight, 'success', 10_000);
    assert.equal(finished.retry_count, 0, JSON.stringify(finished));
    const child = await waitForStatus(finished.next_task_id, 'success', 10_000);
    const parentLogs = (await httpJson(base, 'GET', `/api/v1/tasks/${inFlight}/logs`, { token })).body.map((entry: any) => entry.message);
    assert.equal(parentLogs.filter((message: string) => message === 'Task execution started').length, 1, parentLogs.join('\n'));
    assert.equal(parentLogs.filter((message: string) => message.startsWith('Created and enqueued chained task')).length, 1);
    const chained = await query(`select id from task_logs where message = $1`, [`Task created by the success of task ${inFlight}`]);
    assert.equal(chained.length, 1, 'exactly one chained task');
    assert.equal(slack.requestsFor('#in-flight').length, 1, 'the action ran once');
    assert.equal(child.status, 'success');

    // The worker listens again (wake-ups by NOTIFY, not only by polling).
    await eventually(async () => ((await listeners()) >= 1 ? true : undefined), {
      timeoutMs: Math.max(1_000, 10_000 - (Date.now() - restartedAt)),
      intervalMs: 200,
      message: 'LISTEN re-established within 10 s of the restart',
    });
    t.diagnostic(`LISTEN back ${Date.now() - restartedAt} ms after the restart`);

    // The cancel watch runs again: a cancel aborts a running action.
    slack.route('#cancel-after', () => ({ hang: true }));
    const hanging = await httpJson(base, 'POST', '/api/v1/tasks', {
      token,
      json: { payload: { action: 'post_to_slack', channel: '#cancel-after', message: 'cancel me' } },
    });
    assert.equal(hanging.status, 201);
    const call = await eventually(() => slack.requestsFor('#cancel-after')[0], { timeoutMs: 10_000, message: 'the hanging call' });
    const canceled = await httpJson(base, 'DELETE', `/api/v1/tasks/${hanging.body.id}`, { token });
    assert.equal(canceled.status, 200);
    await eventually(() => (call.aborted ? true : undefined), { timeoutMs: 2_000, message: 'the running call aborted by the cancel' });

    // Each process logged the outage and its end, not every failed poll (a straggler failing just
    // after the probe saw the database back may open a second, short episode).
    for (const [name, service] of [['api', api], ['worker', worker]] as const) {
      const lines = service.output().split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line));
      const outages = lines.filter((line) => line.msg === 'database unavailable; retrying until it answers').length;
      assert.ok(outages >= 1 && outages <= 2, `${name}: ${outages} outage lines`);
      assert.equal(lines.filter((line) => line.msg === 'database available again').length, outages, `${name}: a recovery line per outage line`);
      assert.equal(lines.filter((line) => line.level === 'error').length, 0, `${name}: no error lines: ${service.output().slice(-3000)}`);
    }
  });
});
