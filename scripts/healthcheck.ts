/**
 * Container health check (the Dockerfile's HEALTHCHECK runs `node dist/scripts/healthcheck.js`).
 * Exit 0 when healthy, 1 otherwise, with one line saying why.
 *
 * - MODE=api or all: GET /health/api on this container, which also pings the database. Node's
 *   built-in fetch is used because slim images have neither curl nor wget.
 * - MODE=worker: a worker serves no HTTP, so it is judged by its own heartbeat: a row in
 *   worker_heartbeats written from this host (the container's hostname) in the last
 *   WORKER_FRESH_SECONDS. That fails when the worker's event loop is stuck or it cannot reach
 *   the database, which "the process exists" would not notice.
 */
import { hostname } from 'node:os';
import pg from 'pg';
import { WORKER_FRESH_SECONDS } from '../src/health/health.routes.js';

const TIMEOUT_MS = 4_000;

async function checkApi(): Promise<string> {
  const port = process.env.PORT || '5000';
  const response = await fetch(`http://127.0.0.1:${port}/health/api`, { signal: AbortSignal.timeout(TIMEOUT_MS) });
  if (!response.ok) throw new Error(`/health/api answered ${response.status}`);
  return 'api ok';
}

async function checkWorker(): Promise<string> {
  const client = new pg.Client({
    connectionString: process.env.DATABASE_URL,
    connectionTimeoutMillis: TIMEOUT_MS,
    statement_timeout: TIMEOUT_MS,
    application_name: 'autonomos-healthcheck',
  });
  // A connection lost mid-check is reported by the query's rejection; unheard, the event would crash us.
  client.on('error', () => {});
  await client.connect();
  try {
    const result = await client.query(
      'select 1 from worker_heartbeats where hostname = $1 and last_seen_at > now() - make_interval(secs => $2) limit 1',
      [hostname(), WORKER_FRESH_SECONDS],
    );
    if (result.rowCount === 0) throw new Error(`no heartbeat from ${hostname()} in the last ${WORKER_FRESH_SECONDS} s`);
    return 'worker ok';
  } finally {
    await client.end();
  }
}

const mode = process.env.MODE || 'all';
try {
  console.log(await (mode === 'worker' ? checkWorker() : checkApi()));
  process.exit(0);
} catch (error) {
  console.log(`unhealthy (${mode}): ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}
