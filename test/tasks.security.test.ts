import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { SignJWT } from 'jose';
import { TOKEN_AUDIENCE, TOKEN_ISSUER } from '../src/auth/tokens.js';
import { startTestApp, type TestApp, type TestResponse } from './helpers/app.js';
import { registerAndLogin, type RegisteredUser } from './helpers/users.js';

// Two tenants: the task cases of the reference's tests/test_isolation.py, plus a forged token
// and the tenant of every audit row. No worker: tasks stay queued, so every state is the test's.

const NOT_FOUND = { detail: 'Task not found' };

let app: TestApp;
let alice: RegisteredUser;
let bob: RegisteredUser;

before(async () => {
  app = await startTestApp();
  [alice, bob] = await Promise.all([registerAndLogin(app, 'tenant-a'), registerAndLogin(app, 'tenant-b')]);
  assert.notEqual(alice.tenantId, bob.tenantId);
});

after(async () => {
  await app.close();
});

function slackPayload(message = `hello ${randomUUID()}`) {
  return { action: 'post_to_slack', channel: '#general', message };
}

async function createTask(user: RegisteredUser | string, body: Record<string, unknown> = { payload: slackPayload() }) {
  const token = typeof user === 'string' ? user : user.token;
  const response = await app.post('/api/v1/tasks', body, { token });
  assert.equal(response.status, 201, JSON.stringify(response.body));
  return response.body;
}

/** The three ways to name a task, as one tenant. */
function probe(id: string, token: string): Promise<TestResponse[]> {
  return Promise.all([
    app.get(`/api/v1/tasks/${id}`, { token }),
    app.delete(`/api/v1/tasks/${id}`, { token }),
    app.get(`/api/v1/tasks/${id}/logs`, { token }),
  ]);
}

/** Another tenant's task answers exactly like a task that does not exist. */
async function assertInvisible(id: string, token: string, label: string) {
  const [foreign, missing] = await Promise.all([probe(id, token), probe(randomUUID(), token)]);
  for (const [index, response] of foreign.entries()) {
    assert.equal(response.status, 404, `${label} #${index}: ${JSON.stringify(response.body)}`);
    assert.deepEqual(response.body, NOT_FOUND, `${label} #${index}`);
    assert.equal(response.status, missing[index]!.status);
    assert.deepEqual(response.body, missing[index]!.body);
    assert.equal(response.headers.get('content-type'), missing[index]!.headers.get('content-type'));
  }
}

async function statusOf(id: string): Promise<string> {
  const row = await app.db.selectFrom('tasks').select('status').where('id', '=', id).executeTakeFirstOrThrow();
  return row.status;
}

describe('reference test_isolation.py (task cases)', () => {
  test("tenant B cannot read tenant A's task", async () => {
    const task = await createTask(alice);
    const response = await app.get(`/api/v1/tasks/${task.id}`, { token: bob.token });
    assert.equal(response.status, 404);
    assert.deepEqual(response.body, NOT_FOUND);
    const own = await app.get(`/api/v1/tasks/${task.id}`, { token: alice.token });
    assert.equal(own.status, 200, 'A still can');
    assert.equal(own.body.id, task.id);
  });

  test("tenant B cannot cancel tenant A's task; it stays queued for A", async () => {
    const task = await createTask(alice);
    const response = await app.delete(`/api/v1/tasks/${task.id}`, { token: bob.token });
    assert.equal(response.status, 404);
    assert.deepEqual(response.body, NOT_FOUND);
    assert.equal(await statusOf(task.id), 'queued');
    const own = await app.get(`/api/v1/tasks/${task.id}`, { token: alice.token });
    assert.equal(own.body.status, 'queued');
    assert.equal(own.body.result, null);
    assert.deepEqual(own.body, task, 'nothing about it changed');
    const job = await app.boss.getJobById('tasks', task.id);
    assert.ok(job, 'its job still exists');
    assert.equal(job.state, 'created', 'and is still waiting to run');
    const logs = await app.get(`/api/v1/tasks/${task.id}/logs`, { token: alice.token });
    assert.ok(
      !logs.body.some((entry: { message: string }) => /cancel/i.test(entry.message)),
      `no cancel in A's audit trail: ${JSON.stringify(logs.body)}`,
    );
    // A can still cancel it.
    const canceled = await app.delete(`/api/v1/tasks/${task.id}`, { token: alice.token });
    assert.equal(canceled.status, 200);
    assert.equal(canceled.body.status, 'canceled');
  });

  test("tenant B cannot read tenant A's audit trail", async () => {
    const task = await createTask(alice);
    const response = await app.get(`/api/v1/tasks/${task.id}/logs`, { token: bob.token });
    assert.equal(response.status, 404);
    assert.deepEqual(response.body, NOT_FOUND);
  });

  test('a foreign task is indistinguishable from a missing one, on every route', async () => {
    const task = await createTask(alice);
    await assertInvisible(task.id, bob.token, 'B probing A');
    const theirs = await createTask(bob);
    await assertInvisible(theirs.id, alice.token, 'A probing B');
    assert.equal(await statusOf(task.id), 'queued');
    assert.equal(await statusOf(theirs.id), 'queued');
  });

  test('multiple tasks across tenants remain isolated', async () => {
    const aTasks = await Promise.all(Array.from({ length: 3 }, () => createTask(alice)));
    const bTasks = await Promise.all(Array.from({ length: 3 }, () => createTask(bob)));
    for (const [owner, other, tasks] of [
      [alice, bob, aTasks],
      [bob, alice, bTasks],
    ] as const) {
      for (const task of tasks) {
        const own = await app.get(`/api/v1/tasks/${task.id}`, { token: owner.token });
        assert.equal(own.status, 200);
        assert.deepEqual(own.body.payload, task.payload);
        const foreign = await app.get(`/api/v1/tasks/${task.id}`, { token: other.token });
        assert.equal(foreign.status, 404);
        assert.deepEqual(foreign.body, NOT_FOUND);
      }
    }
    const rows = await app.db
      .selectFrom('tasks')
      .select(['id', 'tenant_id'])
      .where('id', 'in', [...aTasks, ...bTasks].map((task) => task.id))
      .execute();
    const tenantOf = new Map(rows.map((row) => [row.id, row.tenant_id]));
    for (const task of aTasks) assert.equal(tenantOf.get(task.id), alice.tenantId);
    for (const task of bTasks) assert.equal(tenantOf.get(task.id), bob.tenantId);
  });

  test("sensitive data in A's task never appears in any response to B", async () => {
    const secret = `sk-live-${randomUUID()}`;
    const callbackSecret = `cb-${randomUUID()}`;
    const task = await createTask(alice, {
      payload: slackPayload(`API key: ${secret}`),
      callback_url: `https://hooks.example.com/${callbackSecret}`,
      delay_seconds: 3600,
      on_success_next_task: { payload: slackPayload(`again ${secret}`) },
    });
    const responses = [
      ...(await probe(task.id, bob.token)),
      await app.post('/api/v1/tasks', { payload: slackPayload('mine') }, { token: bob.token }),
      await app.get('/api/v1/auth/me', { token: bob.token }),
      await app.get('/users/me', { token: bob.token }),
    ];
    for (const response of responses) {
      const text = JSON.stringify(response.body) + JSON.stringify([...response.headers]);
      for (const needle of [secret, callbackSecret, task.id, alice.tenantId, alice.userId, alice.email]) {
        assert.ok(!text.includes(needle), `a response to B contains ${needle}: ${text}`);
      }
    }
    // A sees it whole.
    const own = await app.get(`/api/v1/tasks/${task.id}`, { token: alice.token });
    assert.match(JSON.stringify(own.body), new RegExp(secret));
  });
});

describe('the tenant comes from the verified token only', () => {
  test("a validly signed token naming tenant B with A's user is refused everywhere: A's user is not B's", async () => {
    const key = new TextEncoder().encode(app.config.jwtSecret);
    const now = Math.floor(Date.now() / 1000);
    const forged = await new SignJWT({ user_id: alice.userId, tenant_id: bob.tenantId, ver: 0 })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setSubject(alice.email)
      .setIssuer(TOKEN_ISSUER)
      .setAudience(TOKEN_AUDIENCE)
      .setIssuedAt(now)
      .setExpirationTime(now + 600)
      .sign(key);

    const aTask = await createTask(alice);
    const bTask = await createTask(bob);
    const stored = async () =>
      Number(
        (await app.db.selectFrom('tasks').select(({ fn }) => fn.countAll<string>().as('n')).where('tenant_id', 'in', [alice.tenantId, bob.tenantId]).executeTakeFirstOrThrow()).n,
      );
    const before = await stored();
    for (const id of [aTask.id, bTask.id]) {
      for (const [index, response] of (await probe(id, forged)).entries()) {
        assert.equal(response.status, 401, `probe #${index} of ${id}: ${JSON.stringify(response.body)}`);
      }
    }
    const created = await app.post('/api/v1/tasks', { payload: slackPayload() }, { token: forged });
    assert.equal(created.status, 401);
    assert.equal(await statusOf(aTask.id), 'queued');
    assert.equal(await statusOf(bTask.id), 'queued');
    assert.equal(await stored(), before);
  });

  test('a tenant_id in the body or query is ignored', async () => {
    const response = await app.request('POST', `/api/v1/tasks?tenant_id=${alice.tenantId}`, {
      token: bob.token,
      json: { payload: slackPayload(), tenant_id: alice.tenantId },
    });
    // Either refused as an unknown field or ignored; never stored in A's tenant.
    if (response.status === 201) {
      const row = await app.db.selectFrom('tasks').select('tenant_id').where('id', '=', response.body.id).executeTakeFirstOrThrow();
      assert.equal(row.tenant_id, bob.tenantId);
      assert.ok(!('tenant_id' in response.body));
    } else {
      assert.equal(response.status, 422, JSON.stringify(response.body));
    }
  });
});

describe('audit rows carry the tenant of their task', () => {
  test("every task_logs row has its task's tenant, and each tenant's trail is its own", async () => {
    const aTask = await createTask(alice, { payload: slackPayload(), delay_seconds: 600 });
    const bTask = await createTask(bob);
    assert.equal((await app.delete(`/api/v1/tasks/${aTask.id}`, { token: alice.token })).status, 200);

    const mismatched = await app.db
      .selectFrom('task_logs')
      .innerJoin('tasks', 'tasks.id', 'task_logs.task_id')
      .select(['task_logs.id', 'task_logs.tenant_id as log_tenant', 'tasks.tenant_id as task_tenant'])
      .whereRef('task_logs.tenant_id', '<>', 'tasks.tenant_id')
      .execute();
    assert.deepEqual(mismatched, [], 'no audit row names another tenant than its task');

    const aRows = await app.db.selectFrom('task_logs').select(['tenant_id', 'message']).where('task_id', '=', aTask.id).execute();
    assert.deepEqual(
      aRows.map((row) => row.tenant_id),
      aRows.map(() => alice.tenantId),
    );
    assert.ok(aRows.length >= 3, `created, scheduled and canceled: ${JSON.stringify(aRows)}`);
    assert.ok(aRows.some((row) => row.message === 'Task canceled by user request'));
    const bRows = await app.db.selectFrom('task_logs').select('tenant_id').where('task_id', '=', bTask.id).execute();
    assert.ok(bRows.length >= 1);
    for (const row of bRows) assert.equal(row.tenant_id, bob.tenantId);

    // The API's view agrees with the table, and never mixes trails.
    const aLogs = await app.get(`/api/v1/tasks/${aTask.id}/logs`, { token: alice.token });
    assert.equal(aLogs.body.length, aRows.length);
    for (const entry of aLogs.body) {
      assert.equal(entry.task_id, aTask.id);
      assert.equal(entry.tenant_id, alice.tenantId);
    }
  });
});
