import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { startTestApp, type TestApp, type TestResponse } from './helpers/app.js';
import { registerAndLogin, type RegisteredUser } from './helpers/users.js';

// Issue 3: a task that cannot run is never stored. Every invalid body is a 422 listing the
// failing fields FastAPI-style, and leaves no task, no audit entry and no pg-boss job behind.
// No worker runs here: nothing should ever be picked up.

const SLACK = { action: 'post_to_slack', channel: '#general', message: 'Your message here' };
const valid = (extra: Record<string, unknown> = {}) => ({ payload: { ...SLACK }, ...extra });
const withPayload = (payload: unknown) => ({ payload });
const withoutKey = (key: string) => {
  const { [key]: _omitted, ...rest } = SLACK as Record<string, unknown>;
  return rest;
};

/** A chain of `depth` follow-up tasks under one root task; `leaf` is merged into the last one. */
function chain(depth: number, leaf: Record<string, unknown> = {}): Record<string, unknown> {
  let next: Record<string, unknown> = { payload: { ...SLACK, message: `step ${depth}` }, ...leaf };
  for (let step = depth - 1; step >= 0; step -= 1) next = { payload: { ...SLACK, message: `step ${step}` }, on_success_next_task: next };
  return next;
}

interface Case {
  name: string;
  body: unknown;
  /** The loc one of the listed issues must have. */
  loc: (string | number)[];
}

const inAnHour = () => new Date(Date.now() + 3600_000).toISOString();
const NESTED = ['body', 'on_success_next_task'];

const CASES: Case[] = [
  // payload
  { name: 'missing payload', body: { max_retries: 1 }, loc: ['body', 'payload'] },
  // unknown fields: a typo must not pass as if the field had been left out
  { name: 'misspelt max_retry', body: { payload: SLACK, max_retry: 3 }, loc: ['body', 'max_retry'] },
  { name: 'unknown field in a chained task', body: { payload: SLACK, on_success_next_task: { payload: SLACK, delay: 5 } }, loc: [...NESTED, 'delay'] },
  { name: 'payload a string', body: withPayload('post_to_slack #general hi'), loc: ['body', 'payload'] },
  { name: 'payload a number', body: withPayload(42), loc: ['body', 'payload'] },
  { name: 'payload null', body: withPayload(null), loc: ['body', 'payload'] },
  { name: 'payload an array', body: withPayload([SLACK]), loc: ['body', 'payload'] },
  { name: 'missing action', body: withPayload(withoutKey('action')), loc: ['body', 'payload', 'action'] },
  { name: 'unknown action', body: withPayload({ ...SLACK, action: 'delete_everything' }), loc: ['body', 'payload', 'action'] },
  { name: 'action not a string', body: withPayload({ ...SLACK, action: 7 }), loc: ['body', 'payload', 'action'] },
  { name: 'action differs in case', body: withPayload({ ...SLACK, action: 'POST_TO_SLACK' }), loc: ['body', 'payload', 'action'] },
  { name: 'empty channel', body: withPayload({ ...SLACK, channel: '' }), loc: ['body', 'payload', 'channel'] },
  { name: 'channel not a string', body: withPayload({ ...SLACK, channel: 42 }), loc: ['body', 'payload', 'channel'] },
  { name: 'channel null', body: withPayload({ ...SLACK, channel: null }), loc: ['body', 'payload', 'channel'] },
  { name: 'whitespace-only channel', body: withPayload({ ...SLACK, channel: ' \t ' }), loc: ['body', 'payload', 'channel'] },
  { name: 'missing message', body: withPayload(withoutKey('message')), loc: ['body', 'payload', 'message'] },
  { name: 'empty message', body: withPayload({ ...SLACK, message: '' }), loc: ['body', 'payload', 'message'] },
  { name: 'message not a string', body: withPayload({ ...SLACK, message: { text: 'hi' } }), loc: ['body', 'payload', 'message'] },
  // max_retries: integer 0-10
  { name: 'max_retries -1', body: valid({ max_retries: -1 }), loc: ['body', 'max_retries'] },
  { name: 'max_retries 11', body: valid({ max_retries: 11 }), loc: ['body', 'max_retries'] },
  { name: 'max_retries 1.5', body: valid({ max_retries: 1.5 }), loc: ['body', 'max_retries'] },
  { name: 'max_retries "3"', body: valid({ max_retries: '3' }), loc: ['body', 'max_retries'] },
  { name: 'max_retries null', body: valid({ max_retries: null }), loc: ['body', 'max_retries'] },
  { name: 'max_retries true', body: valid({ max_retries: true }), loc: ['body', 'max_retries'] },
  // timeout_seconds: integer 1-86400
  { name: 'timeout_seconds 0', body: valid({ timeout_seconds: 0 }), loc: ['body', 'timeout_seconds'] },
  { name: 'timeout_seconds 86401', body: valid({ timeout_seconds: 86_401 }), loc: ['body', 'timeout_seconds'] },
  { name: 'timeout_seconds 2.5', body: valid({ timeout_seconds: 2.5 }), loc: ['body', 'timeout_seconds'] },
  { name: 'timeout_seconds "10"', body: valid({ timeout_seconds: '10' }), loc: ['body', 'timeout_seconds'] },
  // callback_url: absolute http(s)
  { name: 'callback_url relative', body: valid({ callback_url: '/webhook/task-complete' }), loc: ['body', 'callback_url'] },
  { name: 'callback_url ftp://', body: valid({ callback_url: 'ftp://example.com/hook' }), loc: ['body', 'callback_url'] },
  { name: 'callback_url javascript:', body: valid({ callback_url: 'javascript:alert(1)' }), loc: ['body', 'callback_url'] },
  { name: 'callback_url "not a url"', body: valid({ callback_url: 'not a url' }), loc: ['body', 'callback_url'] },
  { name: 'callback_url a number', body: valid({ callback_url: 123 }), loc: ['body', 'callback_url'] },
  // on_success_next_task: a complete task body, validated recursively
  {
    name: 'chained task with an empty channel',
    body: valid({ on_success_next_task: { payload: { ...SLACK, channel: '' } } }),
    loc: [...NESTED, 'payload', 'channel'],
  },
  {
    name: 'chained task without payload',
    body: valid({ on_success_next_task: { max_retries: 1 } }),
    loc: [...NESTED, 'payload'],
  },
  {
    name: 'third follow-up of a chain with max_retries 99',
    body: chain(3, { max_retries: 99 }),
    loc: [...NESTED, 'on_success_next_task', 'on_success_next_task', 'max_retries'],
  },
  {
    name: 'third follow-up of a chain with an unknown action',
    body: chain(3, { payload: { ...SLACK, action: 'rm_rf' } }),
    loc: [...NESTED, 'on_success_next_task', 'on_success_next_task', 'payload', 'action'],
  },
  { name: 'on_success_next_task a string', body: valid({ on_success_next_task: 'post the next thing' }), loc: NESTED },
  { name: 'on_success_next_task an array', body: valid({ on_success_next_task: [valid()] }), loc: NESTED },
  { name: 'on_success_next_task a number', body: valid({ on_success_next_task: 1 }), loc: NESTED },
  // scheduling
  { name: 'delay_seconds -1', body: valid({ delay_seconds: -1 }), loc: ['body', 'delay_seconds'] },
  { name: 'delay_seconds 1.5', body: valid({ delay_seconds: 1.5 }), loc: ['body', 'delay_seconds'] },
  { name: 'delay_seconds "10"', body: valid({ delay_seconds: '10' }), loc: ['body', 'delay_seconds'] },
  { name: 'run_at not a timestamp', body: valid({ run_at: 'tomorrow at noon' }), loc: ['body', 'run_at'] },
  { name: 'run_at a number', body: valid({ run_at: Date.now() + 60_000 }), loc: ['body', 'run_at'] },
  { name: 'run_at in the past', body: valid({ run_at: '2001-01-01T00:00:00Z' }), loc: ['body', 'run_at'] },
  {
    name: 'chained task with run_at in the past',
    body: valid({ on_success_next_task: valid({ run_at: '2001-01-01T00:00:00Z' }) }),
    loc: [...NESTED, 'run_at'],
  },
  // the body itself
  { name: 'body a JSON array', body: [valid()], loc: ['body'] },
  { name: 'body a JSON string', body: 'post to slack please', loc: ['body'] },
  { name: 'body a JSON number', body: 42, loc: ['body'] },
  { name: 'body JSON null', body: null, loc: ['body'] },
];

let app: TestApp;
let user: RegisteredUser;

before(async () => {
  // Without the task body limit, so that huge and deeply nested bodies reach the validation itself.
  app = await startTestApp({ env: { MAX_TASK_PAYLOAD_BYTES: '0' } });
  user = await registerAndLogin(app, 'validation');
});

after(async () => {
  await app.close();
});

interface Counts {
  tasks: number;
  logs: number;
  jobs: number;
}

/** Everything a task creation writes: task rows, audit rows, and pg-boss jobs (all queues; pgboss.job is the partitioned parent). */
async function counts(): Promise<Counts> {
  const { rows } = await sql<Counts>`
    select (select count(*)::int from tasks) as tasks,
           (select count(*)::int from task_logs) as logs,
           (select count(*)::int from pgboss.job) as jobs`.execute(app.db);
  return rows[0]!;
}

function post(body: unknown, headers?: Record<string, string>): Promise<TestResponse> {
  return app.request('POST', '/api/v1/tasks', { token: user.token, json: body, ...(headers ? { headers } : {}) });
}

/** A FastAPI-style validation answer: 422, `detail` a non-empty array of `{loc, msg, type}` under `body`. */
function assertValidationError(response: TestResponse, label: string): { loc: (string | number)[]; msg: string; type: string }[] {
  assert.equal(response.status, 422, `${label}: ${JSON.stringify(response.body)}`);
  assert.match(response.headers.get('content-type') ?? '', /^application\/json/, label);
  const detail = response.body.detail;
  assert.ok(Array.isArray(detail) && detail.length > 0, `${label}: detail is a non-empty array: ${JSON.stringify(response.body)}`);
  for (const issue of detail) {
    assert.deepEqual(Object.keys(issue).sort(), ['loc', 'msg', 'type'], label);
    assert.ok(Array.isArray(issue.loc), label);
    assert.equal(issue.loc[0], 'body', `${label}: loc starts at the body`);
    for (const part of issue.loc) assert.ok(typeof part === 'string' || typeof part === 'number', label);
    assert.equal(typeof issue.msg, 'string', label);
    assert.ok(issue.msg.length > 0, label);
    assert.equal(typeof issue.type, 'string', label);
  }
  return detail;
}

describe('POST /api/v1/tasks refuses what cannot run, storing nothing', () => {
  test('the row counters see a valid creation (so the checks below can fail)', async () => {
    const before = await counts();
    const created = await post(valid());
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const afterwards = await counts();
    assert.equal(afterwards.tasks, before.tasks + 1);
    assert.ok(afterwards.logs > before.logs, 'an audit entry is written');
    assert.equal(afterwards.jobs, before.jobs + 1, 'a pg-boss job is written');
  });

  test(`${CASES.length} distinct invalid bodies (at least 30)`, () => {
    assert.ok(CASES.length >= 30);
    assert.equal(new Set(CASES.map((c) => JSON.stringify(c.body))).size, CASES.length, 'the bodies are distinct');
  });

  for (const c of CASES) {
    test(`422: ${c.name} → loc ${JSON.stringify(c.loc)}`, async () => {
      const before = await counts();
      const detail = assertValidationError(await post(c.body), c.name);
      assert.ok(
        detail.some((issue) => JSON.stringify(issue.loc) === JSON.stringify(c.loc)),
        `${c.name}: expected an issue at ${JSON.stringify(c.loc)}, got ${JSON.stringify(detail)}`,
      );
      // The message names the field it is about (a nested task's own refusal says "task").
      const field = c.loc.at(-1);
      if (typeof field === 'string' && field !== 'body' && field !== 'on_success_next_task') {
        assert.ok(detail.some((issue) => issue.msg.includes(field)), `${c.name}: a message names ${field}: ${JSON.stringify(detail)}`);
      }
      assert.deepEqual(await counts(), before, `${c.name}: nothing stored`);
    });
  }

  test('422: both delay_seconds and run_at (loc run_at)', async () => {
    const before = await counts();
    const detail = assertValidationError(await post(valid({ delay_seconds: 10, run_at: inAnHour() })), 'both');
    assert.deepEqual(detail.map((issue) => issue.loc), [['body', 'run_at']]);
    assert.match(detail[0]!.msg, /delay_seconds/);
    assert.deepEqual(await counts(), before);
  });

  test('422: every failing field is listed, not just the first', async () => {
    const before = await counts();
    const detail = assertValidationError(
      await post({ payload: { ...SLACK, channel: '' }, max_retries: 11, callback_url: 'ftp://x', timeout_seconds: 0 }),
      'several',
    );
    const locs = detail.map((issue) => JSON.stringify(issue.loc));
    for (const loc of [['body', 'payload', 'channel'], ['body', 'max_retries'], ['body', 'callback_url'], ['body', 'timeout_seconds']]) {
      assert.ok(locs.includes(JSON.stringify(loc)), `${JSON.stringify(loc)} listed in ${locs.join(' ')}`);
    }
    assert.deepEqual(await counts(), before);
  });

  test('422: a chain of 26 follow-up tasks (the limit is 25)', async () => {
    const before = await counts();
    const detail = assertValidationError(await post(chain(26)), 'depth 26');
    assert.match(detail.map((issue) => issue.msg).join(' '), /25/, 'the message names the limit');
    assert.deepEqual(await counts(), before);
  });

  test('422, not a crash: a chain nested 5000 deep', async () => {
    const before = await counts();
    // Too deep for JSON.stringify on this side, so the text is built by hand.
    const task = JSON.stringify(valid()).slice(0, -1);
    const text = `${task},"on_success_next_task":`.repeat(5000) + JSON.stringify(valid()) + '}'.repeat(5000);
    const response = await app.request('POST', '/api/v1/tasks', {
      token: user.token,
      headers: { 'Content-Type': 'application/json' },
      body: text,
    });
    assertValidationError(response, 'depth 5000');
    assert.deepEqual(await counts(), before);
  });

  test('422, not a crash: unknown payload fields nested 10000 deep', async () => {
    const before = await counts();
    const deep = '{"x":'.repeat(10_000) + '1' + '}'.repeat(10_000);
    const text = `{"payload":{"action":"post_to_slack","channel":"#c","message":"m","extra":${deep}}}`;
    const response = await app.request('POST', '/api/v1/tasks', {
      token: user.token,
      headers: { 'Content-Type': 'application/json' },
      body: text,
    });
    const detail = assertValidationError(response, 'payload depth 10000');
    assert.match(detail.map((issue) => issue.msg).join(' '), /64/, 'the message names the limit');
    assert.deepEqual(await counts(), before);
  });

  test('unknown payload fields nested within the limit are stored as given', async () => {
    const extra = { level: { level: { level: { value: [1, { deep: true }] } } } };
    const created = await post({ payload: { action: 'post_to_slack', channel: '#c', message: 'm', extra } });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.deepEqual(created.body.payload.extra, extra);
  });

  test('a chain of exactly 25 follow-up tasks is accepted and stored whole', async () => {
    const before = await counts();
    const created = await post(chain(25));
    assert.equal(created.status, 201, JSON.stringify(created.body));
    let depth = 0;
    for (let next = created.body.on_success_next_task; next; next = next.on_success_next_task) depth += 1;
    assert.equal(depth, 25);
    const fetched = await app.get(`/api/v1/tasks/${created.body.id}`, { token: user.token });
    assert.deepEqual(fetched.body.on_success_next_task, created.body.on_success_next_task);
    // Only the first task exists until it succeeds.
    const afterwards = await counts();
    assert.equal(afterwards.tasks, before.tasks + 1);
    assert.equal(afterwards.jobs, before.jobs + 1);
  });

  test('the edges of every range are accepted', async () => {
    const bodies = [
      valid({ max_retries: 0, timeout_seconds: 1 }),
      valid({ max_retries: 10, timeout_seconds: 86_400 }),
      valid({ delay_seconds: 0 }),
      valid({ run_at: inAnHour() }),
      valid({ callback_url: 'http://hooks.example.com/done', timeout_seconds: null, on_success_next_task: null }),
      valid({ callback_url: 'https://hooks.example.com/done?x=1' }),
      withPayload({ ...SLACK, channel: 'C0123456', message: 'x' }),
    ];
    for (const body of bodies) {
      const created = await post(body);
      assert.equal(created.status, 201, `${JSON.stringify(body)}: ${JSON.stringify(created.body)}`);
      assert.equal(created.body.status, 'queued');
    }
  });
});

describe('bodies that are not JSON objects at all', () => {
  test('400: malformed JSON', async () => {
    const before = await counts();
    for (const text of ['{"payload": ', '{payload: {}}', "{'payload': 1}", '']) {
      const response = await app.request('POST', '/api/v1/tasks', {
        token: user.token,
        headers: { 'Content-Type': 'application/json' },
        body: text,
      });
      assert.equal(response.status, 400, `${JSON.stringify(text)}: ${JSON.stringify(response.body)}`);
      assert.equal(typeof response.body.detail, 'string', JSON.stringify(text));
      assert.doesNotMatch(response.body.detail, /SyntaxError|at JSON\.parse|position/i, 'no parser internals');
    }
    assert.deepEqual(await counts(), before);
  });

  test('415: a valid JSON document sent with another content type, or none', async () => {
    const before = await counts();
    const text = JSON.stringify(valid());
    for (const contentType of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', undefined]) {
      const response = await app.request('POST', '/api/v1/tasks', {
        token: user.token,
        body: text,
        headers: contentType ? { 'Content-Type': contentType } : {},
      });
      // fetch labels a string body text/plain when no type is given; either way it is not JSON.
      assert.equal(response.status, 415, `${contentType}: ${JSON.stringify(response.body)}`);
      assert.equal(typeof response.body.detail, 'string');
    }
    assert.deepEqual(await counts(), before);
  });

  test('application/json with a charset, and +json media types, are JSON', async () => {
    for (const contentType of ['application/json; charset=utf-8', 'application/vnd.api+json']) {
      const response = await app.request('POST', '/api/v1/tasks', {
        token: user.token,
        body: JSON.stringify(valid()),
        headers: { 'Content-Type': contentType },
      });
      assert.equal(response.status, 201, `${contentType}: ${JSON.stringify(response.body)}`);
    }
  });
});
