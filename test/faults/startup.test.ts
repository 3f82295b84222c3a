import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { httpJson } from '../../scripts/lib/http-json.js';
import { startPrivatePostgres, type PrivatePostgres } from '../../scripts/lib/private-postgres.js';
import { spawnService, type ServiceProcess } from '../../scripts/lib/service-process.js';
import { freePort } from '../../src/main/embedded-postgres.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { eventually } from '../helpers/poll.js';

/** The JSON log lines a process printed; anything else (a raw stack trace) fails the parse on purpose. */
function logLines(service: ServiceProcess): Record<string, any>[] {
  return service
    .output()
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      try {
        return JSON.parse(line) as Record<string, any>;
      } catch {
        throw new Error(`not a JSON log line: ${line}\n--- output:\n${service.output()}`);
      }
    });
}

const errorLines = (service: ServiceProcess) => logLines(service).filter((line) => line.level === 'error');

/** Polls until a worker is seen healthy through the API on `port`. */
const healthy = (port: number, message: string) =>
  eventually(async () => ((await httpJson(`http://127.0.0.1:${port}`, 'GET', '/health/worker')).status === 200 ? true : undefined), {
    timeoutMs: 20_000,
    intervalMs: 200,
    message,
  });

describe('starting before the database accepts connections', () => {
  let database: PrivatePostgres;
  const services: ServiceProcess[] = [];

  before(async () => {
    database = await startPrivatePostgres();
    await database.stop();
  });

  after(async () => {
    for (const service of services) service.child.kill('SIGKILL');
    await Promise.all(services.map((service) => service.exited));
    await database.destroy();
  });

  test('the API and the worker wait, one log line per try, and start once it is up', async () => {
    const port = await freePort();
    const env = { DATABASE_URL: database.url, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'info' };
    const api = spawnService('api', env);
    const worker = spawnService('worker', env);
    services.push(api, worker);
    const waiting = (service: ServiceProcess) => logLines(service).filter((line) => line.msg === 'database not reachable yet; retrying');
    await eventually(() => (waiting(api).length >= 2 && waiting(worker).length >= 2 ? true : undefined), {
      timeoutMs: 20_000,
      message: 'both processes retrying',
    });
    await database.start();
    await healthy(port, 'the service healthy once the database is up');

    for (const service of [api, worker]) {
      const tries = waiting(service);
      assert.deepEqual(
        tries.map((line) => line.attempt),
        tries.map((_, index) => index + 1),
        'numbered tries, one line each',
      );
      assert.match(tries[0]!.reason, /ECONNREFUSED/);
      // The pause grows between tries.
      assert.ok(tries.at(-1)!.retry_in_ms > tries[0]!.retry_in_ms, JSON.stringify(tries));
      assert.deepEqual(errorLines(service), []);
      assert.equal(service.child.exitCode, null);
    }
  });

  test('a database lost again in the middle of start-up: it starts over once the database is back', async () => {
    // A database of its own on the private server, so this start-up has migrations to apply.
    await database.start();
    const fresh = new URL(database.url);
    fresh.pathname = `/fresh_${Date.now()}`;
    const admin = new pg.Client({ connectionString: database.url });
    await admin.connect();
    await admin.query(`create database ${fresh.pathname.slice(1)}`);
    await admin.end();
    await database.stop();
    const port = await freePort();
    const service = spawnService('all', { DATABASE_URL: fresh.toString(), PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'info' });
    services.push(service);
    const logged = (message: string) => logLines(service).some((line) => line.msg === message);
    await eventually(() => (logged('database not reachable yet; retrying') ? true : undefined), { timeoutMs: 20_000, message: 'waiting' });
    await database.start();
    // Migrations are the first step on the database; the queue, the worker and the server follow.
    await eventually(() => (logged('migrations applied') ? true : undefined), { timeoutMs: 20_000, intervalMs: 5, message: 'migrations applied' });
    await database.stop();
    await eventually(() => (logged('database lost during start-up; starting over once it answers') ? true : undefined), {
      timeoutMs: 20_000,
      message: 'start-up starting over',
    });
    await database.start();
    await healthy(port, 'the service healthy after all');
    assert.equal(service.child.exitCode, null);
    assert.deepEqual(errorLines(service), []);
  });

  test('gives up after DATABASE_STARTUP_TIMEOUT_SECONDS with one clear line and exit code 1', async () => {
    const nothingThere = `postgres://postgres@127.0.0.1:${await freePort()}/autonomos`;
    const worker = spawnService('worker', { DATABASE_URL: nothingThere, DATABASE_STARTUP_TIMEOUT_SECONDS: '2', LOG_LEVEL: 'info' });
    services.push(worker);
    const started = Date.now();
    assert.equal(await worker.exited, 1, worker.output());
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 2_000, `gave up after ${elapsed} ms`);
    const errors = errorLines(worker);
    assert.equal(errors.length, 1, worker.output());
    assert.match(errors[0]!.msg, /^start-up failed: the database did not accept connections within 2 s \(DATABASE_STARTUP_TIMEOUT_SECONDS\); last error: .*ECONNREFUSED/);
    assert.doesNotMatch(worker.output(), /\n\s+at /, 'no stack trace');
  });
});

describe('a port already in use', () => {
  let occupied: Server;
  let port: number;
  let database: TestDatabase;
  let scratch: string;

  before(async () => {
    occupied = createServer();
    await new Promise<void>((resolve) => occupied.listen(0, '0.0.0.0', resolve));
    port = (occupied.address() as { port: number }).port;
    database = await createTestDatabase();
    // Traversable by the "postgres" OS user, which runs the embedded server when we are root.
    scratch = mkdtempSync(join(tmpdir(), 'autonomos-port-'));
    chmodSync(scratch, 0o755);
  });

  after(async () => {
    occupied.close();
    await database.drop();
    rmSync(scratch, { recursive: true, force: true });
  });

  const assertCleanFailure = (service: ServiceProcess) => {
    const errors = errorLines(service);
    assert.equal(errors.length, 1, service.output());
    assert.match(errors[0]!.msg, new RegExp(`^start-up failed: listen EADDRINUSE.*${port}.*set PORT to a free port`));
    assert.doesNotMatch(service.output(), /\n\s+at /, 'no stack trace');
  };

  test('with DATABASE_URL: one line naming the cause, the worker and the queue stopped, exit code 1', async () => {
    const service = spawnService('all', { DATABASE_URL: database.url, PORT: String(port), LOG_LEVEL: 'info' });
    assert.equal(await service.exited, 1, service.output());
    assertCleanFailure(service);
    assert.ok(logLines(service).some((line) => line.msg === 'worker started'), 'the worker had started');
    // A stopped worker removes its heartbeat; a killed one would leave it behind.
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      assert.equal((await client.query('select * from worker_heartbeats')).rowCount, 0, 'the worker stopped cleanly');
    } finally {
      await client.end();
    }
  });

  test('with the embedded PostgreSQL: it is stopped cleanly too', async () => {
    const service = spawnService('all', { NODE_ENV: 'development', PORT: String(port), LOG_LEVEL: 'info' }, { cwd: scratch });
    assert.equal(await service.exited, 1, service.output());
    assertCleanFailure(service);
    const messages = logLines(service).map((line) => line.msg);
    assert.ok(messages.includes('embedded PostgreSQL started'), service.output());
    assert.ok(messages.includes('embedded PostgreSQL stopped'), service.output());
    assert.equal(existsSync(join(scratch, '.data/postgres/postmaster.pid')), false, 'no postmaster left running');
  });
});
