import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';

// The service as an operator runs it: `src/main/api.ts` in its own process, talking HTTP, logging
// JSON lines to stdout, and stopping cleanly on SIGTERM.

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const START_DEADLINE_MS = 30_000;
const STOP_DEADLINE_MS = 30_000;

interface Service {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** The environment of a clean machine: no secrets inherited from whoever runs the tests. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME };
  return { ...env, ...extra };
}

function startService(env: Record<string, string>): Service {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main/api.ts'], {
    cwd: ROOT,
    env: cleanEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk) => (stdout += chunk));
  child.stderr!.on('data', (chunk) => (stderr += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
  });
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

async function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves when the service logs that it listens; fails if it exits first. */
function listening(service: Service): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (service.stdout().includes('"api listening"')) {
        service.child.stdout!.off('data', check);
        resolve();
      }
    };
    service.child.stdout!.on('data', check);
    void service.exited.then(({ code }) => reject(new Error(`service exited ${code} before listening: ${service.stdout()} ${service.stderr()}`)));
    check();
  });
}

function parseLines(stdout: string): Record<string, unknown>[] {
  const lines = stdout.split('\n').filter((line) => line !== '');
  return lines.map((line) => {
    try {
      const parsed = JSON.parse(line) as unknown;
      assert.equal(typeof parsed, 'object');
      return parsed as Record<string, unknown>;
    } catch {
      assert.fail(`stdout line is not JSON: ${line}`);
    }
  });
}

describe('the API process', () => {
  let database: TestDatabase;
  let service: Service | undefined;
  let baseUrl: string;
  const secret = `log-test-secret-${randomBytes(16).toString('hex')}`.slice(0, 40);
  const password = `pw-${randomBytes(8).toString('hex')}-known`;
  const email = `logs-${randomBytes(4).toString('hex')}@example.com`;
  let accessToken = '';
  const requestIds: string[] = [];

  before(async () => {
    assert.equal(secret.length, 40);
    database = await createTestDatabase();
    const port = await freePort();
    baseUrl = `http://127.0.0.1:${port}`;
    service = startService({
      NODE_ENV: 'production',
      DATABASE_URL: database.url,
      HOST: '127.0.0.1',
      PORT: String(port),
      SECRET_KEY: secret,
    });
    await withDeadline(listening(service), START_DEADLINE_MS, 'start-up');
  });

  after(async () => {
    if (service && service.child.exitCode === null && service.child.signalCode === null) {
      service.child.kill('SIGKILL');
      await service.exited;
    }
    await database?.drop();
  });

  async function call(path: string, init: RequestInit = {}) {
    const response = await fetch(`${baseUrl}${path}`, init);
    const id = response.headers.get('x-request-id');
    assert.ok(id, `${path} answered with a request id`);
    requestIds.push(id);
    return { status: response.status, body: (await response.json()) as any };
  }

  test('serves register, login and me over HTTP', async () => {
    const json = { 'Content-Type': 'application/json' };
    const registered = await call('/api/v1/auth/register', {
      method: 'POST',
      headers: json,
      body: JSON.stringify({ name: `Logs ${email}`, email, password }),
    });
    assert.equal(registered.status, 201, JSON.stringify(registered.body));

    const form = await call('/token', {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ username: email, password }),
    });
    assert.equal(form.status, 200);
    const login = await call('/api/v1/auth/login', { method: 'POST', headers: json, body: JSON.stringify({ email, password }) });
    assert.equal(login.status, 200);
    accessToken = login.body.access_token;
    assert.ok(accessToken.length > 20);

    const me = await call('/users/me', { headers: { Authorization: `Bearer ${accessToken}` } });
    assert.equal(me.status, 200);
    assert.equal(me.body.email, email);

    // Failures carry the secret material too: a wrong password, a rejected password, a bad token.
    const wrong = await call('/api/v1/auth/login', { method: 'POST', headers: json, body: JSON.stringify({ email, password: `${password}-wrong` }) });
    assert.equal(wrong.status, 401);
    const tooLong = await call('/users/register', {
      method: 'POST',
      headers: json,
      body: JSON.stringify({ tenant_name: 'Too long', email: `x-${email}`, password: password.repeat(20) }),
    });
    assert.equal(tooLong.status, 422);
    assert.ok(!JSON.stringify(tooLong.body).includes(password), 'a validation error does not echo the password');
    const tampered = await call('/api/v1/auth/me', { headers: { Authorization: `Bearer ${accessToken}x` } });
    assert.equal(tampered.status, 401);

    const health = await call('/health/api');
    assert.deepEqual(health.body, { status: 'ok' });
  });

  test('stops with exit code 0 on SIGTERM', async () => {
    assert.ok(service);
    service.child.kill('SIGTERM');
    const { code, signal } = await withDeadline(service.exited, STOP_DEADLINE_MS, 'exit after SIGTERM');
    assert.equal(code, 0, `exit ${code} (${signal}): ${service.stderr()}`);
    const lines = parseLines(service.stdout());
    const messages = lines.map((line) => line.msg);
    assert.ok(messages.includes('shutting down'), JSON.stringify(messages));
    assert.equal(messages.at(-1), 'stopped');
  });

  test('logs one JSON line per event, with request ids, and no secrets', () => {
    assert.ok(service);
    const stdout = service.stdout();
    const lines = parseLines(stdout);
    for (const line of lines) {
      assert.equal(typeof line.time, 'string');
      assert.ok(['debug', 'info', 'warn', 'error'].includes(line.level as string), JSON.stringify(line));
      assert.equal(typeof line.msg, 'string');
    }

    const requests = lines.filter((line) => line.msg === 'request');
    assert.equal(requests.length, requestIds.length, 'one line per request');
    for (const line of requests) {
      assert.equal(typeof line.request_id, 'string', JSON.stringify(line));
      assert.equal(typeof line.method, 'string');
      assert.equal(typeof line.path, 'string');
      assert.equal(typeof line.status, 'number');
    }
    assert.deepEqual(requests.map((line) => line.request_id).sort(), [...requestIds].sort(), 'log lines carry the ids the client saw');
    const meLine = requests.find((line) => line.path === '/users/me' && line.status === 200);
    assert.ok(meLine?.tenant_id, 'an authenticated request is logged with its tenant');

    const output = `${stdout}\n${service.stderr()}`;
    assert.ok(accessToken !== '');
    for (const [name, value] of [
      ['password', password],
      ['access token', accessToken],
      ['access token signature', accessToken.split('.')[2]!],
      ['secret', secret],
      ['secret prefix', secret.slice(0, 20)],
    ] as const) {
      assert.ok(!output.includes(value), `the ${name} appears in the output`);
    }
    assert.doesNotMatch(output, /\$argon2/, 'no password hash in the output');
  });
});

test('production without SECRET_KEY exits non-zero naming SECRET_KEY', async () => {
  const service = startService({
    NODE_ENV: 'production',
    DATABASE_URL: 'postgres://postgres@127.0.0.1:1/never-reached',
    HOST: '127.0.0.1',
    PORT: String(await freePort()),
  });
  const { code } = await withDeadline(service.exited, START_DEADLINE_MS, 'exit without a secret');
  assert.notEqual(code, 0);
  assert.notEqual(code, null);
  const output = `${service.stdout()}${service.stderr()}`;
  assert.match(output, /SECRET_KEY/);
  assert.doesNotMatch(output, /api listening/);
  // The complaint is itself a structured log line.
  assert.ok(parseLines(service.stdout()).some((line) => line.level === 'error' && /SECRET_KEY/.test(String(line.msg))));
});
