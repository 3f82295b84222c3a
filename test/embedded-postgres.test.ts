import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, test } from 'node:test';
import pg from 'pg';
import { silentLogger } from '../src/logger.js';
import { EmbeddedPostgresError, startEmbeddedPostgres, type EmbeddedPostgres } from '../src/main/embedded-postgres.js';

async function query(url: string, text: string): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await client.query(text);
  } finally {
    await client.end();
  }
}

function isRunning(pidFile: string): boolean {
  return existsSync(pidFile);
}

/**
 * As root the server runs as the "postgres" OS user, which must reach the binaries inside this
 * checkout; a checkout under a private directory (like /root) cannot host it, and says so (the
 * last test checks that message). CI also starts the service from a clean clone in /tmp.
 */
function binariesUnreachable(): string | false {
  if (userInfo().uid !== 0) return false;
  let dir = new URL('..', import.meta.url).pathname;
  while (dir !== '/') {
    dir = dirname(dir);
    if ((statSync(dir).mode & 0o001) === 0) return `the postgres user cannot enter ${dir}, which holds this checkout`;
  }
  return false;
}

describe('embedded PostgreSQL (the zero-setup default)', { skip: binariesUnreachable() }, () => {
  // Readable by the "postgres" OS user, which runs the server when the tests run as root.
  const root = mkdtempSync(join(tmpdir(), 'autonomos-embedded-'));
  chmodSync(root, 0o755);
  const dataDir = join(root, 'data', 'postgres');
  const started: EmbeddedPostgres[] = [];

  after(async () => {
    for (const server of started) await server.stop().catch(() => {});
    rmSync(root, { recursive: true, force: true });
  });

  test('starts, keeps data across a stop and a restart, and stops cleanly', async () => {
    const first = await startEmbeddedPostgres(silentLogger, dataDir);
    started.push(first);
    assert.match(first.url, /^postgres:\/\/postgres:[^@]+@127\.0\.0\.1:\d+\/autonomos$/);
    await query(first.url, 'create table notes (body text)');
    await query(first.url, "insert into notes values ('kept')");
    await first.stop();
    assert.equal(isRunning(join(dataDir, 'postmaster.pid')), false, 'postmaster.pid removed: a clean shutdown');
    await assert.rejects(query(first.url, 'select 1'), 'nothing listens after stop');

    const second = await startEmbeddedPostgres(silentLogger, dataDir);
    started.push(second);
    const { rows } = await query(second.url, 'select body from notes');
    assert.deepEqual(rows, [{ body: 'kept' }]);
    await second.stop();
  });

  test('a server left running by a killed process is stopped and the data directory reused', async () => {
    const orphan = await startEmbeddedPostgres(silentLogger, dataDir);
    started.push(orphan);
    // Not stopped, as if the process that started it had been killed with SIGKILL.
    const next = await startEmbeddedPostgres(silentLogger, dataDir);
    started.push(next);
    await assert.rejects(query(orphan.url, 'select 1'), 'the orphan was shut down');
    const { rows } = await query(next.url, 'select body from notes');
    assert.deepEqual(rows, [{ body: 'kept' }]);
    await next.stop();
  });

  test('a server that another live AutonomOS process owns is left alone, with a clear refusal', async () => {
    const running = await startEmbeddedPostgres(silentLogger, dataDir);
    started.push(running);
    // Pretend another running process (our parent, which is alive) started it.
    writeFileSync(`${dataDir}.owner`, String(process.ppid));
    await assert.rejects(startEmbeddedPostgres(silentLogger, dataDir), /Another AutonomOS process .* is running/);
    const { rows } = await query(running.url, 'select count(*)::int as n from notes');
    assert.deepEqual(rows, [{ n: 1 }], 'the running server was not touched');
    await running.stop();
  });

  test('as root, a data directory the postgres user cannot reach is refused with a clear message', { skip: userInfo().uid !== 0 && 'only root runs PostgreSQL as another user' }, async () => {
    const closed = join(root, 'closed');
    mkdirSync(closed, { mode: 0o700 });
    chmodSync(closed, 0o700);
    await assert.rejects(startEmbeddedPostgres(silentLogger, join(closed, 'postgres')), (error: unknown) => {
      assert.ok(error instanceof EmbeddedPostgresError);
      assert.match(error.message, new RegExp(`cannot enter ${closed}`));
      assert.match(error.message, /DATABASE_URL/);
      return true;
    });
  });
});
