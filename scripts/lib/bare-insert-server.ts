/**
 * The benchmark's floor for task creation: a bare node `http` server that answers POST /tasks
 * with one INSERT of the body into a table, over a `pg` pool as large as AutonomOS's (20), and
 * nothing else (no auth, no validation, no queue, no audit). Run by scripts/bench.ts as a process
 * of its own, like the API, with DATABASE_URL and PORT.
 */
import { createServer } from 'node:http';
import pg from 'pg';
import { readRequestBody } from './http-json.js';

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 20 });
pool.on('error', () => {});
await pool.query(`create table if not exists bare_tasks (
  id uuid primary key default gen_random_uuid(),
  payload jsonb not null,
  created_at timestamptz not null default now()
)`);

const server = createServer(async (request, response) => {
  try {
    const body = await readRequestBody(request);
    const { rows } = await pool.query('insert into bare_tasks (payload) values ($1) returning id, created_at', [JSON.stringify(body?.payload ?? null)]);
    response.writeHead(201, { 'Content-Type': 'application/json' }).end(JSON.stringify(rows[0]));
  } catch (error) {
    response.writeHead(500, { 'Content-Type': 'application/json' }).end(JSON.stringify({ detail: (error as Error).message }));
  }
});
server.listen(Number(process.env.PORT), '127.0.0.1', () => console.log('bare insert server listening'));
process.on('SIGTERM', () => server.close(() => void pool.end().then(() => process.exit(0))));
