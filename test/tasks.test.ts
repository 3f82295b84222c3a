import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { startFakeServer, type FakeServer } from './helpers/fake-server.js';
import { startTestApp, type TestApp } from './helpers/app.js';
import { eventually } from './helpers/poll.js';
import { registerAndLogin, type RegisteredUser } from './helpers/users.js';

// A port of the reference's tests/test_tasks.py (15 cases), against the real app, a real
// pg-boss and an in-process worker posting to a local fake Slack.

const TASK_KEYS = [
  'id',
  'kind',
  'status',
  'payload',
  'result',
  'callback_url',
  'retry_count',
  'max_retries',
  'priority',
  'timeout_seconds',
  'on_success_next_task',
  'next_task_id',
  'retry_of',
  'scheduled_for',
  'started_at',
  'finished_at',
  'created_at',
  'updated_at',
].sort();
const TIMESTAMP_KEYS = ['scheduled_for', 'started_at', 'finished_at', 'created_at', 'updated_at'];
const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** Long enough that no worker touches the task while the test looks at it. */
const LATER = 3600;

let slack: FakeServer;
let app: TestApp;
let user: RegisteredUser;

before(async () => {
  slack = await startFakeServer(() => ({ status: 200, body: 'ok' }));
  app = await startTestApp({ worker: true, env: { SLACK_WEBHOOK_URL: `${slack.url}/hook` } });
  user = await registerAndLogin(app, 'tasks');
});

after(async () => {
  await app.close();
  await slack.close();
});

function slackPayload(message = `hello ${randomUUID()}`, channel = '#general') {
  return { action: 'post_to_slack', channel, message };
}

async function createTask(body: Record<string, unknown>, token = user.token) {
  const response = await app.post('/api/v1/tasks', body, { token });
  assert.equal(response.status, 201, JSON.stringify(response.body));
  return response.body;
}

async function getTask(id: string) {
  const response = await app.get(`/api/v1/tasks/${id}`, { token: user.token });
  assert.equal(response.status, 200, JSON.stringify(response.body));
  return response.body;
}

function waitForStatus(id: string, status: string) {
  return eventually(
    async () => {
      const task = await getTask(id);
      return task.status === status ? task : undefined;
    },
    { timeoutMs: 10_000, message: `task ${id} reaching ${status}` },
  );
}

/** The full task JSON: exactly the documented keys, ISO 8601 UTC timestamps. */
function assertTaskShape(task: Record<string, unknown>) {
  assert.deepEqual(Object.keys(task).sort(), TASK_KEYS);
  assert.match(task.id as string, UUID);
  for (const key of TIMESTAMP_KEYS) {
    const value = task[key];
    if (value === null && key !== 'created_at' && key !== 'updated_at') continue;
    assert.equal(typeof value, 'string', key);
    assert.match(value as string, ISO_UTC, `${key} is ISO 8601 UTC: ${String(value)}`);
  }
}

describe('reference test_tasks.py', () => {
  test('creating a task requires a JWT (401 without, nothing stored)', async () => {
    const before = await app.db.selectFrom('tasks').select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow();
    const anonymous = await app.post('/api/v1/tasks', { payload: slackPayload() });
    assert.equal(anonymous.status, 401, JSON.stringify(anonymous.body));
    assert.equal(anonymous.headers.get('www-authenticate'), 'Bearer');
    assert.deepEqual(anonymous.body, { detail: 'Not authenticated' });
    const garbage = await app.post('/api/v1/tasks', { payload: slackPayload() }, { token: 'not.a.jwt' });
    assert.equal(garbage.status, 401);
    // Every task route, including for ids that do not exist.
    const id = randomUUID();
    for (const [method, path] of [
      ['GET', `/api/v1/tasks/${id}`],
      ['DELETE', `/api/v1/tasks/${id}`],
      ['GET', `/api/v1/tasks/${id}/logs`],
    ] as const) {
      const response = await app.request(method, path);
      assert.equal(response.status, 401, `${method} ${path}`);
    }
    const afterwards = await app.db.selectFrom('tasks').select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow();
    assert.equal(afterwards.n, before.n, 'nothing stored');
  });

  test("a task is scoped to the creating user's tenant", async () => {
    const task = await createTask({ payload: slackPayload() });
    const row = await app.db.selectFrom('tasks').select(['tenant_id', 'created_by']).where('id', '=', task.id).executeTakeFirstOrThrow();
    assert.equal(row.tenant_id, user.tenantId);
    assert.equal(row.created_by, user.userId);
    assert.ok(!('tenant_id' in task), 'the tenant is not part of the task JSON');
  });

  test('creation returns 201, status queued and the full task JSON', async () => {
    const payload = slackPayload('Your message here');
    const before = Date.now();
    const task = await createTask({ payload });
    assertTaskShape(task);
    assert.equal(task.status, 'queued');
    assert.equal(task.kind, 'task');
    assert.deepEqual(task.payload, payload);
    assert.equal(task.result, null);
    assert.equal(task.callback_url, null);
    assert.equal(task.retry_count, 0);
    assert.equal(task.max_retries, 0, 'max_retries defaults to 0');
    assert.equal(task.priority, 0, 'priority defaults to 0');
    assert.equal(task.timeout_seconds, null);
    assert.equal(task.on_success_next_task, null);
    assert.equal(task.next_task_id, null);
    assert.equal(task.scheduled_for, null, 'runs now');
    assert.equal(task.started_at, null);
    assert.equal(task.finished_at, null);
    const created = Date.parse(task.created_at);
    assert.ok(Math.abs(created - before) < 5_000, `created_at ${task.created_at} is now`);
    assert.ok(Date.parse(task.updated_at) >= created);
  });

  test('GET returns the same task', async () => {
    const task = await createTask({
      payload: slackPayload(),
      max_retries: 2,
      timeout_seconds: 30,
      delay_seconds: LATER,
      on_success_next_task: { payload: slackPayload('next') },
    });
    const fetched = await getTask(task.id);
    assertTaskShape(fetched);
    assert.deepEqual(fetched, task);
  });

  test('a task that does not exist is 404 "Task not found"', async () => {
    for (const [method, suffix] of [
      ['GET', ''],
      ['DELETE', ''],
      ['GET', '/logs'],
    ] as const) {
      const response = await app.request(method, `/api/v1/tasks/${randomUUID()}${suffix}`, { token: user.token });
      assert.equal(response.status, 404, `${method} ${suffix}`);
      assert.deepEqual(response.body, { detail: 'Task not found' });
    }
  });

  test('an id that is not a UUID is 404 "Task not found", never 500', async () => {
    const ids = [
      'not-a-uuid',
      '123',
      'null',
      `${randomUUID()}x`,
      randomUUID().replaceAll('-', ''),
      'zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz',
      encodeURIComponent("' or 1=1 --"),
      '%E2%98%83',
      'a'.repeat(300),
    ];
    for (const id of ids) {
      for (const [method, suffix] of [
        ['GET', ''],
        ['DELETE', ''],
        ['GET', '/logs'],
      ] as const) {
        const response = await app.request(method, `/api/v1/tasks/${id}${suffix}`, { token: user.token });
        assert.equal(response.status, 404, `${method} ${id}${suffix}: ${JSON.stringify(response.body)}`);
        assert.deepEqual(response.body, { detail: 'Task not found' }, `${method} ${id}${suffix}`);
      }
    }
  });

  test('canceling a queued task: status canceled, result says so, and it never runs', async () => {
    const message = `never sent ${randomUUID()}`;
    const task = await createTask({ payload: slackPayload(message), delay_seconds: LATER });
    const canceled = await app.delete(`/api/v1/tasks/${task.id}`, { token: user.token });
    assert.equal(canceled.status, 200, JSON.stringify(canceled.body));
    assertTaskShape(canceled.body);
    assert.equal(canceled.body.status, 'canceled');
    assert.deepEqual(canceled.body.result, { message: 'Task canceled by user' });
    assert.match(canceled.body.finished_at, ISO_UTC);
    assert.equal(canceled.body.scheduled_for, null, 'no longer scheduled');
    assert.deepEqual(await getTask(task.id), canceled.body, 'GET shows the canceled task');
    const again = await app.delete(`/api/v1/tasks/${task.id}`, { token: user.token });
    assert.equal(again.status, 409);
    assert.deepEqual(again.body, { detail: 'Task cannot be canceled in status canceled' });
    assert.ok(!slack.requests.some((request) => request.body?.text === message), 'Slack never heard of it');
  });

  test('task processing: queued → success, posted to Slack once', async () => {
    const payload = slackPayload(`Mission-critical notification ${randomUUID()}`, '#ops');
    const task = await createTask({ payload });
    const done = await waitForStatus(task.id, 'success');
    assertTaskShape(done);
    assert.deepEqual(done.result, { message: 'Successfully posted to Slack', channel: '#ops', slack_response_status: 200 });
    assert.equal(done.retry_count, 0);
    assert.ok(Date.parse(done.created_at) <= Date.parse(done.started_at));
    assert.ok(Date.parse(done.started_at) <= Date.parse(done.finished_at));
    const posts = slack.requests.filter((request) => request.body?.text === payload.message);
    assert.equal(posts.length, 1);
    assert.equal(posts[0]!.method, 'POST');
    assert.equal(posts[0]!.path, '/hook');
    assert.match(String(posts[0]!.headers['content-type']), /^application\/json/);
    assert.deepEqual(posts[0]!.body, { text: payload.message, channel: '#ops' });
  });

  test('task processing: a Slack error fails the task with the reason', async () => {
    const message = `slack is down ${randomUUID()}`;
    const previous = slack.reply;
    slack.reply = (request) => (request.body?.text === message ? { status: 500, body: 'boom' } : previous(request));
    try {
      const task = await createTask({ payload: slackPayload(message) });
      const failed = await waitForStatus(task.id, 'failed');
      assert.equal(failed.retry_count, 0);
      assert.match(JSON.stringify(failed.result), /500/, `the result says why: ${JSON.stringify(failed.result)}`);
      assert.match(failed.finished_at, ISO_UTC);
      const logs = await app.get(`/api/v1/tasks/${task.id}/logs`, { token: user.token });
      const messages = logs.body.map((entry: { message: string }) => entry.message);
      assert.ok(messages.some((m: string) => /^Task failed with error: .*500/.test(m)), messages.join(' | '));
      assert.ok(messages.includes('Task permanently failed after all retries'), messages.join(' | '));
    } finally {
      slack.reply = previous;
    }
  });

  test('multiple tasks for the same tenant each run once with their own payload', async () => {
    const payloads = Array.from({ length: 6 }, (_, index) => slackPayload(`batch ${index} ${randomUUID()}`, `#c${index}`));
    const tasks = await Promise.all(payloads.map((payload) => createTask({ payload })));
    assert.equal(new Set(tasks.map((task) => task.id)).size, tasks.length, 'distinct ids');
    for (const [index, task] of tasks.entries()) {
      const done = await waitForStatus(task.id, 'success');
      assert.deepEqual(done.payload, payloads[index]);
      assert.equal(done.result.channel, payloads[index]!.channel);
      assert.equal(slack.requests.filter((request) => request.body?.text === payloads[index]!.message).length, 1);
    }
  });

  test('max_retries, timeout_seconds and callback_url are stored as given', async () => {
    const callbackUrl = 'https://hooks.example.com/webhook/task-complete?source=autonomos';
    const task = await createTask({ payload: slackPayload(), max_retries: 3, timeout_seconds: 300, callback_url: callbackUrl, delay_seconds: LATER });
    for (const body of [task, await getTask(task.id)]) {
      assert.equal(body.max_retries, 3);
      assert.equal(body.timeout_seconds, 300);
      assert.equal(body.callback_url, callbackUrl);
      assert.equal(body.retry_count, 0);
    }
    const row = await app.db
      .selectFrom('tasks')
      .select(['max_retries', 'timeout_seconds', 'callback_url'])
      .where('id', '=', task.id)
      .executeTakeFirstOrThrow();
    assert.deepEqual(row, { max_retries: 3, timeout_seconds: 300, callback_url: callbackUrl });
  });

  test('delay_seconds schedules the task about that far ahead, still queued', async () => {
    const before = Date.now();
    const task = await createTask({ payload: slackPayload(), delay_seconds: 120 });
    const after = Date.now();
    assert.equal(task.status, 'queued');
    assert.match(task.scheduled_for, ISO_UTC);
    const at = Date.parse(task.scheduled_for);
    assert.ok(at >= before + 119_000 && at <= after + 121_000, `scheduled_for ${task.scheduled_for} is now + 120 s`);
    assert.equal((await getTask(task.id)).status, 'queued', 'not run early');
  });

  test('run_at schedules the task at exactly that time, normalised to UTC', async () => {
    const runAt = new Date(Math.floor(Date.now() / 1000) * 1000 + 2 * 3600_000);
    const task = await createTask({ payload: slackPayload(), run_at: runAt.toISOString() });
    assert.equal(task.scheduled_for, runAt.toISOString());
    // The same instant written with an offset.
    const local = new Date(runAt.getTime() + 2 * 3600_000).toISOString().replace('Z', '+02:00');
    const offset = await createTask({ payload: slackPayload(), run_at: local });
    assert.equal(offset.scheduled_for, runAt.toISOString());
    assert.equal((await getTask(task.id)).status, 'queued');
  });

  test('GET /api/v1/tasks/{id}/logs returns the audit trail in order', async () => {
    const payload = slackPayload(`audited ${randomUUID()}`, '#audit');
    const task = await createTask({ payload });
    await waitForStatus(task.id, 'success');
    const response = await app.get(`/api/v1/tasks/${task.id}/logs`, { token: user.token });
    assert.equal(response.status, 200);
    assert.ok(Array.isArray(response.body));
    for (const entry of response.body) {
      assert.deepEqual(Object.keys(entry).sort(), ['id', 'message', 'task_id', 'tenant_id', 'timestamp']);
      assert.match(entry.id, UUID);
      assert.equal(entry.task_id, task.id);
      assert.equal(entry.tenant_id, user.tenantId);
      assert.match(entry.timestamp, ISO_UTC);
    }
    assert.deepEqual(
      response.body.map((entry: { message: string }) => entry.message),
      [
        `Task created by user ${user.userId} in tenant ${user.tenantId}`,
        'Task execution started',
        'Attempting to post message to Slack channel #audit',
        'Successfully posted to Slack with status 200',
      ],
    );
    const times = response.body.map((entry: { timestamp: string }) => Date.parse(entry.timestamp));
    assert.deepEqual(times, [...times].sort((a, b) => a - b), 'timestamps never go backwards');
  });

  test('the logs of a canceled scheduled task: created, scheduled, canceled', async () => {
    const task = await createTask({ payload: slackPayload(), delay_seconds: LATER });
    await app.delete(`/api/v1/tasks/${task.id}`, { token: user.token });
    const response = await app.get(`/api/v1/tasks/${task.id}/logs`, { token: user.token });
    assert.equal(response.status, 200);
    const messages = response.body.map((entry: { message: string }) => entry.message);
    assert.equal(messages.length, 3, messages.join(' | '));
    assert.match(messages[0], /^Task created by user /);
    assert.equal(messages[1], `Task scheduled to run at ${task.scheduled_for}`);
    assert.equal(messages[2], 'Task canceled by user request');
  });
});

describe('OpenAPI', () => {
  test('POST /api/v1/tasks documents its request body and the task JSON', async () => {
    const response = await app.get('/openapi.json');
    assert.equal(response.status, 200);
    const doc = response.body;
    const operation = doc.paths['/api/v1/tasks']?.post;
    assert.ok(operation, 'POST /api/v1/tasks is documented');
    assert.deepEqual(operation.security, [{ bearerAuth: [] }]);

    const body = operation.requestBody?.content?.['application/json']?.schema;
    assert.ok(body, 'a JSON request body');
    assert.equal(body.type, 'object');
    assert.deepEqual(body.required, ['payload']);
    for (const key of ['payload', 'callback_url', 'max_retries', 'priority', 'timeout_seconds', 'on_success_next_task', 'delay_seconds', 'run_at']) {
      assert.ok(body.properties?.[key], `request body documents ${key}`);
    }
    assert.equal(body.properties.max_retries.minimum, 0);
    assert.equal(body.properties.max_retries.maximum, 10);
    assert.equal(body.properties.priority.minimum, -10);
    assert.equal(body.properties.priority.maximum, 10);
    assert.match(JSON.stringify(body.properties.payload), /post_to_slack/);

    const created = operation.responses?.['201']?.content?.['application/json']?.schema;
    assert.deepEqual([...created.required].sort(), TASK_KEYS);
    assert.ok(operation.responses['422'], 'validation errors documented');
    for (const path of ['/api/v1/tasks/{id}', '/api/v1/tasks/{id}/logs']) assert.ok(doc.paths[path]?.get, `GET ${path}`);
    assert.ok(doc.paths['/api/v1/tasks/{id}']?.delete, 'DELETE /api/v1/tasks/{id}');

    // Every $ref in the document must resolve from the document root.
    const refs = JSON.stringify(doc).match(/"\$ref":"[^"]*"/g) ?? [];
    for (const ref of refs) {
      const pointer = JSON.parse(`{${ref}}`).$ref as string;
      assert.ok(pointer.startsWith('#/'), `${pointer} is local`);
      let target: any = doc;
      for (const part of pointer.slice(2).split('/')) target = target?.[part.replaceAll('~1', '/').replaceAll('~0', '~')];
      assert.ok(target, `${pointer} resolves in /openapi.json`);
    }
  });
});
