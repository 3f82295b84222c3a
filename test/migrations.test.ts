import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { migrations } from '../db/migrations/index.js';
import { createDb } from '../src/db/client.js';
import { migrateToLatest } from '../src/db/migrate.js';
import { createEmptyDatabase, type TestDatabase } from './helpers/database.js';

/** Every migration, in order: what an empty database gets. */
const ALL_MIGRATIONS = Object.keys(migrations);

// The migrator on empty databases: idempotent when run again, and safe when several processes
// start at once (the advisory lock makes the late ones find the work done).

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TABLES = ['task_logs', 'tasks', 'tenants', 'users', 'worker_heartbeats'];
const MIGRATION_LOCK_KEY = 727_001;
const CHILD_DEADLINE_MS = 60_000;

const databases: TestDatabase[] = [];

async function emptyDatabase(): Promise<TestDatabase> {
  const database = await createEmptyDatabase();
  databases.push(database);
  return database;
}

after(async () => {
  await Promise.all(databases.map((database) => database.drop()));
});

/** What an empty database looks like after migrating: the tables and the migration bookkeeping. */
async function inspect(url: string) {
  const db = createDb(url, { max: 1 });
  try {
    const tables = await db
      .selectFrom('information_schema.tables' as any)
      .select('table_name')
      .where('table_schema', '=', 'public')
      .where('table_name', 'in', TABLES)
      .orderBy('table_name')
      .execute();
    const migrations = await sql<{ name: string }>`select name from kysely_migration order by name`.execute(db);
    const locks = await sql<{ n: string }>`
      select count(*) as n from pg_locks
      where locktype = 'advisory' and objid = ${MIGRATION_LOCK_KEY}
        and database = (select oid from pg_database where datname = current_database())
    `.execute(db);
    return {
      tables: tables.map((row) => row.table_name as string),
      migrations: migrations.rows.map((row) => row.name),
      heldLocks: Number(locks.rows[0]?.n),
    };
  } finally {
    await db.destroy();
  }
}

interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** `npm run migrate` without npm: the same script, as its own process. */
function runMigrateScript(databaseUrl: string): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/migrate.ts'], {
      cwd: ROOT,
      env: { ...process.env, DATABASE_URL: databaseUrl },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`migrate did not finish within ${CHILD_DEADLINE_MS} ms: ${stdout} ${stderr}`));
    }, CHILD_DEADLINE_MS);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

function appliedBy(result: ChildResult): string[] {
  const line = result.stdout
    .split('\n')
    .filter((item) => item.trim() !== '')
    .map((item) => JSON.parse(item) as { msg?: string; migrations?: string[] })
    .find((item) => item.msg === 'migrations applied');
  assert.ok(line, `the script reports what it applied: ${result.stdout}`);
  return line.migrations ?? [];
}

describe('migrateToLatest', () => {
  let database: TestDatabase;

  before(async () => {
    database = await emptyDatabase();
  });

  test('applies every migration once, then nothing', async () => {
    const before = await inspect(database.url).catch(() => undefined);
    assert.equal(before, undefined, 'the database starts empty (no kysely_migration table)');

    const db = createDb(database.url, { max: 2 });
    try {
      assert.deepEqual(await migrateToLatest(db), ALL_MIGRATIONS);
      assert.deepEqual(await migrateToLatest(db), []);
      assert.deepEqual(await migrateToLatest(db), []);
    } finally {
      await db.destroy();
    }
    const state = await inspect(database.url);
    assert.deepEqual(state.tables, TABLES);
    assert.deepEqual(state.migrations, ALL_MIGRATIONS);
    assert.equal(state.heldLocks, 0, 'the advisory lock is released');
  });

  test('several clients migrating at once apply it exactly once', async () => {
    const racing = await emptyDatabase();
    const clients = Array.from({ length: 4 }, () => createDb(racing.url, { max: 1 }));
    try {
      const results = await Promise.all(clients.map((db) => migrateToLatest(db)));
      assert.deepEqual(results.flat(), ALL_MIGRATIONS, `one client applied them: ${JSON.stringify(results)}`);
    } finally {
      await Promise.all(clients.map((db) => db.destroy()));
    }
    const state = await inspect(racing.url);
    assert.deepEqual(state.tables, TABLES);
    assert.deepEqual(state.migrations, ALL_MIGRATIONS);
  });

  test('waits for the advisory lock another process holds', async () => {
    // Kysely's migrator has a lock of its own, so the race above would pass without ours; this
    // shows that ours is taken first: while another session holds it, nothing is migrated.
    const guarded = await emptyDatabase();
    const holder = createDb(guarded.url, { max: 1 });
    const migrating = createDb(guarded.url, { max: 1 });
    try {
      await holder.connection().execute(async (connection) => {
        await sql`select pg_advisory_lock(${MIGRATION_LOCK_KEY})`.execute(connection);
        let released = false;
        const outcome = migrateToLatest(migrating).finally(() => assert.ok(released, 'migrated only after the lock was released'));
        try {
          const deadline = Date.now() + 10_000;
          for (;;) {
            const waiting = await sql<{ n: string }>`
              select count(*) as n from pg_locks
              where locktype = 'advisory' and objid = ${MIGRATION_LOCK_KEY} and not granted
                and database = (select oid from pg_database where datname = current_database())
            `.execute(connection);
            if (Number(waiting.rows[0]?.n) > 0) break;
            assert.ok(Date.now() < deadline, 'the migrator never queued for the advisory lock');
            await new Promise((resolve) => setImmediate(resolve));
          }
          const table = await sql<{ t: string | null }>`select to_regclass('public.kysely_migration')::text as t`.execute(connection);
          assert.equal(table.rows[0]?.t, null, 'nothing was created while the lock was held');
        } finally {
          released = true;
          await sql`select pg_advisory_unlock(${MIGRATION_LOCK_KEY})`.execute(connection);
        }
        assert.deepEqual(await outcome, ALL_MIGRATIONS);
      });
    } finally {
      await Promise.all([holder.destroy(), migrating.destroy()]);
    }
  });
});

describe('scripts/migrate.ts', () => {
  test('two processes started at once both succeed and migrate once', async () => {
    const database = await emptyDatabase();
    const results = await Promise.all([runMigrateScript(database.url), runMigrateScript(database.url)]);
    for (const [index, result] of results.entries()) {
      assert.equal(result.code, 0, `process ${index} exited ${result.code} (${result.signal}): ${result.stderr}`);
      assert.equal(result.stderr, '', `process ${index} wrote to stderr`);
    }
    assert.deepEqual(results.flatMap(appliedBy), ALL_MIGRATIONS, 'exactly one process applied the migrations');

    const state = await inspect(database.url);
    assert.deepEqual(state.tables, TABLES);
    assert.deepEqual(state.migrations, ALL_MIGRATIONS);
    assert.equal(state.heldLocks, 0);

    // Run once more against the migrated database: nothing to do, still success.
    const again = await runMigrateScript(database.url);
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(appliedBy(again), []);
  });

  test('without DATABASE_URL it exits non-zero naming the variable', async () => {
    const result = await runMigrateScript('');
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /DATABASE_URL/);
  });
});
