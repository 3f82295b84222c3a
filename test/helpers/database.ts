import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { PgBoss } from 'pg-boss';
import { createDb } from '../../src/db/client.js';
import { migrateToLatest } from '../../src/db/migrate.js';
import { declareQueues } from '../../src/queue/task-queue.js';
import { BOSS_SCHEMA } from '../../src/queue/boss.js';

/** The server the tests create their databases on; the suite needs CREATE DATABASE rights. */
export const ADMIN_DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const TEMPLATE_LOCK_KEY = 727_002;

export function databaseUrl(name: string): string {
  const url = new URL(ADMIN_DATABASE_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

/** The template's name changes whenever a migration or the pg-boss version does. */
function templateName(): string {
  const hash = createHash('sha256');
  const dir = new URL('../../db/migrations/', import.meta.url).pathname;
  for (const file of readdirSync(dir).sort()) hash.update(file).update(readFileSync(join(dir, file)));
  const bossPackage = new URL('../../node_modules/pg-boss/package.json', import.meta.url).pathname;
  hash.update(JSON.parse(readFileSync(bossPackage, 'utf8')).version as string);
  return `autonomos_template_${hash.digest('hex').slice(0, 16)}`;
}

async function withAdmin<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

async function buildTemplate(client: pg.Client, name: string): Promise<void> {
  const building = `${name}_building`;
  await client.query(`drop database if exists ${building} with (force)`);
  await client.query(`create database ${building}`);
  const url = databaseUrl(building);
  const db = createDb(url, { max: 2 });
  try {
    await migrateToLatest(db);
  } finally {
    await db.destroy();
  }
  const boss = new PgBoss({ connectionString: url, schema: BOSS_SCHEMA, supervise: false, schedule: false });
  boss.on('error', () => {});
  await boss.start();
  await declareQueues(boss);
  await boss.stop({ graceful: false });
  await client.query(`alter database ${building} rename to ${name}`);
}

export interface TestDatabase {
  name: string;
  url: string;
  drop(): Promise<void>;
}

/**
 * A fresh database for one test file, cloned from a migrated template (built once per schema
 * version, under an advisory lock so parallel files do not race to build it).
 */
export async function createTestDatabase(): Promise<TestDatabase> {
  const template = templateName();
  const name = `autonomos_test_${randomBytes(6).toString('hex')}`;
  await withAdmin(async (client) => {
    await client.query('select pg_advisory_lock($1)', [TEMPLATE_LOCK_KEY]);
    try {
      const exists = await client.query('select 1 from pg_database where datname = $1', [template]);
      if (exists.rowCount === 0) await buildTemplate(client, template);
      await client.query(`create database ${name} template ${template}`);
    } finally {
      await client.query('select pg_advisory_unlock($1)', [TEMPLATE_LOCK_KEY]);
    }
  });
  return {
    name,
    url: databaseUrl(name),
    drop: () => withAdmin(async (client) => void (await client.query(`drop database if exists ${name} with (force)`))),
  };
}

/** An empty database (no migrations), for tests of the migrator itself. */
export async function createEmptyDatabase(): Promise<TestDatabase> {
  const name = `autonomos_test_empty_${randomBytes(6).toString('hex')}`;
  await withAdmin(async (client) => void (await client.query(`create database ${name}`)));
  return {
    name,
    url: databaseUrl(name),
    drop: () => withAdmin(async (client) => void (await client.query(`drop database if exists ${name} with (force)`))),
  };
}
