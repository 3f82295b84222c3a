import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { deleteExpiredIdempotencyKeys } from '../src/idempotency/idempotency.js';
import { startTestApp, withTestApp, type TestApp } from './helpers/app.js';
import { startFakeDcl, type FakeDcl } from './helpers/dcl.js';
import { createTask, logMessages, slackPayload, startFakeSlack, waitForStatus, type FakeSlack } from './helpers/engine.js';
import { registerAndLogin, type RegisteredUser } from './helpers/users.js';

// Retrying a task, creating tasks in batches, and Idempotency-Key: what a user who runs tasks
// does besides creating them one by one.

let app: TestApp;
let slack: FakeSlack;
let dcl: FakeDcl;
let alice: RegisteredUser;
let bob: RegisteredUser;

before(async () => {
  slack = await startFakeSlack();
  dcl = await startFakeDcl();
  app = await startTestApp({ env: { SLACK_WEBHOOK_URL: slack.url, LEGACY_DCL_BASE_URL: dcl.url } });
  [alice, bob] = await Promise.all([registerAndLogin(app, 'alice'), registerAndLogin(app, 'bob')]);
});

after(async () => {
  await app?.close();
  await slack?.close();
  await dcl?.close();
});

async function tenantTaskCount(user: RegisteredUser): Promise<number> {
  const { rows } = await sql<{ n: number }>`select count(*)::int as n from tasks where tenant_id = ${user.tenantId}`.execute(app.db);
  return rows[0]!.n;
}

/** A task made to fail for good (the worker is not running): its row and audit trail say failed. */
async function failedTask(user: RegisteredUser, body: Record<string, unknown>) {
  const task = await createTask(app, user.token, body);
  await sql`update tasks set status = 'failed', finished_at = now(), result = '{"error":"boom"}' where id = ${task.id}`.execute(app.db);
  return task;
}

describe('POST /api/v1/tasks/{id}/retry', () => {
  test('a failed task is created again with the same body, linked both ways in the JSON and the audit trails', async () => {
    const body = {
      payload: slackPayload('#retry', 'again'),
      max_retries: 2,
      priority: 3,
      timeout_seconds: 60,
      on_success_next_task: { payload: slackPayload('#retry', 'next') },
    };
    const original = await failedTask(alice, body);
    const response = await app.post(`/api/v1/tasks/${original.id}/retry`, undefined, { token: alice.token });
    assert.equal(response.status, 201, JSON.stringify(response.body));
    const retry = response.body;
    assert.notEqual(retry.id, original.id);
    assert.equal(retry.retry_of, original.id);
    assert.equal(retry.status, 'queued');
    for (const field of ['payload', 'max_retries', 'priority', 'timeout_seconds', 'on_success_next_task', 'callback_url'] as const) {
      assert.deepEqual(retry[field], original[field], field);
    }
    assert.equal(retry.retry_count, 0);
    assert.equal(original.retry_of, null);

    assert.deepEqual(await logMessages(app, retry.id), [
      `Task created by user ${alice.userId} in tenant ${alice.tenantId}`,
      `Task created as a retry of task ${original.id}`,
    ]);
    assert.ok((await logMessages(app, original.id)).includes(`Task retried as task ${retry.id}`));
    // The original is left as it was.
    assert.equal((await app.get(`/api/v1/tasks/${original.id}`, { token: alice.token })).body.status, 'failed');
  });

  test('a canceled task can be retried, and the retry runs', async () => {
    const original = await createTask(app, alice.token, { payload: slackPayload('#retry-canceled') });
    assert.equal((await app.delete(`/api/v1/tasks/${original.id}`, { token: alice.token })).status, 200);
    const retry = await app.post(`/api/v1/tasks/${original.id}/retry`, undefined, { token: alice.token });
    assert.equal(retry.status, 201);
    const worker = await app.startWorker();
    try {
      const done = await waitForStatus(app, alice.token, retry.body.id, 'success');
      assert.equal(done.retry_of, original.id);
    } finally {
      await app.stopWorkers();
      void worker;
    }
  });

  test('a task that is not failed or canceled is 409; an unknown or foreign one is 404', async () => {
    const queued = await createTask(app, alice.token, { payload: slackPayload('#not-yet') });
    const refused = await app.post(`/api/v1/tasks/${queued.id}/retry`, undefined, { token: alice.token });
    assert.equal(refused.status, 409);
    assert.match(refused.body.detail, /Only a failed or canceled task can be retried; this one is queued/);
    const failed = await failedTask(alice, { payload: slackPayload('#foreign') });
    for (const [id, token] of [
      [failed.id, bob.token],
      [randomUUID(), alice.token],
      ['not-a-uuid', alice.token],
    ] as const) {
      const response = await app.post(`/api/v1/tasks/${id}/retry`, undefined, { token });
      assert.equal(response.status, 404);
      assert.deepEqual(response.body, { detail: 'Task not found' });
    }
    assert.equal((await logMessages(app, failed.id)).some((message) => message.startsWith('Task retried')), false);
  });

  test('an AOA job is retried as an AOA job, and refused while another is active, leaving no trace', async () => {
    const job = await app.post('/api/v1/aoa/run', undefined, { token: bob.token });
    assert.equal(job.status, 202);
    await sql`update tasks set status = 'failed', finished_at = now() where id = ${job.body.id}`.execute(app.db);
    await sql`update pgboss.job set state = 'failed' where id = ${job.body.id}`.execute(app.db);
    const other = await app.post('/api/v1/aoa/run', undefined, { token: bob.token });
    assert.equal(other.status, 202);
    const before = await tenantTaskCount(bob);
    const refused = await app.post(`/api/v1/tasks/${job.body.id}/retry`, undefined, { token: bob.token });
    assert.equal(refused.status, 409);
    assert.equal(await tenantTaskCount(bob), before);
    assert.equal((await logMessages(app, job.body.id)).some((message) => message.startsWith('Task retried')), false);

    await app.delete(`/api/v1/tasks/${other.body.id}`, { token: bob.token });
    const retried = await app.post(`/api/v1/tasks/${job.body.id}/retry`, undefined, { token: bob.token });
    assert.equal(retried.status, 201, JSON.stringify(retried.body));
    assert.equal(retried.body.kind, 'aoa');
    assert.equal(retried.body.retry_of, job.body.id);
  });
});

describe('POST /api/v1/tasks/batch', () => {
  test('creates every task, in order, each with its job and audit entry', async () => {
    const bodies = Array.from({ length: 25 }, (_, index) => ({ payload: slackPayload('#batch', `task ${index}`), priority: index % 3 }));
    const response = await app.post('/api/v1/tasks/batch', { tasks: bodies }, { token: alice.token });
    assert.equal(response.status, 201, JSON.stringify(response.body));
    assert.equal(response.body.tasks.length, 25);
    response.body.tasks.forEach((task: any, index: number) => {
      assert.equal(task.payload.message, `task ${index}`);
      assert.equal(task.priority, index % 3);
      assert.equal(task.status, 'queued');
    });
    const ids = response.body.tasks.map((task: any) => task.id);
    const { rows } = await sql<{ jobs: number; logs: number }>`
      select (select count(*)::int from pgboss.job where id = any(${ids}::uuid[])) as jobs,
             (select count(*)::int from task_logs where tenant_id = ${alice.tenantId} and task_id = any(${ids}::uuid[])) as logs
    `.execute(app.db);
    assert.deepEqual(rows, [{ jobs: 25, logs: 25 }]);
  });

  test('one invalid task refuses the whole batch with 422 naming its index; nothing is stored', async () => {
    const before = await tenantTaskCount(alice);
    const tasks = [
      { payload: slackPayload('#batch-bad', 'fine') },
      { payload: slackPayload('#batch-bad', 'fine too') },
      { payload: { action: 'post_to_slack', channel: '#x' } },
      { payload: slackPayload('#batch-bad', 'also fine'), max_retry: 3 },
    ];
    const response = await app.post('/api/v1/tasks/batch', { tasks }, { token: alice.token });
    assert.equal(response.status, 422);
    assert.deepEqual(response.body.detail[0].loc.slice(0, 3), ['body', 'tasks', 2]);
    assert.equal(await tenantTaskCount(alice), before);
  });

  test('an empty list, more than 500 tasks, a missing list or an unknown field are 422', async () => {
    const one = { payload: slackPayload('#batch-size') };
    for (const body of [{ tasks: [] }, { tasks: Array(501).fill(one) }, {}, { tasks: [one], extra: true }, { tasks: one }]) {
      const response = await app.post('/api/v1/tasks/batch', body, { token: alice.token });
      assert.equal(response.status, 422, JSON.stringify(body).slice(0, 80));
    }
    const full = await app.post('/api/v1/tasks/batch', { tasks: Array(500).fill(one) }, { token: bob.token });
    assert.equal(full.status, 201);
    assert.equal(full.body.tasks.length, 500);
  });

  test('a batch counts against the rate and the quota all at once: all or none', () =>
    withTestApp({ env: { SLACK_WEBHOOK_URL: slack.url, TENANT_RATE_LIMIT_PER_SECOND: '1', TENANT_MAX_QUEUED_TASKS: '8', MAX_TASK_PAYLOAD_BYTES: '1024' } }, async (limited) => {
      const user = await registerAndLogin(limited, 'batcher');
      const batch = (count: number, message = 'm') => ({ tasks: Array.from({ length: count }, () => ({ payload: slackPayload('#limits', message) })) });
      // Larger than the burst (2): it passes with a full bucket and leaves it in debt.
      assert.equal((await limited.post('/api/v1/tasks/batch', batch(5), { token: user.token })).status, 201);
      const tooSoon = await limited.post('/api/v1/tasks/batch', batch(2), { token: user.token });
      assert.equal(tooSoon.status, 429);
      assert.match(tooSoon.body.detail, /TENANT_RATE_LIMIT_PER_SECOND/);
      assert.ok(Number(tooSoon.headers.get('retry-after')) >= 4, `Retry-After ${tooSoon.headers.get('retry-after')}`);
      // A single creation while in debt is refused too, and leaves the debt as it was.
      assert.equal((await limited.post('/api/v1/tasks', { payload: slackPayload('#limits', 'one') }, { token: user.token })).status, 429);
      const { rows: bucket } = await sql<{ tokens: number }>`select tokens from tenant_rate_buckets where tenant_id = ${user.tenantId}`.execute(limited.db);
      assert.ok(bucket[0]!.tokens < -1, `still in debt: ${bucket[0]!.tokens}`);

      await sql`update tenant_rate_buckets set tokens = 2, refilled_at = now() where tenant_id = ${user.tenantId}`.execute(limited.db);
      const overQuota = await limited.post('/api/v1/tasks/batch', batch(4), { token: user.token });
      assert.equal(overQuota.status, 429);
      assert.match(overQuota.body.detail, /TENANT_MAX_QUEUED_TASKS/);

      await sql`update tenant_rate_buckets set tokens = 2, refilled_at = now() where tenant_id = ${user.tenantId}`.execute(limited.db);
      const big = await limited.post('/api/v1/tasks/batch', { tasks: [{ payload: slackPayload('#limits', 'x') }, { payload: slackPayload('#limits', 'y'.repeat(2000)) }] }, { token: user.token });
      assert.equal(big.status, 413);
      assert.match(big.body.detail, /Task 1 of the batch exceeds 1024 bytes/);

      const { rows } = await sql<{ n: number }>`select count(*)::int as n from tasks where tenant_id = ${user.tenantId}`.execute(limited.db);
      assert.deepEqual(rows, [{ n: 5 }]);
    }));
});

describe('Idempotency-Key', () => {
  const withKey = (key: string) => ({ token: alice.token, headers: { 'Idempotency-Key': key } });

  test('the same key and body answer the same again and create nothing; another body is 422', async () => {
    const key = randomUUID();
    const body = { payload: slackPayload('#idem', 'once') };
    const first = await app.post('/api/v1/tasks', body, withKey(key));
    assert.equal(first.status, 201);
    const before = await tenantTaskCount(alice);
    const again = await app.post('/api/v1/tasks', body, withKey(key));
    assert.equal(again.status, 201);
    assert.deepEqual(again.body, first.body);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.equal(await tenantTaskCount(alice), before);

    const other = await app.post('/api/v1/tasks', { payload: slackPayload('#idem', 'twice') }, withKey(key));
    assert.equal(other.status, 422);
    assert.deepEqual(other.body, { detail: 'Idempotency-Key reused with a different request' });
    // The same key on another route is another request too.
    const batch = await app.post('/api/v1/tasks/batch', { tasks: [body] }, withKey(key));
    assert.equal(batch.status, 422);
    assert.equal(await tenantTaskCount(alice), before);
  });

  test('20 simultaneous identical requests create exactly one task, and all get its answer', async () => {
    const key = randomUUID();
    const body = { payload: slackPayload('#idem-race', 'race') };
    const before = await tenantTaskCount(alice);
    const responses = await Promise.all(Array.from({ length: 20 }, () => app.post('/api/v1/tasks', body, withKey(key))));
    assert.deepEqual(new Set(responses.map((response) => response.status)), new Set([201]));
    assert.equal(new Set(responses.map((response) => response.body.id)).size, 1);
    assert.equal(await tenantTaskCount(alice), before + 1);
  });

  test('keys are per tenant', async () => {
    const key = randomUUID();
    const body = { payload: slackPayload('#idem-tenants') };
    const mine = await app.post('/api/v1/tasks', body, withKey(key));
    const theirs = await app.post('/api/v1/tasks', body, { token: bob.token, headers: { 'Idempotency-Key': key } });
    assert.equal(mine.status, 201);
    assert.equal(theirs.status, 201);
    assert.notEqual(mine.body.id, theirs.body.id);
  });

  test('batches and AOA jobs honour it too, refusals are answered again as they were', async () => {
    const key = randomUUID();
    const batch = { tasks: [{ payload: slackPayload('#idem-batch', 'a') }, { payload: slackPayload('#idem-batch', 'b') }] };
    const first = await app.post('/api/v1/tasks/batch', batch, withKey(key));
    const again = await app.post('/api/v1/tasks/batch', batch, withKey(key));
    assert.equal(first.status, 201);
    assert.deepEqual(again.body, first.body);

    const user = await registerAndLogin(app, 'idem-aoa');
    const aoaKey = randomUUID();
    const headers = { 'Idempotency-Key': aoaKey };
    const job = await app.post('/api/v1/aoa/prod-mode', { enabled: true }, { token: user.token, headers });
    const repeated = await app.post('/api/v1/aoa/prod-mode', { enabled: true }, { token: user.token, headers });
    assert.equal(job.status, 202);
    assert.equal(repeated.status, 202);
    assert.equal(repeated.body.id, job.body.id);
    // Without the key the second job would be a 409; with a new key it is.
    const conflict = await app.post('/api/v1/aoa/prod-mode', { enabled: true }, { token: user.token, headers: { 'Idempotency-Key': randomUUID() } });
    assert.equal(conflict.status, 409);
  });

  test('an answer that says "try again" (429) releases the key', () =>
    withTestApp({ env: { SLACK_WEBHOOK_URL: slack.url, TENANT_MAX_QUEUED_TASKS: '1' } }, async (limited) => {
      const user = await registerAndLogin(limited, 'idem-quota');
      const first = await limited.post('/api/v1/tasks', { payload: slackPayload('#q', 'first') }, { token: user.token });
      const key = { token: user.token, headers: { 'Idempotency-Key': 'retry-me-later' } };
      const body = { payload: slackPayload('#q', 'second') };
      assert.equal((await limited.post('/api/v1/tasks', body, key)).status, 429);
      await limited.delete(`/api/v1/tasks/${first.body.id}`, { token: user.token });
      assert.equal((await limited.post('/api/v1/tasks', body, key)).status, 201);
    }));

  test('after 24 hours a key is free again, and expired keys are cleaned up', async () => {
    const key = randomUUID();
    const body = { payload: slackPayload('#idem-expiry') };
    const first = await app.post('/api/v1/tasks', body, withKey(key));
    await sql`update idempotency_keys set created_at = now() - interval '25 hours' where key = ${key}`.execute(app.db);
    const later = await app.post('/api/v1/tasks', body, withKey(key));
    assert.equal(later.status, 201);
    assert.notEqual(later.body.id, first.body.id);

    const stale = randomUUID();
    await app.post('/api/v1/tasks', body, withKey(stale));
    await sql`update idempotency_keys set created_at = now() - interval '25 hours' where key = ${stale}`.execute(app.db);
    assert.ok((await deleteExpiredIdempotencyKeys(app.db)) >= 1);
    const { rows } = await sql<{ key: string }>`select key from idempotency_keys where key in (${key}, ${stale})`.execute(app.db);
    assert.deepEqual(rows, [{ key }]);
  });

  test('a key whose first request never answered (its process died) is taken over after a while', async () => {
    const key = randomUUID();
    await sql`insert into idempotency_keys (tenant_id, key, request_hash, created_at)
              values (${alice.tenantId}, ${key}, 'abandoned', now() - interval '2 minutes')`.execute(app.db);
    const response = await app.post('/api/v1/tasks', { payload: slackPayload('#idem-abandoned') }, withKey(key));
    assert.equal(response.status, 201);
  });

  test('a key that is not 1-255 printable ASCII characters is 422', async () => {
    for (const key of ['', 'x'.repeat(256), 'with space', 'tab\tkey']) {
      const response = await app.request('POST', '/api/v1/tasks', { json: { payload: slackPayload('#k') }, token: alice.token, headers: { 'Idempotency-Key': key } });
      assert.equal(response.status, 422, JSON.stringify(key));
    }
  });
});
