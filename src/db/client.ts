import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { BOSS_SCHEMA } from '../queue/boss.js';
import { PREPARED_MARKER, preparingClientClass } from './prepared-statements.js';
import { CONNECTION_TIMEOUT_MS, idleConnections } from './connection-settings.js';
import type { Database } from './schema.js';

export type Db = Kysely<Database>;

/**
 * A Kysely client over its own pg pool; destroy() closes the pool. `idleTimeoutMs` replaces how
 * long an unused connection is kept (idleConnections).
 */
export function createDb(
  connectionString: string,
  options: { max?: number; applicationName?: string; preparedStatements?: boolean; idleTimeoutMs?: number } = {},
): Db {
  const pool = new pg.Pool({
    // Our marked statements, and pg-boss's when they run in our transactions (a fixed set per queue).
    ...(options.preparedStatements === false ? {} : { Client: preparingClientClass((text) => text.includes(PREPARED_MARKER) || text.includes(`${BOSS_SCHEMA}.`)) }),
    connectionString,
    max: options.max ?? 20,
    application_name: options.applicationName ?? 'autonomos',
    connectionTimeoutMillis: CONNECTION_TIMEOUT_MS,
    // Keepalive also notices a server that vanished without closing its connections (a partition,
    // a failover), rather than leaving them to hang until the kernel gives up.
    ...idleConnections(options.idleTimeoutMs),
  });
  // An idle client losing its connection must not crash the process; the pool replaces it.
  pool.on('error', () => {});
  // pg-pool listens for errors only while a client is idle. A connection that dies while checked
  // out (the database stops mid-query) emits 'error' on its client, which unheard would end the
  // process; the query in flight rejects with the same error, and the broken client is discarded
  // on release, so there is nothing else to do here.
  pool.on('connect', (client) => {
    client.on('error', () => {});
    // A connection the server ends with a FATAL error (terminated, shutting down) is ended here at
    // once: its socket closes only a moment later, and meanwhile the pool would lend it again to a
    // query that could only fail.
    client.connection.on('errorMessage', (message: { severity?: string }) => {
      if (message.severity === 'FATAL') client.end().catch(() => {});
    });
  });
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
}

/** The cheapest question the database can answer: is it there? */
export async function pingDatabase(db: Db): Promise<void> {
  await sql`select 1`.execute(db);
}
