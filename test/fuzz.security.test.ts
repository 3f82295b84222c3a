import assert from 'node:assert/strict';
import { createMetrics } from '../src/metrics/metrics.js';
import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { serve } from '@hono/node-server';
import fc from 'fast-check';
import { sql } from 'kysely';
import { createTokenIssuer } from '../src/auth/tokens.js';
import { createApp } from '../src/http/app.js';
import { createLogger } from '../src/logger.js';
import { BOSS_SCHEMA } from '../src/queue/boss.js';
import { TASK_QUEUE } from '../src/queue/task-queue.js';
import { startHeartbeat, type Heartbeat } from '../src/worker/heartbeat.js';
import { startTestApp, type TestApp } from './helpers/app.js';
import { startFakeDcl, type FakeDcl } from './helpers/dcl.js';
import { createTask, slackPayload, startFakeSlack, type FakeSlack } from './helpers/engine.js';
import { registerAndLogin, type RegisteredUser } from './helpers/users.js';

// Property-based fuzzing of every route over real HTTP: a few thousand generated requests (hostile
// and near-valid JSON bodies, form bodies, query strings, path ids, headers, credentials, methods).
// Every answer must be below 500, every 4xx JSON with a `detail`, and nothing may be logged as a
// warning or an error. A ledger records what the API said it stored (201/202 creations, 200 cancels, 204
// sign-outs); afterwards the database must hold exactly that, and the service must still serve.
// No worker runs, so every task stays as the API left it; a bare heartbeat stands in for one so
// /health/worker answers 200 rather than its no-worker 503.

/** Fixed, so a failure in CI replays locally; FUZZ_SEED explores other inputs. */
const SEED = Number(process.env.FUZZ_SEED ?? 20_250_611);

const PASSWORD = 'correct horse battery';

let testApp: TestApp;
let server: Server;
let baseUrl: string;
let dcl: FakeDcl;
let slack: FakeSlack;
let heartbeat: Heartbeat;
/** alice and bob send requests; carol's tenant is only ever named; dave signs out. */
let alice: RegisteredUser;
let bob: RegisteredUser;
let carol: RegisteredUser;
let dave: RegisteredUser;
/** Correctly signed tokens the service never issued, e.g. alice's user in bob's tenant. */
let forged: { label: string; token: string }[];
/** The app's warning and error log lines: a refusal that reached the database, an unhandled error. */
const problems: Record<string, unknown>[] = [];

interface Ledger {
  tenants: Set<string>;
  users: Map<string, { tenant_id: string; email: string; token_version: number }>;
  tasks: Map<string, { tenant_id: string; kind: string; status: string }>;
  /** GET /state calls the Legacy DCL should have seen, per tenant. */
  dclCalls: Map<string, number>;
}
let ledger: Ledger;
let carolBefore: unknown;

/** Requests sent and statuses seen, per route family. */
const stats = new Map<string, { requests: number; statuses: Map<number, number> }>();
/** The family of the well-formed requests the test sends around the generated ones. */
const SCRIPTED = 'scripted';

before(async () => {
  [dcl, slack] = await Promise.all([startFakeDcl(), startFakeSlack()]);
  testApp = await startTestApp({ env: { LEGACY_DCL_BASE_URL: dcl.url, SLACK_WEBHOOK_URL: slack.url } });
  const { db, boss, config, notifications, watch } = testApp;
  // The same app as the helper's, served with a logger the test reads.
  const logger = createLogger({ level: 'warn', write: (line) => void problems.push(JSON.parse(line)) });
  const app = createApp({ db, boss, config, logger, notifications, metrics: createMetrics() });
  server = await new Promise<Server>((resolve) => {
    const listening = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(listening as Server));
  });
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  heartbeat = await startHeartbeat(db, watch);

  [alice, bob, carol, dave] = await Promise.all([
    registerAndLogin(testApp, 'fuzz-a'),
    registerAndLogin(testApp, 'fuzz-b'),
    registerAndLogin(testApp, 'fuzz-c'),
    registerAndLogin(testApp, 'fuzz-d'),
  ]);
  for (const user of [alice, alice, bob, bob, carol]) await createTask(testApp, user.token, { payload: slackPayload('#fuzz') });

  const issuer = createTokenIssuer(config.jwtSecret, config.jwtExpireMinutes);
  const claims = { userId: alice.userId, tenantId: alice.tenantId, email: alice.email, tokenVersion: 0 };
  const unsignedPayload = Buffer.from(JSON.stringify({ user_id: alice.userId, tenant_id: alice.tenantId, ver: 0, sub: alice.email })).toString('base64url');
  forged = [
    { label: "alice's user in bob's tenant", token: await issuer.issue({ ...claims, tenantId: bob.tenantId }) },
    { label: 'a user that does not exist', token: await issuer.issue({ ...claims, userId: randomUUID() }) },
    { label: 'a token version not reached yet', token: await issuer.issue({ ...claims, tokenVersion: 7 }) },
    { label: 'another secret', token: await createTokenIssuer('x'.repeat(64), 30).issue(claims) },
    { label: 'alg none', token: `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${unsignedPayload}.` },
    { label: 'a tampered signature', token: tamper(alice.token) },
  ];

  ledger = { tenants: new Set(), users: new Map(), tasks: new Map(), dclCalls: new Map() };
  for (const row of await db.selectFrom('tenants').select('id').execute()) ledger.tenants.add(row.id);
  for (const row of await db.selectFrom('users').select(['id', 'tenant_id', 'email', 'token_version']).execute()) {
    ledger.users.set(row.id, { tenant_id: row.tenant_id, email: row.email, token_version: row.token_version });
  }
  for (const row of await db.selectFrom('tasks').select(['id', 'tenant_id', 'kind', 'status']).execute()) {
    ledger.tasks.set(row.id, { tenant_id: row.tenant_id, kind: row.kind, status: row.status });
  }
  carolBefore = await tenantSnapshot(carol.tenantId);
});

after(async () => {
  await heartbeat?.stop();
  server?.closeAllConnections();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  await testApp?.close();
  await Promise.all([dcl?.close(), slack?.close()]);
});

/** A JWT with one signature character changed (a middle one: the last carries padding bits). */
function tamper(token: string): string {
  const at = token.lastIndexOf('.') + 5;
  return token.slice(0, at) + (token[at] === 'A' ? 'B' : 'A') + token.slice(at + 1);
}

/** Every row of a tenant, in a stable order. */
async function tenantSnapshot(tenantId: string) {
  const { db } = testApp;
  return {
    tenant: await db.selectFrom('tenants').selectAll().where('id', '=', tenantId).execute(),
    users: await db.selectFrom('users').selectAll().where('tenant_id', '=', tenantId).orderBy('id').execute(),
    tasks: await db.selectFrom('tasks').selectAll().where('tenant_id', '=', tenantId).orderBy('id').execute(),
    logs: await db.selectFrom('task_logs').selectAll().where('tenant_id', '=', tenantId).orderBy('seq').execute(),
  };
}

// ---------------------------------------------------------------------------------------------
// Sending and checking one request

interface FuzzRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string | Uint8Array | URLSearchParams | FormData;
  /** The user whose issued token the Authorization header carries in a form the service accepts. */
  holder?: RegisteredUser;
}

interface Answer {
  status: number;
  json: any;
}

const AUTH_PATHS = ['/users/register', '/api/v1/auth/register', '/token', '/api/v1/auth/login'];
/** Paths that answer without a login (Hono decodes percent-escapes in the path before routing). */
const PUBLIC_PATHS = new Set([...AUTH_PATHS, '/health/api', '/health/worker', '/openapi.json', '/docs', '/redoc', '/docs/assets/swagger-init.js']);

function routedPath(path: string): string {
  const { pathname } = new URL(path, baseUrl);
  try {
    return decodeURIComponent(pathname);
  } catch {
    return pathname;
  }
}

function preview(body: FuzzRequest['body']): string {
  if (body === undefined) return '(none)';
  if (body instanceof FormData) return `multipart ${JSON.stringify([...body.keys()])}`;
  const text = typeof body === 'string' ? body : body instanceof Uint8Array ? Buffer.from(body).toString('latin1') : body.toString();
  return text.length > 400 ? `${JSON.stringify(text.slice(0, 400))}… (${text.length} chars)` : JSON.stringify(text);
}

/** Sends one request, checks the answer and records what it stored. */
async function send(family: string, request: FuzzRequest): Promise<Answer> {
  const problemsBefore = problems.length;
  // GET and HEAD cannot carry a body in fetch.
  const body = request.method === 'GET' || request.method === 'HEAD' ? undefined : request.body;
  let response: Response;
  try {
    response = await fetch(`${baseUrl}${request.path}`, { method: request.method, headers: request.headers, body: body ?? null, redirect: 'manual' });
  } catch (error) {
    throw new Error(`no answer to ${request.method} ${request.path}: ${(error as Error).message}`, { cause: error });
  }
  const text = await response.text();
  const isJson = (response.headers.get('content-type') ?? '').includes('application/json');
  let json: any;
  if (isJson && text !== '') json = JSON.parse(text);
  const answer = { status: response.status, json };

  const describeExchange = () =>
    [
      `${request.method} ${request.path}`,
      `headers: ${JSON.stringify(request.headers).slice(0, 1500)}`,
      `body: ${preview(body)}`,
      `→ ${response.status} ${text.slice(0, 500)}`,
      `logged: ${JSON.stringify(problems.slice(problemsBefore)).slice(0, 3000)}`,
    ].join('\n');

  const familyStats = stats.get(family) ?? { requests: 0, statuses: new Map() };
  familyStats.requests += 1;
  familyStats.statuses.set(response.status, (familyStats.statuses.get(response.status) ?? 0) + 1);
  stats.set(family, familyStats);

  assert.ok(response.status < 500, `5xx:\n${describeExchange()}`);
  assert.equal(problems.length, problemsBefore, `logged a warning or error:\n${describeExchange()}`);
  // (A HEAD answer has no body.)
  if (response.status >= 400 && request.method !== 'HEAD') {
    assert.ok(isJson && json !== null && typeof json === 'object' && 'detail' in json, `4xx without a JSON detail:\n${describeExchange()}`);
  }
  if (response.status >= 200 && response.status < 300) record(request, answer, describeExchange);
  return answer;
}

function isTaskJson(value: any): boolean {
  return typeof value === 'object' && value !== null && typeof value.id === 'string' && (value.kind === 'task' || value.kind === 'aoa') && typeof value.status === 'string';
}

/** Updates the ledger from a 2xx, checking that it concerns only the holder's tenant. */
function record(request: FuzzRequest, answer: Answer, describeExchange: () => string): void {
  const { json } = answer;
  const path = routedPath(request.path);
  const holder = request.holder;
  if (request.method === 'OPTIONS' && answer.status === 204) return;
  if (!holder) assert.ok(PUBLIC_PATHS.has(path), `a protected route answered without an issued token:\n${describeExchange()}`);

  if (answer.status === 201 && json?.tenant?.id === json?.tenant_id && typeof json?.email === 'string') {
    assert.ok(!ledger.tenants.has(json.tenant_id), `a registration joined an existing tenant:\n${describeExchange()}`);
    ledger.tenants.add(json.tenant_id);
    ledger.users.set(json.id, { tenant_id: json.tenant_id, email: json.email, token_version: 0 });
    return;
  }
  if ((answer.status === 201 || answer.status === 202) && isTaskJson(json)) {
    assert.ok(holder, `a task was created without an issued token:\n${describeExchange()}`);
    assert.ok(!ledger.tasks.has(json.id), `a creation answered an existing task:\n${describeExchange()}`);
    assert.equal(json.status, 'queued', describeExchange());
    ledger.tasks.set(json.id, { tenant_id: holder.tenantId, kind: json.kind, status: 'queued' });
    return;
  }
  if (answer.status === 204 && request.method === 'POST' && path === '/api/v1/auth/logout') {
    assert.equal(holder?.userId, dave.userId, `only dave signs out:\n${describeExchange()}`);
    ledger.users.get(dave.userId)!.token_version += 1;
    return;
  }
  if (holder) assertHolderOnly(json, holder, describeExchange);
  if (request.method === 'DELETE' && isTaskJson(json)) {
    assert.equal(json.status, 'canceled', describeExchange());
    ledger.tasks.get(json.id)!.status = 'canceled';
  }
  if ((request.method === 'GET' || request.method === 'HEAD') && path === '/api/v1/aoa/state') {
    ledger.dclCalls.set(holder!.tenantId, (ledger.dclCalls.get(holder!.tenantId) ?? 0) + 1);
  }
}

/**
 * The answer (a task, the current user, audit entries) is the holder's tenant's. Payloads are
 * the tenant's own JSON and may hold any `tenant_id`, so only the service's own fields are read.
 */
function assertHolderOnly(json: unknown, holder: RegisteredUser, describeExchange: () => string): void {
  for (const item of Array.isArray(json) ? json : [json]) {
    if (typeof item !== 'object' || item === null) continue;
    if (isTaskJson(item)) {
      assert.equal(ledger.tasks.get(item.id)?.tenant_id, holder.tenantId, `another tenant's task:\n${describeExchange()}`);
    } else if ('tenant_id' in item) {
      assert.equal(item.tenant_id, holder.tenantId, `another tenant's data:\n${describeExchange()}`);
    }
    if ('task_id' in item) {
      assert.equal(ledger.tasks.get(item.task_id as string)?.tenant_id, holder.tenantId, `another tenant's audit entry:\n${describeExchange()}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Generators

/** Characters that break naive code: NUL, lone surrogates, bidi overrides, invisibles, escapes. */
const NASTY = [
  '\u0000', '\ud800', '\udfff', '\udbff\udfff', '\u202e', '\u2066', '\u200b', '\u200f', '\ufeff', '\ufffd', '\u0085', '\u2028',
  '\r', '\n', '\t', '\\', '"', "'", '%', '%00', '%zz', '../', '<', '&', '=', '?', '#', '/', ' ', 'Ａ', 'ß', 'İ', '\u0301', '😀',
];
const nastyUnit = fc.oneof(
  fc.constantFrom(...NASTY),
  fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }),
  fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 1 }),
);
const nastyString = fc.string({ unit: nastyUnit, maxLength: 30 });
/** Past every field's maximum; the longest are past the task body limit (64 KiB) and the body limit (1 MiB). */
const longString = fc
  .record({ unit: fc.constantFrom('a', 'é', '😀', '\u0000', '\ud800', ' '), length: fc.constantFrom(129, 256, 2_049, 40_001, 70_000, 1_100_000) })
  .map(({ unit, length }) => unit.repeat(length));
const anyString = fc.oneof({ weight: 6, arbitrary: nastyString }, { weight: 1, arbitrary: longString });
const edgeNumber = fc.constantFrom(
  0, -0, 1, -1, 0.5, 1.5, 10, 11, -10, -11, 86_400, 86_401, 31_536_000, 31_536_001, 2 ** 31, 2 ** 53, 2 ** 53 + 2, -(2 ** 53), 1e21, 1e308, -1e308, Number.MIN_VALUE,
);
const anyNumber = fc.oneof(edgeNumber, fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }));
const hostileKey = fc.oneof(
  nastyString,
  fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'payload', 'action', 'tenant_id', 'id', 'status', ''),
);
/** Any JSON value, with nasty strings and keys; shallow, deep nesting is in the raw texts. */
const hostileJson: fc.Arbitrary<unknown> = fc.letrec<{ value: unknown; array: unknown[]; object: Record<string, unknown> }>((tie) => ({
  value: fc.oneof({ depthSize: 'small' }, anyString, anyNumber, fc.boolean(), fc.constant(null), tie('array'), tie('object')),
  array: fc.array(tie('value'), { maxLength: 4 }),
  object: fc.dictionary(hostileKey, tie('value'), { maxKeys: 4 }),
})).value;
/** Values of the wrong type, or of the right type just out of range, for any known field. */
const typeConfusion = fc.constantFrom<unknown>(
  null, true, false, '', ' ', '1', '0', 'true', 'null', '1e999', [], [{}], {}, { $gt: '' }, ['post_to_slack'], 'post_to_slack', 'aoa_connect',
  '2030-01-01T00:00:00Z', '2000-01-01T00:00:00Z', 'tomorrow', 'javascript:alert(1)', 'file:///etc/passwd', 'http://127.0.0.1/x', 'http://[::1]/',
  'http://169.254.169.254/latest/meta-data', 'https://user:pw@example.com/', 'https://example.com/' + 'a'.repeat(2_100),
);
const fieldValue = fc.oneof(hostileJson, anyString, anyNumber, typeConfusion);

/** A field replaced by a generated value, deleted, added, or nothing changed. */
type Mutation = { op: 'keep' } | { op: 'set'; path: string[]; value: unknown } | { op: 'delete'; path: string[] };

function mutation(paths: string[][]): fc.Arbitrary<Mutation> {
  const path = fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...paths) }, { weight: 1, arbitrary: hostileKey.map((key) => [key]) });
  return fc.oneof(
    { weight: 2, arbitrary: fc.constant({ op: 'keep' as const }) },
    { weight: 5, arbitrary: fc.record({ op: fc.constant('set' as const), path, value: fieldValue }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('delete' as const), path }) },
  );
}

function mutate(base: Record<string, unknown>, change: Mutation): unknown {
  if (change.op === 'keep') return base;
  if (change.path.length === 0) return change.op === 'set' ? change.value : {};
  const copy = structuredClone(base);
  let target: Record<string, unknown> = copy;
  for (const key of change.path.slice(0, -1)) {
    const next = target[key];
    target = typeof next === 'object' && next !== null ? (next as Record<string, unknown>) : (target[key] = {});
  }
  const last = change.path.at(-1)!;
  // defineProperty, so that a key like __proto__ becomes a field of the JSON, not a prototype.
  if (change.op === 'set') Object.defineProperty(target, last, { value: change.value, enumerable: true, configurable: true, writable: true });
  else delete target[last];
  return copy;
}

/** A body and how its Content-Type is chosen: the one that fits it, none at all, or a given one. */
type BodySpec =
  | { kind: 'json'; value: unknown }
  /** Text sent as is; it is JSON text unless `mediaType` says otherwise. */
  | { kind: 'text'; text: string; mediaType?: string }
  | { kind: 'bytes'; bytes: number[] }
  | { kind: 'form'; fields: [string, string][] }
  | { kind: 'multipart'; fields: [string, string][]; file: boolean }
  | { kind: 'none' };
type ContentType = { kind: 'fitting' } | { kind: 'absent' } | { kind: 'given'; value: string };

const contentType: fc.Arbitrary<ContentType> = fc.oneof(
  { weight: 12, arbitrary: fc.constant({ kind: 'fitting' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'absent' as const }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('given' as const),
      value: fc.constantFrom(
        'application/json', 'application/json; charset=utf-8', 'APPLICATION/JSON', 'application/vnd.api+json', 'application/json;charset=latin1',
        'application/json, text/plain', 'application/jsonx', 'json', 'text/plain', 'text/html', 'application/xml', '*/*', '', ';', 'application/',
        'application/x-www-form-urlencoded', 'application/x-www-form-urlencoded; charset=utf-16', 'multipart/form-data',
        'multipart/form-data; boundary=fuzz', 'multipart/form-data; boundary=', 'multipart/mixed; boundary=x',
      ),
    }),
  },
);

function percentEncode(text: string): string {
  return [...Buffer.from(text, 'utf8')]
    .map((byte) => String.fromCharCode(byte))
    .map((char) => (/[A-Za-z0-9_.~-]/.test(char) ? char : `%${char.charCodeAt(0).toString(16).padStart(2, '0').toUpperCase()}`))
    .join('');
}

function encodeBody(spec: BodySpec, type: ContentType): { body?: FuzzRequest['body']; headers: Record<string, string> } {
  let body: FuzzRequest['body'];
  let fitting: string | undefined = 'application/json';
  switch (spec.kind) {
    case 'none':
      return { headers: type.kind === 'given' ? { 'Content-Type': type.value } : {} };
    case 'json':
      body = JSON.stringify(spec.value) ?? '';
      break;
    case 'text':
      body = spec.text;
      fitting = spec.mediaType ?? fitting;
      break;
    case 'bytes':
      body = Uint8Array.from(spec.bytes);
      break;
    case 'form':
      body = new URLSearchParams(spec.fields);
      fitting = 'application/x-www-form-urlencoded';
      break;
    case 'multipart': {
      const form = new FormData();
      for (const [name, value] of spec.fields) form.append(name, value);
      if (spec.file) form.append('username', new Blob(['file contents'], { type: 'text/plain' }), 'name.txt');
      body = form;
      // fetch writes the multipart Content-Type itself, with the boundary.
      fitting = undefined;
      break;
    }
  }
  if (type.kind === 'given') return { body, headers: { 'Content-Type': type.value } };
  if (type.kind === 'absent' && !(body instanceof FormData)) {
    // As bytes, fetch adds no Content-Type of its own.
    return { body: typeof body === 'string' || body instanceof URLSearchParams ? Buffer.from(body.toString()) : body, headers: {} };
  }
  return { body, headers: fitting ? { 'Content-Type': fitting } : {} };
}

const VALID_SLACK = '{"action":"post_to_slack","channel":"#c","message":"m"}';
/** JSON texts no JSON.stringify writes: malformed, duplicate keys, __proto__, AOA-only actions. */
const ODD_JSON = [
  '', ' ', '{', '}', '[', '{"payload":', 'null', 'true', '0', '[]', '[{}]', '"payload"', '{"a":1,}', "{'payload':1}", '\ufeff{}', '{}}',
  `{"payload":${VALID_SLACK}}garbage`, `{"payload":${VALID_SLACK}}{}`, `[{"payload":${VALID_SLACK}}]`, `{"payload":${VALID_SLACK},"payload":[]}`,
  `{"payload":{"action":"post_to_slack","channel":"#c","message":"m","action":"aoa_connect"}}`,
  `{"__proto__":{"payload":${VALID_SLACK}}}`, `{"payload":{"action":"post_to_slack","channel":"#c","message":"m","__proto__":{"admin":true}}}`,
  `{"payload":${VALID_SLACK},"__proto__":{"priority":99}}`, `{"payload":${VALID_SLACK},"constructor":{"prototype":{"x":1}}}`,
  '{"payload":{"action":"aoa_connect"}}', '{"payload":{"action":"aoa_reset","request_id":"x"}}', '{"payload":{"action":"aoa_toggle_dev_mode","enabled":true}}',
  `{"payload":${VALID_SLACK},"tenant_id":"00000000-0000-0000-0000-000000000000"}`, '{"payload":{"action":"post_to_slack","channel":"#c","message":"\\ud800"}}',
  '{"payload":{"action":"post_to_slack","channel":"#c","message":"\\u0000"}}', '{"payload":{"action":"post_to_slack","channel":"#c\\u202e","message":"m"}}',
  '{"payload":{"action":"post_to_slack","channel":"#c","message":"m","\\udc00":1}}',
];
const rawNumber = fc.constantFrom(
  '1e999', '-1e999', '123456789012345678901234567890', '1E400', '-0', '1.0', '0.1e1', '1e-400', '00', '01', '+1', '.5', '0x10', 'NaN', 'Infinity',
);
/** Arrays or objects nested up to 30,000 deep: past MAX_JSON_DEPTH, and far past any recursion's stack. */
const deepJson = fc
  .record({ depth: fc.oneof(fc.integer({ min: 1, max: 100 }), fc.integer({ min: 100, max: 30_000 })), open: fc.constantFrom('[', '{"a":') })
  .map(({ depth, open }) => `${open.repeat(depth)}0${(open === '[' ? ']' : '}').repeat(depth)}`);
/** on_success_next_task chains up to 300 long (25 are allowed). */
const longChain = fc
  .integer({ min: 20, max: 300 })
  .map((length) => `${`{"payload":${VALID_SLACK},"on_success_next_task":`.repeat(length)}{"payload":${VALID_SLACK}}${'}'.repeat(length)}`);
const rawTaskText = fc.oneof(
  fc.constantFrom(...ODD_JSON),
  longChain,
  fc
    .tuple(
      fc.constantFrom(
        `{"payload":${VALID_SLACK},"priority":$}`, '{"payload":{"action":"post_to_slack","channel":"#c","message":"m","extra":$}}',
        '{"payload":{"action":"post_to_slack","channel":"#c","message":$}}', '{"payload":$}', '$', `{"payload":${VALID_SLACK},"on_success_next_task":$}`,
        `{"payload":${VALID_SLACK},"delay_seconds":$}`, `{"payload":${VALID_SLACK},"timeout_seconds":$}`,
      ),
      fc.oneof(rawNumber, deepJson),
    )
    .map(([template, value]) => template.replace('$', value)),
);
/** Bytes that are not UTF-8 (overlong, encoded surrogates, past U+10FFFF, truncated), inside a JSON string. */
const badUtf8 = fc.constantFrom([0xff], [0xfe, 0xff], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82], [0x00], [0xef, 0xbb, 0xbf]);
function bytesIn(template: string) {
  return badUtf8.map((bytes) => {
    const [head, tail] = template.split('$') as [string, string];
    return { kind: 'bytes' as const, bytes: [...Buffer.from(head), ...bytes, ...Buffer.from(tail)] };
  });
}

/** Hostile JSON, odd JSON text, non-UTF-8 bytes, form bodies, or no body: for any route. */
const anyBody: fc.Arbitrary<BodySpec> = fc.oneof(
  { weight: 4, arbitrary: hostileJson.map((value) => ({ kind: 'json' as const, value })) },
  { weight: 2, arbitrary: rawTaskText.map((text) => ({ kind: 'text' as const, text })) },
  { weight: 1, arbitrary: bytesIn('{"email":"$","password":"x"}') },
  { weight: 1, arbitrary: fc.array(fc.tuple(hostileKey, anyString), { maxLength: 4 }).map((fields) => ({ kind: 'form' as const, fields })) },
  { weight: 1, arbitrary: fc.constant({ kind: 'none' as const }) },
);

const headerUnit = fc.oneof(fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 1 }), fc.constantFrom('\t', 'é', 'ÿ', '\u0080', '%00', '\\'));
const headerValue = fc.string({ unit: headerUnit, maxLength: 60 });
/** Headers a client may add: request ids, tenant hints, proxies, CORS, encodings. */
function extraHeaders(): fc.Arbitrary<Record<string, string>> {
  return fc.record(
    {
      'X-Request-ID': fc.oneof(headerValue, fc.constantFrom('req-1', 'a'.repeat(129), '../../x')),
      'X-Tenant-ID': fc.constantFrom(bob.tenantId, carol.tenantId, 'x', ''),
      'X-Forwarded-For': fc.constantFrom('1.2.3.4', '::1', 'garbage, 10.0.0.1', '', '127.0.0.1, 127.0.0.1'),
      Origin: fc.constantFrom('https://evil.example', 'null', 'http://localhost:3000', ''),
      'Access-Control-Request-Method': fc.constantFrom('POST', 'DELETE', 'PUT'),
      Accept: fc.constantFrom('application/json', 'text/html', '*/*', 'application/xml', ''),
      'Accept-Encoding': fc.constantFrom('gzip', 'br', 'identity', '*;q=0'),
      'Content-Encoding': fc.constantFrom('gzip', 'br', 'identity', 'x'),
      Cookie: headerValue,
      Range: fc.constantFrom('bytes=0-1', 'bytes=-1', 'x'),
    },
    { requiredKeys: [] },
  ) as fc.Arbitrary<Record<string, string>>;
}

interface Credential {
  label: string;
  header?: string;
  holder?: RegisteredUser;
}

/**
 * Authorization variants: `own` in accepted spellings, another tenant's user, and every way of
 * not being anyone (missing, Basic, garbage, forged, tampered, malformed).
 */
function credential(own: RegisteredUser, other?: RegisteredUser): fc.Arbitrary<Credential> {
  const valid = fc.constantFrom<Credential>(
    { label: 'own', header: `Bearer ${own.token}`, holder: own },
    { label: 'own, lower-case scheme', header: `bearer ${own.token}`, holder: own },
    { label: 'own, extra spaces', header: `Bearer   ${own.token}`, holder: own },
  );
  const invalid = fc.oneof(
    fc.constantFrom<Credential>(
      { label: 'missing' },
      { label: 'Basic', header: 'Basic x' },
      { label: 'Basic credentials', header: `Basic ${Buffer.from(`${own.email}:${PASSWORD}`).toString('base64')}` },
      { label: 'empty bearer', header: 'Bearer ' },
      { label: 'bare scheme', header: 'Bearer' },
      { label: 'no scheme', header: own.token },
      { label: 'other scheme', header: `Token ${own.token}` },
      { label: 'trailing word', header: `Bearer ${own.token} extra` },
      { label: 'two tokens', header: `Bearer ${own.token},${(other ?? own).token}` },
      { label: 'two credentials', header: `Bearer ${own.token}, Bearer ${own.token}` },
      { label: 'truncated', header: `Bearer ${own.token.slice(0, -10)}` },
      ...forged.map((token) => ({ label: `forged: ${token.label}`, header: `Bearer ${token.token}` })),
    ),
    headerValue.map((garbage) => ({ label: 'Bearer garbage', header: `Bearer ${garbage}` })),
    headerValue.map((garbage) => ({ label: 'garbage', header: garbage })),
  );
  const arbitraries: fc.WeightedArbitrary<Credential>[] = [
    { weight: 6, arbitrary: valid },
    { weight: 4, arbitrary: invalid },
  ];
  if (other) arbitraries.push({ weight: 2, arbitrary: fc.constant<Credential>({ label: 'other tenant', header: `Bearer ${other.token}`, holder: other }) });
  return fc.oneof(...arbitraries);
}

const queryString = fc.oneof(
  { weight: 4, arbitrary: fc.constant('') },
  { weight: 2, arbitrary: fc.dictionary(hostileKey, nastyString, { maxKeys: 4 }).map((params) => `?${new URLSearchParams(params)}`) },
  { weight: 1, arbitrary: fc.string({ unit: fc.constantFrom('a', '=', '&', '%', 'z', '0', '[', ']', '.', '+', ';'), maxLength: 20 }).map((raw) => `?${raw}`) },
  {
    weight: 1,
    arbitrary: fc.constantFrom('?', '?&&', '?a=%zz', '?%', '?a=1&a=2', '?id=../../etc/passwd', '?__proto__[x]=1', '?limit=-1&offset=1e999', `?${'x'.repeat(4_000)}`),
  },
);

/** The query strings that name another tenant: the tenant comes from the token alone. */
function tenantQuery(): fc.Arbitrary<string> {
  return fc.oneof({ weight: 6, arbitrary: queryString }, { weight: 1, arbitrary: fc.constant(`?tenant_id=${bob.tenantId}`) });
}

const anyMethod = fc.constantFrom('GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'PROPFIND');

function request(
  method: string,
  path: string,
  auth: Credential,
  extra: Record<string, string>,
  body: BodySpec,
  type: ContentType,
): FuzzRequest {
  const encoded = encodeBody(body, type);
  const headers: Record<string, string> = { ...extra, ...encoded.headers };
  if (auth.header !== undefined) headers.Authorization = auth.header;
  return { method, path, headers, ...(encoded.body !== undefined ? { body: encoded.body } : {}), ...(auth.holder ? { holder: auth.holder } : {}) };
}

/**
 * Runs `numRuns` generated values through `run` under a fixed seed (printed with any
 * counterexample). No shrinking: the server's state has moved on by then, so a smaller input
 * proves little, and the failing exchange is already in the error.
 */
async function fuzz<T>(seedOffset: number, numRuns: number, arbitrary: fc.Arbitrary<T>, run: (value: T) => Promise<void>): Promise<void> {
  await fc.assert(
    fc.asyncProperty(arbitrary, async (value) => {
      await run(value);
    }),
    { seed: SEED + seedOffset, numRuns, endOnFailure: true },
  );
}

/** A well-formed request, as a client would send it: checked and recorded, not counted as generated. */
function scripted(method: string, path: string, options: { user?: RegisteredUser; json?: unknown } = {}): Promise<Answer> {
  const auth: Credential = options.user ? { label: 'own', header: `Bearer ${options.user.token}`, holder: options.user } : { label: 'missing' };
  const body: BodySpec = options.json === undefined ? { kind: 'none' } : { kind: 'json', value: options.json };
  return send(SCRIPTED, request(method, path, auth, {}, body, { kind: 'fitting' }));
}

/**
 * Requests to one group of routes: generated values, and the request each stands for. That is
 * resolved when sent, since some name a task created so far.
 */
interface Family<T> {
  name: string;
  values: fc.Arbitrary<T>;
  toRequest(value: T): FuzzRequest;
}

function family<T>(name: string, values: fc.Arbitrary<T>, toRequest: (value: T) => FuzzRequest): Family<T> {
  return { name, values, toRequest };
}

function fuzzFamily<T>(routes: Family<T>, seedOffset: number, numRuns: number): Promise<void> {
  return fuzz(seedOffset, numRuns, routes.values, async (value) => {
    await send(routes.name, routes.toRequest(value));
  });
}

const TASK_FIELDS: string[][] = [
  [], ['payload'], ['payload', 'action'], ['payload', 'channel'], ['payload', 'message'], ['callback_url'], ['max_retries'], ['priority'],
  ['timeout_seconds'], ['delay_seconds'], ['run_at'], ['on_success_next_task'], ['on_success_next_task', 'payload'],
  ['on_success_next_task', 'payload', 'message'], ['on_success_next_task', 'priority'], ['on_success_next_task', 'callback_url'],
  ['tenant_id'], ['id'], ['status'], ['kind'], ['created_by'], ['payload', 'tenant_id'],
];

/** A valid task (sometimes with one follow-up), so that one mutation lands just beside validity. */
const validTask = (() => {
  const payload = fc.record({
    action: fc.constant('post_to_slack'),
    channel: fc.oneof(fc.constantFrom('#general', '#ops', 'C0123'), fc.stringMatching(/^#[a-z0-9-]{1,20}$/)),
    message: fc.oneof(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 40 }), fc.constant('deploy 🚀 done')),
  });
  const options = fc.record(
    {
      callback_url: fc.constantFrom('https://hooks.example.com/done', 'https://example.org/cb?x=1', 'HTTPS://Example.COM:443/a/../b', null),
      max_retries: fc.integer({ min: 0, max: 10 }),
      priority: fc.integer({ min: -10, max: 10 }),
      timeout_seconds: fc.option(fc.integer({ min: 1, max: 86_400 })),
      delay_seconds: fc.integer({ min: 0, max: 86_400 }),
      // Relative to now, so that a seed gives the same mix of past, near and too distant in any year.
      run_at: fc.integer({ min: -3_600, max: 400 * 86_400 }).map((seconds) => new Date(Date.now() + seconds * 1000).toISOString()),
    },
    { requiredKeys: [] },
  );
  const task = fc.tuple(payload, options).map(([p, o]) => ({ payload: p, ...o }));
  return fc.tuple(task, fc.option(task, { freq: 3 })).map(([first, next]) => (next ? { ...first, on_success_next_task: next } : first));
})();

/** `method` mostly, now and then any other. */
const mostly = (method: string) => fc.oneof({ weight: 12, arbitrary: fc.constant(method) }, { weight: 1, arbitrary: anyMethod });

function authFamily() {
  const tenantName = fc.oneof(fc.stringMatching(/^[A-Za-z][A-Za-z0-9 ]{3,24}$/), fc.string({ unit: 'grapheme', minLength: 1, maxLength: 30 }), nastyString);
  const email = fc.oneof(
    { weight: 3, arbitrary: fc.stringMatching(/^[a-z0-9]{1,16}@example\.(com|org)$/) },
    { weight: 1, arbitrary: fc.emailAddress() },
    { weight: 1, arbitrary: nastyString },
    { weight: 1, arbitrary: fc.constantFrom(alice.email, ` ${bob.email.toUpperCase()} `) },
  );
  const password = fc.oneof(fc.string({ unit: 'grapheme', minLength: 8, maxLength: 40 }), anyString, fc.constant(PASSWORD));
  const register = fc
    .record({ path: fc.constantFrom('/users/register', '/api/v1/auth/register'), name: tenantName, email, password })
    .chain(({ path, name, email: address, password: secret }) => {
      const nameKey = path === '/users/register' ? 'tenant_name' : 'name';
      const base = { [nameKey]: name, email: address, password: secret };
      return mutation([[], [nameKey], ['email'], ['password'], ['tenant_id'], ['tenant'], ['id']]).map((change) => ({
        path,
        body: { kind: 'json' as const, value: mutate(base, change) } as BodySpec,
      }));
    });
  const credentials = fc.oneof(
    fc.constant({ email: alice.email, password: PASSWORD }),
    fc.constant({ email: ` ${alice.email.toUpperCase()} `, password: PASSWORD }),
    fc.record({ email: fc.constantFrom(alice.email, bob.email), password }),
    fc.record({ email, password }),
  );
  const login = fc.tuple(credentials, mutation([[], ['email'], ['password'], ['username']])).map(([creds, change]) => ({
    path: '/api/v1/auth/login',
    body: { kind: 'json' as const, value: mutate(creds, change) } as BodySpec,
  }));
  const formFields = fc
    .tuple(credentials, fc.array(fc.tuple(fc.constantFrom('grant_type', 'scope', 'username', 'password', 'client_id'), anyString), { maxLength: 2 }), fc.boolean())
    .map(([creds, extra, dropPassword]): [string, string][] => [
      ['username', creds.email],
      ...(dropPassword ? [] : [['password', creds.password] as [string, string]]),
      ...extra,
    ]);
  const formText = fc.oneof(
    fc.constantFrom(
      'username=%zz&password=%', '%', '=', '&&&', 'username', `username=${alice.email}&username=x&password=${PASSWORD}`, `username[]=${alice.email}&password=${PASSWORD}`,
      `username.a=1&password=${PASSWORD}`, `username=${alice.email}%00&password=${PASSWORD}`, `username=${alice.email}&password=%ED%A0%80xxxxxxxx`,
      `username=${alice.email}&password=%FF%FE`, '__proto__=x&username=a&password=bbbbbbbb',
    ),
    fc.tuple(nastyString, nastyString).map(([user, secret]) => `username=${percentEncode(user)}&password=${percentEncode(secret)}`),
  );
  const token = fc.oneof(
    { weight: 4, arbitrary: formFields.map((fields) => ({ path: '/token', body: { kind: 'form' as const, fields } as BodySpec })) },
    { weight: 2, arbitrary: fc.tuple(formFields, fc.boolean()).map(([fields, file]) => ({ path: '/token', body: { kind: 'multipart' as const, fields, file } as BodySpec })) },
    { weight: 2, arbitrary: formText.map((text) => ({ path: '/token', body: { kind: 'text' as const, text, mediaType: 'application/x-www-form-urlencoded' } as BodySpec })) },
    { weight: 1, arbitrary: credentials.map((creds) => ({ path: '/token', body: { kind: 'json' as const, value: creds } as BodySpec })) },
  );
  const route = fc.oneof(
    { weight: 3, arbitrary: register },
    { weight: 2, arbitrary: login },
    { weight: 2, arbitrary: token },
    { weight: 1, arbitrary: fc.record({ path: fc.constantFrom(...AUTH_PATHS), body: anyBody }) },
  );
  return family(
    'sign-up and sign-in',
    fc.record({ route, method: mostly('POST'), auth: credential(alice, bob), extra: extraHeaders(), query: queryString, type: contentType }),
    ({ route, method, auth, extra, query, type }) => request(method, `${route.path}${query}`, auth, extra, route.body, type),
  );
}

function taskCreationFamily() {
  const body = fc.oneof(
    { weight: 6, arbitrary: fc.tuple(validTask, mutation(TASK_FIELDS)).map(([task, change]) => ({ kind: 'json' as const, value: mutate(task, change) }) as BodySpec) },
    { weight: 2, arbitrary: hostileJson.map((value) => ({ kind: 'json' as const, value }) as BodySpec) },
    { weight: 2, arbitrary: rawTaskText.map((text) => ({ kind: 'text' as const, text }) as BodySpec) },
    { weight: 1, arbitrary: bytesIn(`{"payload":{"action":"post_to_slack","channel":"#c","message":"$"}}`) },
    { weight: 1, arbitrary: anyBody },
  );
  const path = fc.oneof(
    { weight: 12, arbitrary: fc.constant('/api/v1/tasks') },
    { weight: 1, arbitrary: fc.constantFrom('/api/v1/tasks/', '/api/v1/tasks//', '/api/v1//tasks', '/API/V1/TASKS') },
  );
  return family(
    'task creation',
    fc.record({ body, method: mostly('POST'), path, auth: credential(alice, bob), extra: extraHeaders(), query: tenantQuery(), type: contentType }),
    (value) => request(value.method, `${value.path}${value.query}`, value.auth, value.extra, value.body, value.type),
  );
}

function taskIdFamily() {
  const bobTasks = [...ledger.tasks].filter(([, task]) => task.tenant_id === bob.tenantId).map(([id]) => id);
  const carolTasks = [...ledger.tasks].filter(([, task]) => task.tenant_id === carol.tenantId).map(([id]) => id);
  const foreign = bobTasks[0]!;
  const literal = fc.oneof(
    fc.uuid(),
    fc.constantFrom(...bobTasks, ...carolTasks),
    fc.constantFrom(
      '00000000-0000-0000-0000-000000000000', 'ffffffff-ffff-ffff-ffff-ffffffffffff', '..', '../', '..%2F', '%2e%2e', '%2e%2e%2f..%2fusers%2fme', '%00', '%ff', '%',
      '%%', 'null', 'undefined', '0', '-1', '1e999', "'%20or%201=1--", '', '%20', 'a'.repeat(3_000), `${foreign}%00`, `{${foreign}}`, `urn:uuid:${foreign}`,
      foreign.toUpperCase(), foreign.replaceAll('-', ''), `${foreign}/..`,
    ),
    nastyString.map(percentEncode),
    nastyString,
  );
  // An index into the tasks known when the request is sent, the ones created so far included.
  const id = fc.oneof({ weight: 3, arbitrary: fc.nat().map((index) => ({ known: index })) }, { weight: 4, arbitrary: literal.map((text) => ({ literal: text })) });
  const route = fc.oneof(
    { weight: 4, arbitrary: fc.record({ method: fc.constant('GET'), suffix: fc.constant('') }) },
    { weight: 3, arbitrary: fc.record({ method: fc.constant('DELETE'), suffix: fc.constant('') }) },
    { weight: 4, arbitrary: fc.record({ method: fc.constant('GET'), suffix: fc.constant('/logs') }) },
    { weight: 2, arbitrary: fc.record({ method: anyMethod, suffix: fc.constantFrom('', '/logs', '/logs/', '/', '/x', '/logs/..') }) },
  );
  return family(
    'task ids',
    fc.record({ id, route, auth: credential(alice, bob), extra: extraHeaders(), query: queryString, body: anyBody, type: contentType }),
    (value) => {
      const ids = [...ledger.tasks.keys()];
      const text = 'known' in value.id ? ids[value.id.known % ids.length]! : value.id.literal;
      return request(value.route.method, `/api/v1/tasks/${text}${value.route.suffix}${value.query}`, value.auth, value.extra, value.body, value.type);
    },
  );
}

function aoaFamily() {
  const prodMode = fc
    .tuple(fc.record({ enabled: fc.boolean() }), mutation([[], ['enabled'], ['tenant_id']]))
    .map(([body, change]) => ({ kind: 'json' as const, value: mutate(body, change) }) as BodySpec);
  const route = fc.oneof(
    { weight: 3, arbitrary: fc.record({ method: fc.constant('GET'), path: fc.constant('/api/v1/aoa/state'), body: anyBody }) },
    { weight: 3, arbitrary: fc.record({ method: fc.constant('POST'), path: fc.constantFrom('/api/v1/aoa/run', '/api/v1/aoa/reset'), body: anyBody }) },
    {
      weight: 4,
      arbitrary: fc.record({
        method: fc.constant('POST'),
        path: fc.constant('/api/v1/aoa/prod-mode'),
        body: fc.oneof({ weight: 3, arbitrary: prodMode }, { weight: 1, arbitrary: anyBody }),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        method: anyMethod,
        path: fc.constantFrom('/api/v1/aoa/state', '/api/v1/aoa/run', '/api/v1/aoa/prod-mode', '/api/v1/aoa', '/api/v1/aoa/'),
        body: anyBody,
      }),
    },
    // The active job holds the tenant's AOA slot (409 until then); canceling it lets the next one in.
    { weight: 2, arbitrary: fc.record({ method: fc.constant('DELETE'), path: fc.constant('active AOA job'), body: anyBody }) },
  );
  return family(
    'aoa',
    fc.record({ route, auth: credential(alice, bob), extra: extraHeaders(), query: tenantQuery(), type: contentType }),
    ({ route, auth, extra, query, type }) => {
      let path: string = route.path;
      if (path === 'active AOA job') {
        const tenantId = (auth.holder ?? alice).tenantId;
        const active = [...ledger.tasks].find(([, task]) => task.kind === 'aoa' && task.status === 'queued' && task.tenant_id === tenantId);
        path = `/api/v1/tasks/${active?.[0] ?? randomUUID()}`;
      }
      return request(route.method, `${path}${query}`, auth, extra, route.body, type);
    },
  );
}

function readOnlyFamily() {
  const path = fc.oneof(
    {
      weight: 6,
      arbitrary: fc.constantFrom('/users/me', '/api/v1/auth/me', '/health/api', '/health/worker', '/openapi.json', '/docs', '/redoc', '/docs/assets/swagger-init.js'),
    },
    {
      weight: 2,
      arbitrary: fc.constantFrom(
        '/', '/api', '/api/v1', '/api/v1/tasks', '/api/v1/aoa', '/users', '/health', '/openapi.json/', '/DOCS', '//health/api', '/health/%61pi',
        '/users/me/', '/users/%6De', '/favicon.ico', '/.env', '/api/v1/tasks/', '/api/v1/auth', '/api/v1/auth/me/..', '/%', '/%00', '/%ff',
        '/docs/assets/', '/docs/assets/..%2F..%2Fpackage.json', '/docs/assets/%2e%2e%2fconfig.ts',
      ),
    },
    { weight: 1, arbitrary: nastyString.map((segment) => `/${percentEncode(segment)}`) },
  );
  const method = fc.oneof({ weight: 8, arbitrary: fc.constant('GET') }, { weight: 2, arbitrary: anyMethod });
  return family(
    'read-only and unknown',
    fc.record({ path, method, auth: credential(alice, bob), extra: extraHeaders(), query: queryString, body: anyBody, type: contentType }),
    (value) => request(value.method, `${value.path}${value.query}`, value.auth, value.extra, value.body, value.type),
  );
}

/** Every route but sign-out (alice's and bob's tokens must stay valid), with anything at all. */
function anyRouteFamily() {
  const path = fc.constantFrom(
    '/users/register', '/api/v1/auth/register', '/token', '/api/v1/auth/login', '/users/me', '/api/v1/auth/me', '/api/v1/tasks', '/api/v1/tasks/x',
    '/api/v1/aoa/state', '/api/v1/aoa/run', '/api/v1/aoa/reset', '/api/v1/aoa/prod-mode', '/health/api', '/health/worker', '/openapi.json', '/docs', '/redoc',
    '/api/v1/tenant/users', '/api/v1/tenant/users/x', '/api/v1/tenant/invitations', '/api/v1/tenant/invitations/x', '/api/v1/tenant/api-keys',
    '/api/v1/tenant/api-keys/x',
  );
  return family(
    'any route',
    fc.record({ path, method: anyMethod, auth: credential(alice, bob), extra: extraHeaders(), query: queryString, body: anyBody, type: contentType }),
    (value) => request(value.method, `${value.path}${value.query}`, value.auth, value.extra, value.body, value.type),
  );
}

describe('fuzzing every route', () => {
  test('sign-up and sign-in: both register routes, JSON login and the OAuth2 form', async () => {
    await fuzzFamily(authFamily(), 1, 500);
  });

  test('task creation: near-valid, hostile and malformed bodies, with any credential', async () => {
    await fuzzFamily(taskCreationFamily(), 2, 600);
  });

  test('task ids: read, cancel and audit trail of any id, own or foreign, with any credential', async () => {
    await fuzzFamily(taskIdFamily(), 3, 400);
  });

  test('AOA: state, run, reset and prod-mode, and canceling the active job', async () => {
    await fuzzFamily(aoaFamily(), 4, 250);
  });

  test('who am I, health, API docs and unknown paths, with any method', async () => {
    await fuzzFamily(readOnlyFamily(), 5, 200);
  });

  test('sign-out: a rejected request revokes nothing, an accepted one revokes the token', async () => {
    // Each run signs dave in, then sends a generated sign-out; the fresh token must be refused
    // afterwards exactly when the sign-out was accepted.
    const values = fc.record({ method: mostly('POST'), auth: credential(dave), extra: extraHeaders(), query: queryString, body: anyBody, type: contentType });
    await fuzz(6, 80, values, async (value) => {
      const login = await scripted('POST', '/api/v1/auth/login', { json: { email: dave.email, password: PASSWORD } });
      assert.equal(login.status, 200);
      const fresh: RegisteredUser = { ...dave, token: login.json.access_token };
      // The generated credential, but carrying the fresh token wherever it carried dave's.
      const auth: Credential = {
        ...value.auth,
        ...(value.auth.header ? { header: value.auth.header.replaceAll(dave.token, fresh.token) } : {}),
        ...(value.auth.holder ? { holder: fresh } : {}),
      };
      const logout = await send('sign-out', request(value.method, `/api/v1/auth/logout${value.query}`, auth, value.extra, value.body, value.type));
      const me = await scripted('GET', '/users/me', { user: fresh });
      // (An OPTIONS preflight is 204 too, and signs no one out.)
      const revoked = value.method === 'POST' && logout.status === 204;
      assert.equal(me.status, revoked ? 401 : 200, `${value.method} sign-out answered ${logout.status}, then /users/me ${me.status}`);
    });
  });

  test('any route with any method, body, content type, credential and query string', async () => {
    await fuzzFamily(anyRouteFamily(), 7, 300);
  });

  test('bursts of up to 6 concurrent requests from every family but sign-out', async () => {
    const families: Family<any>[] = [authFamily(), taskCreationFamily(), taskIdFamily(), aoaFamily(), readOnlyFamily(), anyRouteFamily()];
    const member = fc.oneof(...families.map((routes, index) => routes.values.map((value) => ({ family: index, value }))));
    await fuzz(8, 50, fc.array(member, { minLength: 2, maxLength: 6 }), async (burst) => {
      const requests = burst.map(({ family, value }) => families[family]!.toRequest(value));
      await Promise.all(requests.map((concurrent) => send('concurrent bursts', concurrent)));
    });
  });
});

describe('after the fuzzing', () => {
  test('at least 2,000 generated requests were sent', (t) => {
    let total = 0;
    for (const [family, { requests, statuses }] of stats) {
      if (family !== SCRIPTED) total += requests;
      t.diagnostic(`${family}: ${requests} requests, statuses ${JSON.stringify(Object.fromEntries([...statuses].sort(([a], [b]) => a - b)))}`);
    }
    assert.ok(total >= 2_000, `${total} requests`);
  });

  test('the database holds exactly what the API accepted, and nothing of a rejected request', async () => {
    const { db } = testApp;
    const tenants = await db.selectFrom('tenants').select('id').execute();
    assert.deepEqual(new Set(tenants.map((row) => row.id)), ledger.tenants);

    const users = await db.selectFrom('users').select(['id', 'tenant_id', 'email', 'token_version']).execute();
    assert.deepEqual(new Map(users.map(({ id, ...rest }) => [id, rest])), ledger.users);

    const tasks = await db.selectFrom('tasks').select(['id', 'tenant_id', 'kind', 'status']).execute();
    assert.deepEqual(new Map(tasks.map(({ id, ...rest }) => [id, rest])), ledger.tasks);

    const logs = await db.selectFrom('task_logs').select(['task_id', 'tenant_id']).distinct().execute();
    for (const log of logs) assert.equal(ledger.tasks.get(log.task_id)?.tenant_id, log.tenant_id, `audit rows of task ${log.task_id}`);

    // Each task's job (job id = task id) in its kind's queue, for its tenant; and no other job.
    const { rows: jobs } = await sql<{ id: string; name: string; tenant_id: string }>`
      select id, name, data->>'tenant_id' as tenant_id from ${sql.table(`${BOSS_SCHEMA}.job`)}
      where name in (${TASK_QUEUE.task}, ${TASK_QUEUE.aoa})`.execute(db);
    assert.deepEqual(
      new Map(jobs.map((job) => [job.id, { tenant_id: job.tenant_id, queue: job.name }])),
      new Map([...ledger.tasks].map(([id, task]) => [id, { tenant_id: task.tenant_id, queue: TASK_QUEUE[task.kind as 'task' | 'aoa'] }])),
    );

    const { rows: throttled } = await sql<{ n: number }>`select count(*)::int as n from auth_throttle`.execute(db);
    assert.equal(throttled[0]!.n, 0, 'sign-in limits are off: nothing is counted');

    assert.deepEqual(await tenantSnapshot(carol.tenantId), carolBefore, "carol's rows are untouched");
  });

  test('outside services saw only what accepted requests asked for', () => {
    const calls = new Map<string, number>();
    for (const call of dcl.requests) {
      assert.equal(call.method, 'GET');
      assert.equal(call.path, '/state');
      const tenantId = call.headers['x-tenant-id'] as string;
      calls.set(tenantId, (calls.get(tenantId) ?? 0) + 1);
    }
    assert.deepEqual(calls, ledger.dclCalls);
    assert.equal(slack.requests.length, 0, 'nothing runs without a worker');
  });

  test('the fuzzed app is healthy afterwards: health is ok, and users can register, sign in, create and read tasks', async () => {
    const health = await scripted('GET', '/health/api');
    assert.equal(health.status, 200);
    assert.deepEqual(health.json, { status: 'ok' });

    const created = await scripted('POST', '/api/v1/tasks', { user: alice, json: { payload: slackPayload('#after-fuzz', 'still here') } });
    assert.equal(created.status, 201);
    const read = await scripted('GET', `/api/v1/tasks/${created.json.id}`, { user: alice });
    assert.equal(read.json.payload.message, 'still here');

    const email = `after-fuzz-${randomUUID()}@example.com`;
    const tenantName = `after fuzz ${randomUUID()}`;
    const registered = await scripted('POST', '/api/v1/auth/register', { json: { name: tenantName, email, password: PASSWORD } });
    assert.equal(registered.status, 201);
    const login = await scripted('POST', '/api/v1/auth/login', { json: { email, password: PASSWORD } });
    assert.equal(login.status, 200);
    const newcomer: RegisteredUser = { email, password: PASSWORD, tenantName, userId: registered.json.id, tenantId: registered.json.tenant_id, token: login.json.access_token };
    const theirs = await scripted('POST', '/api/v1/tasks', { user: newcomer, json: { payload: slackPayload('#after-fuzz') } });
    assert.equal(theirs.status, 201);
    assert.equal((await scripted('GET', `/api/v1/tasks/${theirs.json.id}`, { user: newcomer })).status, 200);
  });
});
