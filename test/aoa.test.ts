import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { silentLogger } from '../src/logger.js';
import { startWorker, type Worker } from '../src/worker/worker.js';
import { startTestApp, type TestApp } from './helpers/app.js';
import {
  aoaTasks,
  appWithEnv,
  assertConflict,
  auditRows,
  closedPortUrl,
  getTask,
  startFakeDcl,
  waitForStatus,
  waitForTask,
  type FakeDcl,
} from './helpers/dcl.js';
import { eventually } from './helpers/poll.js';
import { registerAndLogin, type RegisteredUser } from './helpers/users.js';

// Issue 4: the Legacy DCL proxy and AOA jobs, against the real app, a real pg-boss and an
// in-process worker calling a local fake DCL. Each test uses tenants of its own; the fake DCL
// answers per tenant (X-Tenant-ID).

/** The first retry waits 2 s so a test can look at the task during the wait; the others are short. */
const RETRY_DELAYS = [2, 1, 1];
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

let dcl: FakeDcl;
let app: TestApp;

before(async () => {
  dcl = await startFakeDcl();
  app = await startTestApp({
    env: { LEGACY_DCL_BASE_URL: dcl.url, RETRY_DELAYS_SECONDS: RETRY_DELAYS.join(',') },
    worker: true,
  });
});

after(async () => {
  // The fake first: a call still waiting on it then ends at once instead of holding the worker.
  await dcl?.close();
  await app?.close();
});

const AOA_POSTS = [
  { path: '/api/v1/aoa/run', body: undefined },
  { path: '/api/v1/aoa/reset', body: undefined },
  { path: '/api/v1/aoa/prod-mode', body: { enabled: true } },
] as const;

function postAoa(user: RegisteredUser, path: string, body?: unknown) {
  return app.post(path, body, { token: user.token });
}

async function startRun(user: RegisteredUser): Promise<{ task: any; requestId: string }> {
  const response = await postAoa(user, '/api/v1/aoa/run');
  assert.equal(response.status, 202, JSON.stringify(response.body));
  return { task: response.body, requestId: response.headers.get('x-request-id')! };
}

describe('GET /api/v1/aoa/state', () => {
  test('returns the downstream JSON and status, with the tenant and request id sent downstream', async () => {
    const user = await registerAndLogin(app, 'state');
    const state = { connected: true, sources: ['salesforce', 'hubspot'], counts: { rows: 42 } };
    dcl.route(user.tenantId, () => ({ status: 200, body: state }));

    const response = await app.get('/api/v1/aoa/state', { token: user.token });
    assert.equal(response.status, 200, JSON.stringify(response.body));
    assert.deepEqual(response.body, state);

    const calls = dcl.callsFor(user.tenantId);
    assert.equal(calls.length, 1);
    assert.equal(calls[0]!.method, 'GET');
    assert.equal(calls[0]!.path, '/state');
    const requestId = response.headers.get('x-request-id');
    assert.ok(requestId, 'the response has an X-Request-ID');
    assert.equal(calls[0]!.headers['x-request-id'], requestId);
  });

  test("forwards the caller's X-Request-ID", async () => {
    const user = await registerAndLogin(app, 'state-rid');
    const response = await app.get('/api/v1/aoa/state', { token: user.token, headers: { 'X-Request-ID': 'trace-aoa-0001' } });
    assert.equal(response.status, 200, JSON.stringify(response.body));
    assert.equal(response.headers.get('x-request-id'), 'trace-aoa-0001');
    assert.equal(dcl.callsFor(user.tenantId)[0]?.headers['x-request-id'], 'trace-aoa-0001');
  });

  test('passes a downstream 404 JSON answer through with its status', async () => {
    const user = await registerAndLogin(app, 'state-404');
    dcl.route(user.tenantId, () => ({ status: 404, body: { error: 'no state for this tenant' } }));
    const response = await app.get('/api/v1/aoa/state', { token: user.token });
    assert.equal(response.status, 404);
    assert.deepEqual(response.body, { error: 'no state for this tenant' });
  });

  test('a downstream 500 is a 502 with the downstream status', async () => {
    const user = await registerAndLogin(app, 'state-500');
    dcl.route(user.tenantId, () => ({ status: 500, body: { error: 'internal secret stack trace' } }));
    const response = await app.get('/api/v1/aoa/state', { token: user.token });
    assert.equal(response.status, 502, JSON.stringify(response.body));
    assert.equal(typeof response.body.detail, 'string');
    assert.equal(response.body.downstream_status, 500);
    assert.ok(response.headers.get('x-request-id'));
    assert.equal(dcl.callsFor(user.tenantId).length, 1);
  });

  test('a downstream 200 that is not JSON is a 502', async () => {
    const user = await registerAndLogin(app, 'state-text');
    dcl.route(user.tenantId, () => ({ status: 200, body: '<html>Service maintenance</html>' }));
    const response = await app.get('/api/v1/aoa/state', { token: user.token });
    assert.equal(response.status, 502, JSON.stringify(response.body));
    assert.equal(typeof response.body.detail, 'string');
    assert.match(response.body.detail, /JSON/);
  });

  test('an unreachable downstream is a 502', async () => {
    const user = await registerAndLogin(app, 'state-down');
    const unreachable = appWithEnv(app, { LEGACY_DCL_BASE_URL: await closedPortUrl() });
    const response = await unreachable.get('/api/v1/aoa/state', user.token);
    assert.equal(response.status, 502, JSON.stringify(response.body));
    assert.equal(typeof response.body.detail, 'string');
    assert.match(response.body.detail, /unreachable/i);
  });

  test('LEGACY_DCL_BASE_URL unset (or empty) is a 503 naming the variable', async () => {
    const user = await registerAndLogin(app, 'state-unset');
    const unset: Record<string, string>[] = [{}, { LEGACY_DCL_BASE_URL: '' }];
    for (const env of unset) {
      const response = await appWithEnv(app, env).get('/api/v1/aoa/state', user.token);
      assert.equal(response.status, 503, JSON.stringify(response.body));
      assert.match(response.body.detail, /LEGACY_DCL_BASE_URL/);
      // A job that could only fail is refused up front, and nothing is stored.
      const job = await appWithEnv(app, env).post('/api/v1/aoa/run', user.token);
      assert.equal(job.status, 503, JSON.stringify(job.body));
      assert.match(job.body.detail, /LEGACY_DCL_BASE_URL/);
    }
    const stored = await app.db.selectFrom('tasks').select('id').where('tenant_id', '=', user.tenantId).execute();
    assert.equal(stored.length, 0);
    assert.equal(dcl.callsFor(user.tenantId).length, 0);
  });
});

describe('GET /api/v1/aoa/state timeout', () => {
  test('a downstream slower than LEGACY_DCL_TIMEOUT_SECONDS is a 504, and the call is abandoned', async () => {
    const user = await registerAndLogin(app, 'state-slow');
    dcl.route(user.tenantId, () => ({ hang: true }));
    const impatient = appWithEnv(app, { LEGACY_DCL_BASE_URL: dcl.url, LEGACY_DCL_TIMEOUT_SECONDS: '1' });
    const startedAt = Date.now();
    const response = await impatient.get('/api/v1/aoa/state', user.token);
    const elapsed = Date.now() - startedAt;
    assert.equal(response.status, 504, JSON.stringify(response.body));
    assert.match(response.body.detail, /did not answer \/state within 1 s/);
    assert.ok(elapsed >= 900 && elapsed < 5_000, `answered after ${elapsed} ms`);
    await eventually(() => (dcl.callsFor(user.tenantId)[0]?.aborted ? true : undefined), {
      timeoutMs: 2_000,
      message: 'the hung call closed by the client',
    });
  });
});

describe('AOA jobs reach the right endpoint', () => {
  const cases = [
    { route: '/api/v1/aoa/run', body: undefined, action: 'aoa_connect', downstream: '/connect', sent: undefined },
    { route: '/api/v1/aoa/reset', body: undefined, action: 'aoa_reset', downstream: '/reset', sent: undefined },
    { route: '/api/v1/aoa/prod-mode', body: { enabled: true }, action: 'aoa_toggle_dev_mode', downstream: '/toggle_dev_mode', sent: { enabled: true } },
    { route: '/api/v1/aoa/prod-mode', body: { enabled: false }, action: 'aoa_toggle_dev_mode', downstream: '/toggle_dev_mode', sent: { enabled: false } },
  ];

  for (const job of cases) {
    test(`POST ${job.route} ${job.body ? JSON.stringify(job.body) : ''}→ POST ${job.downstream}`, async () => {
      const user = await registerAndLogin(app, 'aoa-job');
      const answer = { endpoint: job.downstream, accepted: true };
      dcl.route(user.tenantId, () => ({ status: 200, body: answer }));

      const response = await postAoa(user, job.route, job.body);
      assert.equal(response.status, 202, JSON.stringify(response.body));
      const requestId = response.headers.get('x-request-id');
      assert.ok(requestId);
      const task = response.body;
      assert.match(task.id, UUID);
      assert.equal(task.kind, 'aoa');
      assert.equal(task.status, 'queued');
      assert.equal(task.max_retries, 3);
      assert.equal(task.retry_count, 0);
      assert.equal(task.payload.action, job.action);
      assert.equal(task.payload.request_id, requestId);
      if (job.sent) assert.equal(task.payload.enabled, job.sent.enabled);

      const done = await waitForStatus(app, user.token, task.id, 'success');
      assert.equal(done.kind, 'aoa');
      assert.equal(done.result.downstream_status, 200);
      assert.deepEqual(done.result.response, answer);

      const calls = dcl.callsFor(user.tenantId);
      assert.equal(calls.length, 1, 'exactly one downstream call');
      const call = calls[0]!;
      assert.equal(call.method, 'POST');
      assert.equal(call.path, job.downstream);
      assert.equal(call.headers['x-tenant-id'], user.tenantId);
      assert.equal(call.headers['x-request-id'], requestId);
      if (job.sent) {
        assert.match(String(call.headers['content-type']), /^application\/json/);
        assert.deepEqual(call.body, job.sent);
      } else {
        assert.equal(call.body, undefined, 'no body on /connect and /reset');
      }
    });
  }
});

describe('POST /api/v1/aoa/prod-mode validation', () => {
  test('refuses anything but {"enabled": boolean}, storing nothing', async () => {
    const user = await registerAndLogin(app, 'prod-invalid');
    const json = { 'Content-Type': 'application/json' };
    const cases: { name: string; body?: string; headers?: Record<string, string>; status: number }[] = [
      { name: 'missing enabled', body: '{}', headers: json, status: 422 },
      { name: 'string "true"', body: '{"enabled":"true"}', headers: json, status: 422 },
      { name: 'number 1', body: '{"enabled":1}', headers: json, status: 422 },
      { name: 'null', body: '{"enabled":null}', headers: json, status: 422 },
      { name: 'an array body', body: '[true]', headers: json, status: 422 },
      { name: 'JSON null body', body: 'null', headers: json, status: 422 },
      { name: 'malformed JSON', body: '{"enabled": tru', headers: json, status: 400 },
      { name: 'empty JSON body', body: '', headers: json, status: 400 },
      { name: 'no body, no Content-Type', status: 415 },
      { name: 'JSON as text/plain', body: '{"enabled":true}', headers: { 'Content-Type': 'text/plain' }, status: 415 },
    ];
    for (const item of cases) {
      const response = await app.request('POST', '/api/v1/aoa/prod-mode', {
        token: user.token,
        ...(item.headers ? { headers: item.headers } : {}),
        ...(item.body !== undefined ? { body: item.body } : {}),
      });
      assert.equal(response.status, item.status, `${item.name}: ${response.status} ${JSON.stringify(response.body)}`);
      assert.ok(response.body.detail, `${item.name}: a detail`);
      if (item.status === 422 && item.name.startsWith('missing')) {
        assert.deepEqual(response.body.detail[0].loc, ['body', 'enabled']);
      }
    }
    assert.deepEqual(await aoaTasks(app, user.tenantId), [], 'no AOA task stored');
    assert.equal(dcl.callsFor(user.tenantId).length, 0, 'nothing sent downstream');
    // The refusals did not take the tenant's slot.
    const accepted = await postAoa(user, '/api/v1/aoa/prod-mode', { enabled: true });
    assert.equal(accepted.status, 202, JSON.stringify(accepted.body));
    await waitForStatus(app, user.token, accepted.body.id, 'success');
  });
});

describe('one active AOA job per tenant', () => {
  test('409 naming the task while it is queued; 202 once it has finished', async () => {
    const user = await registerAndLogin(app, 'one-queued');
    // Without a worker the job stays queued for as long as the test looks.
    await app.stopWorkers();
    let task: any;
    try {
      ({ task } = await startRun(user));
      for (const post of AOA_POSTS) assertConflict(await postAoa(user, post.path, post.body), task.id);
      assert.equal((await getTask(app, user.token, task.id)).status, 'queued');
    } finally {
      await app.startWorker();
    }
    await waitForStatus(app, user.token, task.id, 'success');
    const next = await postAoa(user, '/api/v1/aoa/reset');
    assert.equal(next.status, 202, JSON.stringify(next.body));
    await waitForStatus(app, user.token, next.body.id, 'success');
    assert.equal((await aoaTasks(app, user.tenantId)).length, 2);
  });

  test('409 naming the task while it is in progress; 202 once it has succeeded', async () => {
    const user = await registerAndLogin(app, 'one-running');
    // The first call is held for 2 s: the task is in progress meanwhile.
    dcl.route(user.tenantId, (_request, index) => (index === 0 ? { status: 200, body: { held: true }, delayMs: 2_000 } : { status: 200, body: {} }));
    const { task } = await startRun(user);
    await eventually(() => (dcl.callsFor(user.tenantId).length === 1 ? true : undefined), { message: 'the DCL call' });
    const running = await getTask(app, user.token, task.id);
    assert.equal(running.status, 'in_progress');
    for (const post of AOA_POSTS) assertConflict(await postAoa(user, post.path, post.body), task.id);
    assert.equal(dcl.callsFor(user.tenantId)[0]!.answeredAt, undefined, 'the 409s came while the call was held');

    await waitForStatus(app, user.token, task.id, 'success');
    const next = await postAoa(user, '/api/v1/aoa/prod-mode', { enabled: false });
    assert.equal(next.status, 202, JSON.stringify(next.body));
    await waitForStatus(app, user.token, next.body.id, 'success');
  });

  test('409 during a retry wait; the retry still runs and succeeds', async () => {
    const user = await registerAndLogin(app, 'one-retry');
    dcl.route(user.tenantId, (_request, index) => (index === 0 ? { status: 500, body: { error: 'busy' } } : { status: 200, body: { ok: 1 } }));
    const { task } = await startRun(user);
    const waiting = await waitForTask(app, user.token, task.id, (t) => t.status === 'queued' && t.retry_count >= 1, {
      message: 'task waiting for its first retry',
    });
    assert.equal(waiting.retry_count, 1);
    assert.ok(Date.parse(waiting.scheduled_for) > Date.now(), `scheduled_for ${waiting.scheduled_for} is in the future`);
    for (const post of AOA_POSTS) assertConflict(await postAoa(user, post.path, post.body), task.id);
    assert.equal(dcl.callsFor(user.tenantId).length, 1, 'the 409s came before the retry ran');

    const done = await waitForStatus(app, user.token, task.id, 'success');
    assert.equal(done.retry_count, 1);
    assert.equal(dcl.callsFor(user.tenantId).length, 2);
    const next = await postAoa(user, '/api/v1/aoa/run');
    assert.equal(next.status, 202, JSON.stringify(next.body));
    await waitForStatus(app, user.token, next.body.id, 'success');
  });

  test('a finished job frees its slot even while a job fetched in the same batch still runs', async () => {
    const slow = await registerAndLogin(app, 'batch-slow');
    const quick = await registerAndLogin(app, 'batch-quick');
    dcl.route(slow.tenantId, () => ({ status: 200, body: {}, delayMs: 2_000 }));
    await app.stopWorkers();
    let single: Worker | undefined;
    let next: any;
    try {
      const { task: slowTask } = await startRun(slow);
      const { task: quickTask } = await startRun(quick);
      // One fetch loop, started after both sends: its first fetch takes both jobs in one batch.
      single = await startWorker({ db: app.db, boss: app.boss, config: { ...app.config, workerConcurrency: 1 }, logger: silentLogger, watch: app.watch, metrics: app.metrics, notifications: app.notifications });
      await waitForStatus(app, quick.token, quickTask.id, 'success');
      const [slowJob] = await app.boss.findJobs('aoa', { id: slowTask.id });
      const [quickJob] = await app.boss.findJobs('aoa', { id: quickTask.id });
      assert.equal(slowJob?.startedOn?.getTime(), quickJob?.startedOn?.getTime(), 'both jobs were fetched together');
      assert.equal((await getTask(app, slow.token, slowTask.id)).status, 'in_progress', 'the batch-mate still runs');

      const again = await postAoa(quick, '/api/v1/aoa/run');
      assert.equal(again.status, 202, JSON.stringify(again.body));
      next = again.body;
      await waitForStatus(app, slow.token, slowTask.id, 'success');
    } finally {
      await single?.stop(5_000);
      await app.startWorker();
    }
    await waitForStatus(app, quick.token, next.id, 'success');
  });

  test('20 concurrent POSTs: one 202, nineteen 409s naming that task, one task row', async () => {
    const user = await registerAndLogin(app, 'race');
    // Held, so the winner stays active while all twenty requests are answered.
    dcl.route(user.tenantId, () => ({ status: 200, body: { ok: true }, delayMs: 1_500 }));
    const responses = await Promise.all(
      Array.from({ length: 20 }, (_, i) => {
        const post = AOA_POSTS[i % AOA_POSTS.length]!;
        return postAoa(user, post.path, post.body);
      }),
    );
    const statuses = responses.map((response) => response.status);
    const accepted = responses.filter((response) => response.status === 202);
    assert.equal(accepted.length, 1, `statuses: ${statuses.join(',')}`);
    const winner = accepted[0]!.body;
    const refused = responses.filter((response) => response.status !== 202);
    assert.equal(refused.length, 19);
    for (const response of refused) assertConflict(response, winner.id);

    const rows = await aoaTasks(app, user.tenantId);
    assert.deepEqual(rows.map((row) => row.id), [winner.id]);
    const logTasks = await app.db.selectFrom('task_logs').select('task_id').distinct().where('tenant_id', '=', user.tenantId).execute();
    assert.deepEqual(logTasks.map((row) => row.task_id), [winner.id], 'no audit rows of refused requests');
    const jobs = await app.boss.findJobs('aoa', { key: user.tenantId });
    assert.deepEqual(jobs.map((job) => job.id), [winner.id], 'one pg-boss job for the tenant');

    await waitForStatus(app, user.token, winner.id, 'success');
    assert.equal(dcl.callsFor(user.tenantId).length, 1);
  });

  test("another tenant's active job never blocks", async () => {
    const alice = await registerAndLogin(app, 'tenant-a');
    const bob = await registerAndLogin(app, 'tenant-b');
    // Alice's call hangs until her task is canceled.
    dcl.route(alice.tenantId, () => ({ hang: true }));
    const { task: aliceTask } = await startRun(alice);
    await eventually(() => (dcl.callsFor(alice.tenantId).length === 1 ? true : undefined), { message: "Alice's call" });
    assertConflict(await postAoa(alice, '/api/v1/aoa/reset'), aliceTask.id);

    for (const post of AOA_POSTS) {
      const response = await postAoa(bob, post.path, post.body);
      assert.equal(response.status, 202, `${post.path}: ${JSON.stringify(response.body)}`);
      await waitForStatus(app, bob.token, response.body.id, 'success');
    }
    assert.equal((await getTask(app, alice.token, aliceTask.id)).status, 'in_progress', 'Alice still holds her slot');
    assert.equal(dcl.callsFor(bob.tenantId).length, 3);

    // Canceling the active job aborts its call and frees the slot.
    const canceled = await app.delete(`/api/v1/tasks/${aliceTask.id}`, { token: alice.token });
    assert.equal(canceled.status, 200, JSON.stringify(canceled.body));
    assert.equal(canceled.body.status, 'canceled');
    await eventually(() => (dcl.callsFor(alice.tenantId)[0]!.aborted ? true : undefined), { message: "Alice's call aborted" });
    dcl.route(alice.tenantId, () => ({ status: 200, body: {} }));
    const again = await postAoa(alice, '/api/v1/aoa/run');
    assert.equal(again.status, 202, JSON.stringify(again.body));
    await waitForStatus(app, alice.token, again.body.id, 'success');
  });
});

describe('AOA retries', () => {
  test('a failing DCL: 3 retries on the schedule, then failed, with every downstream status logged', async () => {
    const user = await registerAndLogin(app, 'retries');
    dcl.route(user.tenantId, () => ({ status: 500, body: { error: 'dcl exploded', code: 'E_DCL' } }));
    const { task, requestId } = await startRun(user);

    const failed = await waitForStatus(app, user.token, task.id, 'failed', 20_000);
    assert.equal(failed.retry_count, 3);
    assert.equal(failed.scheduled_for, null);
    assert.match(failed.result.error, /500/);

    const calls = dcl.callsFor(user.tenantId);
    assert.equal(calls.length, 4, 'one attempt and three retries');
    for (const call of calls) {
      assert.equal(call.method, 'POST');
      assert.equal(call.path, '/connect');
      assert.equal(call.headers['x-request-id'], requestId);
    }
    // RETRY_DELAYS_SECONDS, not pg-boss's backoff: retry n waits the n-th delay.
    for (let n = 1; n < calls.length; n++) {
      const gap = calls[n]!.receivedAt - calls[n - 1]!.receivedAt;
      const delayMs = RETRY_DELAYS[n - 1]! * 1000;
      assert.ok(gap >= delayMs - 100 && gap < delayMs + 3_000, `retry ${n} came ${gap} ms after the previous attempt (delay ${delayMs} ms)`);
    }

    const messages = (await auditRows(app, task.id)).map((row) => row.message);
    const retries = messages.filter((message) => message.startsWith('Scheduling retry'));
    assert.deepEqual(retries, ['Scheduling retry 1/3', 'Scheduling retry 2/3', 'Scheduling retry 3/3']);
    assert.equal(messages.at(-1), 'Task permanently failed after all retries');
    const answers = messages.filter((message) => message.startsWith('Legacy DCL answered POST /connect with status 500: '));
    assert.equal(answers.length, 4, messages.join('\n'));
    for (const answer of answers) assert.ok(answer.includes('dcl exploded'), answer);
    const errors = messages.filter((message) => message.startsWith('Task failed with error: '));
    assert.equal(errors.length, 4);
    for (const error of errors) assert.match(error, /POST \/connect answered with status 500/);

    // A failed job frees the slot; and its own calls stay at four.
    dcl.route(user.tenantId, () => ({ status: 200, body: {} }));
    const next = await postAoa(user, '/api/v1/aoa/run');
    assert.equal(next.status, 202, JSON.stringify(next.body));
    await waitForStatus(app, user.token, next.body.id, 'success');
    assert.equal(dcl.callsFor(user.tenantId).filter((call) => call.headers['x-request-id'] === requestId).length, 4);
  });
});

describe('AOA audit trail', () => {
  test('records who asked, the parameters, the downstream status and a 2 KB cut of the body', async () => {
    const user = await registerAndLogin(app, 'audit');
    const bigBody = { data: 'x'.repeat(5_000), tail: 'END-OF-BODY' };
    const bigText = JSON.stringify(bigBody);
    dcl.route(user.tenantId, () => ({ status: 200, body: bigBody }));
    const response = await postAoa(user, '/api/v1/aoa/prod-mode', { enabled: true });
    assert.equal(response.status, 202, JSON.stringify(response.body));
    const requestId = response.headers.get('x-request-id')!;
    const task = await waitForStatus(app, user.token, response.body.id, 'success');
    assert.equal(task.result.downstream_status, 200);

    const rows = await auditRows(app, task.id);
    for (const row of rows) assert.equal(row.tenant_id, user.tenantId, row.message);
    const messages = rows.map((row) => row.message);
    const requested = messages.find((message) => message.includes('{"enabled":true}'));
    assert.ok(requested, `the request parameters are logged:\n${messages.join('\n')}`);
    assert.ok(requested.includes(user.userId), 'with the user id');
    assert.ok(requested.includes(user.tenantId), 'with the tenant id');
    assert.ok(requested.includes(requestId), 'with the request id');

    const answered = messages.find((message) => message.startsWith('Legacy DCL answered POST /toggle_dev_mode with status 200: '));
    assert.ok(answered, messages.join('\n'));
    assert.ok(answered.includes(bigText.slice(0, 1_000)), 'starts with the body');
    assert.ok(answered.includes('truncated'), 'says it was cut');
    assert.ok(!answered.includes('END-OF-BODY'), 'the end of the body is cut off');
    const bytes = Buffer.byteLength(answered);
    assert.ok(bytes > 2_048 && bytes < 2_048 + 200, `the logged message is ${bytes} bytes`);

    // The same trail through the API.
    const logs = await app.get(`/api/v1/tasks/${task.id}/logs`, { token: user.token });
    assert.equal(logs.status, 200);
    assert.deepEqual(
      logs.body.map((log: any) => log.message),
      messages,
    );
  });

  test('records the downstream status, body and error details of a failure', async () => {
    const user = await registerAndLogin(app, 'audit-fail');
    dcl.route(user.tenantId, () => ({ status: 503, body: { error: 'maintenance window' } }));
    const response = await postAoa(user, '/api/v1/aoa/reset');
    assert.equal(response.status, 202, JSON.stringify(response.body));
    // Only the first attempt matters here; cancel the task once it has been recorded.
    await waitForTask(app, user.token, response.body.id, (t) => t.retry_count >= 1, { message: 'first attempt recorded' });
    const canceled = await app.delete(`/api/v1/tasks/${response.body.id}`, { token: user.token });
    assert.equal(canceled.status, 200, JSON.stringify(canceled.body));

    const rows = await auditRows(app, response.body.id);
    for (const row of rows) assert.equal(row.tenant_id, user.tenantId, row.message);
    const messages = rows.map((row) => row.message);
    assert.ok(
      messages.includes('Legacy DCL answered POST /reset with status 503: {"error":"maintenance window"}'),
      messages.join('\n'),
    );
    assert.ok(messages.includes('Task failed with error: Legacy DCL POST /reset answered with status 503'), messages.join('\n'));
    assert.ok(messages.some((message) => message.includes(user.userId) && message.includes('aoa_reset')));
  });
});
