import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sql, type RawBuilder } from 'kysely';
import { createApp } from '../src/http/app.js';
import { createLogger } from '../src/logger.js';
import { startTestApp, type TestApp } from './helpers/app.js';
import { registerAndLogin, uniqueSuffix, type RegisteredUser } from './helpers/users.js';

// Text PostgreSQL cannot store as sent (NUL anywhere, a lone UTF-16 surrogate) in any body: a 422
// naming where it is, before any schema, hash or query runs. Bodies are sent as raw JSON text, since
// `\u0000` and `\ud800` are JSON escapes a client can always write. No worker runs here.

const PASSWORD = 'correct horse battery';
const NUL = /NUL/;
const SURROGATE = /surrogate/;

let app: TestApp;
let user: RegisteredUser;

before(async () => {
  app = await startTestApp();
  user = await registerAndLogin(app, 'input');
});

after(async () => {
  await app?.close();
});

function postJsonText(path: string, text: string, token?: string) {
  return app.request('POST', path, { body: text, headers: { 'Content-Type': 'application/json' }, ...(token ? { token } : {}) });
}

/** The response is the one-issue 422 the body validators give unstorable text. */
function assertRefused(response: { status: number; body: any }, loc: (string | number)[], msg: RegExp) {
  assert.equal(response.status, 422, JSON.stringify(response.body));
  assert.equal(response.body.detail.length, 1, JSON.stringify(response.body));
  const [issue] = response.body.detail;
  assert.deepEqual(issue.loc, loc);
  assert.match(issue.msg, msg);
  assert.equal(issue.type, 'invalid_text');
}

async function taskCount(tenantId: string): Promise<number> {
  const { rows } = await sql<{ n: number }>`select count(*)::int as n from tasks where tenant_id = ${tenantId}`.execute(app.db);
  return rows[0]!.n;
}

describe('routes that need no login', () => {
  test('login with NUL in the email or a lone surrogate in the password is 422', async () => {
    assertRefused(await postJsonText('/api/v1/auth/login', `{"email":"a\\u0000@x.test","password":"${PASSWORD}"}`), ['body', 'email'], NUL);
    assertRefused(await postJsonText('/api/v1/auth/login', `{"email":"${user.email}","password":"\\ud800${PASSWORD}"}`), ['body', 'password'], SURROGATE);
  });

  test('the OAuth2 form with a NUL in the username is 422', async () => {
    const response = await app.request('POST', '/token', { body: new URLSearchParams({ username: `${user.email}\u0000`, password: PASSWORD }) });
    assertRefused(response, ['body', 'username'], NUL);
  });

  test('both register routes refuse such text and store nothing: the same email registers cleanly afterwards', async () => {
    const email = `hostile-${uniqueSuffix()}@example.com`;
    const legacyEmail = `hostile-${uniqueSuffix()}@example.com`;
    assertRefused(
      await postJsonText('/api/v1/auth/register', `{"name":"\\ud800 ${uniqueSuffix()}","email":"${email}","password":"${PASSWORD}"}`),
      ['body', 'name'],
      SURROGATE,
    );
    assertRefused(
      await postJsonText('/users/register', `{"tenant_name":"t ${uniqueSuffix()}","email":"${legacyEmail}","password":"${PASSWORD}\\udc00"}`),
      ['body', 'password'],
      SURROGATE,
    );
    assertRefused(
      await postJsonText('/api/v1/auth/register', `{"name":"t ${uniqueSuffix()}","email":"${email}","password":"${PASSWORD}","x\\u0000":1}`),
      ['body', 'x\u0000', '[key]'],
      NUL,
    );

    for (const [path, body] of [
      ['/api/v1/auth/register', { name: `clean ${uniqueSuffix()}`, email, password: PASSWORD }],
      ['/users/register', { tenant_name: `clean ${uniqueSuffix()}`, email: legacyEmail, password: PASSWORD }],
    ] as const) {
      const registered = await app.post(path, body);
      assert.equal(registered.status, 201, JSON.stringify(registered.body));
    }
  });

  test('a string nested a hundred thousand levels deep is found, with its full location', async () => {
    const depth = 100_000;
    const response = await postJsonText('/api/v1/auth/login', `{"email":${'['.repeat(depth)}"\\u0000"${']'.repeat(depth)},"password":"x"}`);
    assert.equal(response.status, 422);
    const [issue] = response.body.detail;
    assert.equal(issue.type, 'invalid_text');
    assert.deepEqual(issue.loc.slice(0, 3), ['body', 'email', 0]);
    assert.equal(issue.loc.length, depth + 2);
  });
});

describe('task creation', () => {
  const slack = (message: string) => `{"action":"post_to_slack","channel":"#general","message":"${message}"}`;
  const cases: { name: string; body: string; loc: (string | number)[]; msg: RegExp }[] = [
    { name: 'a lone surrogate in the message', body: `{"payload":${slack('\\ud800')}}`, loc: ['body', 'payload', 'message'], msg: SURROGATE },
    { name: 'NUL in the message', body: `{"payload":${slack('a\\u0000b')}}`, loc: ['body', 'payload', 'message'], msg: NUL },
    {
      name: 'NUL in a payload key',
      body: `{"payload":{"action":"post_to_slack","channel":"#general","message":"ok","extra\\u0000":1}}`,
      loc: ['body', 'payload', 'extra\u0000', '[key]'],
      msg: NUL,
    },
    {
      name: 'NUL in a chained task',
      body: `{"payload":${slack('first')},"on_success_next_task":{"payload":${slack('\\u0000')}}}`,
      loc: ['body', 'on_success_next_task', 'payload', 'message'],
      msg: NUL,
    },
    {
      name: 'a lone surrogate in an array element',
      body: `{"payload":{"action":"post_to_slack","channel":"#general","message":"ok","tags":["fine","\\udfff"]}}`,
      loc: ['body', 'payload', 'tags', 1],
      msg: SURROGATE,
    },
  ];
  for (const { name, body, loc, msg } of cases) {
    test(`${name} is 422 and stores no task`, async () => {
      const before = await taskCount(user.tenantId);
      assertRefused(await postJsonText('/api/v1/tasks', body, user.token), loc, msg);
      assert.equal(await taskCount(user.tenantId), before);
    });
  }

  test('well-formed text outside the BMP, and U+FFFD itself, are accepted', async () => {
    const response = await postJsonText('/api/v1/tasks', `{"payload":${slack('deploy \\ud83d\\ude80 done \\ufffd')}}`, user.token);
    assert.equal(response.status, 201, JSON.stringify(response.body));
    assert.equal(response.body.payload.message, 'deploy \u{1f680} done \ufffd');
  });
});

describe('text the database refuses anyway', () => {
  // Validation refuses such text before any query; the same app with one extra route that sends
  // it to PostgreSQL regardless shows what a gap in validation would turn into.
  const refusals: Record<string, RawBuilder<unknown>> = {
    '22021': sql`select ${'a\u0000b'}::text`,
    '22P05': sql`select ${'{"m":"a\\u0000b"}'}::jsonb`,
    '22P02': sql`select ${'{"m":"\\ud800"}'}::jsonb`,
  };

  for (const sqlstate of Object.keys(refusals)) {
    test(`SQLSTATE ${sqlstate} is 422 {"detail": ...}, logged as a warning rather than an error`, async () => {
      const lines: Record<string, unknown>[] = [];
      const logger = createLogger({ write: (line) => void lines.push(JSON.parse(line)) });
      const inProcess = createApp({ db: app.db, boss: app.boss, config: app.config, logger, notifications: app.notifications, metrics: app.metrics });
      inProcess.post('/refused-text', async (c) => {
        await refusals[sqlstate]!.execute(app.db);
        return c.json({});
      });

      const response = await inProcess.request('/refused-text', { method: 'POST' });
      assert.equal(response.status, 422);
      const body = (await response.json()) as { detail: unknown };
      assert.equal(typeof body.detail, 'string');
      assert.match(body.detail as string, /NUL.*surrogate/);
      assert.deepEqual(lines.filter((line) => line.level === 'error'), []);
      assert.ok(lines.some((line) => line.level === 'warn' && line.sqlstate === sqlstate), JSON.stringify(lines));
    });
  }
});
