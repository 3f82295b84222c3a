/**
 * Benchmark: AutonomOS end to end next to raw pg-boss, on the same PostgreSQL in the same run.
 *
 *   npm run bench -- [--tasks N] [--concurrency C]
 *
 * Starts `src/main/all.ts` (API + worker, one process) against a fresh database and a local fake
 * Slack, creates N tasks over HTTP with C requests in flight, waits for all to succeed, and then
 * sends and works N no-op jobs with pg-boss alone. Prints one table and a JSON line.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { PgBoss } from 'pg-boss';

const { values: args } = parseArgs({
  options: {
    tasks: { type: 'string', default: '2000' },
    concurrency: { type: 'string', default: '32' },
  },
});
const TASKS = Number(args.tasks);
const CONCURRENCY = Number(args.concurrency);
const ADMIN_URL = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const ROOT = new URL('../', import.meta.url).pathname;

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
const summary = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99) };
};
const round = (value: number, digits = 1) => Math.round(value * 10 ** digits) / 10 ** digits;

async function until<T>(probe: () => Promise<T | undefined>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function withDatabase<T>(work: (url: string) => Promise<T>): Promise<T> {
  const name = `autonomos_bench_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`create database ${name}`);
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  try {
    return await work(url.toString());
  } finally {
    await admin.query(`drop database if exists ${name} with (force)`);
    await admin.end();
  }
}

/** A run of `total` calls of `call`, `concurrency` at a time; returns each call's latency in ms. */
async function runConcurrently(total: number, concurrency: number, call: (index: number) => Promise<void>): Promise<number[]> {
  const latencies: number[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) {
        const index = next++;
        const started = performance.now();
        await call(index);
        latencies.push(performance.now() - started);
      }
    }),
  );
  return latencies;
}

async function benchAutonomos(databaseUrl: string) {
  const slack = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  await new Promise<void>((resolve) => slack.listen(0, '127.0.0.1', resolve));
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  const service = spawn(process.execPath, ['--import', 'tsx', 'src/main/all.ts'], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      NODE_ENV: 'production',
      SECRET_KEY: randomBytes(32).toString('hex'),
      DATABASE_URL: databaseUrl,
      PORT: String(port),
      HOST: '127.0.0.1',
      LOG_LEVEL: 'warn',
      SLACK_WEBHOOK_URL: `http://127.0.0.1:${(slack.address() as AddressInfo).port}/hook`,
      ...(process.env.WORKER_CONCURRENCY ? { WORKER_CONCURRENCY: process.env.WORKER_CONCURRENCY } : {}),
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const base = `http://127.0.0.1:${port}`;
  try {
    await until(async () => (await fetch(`${base}/health/api`).then((r) => r.ok).catch(() => false)) || undefined, 30_000, 'the service');
    const credentials = { email: `bench-${randomBytes(3).toString('hex')}@example.com`, password: 'benchmark-password' };
    await fetch(`${base}/api/v1/auth/register`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: `bench ${credentials.email}`, ...credentials }),
    });
    const login = (await (
      await fetch(`${base}/api/v1/auth/login`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(credentials) })
    ).json()) as { access_token: string };
    const headers = { 'Content-Type': 'application/json', Authorization: `Bearer ${login.access_token}` };

    const startedAt = performance.now();
    const createLatencies = await runConcurrently(TASKS, CONCURRENCY, async (index) => {
      const response = await fetch(`${base}/api/v1/tasks`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ payload: { action: 'post_to_slack', channel: '#bench', message: `task ${index}` } }),
      });
      if (response.status !== 201) throw new Error(`create answered ${response.status}: ${await response.text()}`);
      await response.arrayBuffer();
    });
    const createSeconds = (performance.now() - startedAt) / 1000;

    const db = new pg.Client({ connectionString: databaseUrl });
    await db.connect();
    await until(
      async () => {
        const { rows } = await db.query<{ done: string }>(`select count(*) as done from tasks where status in ('success', 'failed')`);
        return Number(rows[0]!.done) >= TASKS ? true : undefined;
      },
      10 * 60_000,
      'all tasks to finish',
    );
    const endToEndSeconds = (performance.now() - startedAt) / 1000;
    const { rows } = await db.query<{ pickup_ms: number; failed: boolean }>(
      `select extract(epoch from started_at - created_at) * 1000 as pickup_ms, status = 'failed' as failed from tasks`,
    );
    await db.end();
    return {
      createPerSecond: TASKS / createSeconds,
      createLatency: summary(createLatencies),
      endToEndPerSecond: TASKS / endToEndSeconds,
      pickup: summary(rows.map((row) => Number(row.pickup_ms))),
      failed: rows.filter((row) => row.failed).length,
    };
  } finally {
    service.kill('SIGTERM');
    await new Promise((resolve) => service.once('exit', resolve));
    slack.close();
  }
}

async function benchRawPgBoss(databaseUrl: string) {
  const boss = new PgBoss({ connectionString: databaseUrl, schema: 'pgboss_bench', useListenNotify: true, supervise: false, schedule: false });
  boss.on('error', (error) => console.error(error));
  await boss.start();
  const queue = 'bench-noop';
  await boss.createQueue(queue, { policy: 'standard', notify: true, partition: true });
  const pickups: number[] = [];
  let done = 0;
  await boss.work<{ sentAt: number }>(
    queue,
    { batchSize: 4, burstWhenBatchFull: true, localConcurrency: 8, pollingIntervalSeconds: 0.5, notifyPollingIntervalSeconds: 0.5 },
    async (jobs) => {
      for (const job of jobs) pickups.push(Date.now() - job.data.sentAt);
      done += jobs.length;
    },
  );
  const startedAt = performance.now();
  const sendLatencies = await runConcurrently(TASKS, CONCURRENCY, async () => {
    await boss.send(queue, { sentAt: Date.now() });
  });
  const sendSeconds = (performance.now() - startedAt) / 1000;
  await until(async () => (done >= TASKS ? true : undefined), 10 * 60_000, 'raw jobs');
  const endToEndSeconds = (performance.now() - startedAt) / 1000;
  await boss.stop({ graceful: true, timeout: 5_000 });
  return {
    createPerSecond: TASKS / sendSeconds,
    createLatency: summary(sendLatencies),
    endToEndPerSecond: TASKS / endToEndSeconds,
    pickup: summary(pickups),
    failed: 0,
  };
}

const autonomos = await withDatabase(benchAutonomos);
const raw = await withDatabase(benchRawPgBoss);

const row = (name: string, r: typeof autonomos) =>
  `| ${name.padEnd(28)} | ${String(round(r.createPerSecond, 0)).padStart(9)} | ${String(round(r.createLatency.p50)).padStart(8)} | ${String(round(r.createLatency.p99)).padStart(8)} | ${String(round(r.endToEndPerSecond, 0)).padStart(8)} | ${String(round(r.pickup.p50)).padStart(10)} | ${String(round(r.pickup.p99)).padStart(10)} |`;
console.log(`\n${TASKS} tasks, ${CONCURRENCY} in flight, Node ${process.version}\n`);
console.log('| run                          | created/s | p50 (ms) | p99 (ms) | e2e/s    | pickup p50 | pickup p99 |');
console.log('|------------------------------|-----------|----------|----------|----------|------------|------------|');
console.log(row('AutonomOS (HTTP, API+worker)', autonomos));
console.log(row('raw pg-boss send + work', raw));
console.log(`\n${autonomos.failed} AutonomOS tasks failed.`);
console.log(JSON.stringify({ tasks: TASKS, concurrency: CONCURRENCY, autonomos, raw }));
