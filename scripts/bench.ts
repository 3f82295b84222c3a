/**
 * Benchmark: AutonomOS end to end next to raw pg-boss, on the same PostgreSQL in the same run.
 *
 *   npm run bench -- [--tasks N] [--concurrency C] [--sequential M] [--split]
 *
 * Starts `src/main/all.ts` (API + worker, one process) against a fresh database and a local fake
 * Slack, creates N tasks over HTTP with C requests in flight and waits for all to finish (create
 * throughput and latency, end-to-end tasks/s, pickup under load), then M tasks one at a time
 * (pickup when nothing else is queued). Then the same with raw pg-boss send + no-op work.
 * Pickup is created → started. Prints a Markdown table and a JSON line.
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
    sequential: { type: 'string', default: '200' },
    split: { type: 'boolean', default: false },
  },
});
const TASKS = Number(args.tasks);
const CONCURRENCY = Number(args.concurrency);
/** The unloaded phase: tasks created one at a time, each waited for, so pickup is the real wake-up time. */
const SEQUENTIAL = Number(args.sequential);
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
  const secret = randomBytes(32).toString('hex');
  // --split runs the API and the worker as two processes (two cores), as a deployment would.
  const entrypoints = args.split ? ['api', 'worker'] : ['all'];
  const services = entrypoints.map((mode) => spawn(process.execPath, ['--import', 'tsx', `src/main/${mode}.ts`], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      NODE_ENV: 'production',
      SECRET_KEY: secret,
      DATABASE_URL: databaseUrl,
      PORT: String(port),
      HOST: '127.0.0.1',
      LOG_LEVEL: 'warn',
      SLACK_WEBHOOK_URL: `http://127.0.0.1:${(slack.address() as AddressInfo).port}/hook`,
      ...(process.env.WORKER_CONCURRENCY ? { WORKER_CONCURRENCY: process.env.WORKER_CONCURRENCY } : {}),
      // e.g. BENCH_SERVICE_NODE_OPTIONS="--cpu-prof --cpu-prof-dir=/tmp/prof" to profile the service.
      ...(process.env.BENCH_SERVICE_NODE_OPTIONS ? { NODE_OPTIONS: process.env.BENCH_SERVICE_NODE_OPTIONS } : {}),
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  }));
  const base = `http://127.0.0.1:${port}`;
  try {
    await until(async () => (await fetch(`${base}/health/worker`).then((r) => r.ok).catch(() => false)) || undefined, 30_000, 'the service');
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
    const pickupMs = async (where: string) =>
      (await db.query<{ pickup_ms: number }>(`select extract(epoch from started_at - created_at) * 1000 as pickup_ms from tasks ${where}`)).rows.map(
        (row) => Number(row.pickup_ms),
      );
    const loaded = await pickupMs('');
    const failed = Number((await db.query(`select count(*) as n from tasks where status = 'failed'`)).rows[0].n);

    // Unloaded: one task at a time, the next created only once the previous has started.
    const idleIds: string[] = [];
    for (let index = 0; index < SEQUENTIAL; index++) {
      const response = await fetch(`${base}/api/v1/tasks`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ payload: { action: 'post_to_slack', channel: '#bench-idle', message: `idle ${index}` } }),
      });
      const { id } = (await response.json()) as { id: string };
      idleIds.push(id);
      await until(
        async () => ((await db.query('select 1 from tasks where id = $1 and started_at is not null', [id])).rowCount ? true : undefined),
        10_000,
        'an unloaded task to start',
      );
    }
    const idle = await pickupMs(`where id = any('{${idleIds.join(',')}}'::uuid[])`);
    await db.end();
    return {
      createPerSecond: TASKS / createSeconds,
      createLatency: summary(createLatencies),
      endToEndPerSecond: TASKS / endToEndSeconds,
      pickupLoaded: summary(loaded),
      pickupIdle: summary(idle),
      failed,
    };
  } finally {
    await Promise.all(
      services.map((service) => {
        service.kill('SIGTERM');
        return new Promise((resolve) => service.once('exit', resolve));
      }),
    );
    slack.close();
  }
}

async function benchRawPgBoss(databaseUrl: string) {
  const boss = new PgBoss({ connectionString: databaseUrl, schema: 'pgboss_bench', useListenNotify: true, supervise: false, schedule: false });
  boss.on('error', (error) => console.error(error));
  await boss.start();
  const queue = 'bench-noop';
  await boss.createQueue(queue, { policy: 'standard', notify: true, partition: true });
  let pickups: number[] = [];
  let done = 0;
  // The same work options as the AutonomOS worker (src/worker/worker.ts).
  await boss.work<{ sentAt: number }>(
    queue,
    {
      batchSize: 4,
      burstWhenBatchFull: true,
      localConcurrency: Number(process.env.WORKER_CONCURRENCY ?? 8),
      pollingIntervalSeconds: 0.5,
      notifyPollingIntervalSeconds: 0.5,
    },
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
  const loaded = pickups;
  pickups = [];
  for (let index = 0; index < SEQUENTIAL; index++) {
    await boss.send(queue, { sentAt: Date.now() });
    await until(async () => (pickups.length > index ? true : undefined), 10_000, 'an unloaded job to start');
  }
  await boss.stop({ graceful: true, timeout: 5_000 });
  return {
    createPerSecond: TASKS / sendSeconds,
    createLatency: summary(sendLatencies),
    endToEndPerSecond: TASKS / endToEndSeconds,
    pickupLoaded: summary(loaded),
    pickupIdle: summary(pickups),
    failed: 0,
  };
}

const autonomos = await withDatabase(benchAutonomos);
const raw = await withDatabase(benchRawPgBoss);

const cells = (r: typeof autonomos) =>
  [
    round(r.createPerSecond, 0),
    round(r.createLatency.p50),
    round(r.createLatency.p99),
    round(r.endToEndPerSecond, 0),
    round(r.pickupLoaded.p50),
    round(r.pickupLoaded.p99),
    round(r.pickupIdle.p50),
    round(r.pickupIdle.p99),
  ].join(' | ');
console.log(`\n${TASKS} tasks with ${CONCURRENCY} requests in flight, then ${SEQUENTIAL} one at a time; Node ${process.version}\n`);
console.log('| run | created/s | create p50 ms | create p99 ms | end-to-end tasks/s | pickup p50 ms (load) | pickup p99 ms (load) | pickup p50 ms (idle) | pickup p99 ms (idle) |');
console.log('|---|---|---|---|---|---|---|---|---|');
console.log(`| AutonomOS over HTTP (${args.split ? 'API and worker processes' : 'API + worker, one process'}) | ${cells(autonomos)} |`);
console.log(`| raw pg-boss send + no-op work | ${cells(raw)} |`);
console.log(`\n${autonomos.failed} AutonomOS tasks failed.`);
console.log(JSON.stringify({ tasks: TASKS, concurrency: CONCURRENCY, sequential: SEQUENTIAL, autonomos, raw }));
