/**
 * How long the dashboard's pages take with a full tenant:
 *
 *   npm run bench:dashboard -- [--tasks 10000] [--requests 50] [--json FILE]
 *
 * Builds and starts the compiled API as `npm run api` does (NODE_ENV=production, no worker) on a
 * fresh database of the local PostgreSQL (BENCH_DATABASE_URL names the server), with a local fake
 * Legacy DCL that answers at once. One tenant gets `--tasks` tasks, created through
 * POST /api/v1/tasks/batch and then given the mix of outcomes a worker would have left (70 %
 * succeeded, 10 % failed, 5 % canceled, 5 % running, 10 % queued, with start and finish times),
 * written straight into the database. The script signs in through the sign-in form and requests
 * each page `--requests` times, one after the other, after one request to warm up. The times are
 * the client's, over loopback: the server's time plus well under a millisecond.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { freePort } from '../src/main/embedded-postgres.js';
import { httpJson } from './lib/http-json.js';
import { pollUntil } from './lib/poll.js';
import { spawnCompiledService } from './lib/service-process.js';

const { values: args } = parseArgs({
  options: {
    tasks: { type: 'string', default: '10000' },
    requests: { type: 'string', default: '50' },
    json: { type: 'string' },
  },
});
const TASKS = Number(args.tasks);
const REQUESTS = Number(args.requests);
const BATCH = 500;
/** The budget each page is held to (issue: every page renders in under 50 ms with 10,000 tasks). */
const BUDGET_MS = 50;
const ADMIN_URL = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const ROOT = new URL('..', import.meta.url).pathname;

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
const round = (value: number) => Math.round(value * 10) / 10;

execFileSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: 'inherit' });

const dcl = createServer((_request, response) => {
  response.writeHead(200, { 'Content-Type': 'application/json' });
  response.end(JSON.stringify({ mode: 'development', connected: true }));
});
await new Promise<void>((resolve) => dcl.listen(0, '127.0.0.1', resolve));

const admin = new pg.Client({ connectionString: ADMIN_URL });
await admin.connect();
const database = `autonomos_bench_dashboard_${randomBytes(4).toString('hex')}`;
await admin.query(`create database ${database}`);
const databaseUrl = new URL(ADMIN_URL);
databaseUrl.pathname = `/${database}`;

const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const api = spawnCompiledService('api', {
  DATABASE_URL: databaseUrl.toString(),
  SECRET_KEY: randomBytes(32).toString('hex'),
  PORT: String(port),
  HOST: '127.0.0.1',
  LOG_LEVEL: 'warn',
  LEGACY_DCL_BASE_URL: `http://127.0.0.1:${(dcl.address() as AddressInfo).port}`,
  // One tenant creates all its tasks at once here: its creation rate and quota are off.
  TENANT_RATE_LIMIT_PER_SECOND: '0',
  TENANT_MAX_QUEUED_TASKS: '0',
});

try {
  if (!(await pollUntil(async () => ((await httpJson(base, 'GET', '/health/api')).status === 200 ? true : undefined), 60_000, 100))) {
    throw new Error(`the API did not start:\n${api.output()}`);
  }
  const user = { name: `Bench ${randomBytes(3).toString('hex')}`, email: `bench-${randomBytes(3).toString('hex')}@example.com`, password: 'correct horse battery' };
  const registered = await httpJson(base, 'POST', '/api/v1/auth/register', { json: user });
  if (registered.status !== 201) throw new Error(`register answered ${registered.status}`);
  const token = (await httpJson(base, 'POST', '/api/v1/auth/login', { json: { email: user.email, password: user.password } })).body.access_token as string;
  const tenantId = registered.body.tenant_id as string;

  const channels = ['#ops', '#builds', '#finance', '#alerts'];
  for (let start = 0; start < TASKS; start += BATCH) {
    const tasks = Array.from({ length: Math.min(BATCH, TASKS - start) }, (_, offset) => ({
      payload: { action: 'post_to_slack', channel: channels[(start + offset) % channels.length], message: `report ${start + offset} is ready` },
      max_retries: (start + offset) % 4,
    }));
    const created = await httpJson(base, 'POST', '/api/v1/tasks/batch', { token, json: { tasks }, timeoutMs: 60_000 });
    if (created.status !== 201) throw new Error(`batch answered ${created.status}: ${JSON.stringify(created.body)}`);
  }
  const chain = await httpJson(base, 'POST', '/api/v1/tasks', {
    token,
    json: { payload: { action: 'post_to_slack', channel: '#ops', message: 'first' }, on_success_next_task: { payload: { action: 'delay', seconds: 1 } } },
  });
  const seeding = new pg.Client({ connectionString: databaseUrl.toString() });
  await seeding.connect();
  try {
    await seeding.query(
      `update tasks set
         status = (case when n % 20 < 14 then 'success' when n % 20 < 16 then 'failed' when n % 20 = 16 then 'canceled' when n % 20 = 17 then 'in_progress' else 'queued' end),
         started_at = case when n % 20 < 18 then tasks.created_at + interval '40 milliseconds' end,
         finished_at = case when n % 20 < 17 then tasks.created_at + interval '90 milliseconds' end,
         result = case when n % 20 < 14 then '{"message": "Successfully posted to Slack"}'::jsonb when n % 20 < 16 then '{"error": "Slack returned status 500"}'::jsonb end
       from (select id, row_number() over (order by created_at, id) as n from tasks where tenant_id = $1 and id <> $2) as numbered
       where tasks.tenant_id = $1 and tasks.id = numbered.id`,
      [tenantId, chain.body.id],
    );
    // As autovacuum would have by then: the update left a dead version of every row behind.
    await seeding.query('vacuum analyze tasks');
  } finally {
    await seeding.end();
  }

  // Signed in as a browser is: the form, its token, the session cookie.
  const cookies = new Map<string, string>();
  const remember = (response: Response) => {
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const index = pair!.indexOf('=');
      cookies.set(pair!.slice(0, index), pair!.slice(index + 1));
    }
  };
  const cookieHeader = () => [...cookies].map(([name, value]) => `${name}=${value}`).join('; ');
  const loginPage = await fetch(`${base}/app/login`);
  remember(loginPage);
  const csrf = /name="_csrf" value="([^"]+)"/.exec(await loginPage.text())![1]!;
  const signedIn = await fetch(`${base}/app/login`, {
    method: 'POST',
    redirect: 'manual',
    headers: { Cookie: cookieHeader(), 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ _csrf: csrf, email: user.email, password: user.password }),
  });
  if (signedIn.status !== 303) throw new Error(`sign-in answered ${signedIn.status}`);
  remember(signedIn);

  const secondPage = /<a href="([^"]+)" rel="next">/.exec(await (await fetch(`${base}/app/tasks`, { headers: { Cookie: cookieHeader() } })).text())![1]!.replace(/&amp;/g, '&');
  const pages: [string, string][] = [
    ['sign-in', '/app/login'],
    ['tasks', '/app/tasks'],
    ['tasks, 2nd page', secondPage],
    ['tasks, status=failed', '/app/tasks?status=failed'],
    ['tasks, search', '/app/tasks?q=report%2042'],
    ['task', `/app/tasks/${chain.body.id}`],
    ['new task', '/app/tasks/new'],
    ['AOA', '/app/aoa'],
    ['settings', '/app/settings'],
  ];
  // The API's answers to the same questions, for comparison: what the pages add is the rest.
  const apiCalls: [string, string][] = [
    ['API: list', '/api/v1/tasks'],
    ['API: list, search', '/api/v1/tasks?q=report%2042'],
    ['API: stats', '/api/v1/tasks/stats'],
  ];
  const results: { page: string; path: string; p50: number; p95: number; max: number }[] = [];
  for (const [page, path] of [...pages, ...apiCalls]) {
    const headers = path.startsWith('/api/') ? { Authorization: `Bearer ${token}` } : { Cookie: cookieHeader() };
    const times: number[] = [];
    for (let request = 0; request <= REQUESTS; request += 1) {
      const started = performance.now();
      const response = await fetch(`${base}${path}`, { headers });
      await response.text();
      if (response.status !== 200) throw new Error(`${path} answered ${response.status}`);
      if (request > 0) times.push(performance.now() - started);
    }
    times.sort((a, b) => a - b);
    results.push({ page, path, p50: round(percentile(times, 50)), p95: round(percentile(times, 95)), max: round(times.at(-1)!) });
  }

  console.log(`\nDashboard pages with ${TASKS} tasks in the tenant, ${REQUESTS} requests each (ms, client-measured over loopback):\n`);
  console.log(`${'page'.padEnd(24)}${'p50'.padStart(8)}${'p95'.padStart(8)}${'max'.padStart(8)}   budget ${BUDGET_MS} ms`);
  for (const result of results) {
    const verdict = result.path.startsWith('/api/') ? '' : result.p95 < BUDGET_MS ? 'ok' : 'OVER';
    console.log(`${result.page.padEnd(24)}${String(result.p50).padStart(8)}${String(result.p95).padStart(8)}${String(result.max).padStart(8)}   ${verdict}`);
  }
  if (args.json) writeFileSync(args.json, `${JSON.stringify({ tasks: TASKS, requests: REQUESTS, budgetMs: BUDGET_MS, results }, null, 2)}\n`);
} finally {
  api.child.kill('SIGTERM');
  await api.exited;
  dcl.close();
  await admin.query(`drop database if exists ${database} with (force)`);
  await admin.end();
}
