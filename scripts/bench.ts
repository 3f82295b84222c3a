/**
 * Benchmark: AutonomOS next to its references, measured in one run on one machine, printed as a
 * table of figures with their ratios and targets, and written as JSON with --json FILE.
 *
 *   npm run bench -- [--tasks 2000] [--warmup 10000] [--repeat 1] [--concurrency 32] [--paced 500] [--rate 50] [--fairness] [--backlog 10000] [--login-flood] [--watched] [--idle] [--waits] [--statements] [--json FILE]
 *
 * The API and the worker run as separate processes, compiled as `npm run api` and `npm run worker`
 * run them (NODE_ENV=production) against a fresh database per phase and a local fake Slack (a process of its own) that answers at
 * once. Each throughput phase (bare, creates, loaded, raw) first runs `--warmup` requests or jobs
 * the same way, unmeasured, so that every side is measured warm (JIT-compiled code, open and
 * prepared connections, a heap sized to its load), as a service that runs for more than a few
 * seconds is; `--warmup 0` measures them cold. The API takes long to warm: after 1,000 creations
 * it still spent a fifth more CPU on each than after 14,000 (two API processes loaded in turn).
 * Before each measurement the phase's database is vacuumed, analysed and checkpointed
 * (settleDatabase). With `--repeat N` the four throughput phases run N rounds (fresh
 * databases each) and the key figures are also given as the median and range over the rounds: on
 * this kind of machine one round's ratio moves by up to ±0.25. Phases:
 * - bare: the floor for creation, a node http + pg server doing one INSERT per request
 *   (scripts/lib/bare-insert-server.ts), `--tasks` requests with `--concurrency` in flight;
 * - creates: the same load on POST /api/v1/tasks with no worker running;
 * - loaded: the same load with the worker running the tasks: create latency, end-to-end rate
 *   (first create to last success), pickup (created to started) under load, and how many
 *   deliveries the claim put back because the tenant was at its cap (fetches made for nothing);
 * - paced: `--paced` tasks at `--rate` per second, open loop: pickup when the worker keeps up;
 * - raw: raw pg-boss, `send()` per job at the same concurrency, `work()` in batches of 50 whose
 *   handler makes the same HTTP POST: the end-to-end floor the queue itself sets, and the
 *   latency of its `send()` while its worker runs (straight from the client to PostgreSQL: no
 *   HTTP, no API process), beside creation's while ours runs;
 * - fairness (--fairness): tenant A queues `--backlog` tasks while no worker runs; the worker
 *   starts; tenant B sends 20 tasks: B's pickup, how fast A's backlog drains meanwhile, the
 *   most of A's tasks that ran at once (against its cap) and A's deliveries put back at its cap.
 * - login flood (--login-flood): GET /api/v1/tasks/{id} latency, 4 in flight, alone and while 50
 *   clients keep sending wrong-password sign-ins (the failure limit off, so every one reaches
 *   the password hashing and its bounded line).
 * - watched (--watched): the loaded phase runs with an event stream open on its tenant (GET
 *   /api/v1/events, its events counted): what creation and the worker cost while a tenant's task
 *   events are made. Without it nobody watches, as for most tenants most of the time, and no
 *   event is made (migration 0017_watched_task_events).
 * - idle (--idle): the CPU an idle worker, and PostgreSQL beside it, use while nothing is queued
 *   (its polls, heartbeats and maintenance), as a share of one core.
 * - waits (--waits): what the service's database sessions were doing while the loaded phase's
 *   creates ran (PostgreSQL's wait events, sampled every WAIT_SAMPLE_MS), per connection pool
 *   and statement: where a creation spends its time besides CPU. The sampling costs a little
 *   PostgreSQL CPU of its own, so it is off unless asked for.
 * - statements (--statements): what each statement of the loaded phase cost PostgreSQL per task,
 *   from the creations' start to the last task's end (pg_stat_statements: execution time, which
 *   includes waiting for locks but not the commit, buffers and WAL). It needs a server that
 *   preloads the extension (shared_preload_libraries = 'pg_stat_statements', which this
 *   machine's does not): point BENCH_DATABASE_URL at one; without it the part is skipped.
 * The RSS of the API and worker processes is sampled throughout. The creations are sent by a
 * lean client (jsonPoster: HTTP/1.1 written and read by hand over kept-alive sockets), which
 * costs a tenth of what `fetch` did per request: it shares the two cores with what it measures.
 */
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { get as httpGet, type IncomingMessage } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { PgBoss } from 'pg-boss';
import { freePort } from '../src/main/embedded-postgres.js';
import { TASK_QUEUE } from '../src/queue/task-queue.js';
import { httpJson, jsonPoster, registerTenant } from './lib/http-json.js';
import { pollUntil } from './lib/poll.js';
import { buildService, spawnCompiledService, spawnScript, type ServiceProcess } from './lib/service-process.js';

const { values: args } = parseArgs({
  options: {
    tasks: { type: 'string', default: '2000' },
    warmup: { type: 'string', default: '10000' },
    repeat: { type: 'string', default: '1' },
    concurrency: { type: 'string', default: '32' },
    paced: { type: 'string', default: '500' },
    rate: { type: 'string', default: '50' },
    fairness: { type: 'boolean', default: false },
    backlog: { type: 'string', default: '10000' },
    'login-flood': { type: 'boolean', default: false },
    idle: { type: 'boolean', default: false },
    watched: { type: 'boolean', default: false },
    waits: { type: 'boolean', default: false },
    statements: { type: 'boolean', default: false },
    json: { type: 'string' },
  },
});
const TASKS = Number(args.tasks);
const WARMUP = Number(args.warmup);
const REPEAT = Math.max(1, Number(args.repeat));
/** Warm-up tasks are numbered from here, apart from the measured ones. */
const WARMUP_OFFSET = 1_000_000;
const CONCURRENCY = Number(args.concurrency);
const PACED = Number(args.paced);
const RATE = Number(args.rate);
const BACKLOG = Number(args.backlog);
/** Tenant B's tasks in the fairness phase, one every FAIRNESS_GAP_MS. */
const FAIRNESS_PROBES = 20;
const FAIRNESS_GAP_MS = 100;
/** The login flood: this many clients signing in with a wrong password, while reads are timed. */
const FLOOD_CLIENTS = 50;
const FLOOD_READS = 1_000;
const FLOOD_READERS = 4;
/** The idle phase: the worker settles for IDLE_SETTLE_MS after starting, then its CPU is measured over IDLE_MEASURE_MS. */
const IDLE_SETTLE_MS = 15_000;
const IDLE_MEASURE_MS = 30_000;
/** The waits phase: how often the database sessions' wait events are read. */
const WAIT_SAMPLE_MS = 10;
/** Where the raw pg-boss reference lives, apart from AutonomOS's own schema. */
const RAW_SCHEMA = 'pgboss_bench';
const RAW_QUEUE = 'bench-raw';
const ADMIN_URL = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
const summary = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99) };
};
const round = (value: number, digits = 1) => Math.round(value * 10 ** digits) / 10 ** digits;

async function until<T>(probe: () => Promise<T | undefined>, timeoutMs: number, what: string): Promise<T> {
  const value = await pollUntil(probe, timeoutMs, 50);
  if (value === undefined) throw new Error(`timed out waiting for ${what}`);
  return value;
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

/** `total` calls of `call`, `concurrency` at a time; returns each call's latency in ms and the run's seconds. */
async function runConcurrently(total: number, concurrency: number, call: (index: number) => Promise<void>) {
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) {
        const index = next++;
        const callStarted = performance.now();
        await call(index);
        latencies.push(performance.now() - callStarted);
      }
    }),
  );
  return { latencies, seconds: (performance.now() - started) / 1000 };
}

/**
 * A Slack that answers 200 at once (`npm run fake-slack`, quiet), in a process of its own: served
 * from the benchmark's own event loop, the worker's posts (700-1,000 a second in the loaded phase)
 * delayed the answers to the creations it was timing.
 */
async function startFakeSlack() {
  const port = await freePort();
  const server = spawnScript('scripts/fake-slack.ts', { FAKE_SLACK_PORT: String(port), FAKE_SLACK_QUIET: '1' });
  await until(async () => (server.output().includes('listening') ? true : undefined), 30_000, 'the fake Slack');
  return { url: `http://127.0.0.1:${port}/hook`, close: () => stopAll([server]) };
}

/** The resident set size of a process, MB (Linux /proc). */
function rssMb(pid: number | undefined): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN) / 1024;
  } catch {
    return NaN;
  }
}

/** The highest RSS each named process reaches while sampling runs. */
function sampleMemory(processes: Record<string, ServiceProcess>) {
  const peaks: Record<string, number> = {};
  const timer = setInterval(() => {
    for (const [name, service] of Object.entries(processes)) peaks[name] = Math.max(peaks[name] ?? 0, rssMb(service.child.pid) || 0);
  }, 250);
  return { peaks, stop: () => clearInterval(timer) };
}

/** Linux's USER_HZ: /proc counts CPU time in these. */
const CLOCK_TICKS = 100;

/** CPU seconds (user + system) a process has used, from /proc/<pid>/stat; with `reaped`, also its waited-for children's. */
function cpuSeconds(pid: number, reaped = false): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    // Fields 14-17 of proc(5), counted from the state (field 3) here: utime, stime, cutime, cstime.
    const ticks = Number(fields[11]) + Number(fields[12]) + (reaped ? Number(fields[13]) + Number(fields[14]) : 0);
    return ticks / CLOCK_TICKS;
  } catch {
    return 0;
  }
}

/** CPU seconds used by every PostgreSQL process, including its backends that have exited. */
function postgresCpuSeconds(): number {
  let total = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let comm: string;
    try {
      comm = readFileSync(`/proc/${entry}/comm`, 'utf8').trim();
    } catch {
      continue;
    }
    if (comm === 'postgres') total += cpuSeconds(Number(entry), true);
  }
  return total;
}

/**
 * Measures the CPU a phase costs per task, split between the service process, PostgreSQL and
 * this benchmark's own client: on a 2-core machine they share, so this says where a gap comes from.
 */
function meterCpu(...servicePids: (number | undefined)[]) {
  const perProcess = () => servicePids.map((pid) => cpuSeconds(pid ?? 0));
  const start = { service: perProcess(), postgres: postgresCpuSeconds(), client: process.cpuUsage() };
  return (tasks: number) => {
    const client = process.cpuUsage(start.client);
    const perTask = (seconds: number) => round((seconds * 1000) / tasks, 2);
    const service = perProcess().map((seconds, index) => seconds - start.service[index]!);
    return {
      serviceMs: perTask(service.reduce((sum, seconds) => sum + seconds, 0)),
      /** Each service process's share, in the order given (e.g. the API's, then the worker's). */
      perProcessMs: service.map(perTask),
      postgresMs: perTask(postgresCpuSeconds() - start.postgres),
      clientMs: perTask((client.user + client.system) / 1e6),
    };
  };
}

/**
 * Samples what the service's sessions on the phase's database are doing (pg_stat_activity), every
 * WAIT_SAMPLE_MS until stopped: per connection pool (application_name) and statement (its first
 * words), how many samples found it on the CPU or waiting, and on what. Each group's shares of
 * its own samples say where its statements' time goes.
 */
function sampleWaits(url: string) {
  const groups = new Map<string, { pool: string; statement: string; samples: number; activities: Record<string, number> }>();
  let sampling = true;
  const done = (async () => {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      while (sampling) {
        const { rows } = await client.query<{ pool: string; statement: string; activity: string }>(
          `select application_name as pool, trim(left(regexp_replace(query, '(/\\*.*?\\*/|\\s)+', ' ', 'g'), 40)) as statement,
                  coalesce(wait_event_type || ': ' || wait_event, 'CPU') as activity
           from pg_stat_activity where datname = current_database() and state = 'active' and pid <> pg_backend_pid()`,
        );
        for (const { pool, statement, activity } of rows) {
          const key = `${pool} ${statement}`;
          const group = groups.get(key) ?? { pool, statement, samples: 0, activities: {} };
          group.samples += 1;
          group.activities[activity] = (group.activities[activity] ?? 0) + 1;
          groups.set(key, group);
        }
        await sleep(WAIT_SAMPLE_MS);
      }
    } finally {
      await client.end();
    }
  })();
  return async () => {
    sampling = false;
    await done;
    return [...groups.values()].sort((a, b) => b.samples - a.samples);
  };
}

/**
 * Starts counting what each statement on the phase's database costs (pg_stat_statements); the
 * returned function reads the counts, per task, costliest first. Undefined, with the reason
 * printed, when the server does not load the extension.
 */
async function countStatements(url: string) {
  try {
    await query(url, 'create extension if not exists pg_stat_statements');
    await query(url, 'select pg_stat_statements_reset(0, (select oid from pg_database where datname = current_database()), 0)');
  } catch (error) {
    console.warn(`--statements skipped: ${(error as Error).message}`);
    return undefined;
  }
  return async (tasks: number) => {
    const rows = await query<{ statement: string; calls: string; rows: string; exec_ms: number; blocks: string; wal_records: string; wal_bytes: string }>(
      url,
      `select trim(left(regexp_replace(query, '(/\\*.*?\\*/|\\s)+', ' ', 'g'), 60)) as statement, calls, rows, total_exec_time as exec_ms,
              shared_blks_hit + shared_blks_read as blocks, wal_records, wal_bytes
       from pg_stat_statements where dbid = (select oid from pg_database where datname = current_database()) and toplevel
         and query not like '%pg_stat_statements%'
       order by total_exec_time desc`,
    );
    const perTask = (value: number | string, scale = 1) => round((Number(value) * scale) / tasks, 1);
    return rows.map((row) => ({
      statement: row.statement,
      callsPerTask: round(Number(row.calls) / tasks, 3),
      rowsPerCall: round(Number(row.rows) / Math.max(1, Number(row.calls)), 1),
      execUsPerTask: perTask(row.exec_ms, 1000),
      blocksPerTask: perTask(row.blocks),
      walRecordsPerTask: perTask(row.wal_records),
      walBytesPerTask: perTask(row.wal_bytes),
    }));
  };
}

async function stopAll(services: ServiceProcess[]) {
  for (const service of services) if (service.child.exitCode === null) service.child.kill('SIGTERM');
  await Promise.all(services.map((service) => service.exited));
}

const slackPayload = (index: number) => ({ payload: { action: 'post_to_slack', channel: '#bench', message: `task ${index}` } });

async function createTasks(service: Service, token: string, total: number, concurrency: number, offset = 0) {
  return runConcurrently(total, concurrency, async (index) => {
    const status = await service.post('/api/v1/tasks', slackPayload(offset + index), { token, timeoutMs: 30_000 });
    if (status !== 201) throw new Error(`create answered ${status}`);
  });
}

interface Service {
  base: string;
  /** The load's client: POSTs over kept-alive connections, one per request in flight. */
  post: ReturnType<typeof jsonPoster>;
  api: ServiceProcess;
  worker?: ServiceProcess;
  env: Record<string, string>;
}

/** Lets the benchmark read the API's own request durations (GET /metrics). */
const METRICS_TOKEN = randomBytes(16).toString('hex');
const SLOW_CREATION_SECONDS = '0.05';

/**
 * The creations the API has answered in all, and those it took over 50 ms with, by its own
 * histogram (autonomos_http_request_duration_seconds: from its metrics middleware, the second
 * one a request meets, to the answer being made). Beside the client's latencies it tells the
 * time a request spent in the service's hands from the time it waited outside them: in the
 * socket, for the API's event loop, for the client's.
 */
async function apiCreations(service: Service) {
  const metrics = await fetch(`${service.base}/metrics`, { headers: { Authorization: `Bearer ${METRICS_TOKEN}` } }).then((response) => response.text());
  const bucket = (le: string) =>
    Number(new RegExp(`^autonomos_http_request_duration_seconds_bucket\\{(?=[^}]*method="POST")(?=[^}]*route="/api/v1/tasks")[^}]*le="${le.replace('+', '\\+')}"[^}]*\\} (\\d+)$`, 'm').exec(metrics)?.[1] ?? NaN);
  const all = bucket('+Inf');
  return { all, slow: all - bucket(SLOW_CREATION_SECONDS) };
}

async function startService(databaseUrl: string, slackUrl: string, withWorker: boolean, extraEnv: Record<string, string> = {}): Promise<Service> {
  const port = await freePort();
  const env = {
    ...extraEnv,
    DATABASE_URL: databaseUrl,
    SECRET_KEY: randomBytes(32).toString('hex'),
    PORT: String(port),
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    SLACK_WEBHOOK_URL: slackUrl,
    METRICS_TOKEN,
    ...(process.env.WORKER_CONCURRENCY ? { WORKER_CONCURRENCY: process.env.WORKER_CONCURRENCY } : {}),
    ...(process.env.TENANT_MAX_ACTIVE_TASKS ? { TENANT_MAX_ACTIVE_TASKS: process.env.TENANT_MAX_ACTIVE_TASKS } : {}),
    // One tenant floods the service here: its creation rate and quota are off unless set, so the
    // figures are the engine's (the limits' own cost is in the run with them set).
    TENANT_RATE_LIMIT_PER_SECOND: process.env.TENANT_RATE_LIMIT_PER_SECOND ?? '0',
    TENANT_MAX_QUEUED_TASKS: process.env.TENANT_MAX_QUEUED_TASKS ?? '0',
    // e.g. BENCH_SERVICE_NODE_OPTIONS="--cpu-prof --cpu-prof-dir=/tmp/prof" to profile the service.
    ...(process.env.BENCH_SERVICE_NODE_OPTIONS ? { NODE_OPTIONS: process.env.BENCH_SERVICE_NODE_OPTIONS } : {}),
  };
  const base = `http://127.0.0.1:${port}`;
  const api = spawnCompiledService('api', env);
  await until(async () => ((await httpJson(base, 'GET', '/health/api')).status === 200 ? true : undefined), 60_000, 'the API');
  const service: Service = { base, post: jsonPoster(base, CONCURRENCY), api, env };
  if (withWorker) await startWorker(service);
  return service;
}

async function startWorker(service: Service) {
  service.worker = spawnCompiledService('worker', service.env);
  await until(async () => ((await httpJson(service.base, 'GET', '/health/worker')).status === 200 ? true : undefined), 60_000, 'the worker');
}

async function query<T>(url: string, text: string, values: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(text, values)).rows as T[];
  } finally {
    await client.end();
  }
}

/**
 * Between the warm-up and the measured run, as pgbench does before its runs: the warm-up's
 * garbage vacuumed and its statistics gathered, and a checkpoint taken, so that neither an
 * autovacuum nor the full-page writes after a checkpoint land in one side's measurement only.
 */
async function settleDatabase(url: string) {
  await query(url, 'vacuum analyze');
  // CHECKPOINT needs a superuser or pg_checkpoint: without it the figures are only noisier.
  await query(url, 'checkpoint').catch((error: Error) => console.warn(`no checkpoint before the measurement: ${error.message}`));
}

/**
 * Waits until none of the tasks `where` picks is queued or running: the end of a phase's work
 * (the benchmark sends only plain tasks, and awaits each creation's 201 before waiting here).
 * Watched over one connection, counting through the partial indexes of the running tasks and the
 * queued plain ones, so the watching costs PostgreSQL next to nothing, as reading the raw worker's
 * output costs the raw pg-boss reference nothing. (Counting the finished tasks, over a new
 * connection each poll, took a sixth of a core from the service it measured: 7.8 ms of
 * PostgreSQL's time every 50 ms.) A failed count ends the benchmark rather than the wait.
 */
async function untilAllFinished(url: string, where: string, timeoutMs: number, what: string) {
  const client = new pg.Client({ connectionString: url });
  // A connection lost between counts fails the next count.
  client.on('error', () => {});
  await client.connect();
  try {
    const unfinished = async () =>
      Number(
        (
          await client.query<{ n: string }>(
            `select (select count(*) from tasks where status = 'in_progress' and ${where})
                  + (select count(*) from tasks where status = 'queued' and kind = 'task' and ${where}) as n`,
          )
        ).rows[0]!.n,
      );
    const deadline = Date.now() + timeoutMs;
    while ((await unfinished()) > 0) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await sleep(50);
    }
  } finally {
    await client.end();
  }
}

/**
 * Deliveries beyond each task's own attempts: here, where no task fails and no worker is lost,
 * those put back because their tenant was at its cap when the claim came, each one a fetch and a
 * claim made for nothing. (pg-boss counts a job's every delivery after the first in retry_count;
 * the task counts its own retries.)
 */
const putBacks = async (url: string, where = 'true') =>
  Number(
    (
      await query<{ n: string }>(
        url,
        `select coalesce(sum(job.retry_count - tasks.retry_count), 0) as n from pgboss.job join tasks on tasks.id = job.id
         where job.name = '${TASK_QUEUE.task}' and ${where}`,
      )
    )[0]!.n,
  );
const pickups = async (url: string, where = 'true') =>
  (await query<{ ms: number }>(url, `select extract(epoch from started_at - created_at) * 1000 as ms from tasks where started_at is not null and ${where}`)).map((row) =>
    Number(row.ms),
  );

async function benchBare(databaseUrl: string) {
  const port = await freePort();
  const server = spawnScript('scripts/lib/bare-insert-server.ts', { DATABASE_URL: databaseUrl, PORT: String(port) });
  const base = `http://127.0.0.1:${port}`;
  try {
    await until(async () => (server.output().includes('listening') ? true : undefined), 30_000, 'the bare insert server');
    const post = jsonPoster(base, CONCURRENCY);
    const insert = async (index: number) => {
      const status = await post('/tasks', slackPayload(index), { timeoutMs: 30_000 });
      if (status !== 201) throw new Error(`bare insert answered ${status}`);
    };
    await runConcurrently(WARMUP, CONCURRENCY, (index) => insert(WARMUP_OFFSET + index));
    await settleDatabase(databaseUrl);
    const cpu = meterCpu(server.child.pid);
    const run = await runConcurrently(TASKS, CONCURRENCY, insert);
    return { createsPerSecond: TASKS / run.seconds, createLatency: summary(run.latencies), cpuPerTask: cpu(TASKS) };
  } finally {
    await stopAll([server]);
  }
}

async function benchCreatesOnly(databaseUrl: string, slackUrl: string) {
  const service = await startService(databaseUrl, slackUrl, false);
  const memory = sampleMemory({ api: service.api });
  try {
    const { token } = await registerTenant(service.base, 'bench');
    await createTasks(service, token, WARMUP, CONCURRENCY, WARMUP_OFFSET);
    await settleDatabase(databaseUrl);
    const cpu = meterCpu(service.api.child.pid);
    const run = await createTasks(service, token, TASKS, CONCURRENCY);
    return { createsPerSecond: TASKS / run.seconds, createLatency: summary(run.latencies), cpuPerTask: cpu(TASKS), apiRssMb: memory.peaks.api ?? NaN };
  } finally {
    memory.stop();
    await stopAll([service.api]);
  }
}

/**
 * An event stream of the tenant whose token is `token` (GET /api/v1/events), read as it comes:
 * `events()` is how many task events it has received so far.
 */
async function watchEvents(base: string, token: string) {
  const marker = 'event: task.';
  let events = 0;
  let tail = '';
  const response = await new Promise<IncomingMessage>((resolve, reject) =>
    httpGet(`${base}/api/v1/events`, { headers: { Authorization: `Bearer ${token}` } }, resolve).on('error', reject),
  );
  if (response.statusCode !== 200) throw new Error(`the event stream answered ${response.statusCode}`);
  response.setEncoding('utf8');
  response.on('data', (chunk: string) => {
    // A marker split between two chunks is found whole in the last characters of one and the next.
    const text = tail + chunk;
    for (let at = text.indexOf(marker); at >= 0; at = text.indexOf(marker, at + marker.length)) events += 1;
    tail = text.slice(-(marker.length - 1));
  });
  let closing = false;
  response.on('close', () => {
    if (!closing) console.warn(`the event stream ended early, after ${events} events`);
  });
  response.on('error', () => {});
  return {
    events: () => events,
    close: () => {
      closing = true;
      response.destroy();
    },
  };
}

async function benchLoaded(databaseUrl: string, slackUrl: string) {
  const service = await startService(databaseUrl, slackUrl, true);
  const memory = sampleMemory({ api: service.api, worker: service.worker! });
  let stream: Awaited<ReturnType<typeof watchEvents>> | undefined;
  try {
    const { token } = await registerTenant(service.base, 'bench');
    if (args.watched) stream = await watchEvents(service.base, token);
    await createTasks(service, token, WARMUP, CONCURRENCY, WARMUP_OFFSET);
    await untilAllFinished(databaseUrl, 'true', 10 * 60_000, 'the warm-up tasks to finish');
    await settleDatabase(databaseUrl);
    const readStatements = args.statements ? await countStatements(databaseUrl) : undefined;
    const measuredFrom = (await query<{ now: string }>(databaseUrl, 'select now()::text as now'))[0]!.now;
    const cpu = meterCpu(service.api.child.pid, service.worker!.child.pid);
    const startedAt = performance.now();
    const stopSamplingWaits = args.waits ? sampleWaits(databaseUrl) : undefined;
    const apiBefore = await apiCreations(service);
    const run = await createTasks(service, token, TASKS, CONCURRENCY);
    const apiAfter = await apiCreations(service);
    const waits = await stopSamplingWaits?.();
    await untilAllFinished(databaseUrl, 'true', 10 * 60_000, 'all tasks to finish');
    const endToEndSeconds = (performance.now() - startedAt) / 1000;
    const endToEndCpuPerTask = cpu(TASKS);
    const statements = await readStatements?.(TASKS);
    const loadedPickup = summary(await pickups(databaseUrl, `created_at >= '${measuredFrom}'`));
    const loadedPutBacks = await putBacks(databaseUrl, `tasks.created_at >= '${measuredFrom}'`);

    // Paced: an open loop at RATE per second, each request on its own schedule.
    // A client of its own, unbounded: requests wait for nothing on the client's side.
    const pacedPost = jsonPoster(service.base);
    const pacedStarted = Date.now();
    const inFlight: Promise<number>[] = [];
    for (let index = 0; index < PACED; index++) {
      await sleep(Math.max(0, pacedStarted + (index * 1000) / RATE - Date.now()));
      inFlight.push(pacedPost('/api/v1/tasks', slackPayload(TASKS + index), { token, timeoutMs: 30_000 }));
    }
    const refused = (await Promise.all(inFlight)).filter((status) => status !== 201);
    if (refused.length > 0) throw new Error(`paced creates answered ${refused.join(', ')}`);
    await untilAllFinished(databaseUrl, 'true', 10 * 60_000, 'the paced tasks to finish');
    const pacedPickup = summary(await pickups(databaseUrl, `payload->>'message' in (${Array.from({ length: PACED }, (_, i) => `'task ${TASKS + i}'`).join(',')})`));
    return {
      createsPerSecond: TASKS / run.seconds,
      createLatency: summary(run.latencies),
      /** Creations over 50 ms: as the client saw them, and as the API timed them itself. */
      slowCreations: { client: run.latencies.filter((ms) => ms > 50).length, api: apiAfter.slow - apiBefore.slow, of: apiAfter.all - apiBefore.all },
      endToEndPerSecond: TASKS / endToEndSeconds,
      endToEndCpuPerTask,
      loadedPickup,
      loadedPutBacks,
      pacedPickup,
      waits,
      statements,
      apiRssMb: memory.peaks.api ?? NaN,
      workerRssMb: memory.peaks.worker ?? NaN,
      watchedEvents: stream?.events(),
    };
  } finally {
    stream?.close();
    memory.stop();
    await stopAll([service.api, service.worker!]);
  }
}

async function benchRawPgBoss(databaseUrl: string, slackUrl: string) {
  const worker = spawnScript('scripts/lib/raw-pgboss-worker.ts', { DATABASE_URL: databaseUrl, SLACK_WEBHOOK_URL: slackUrl, RAW_SCHEMA, RAW_QUEUE });
  const boss = new PgBoss({ connectionString: databaseUrl, schema: RAW_SCHEMA, supervise: false, schedule: false });
  boss.on('error', (error) => console.error(error));
  try {
    await until(async () => (worker.output().includes('raw worker ready') ? true : undefined), 60_000, 'the raw pg-boss worker');
    await boss.start();
    const doneCount = () => Number(/done (\d+)\n(?![\s\S]*done)/.exec(worker.output())?.[1] ?? 0);
    const send = async (index: number) => {
      await boss.send(RAW_QUEUE, { index });
    };
    await runConcurrently(WARMUP, CONCURRENCY, (index) => send(WARMUP_OFFSET + index));
    await until(async () => (doneCount() >= WARMUP ? true : undefined), 10 * 60_000, 'the warm-up jobs');
    await settleDatabase(databaseUrl);
    const cpu = meterCpu(worker.child.pid);
    const startedAt = performance.now();
    const run = await runConcurrently(TASKS, CONCURRENCY, send);
    await until(async () => (doneCount() >= WARMUP + TASKS ? true : undefined), 10 * 60_000, 'raw jobs');
    const endToEndSeconds = (performance.now() - startedAt) / 1000;
    return { sendsPerSecond: TASKS / run.seconds, sendLatency: summary(run.latencies), endToEndPerSecond: TASKS / endToEndSeconds, endToEndCpuPerTask: cpu(TASKS) };
  } finally {
    await boss.stop({ graceful: false });
    await stopAll([worker]);
  }
}

/**
 * The most of a tenant's tasks that were running (claimed, not yet finished) at one instant, from
 * their timestamps: how well its cap (TENANT_MAX_ACTIVE_TASKS) held. A finish and a start at the
 * same instant count as one after the other.
 */
async function mostRunningAtOnce(url: string, tenantId: string): Promise<number> {
  const [row] = await query<{ most: number }>(
    url,
    `select coalesce(max(running), 0)::int as most from (
       select sum(delta) over (order by at, delta rows unbounded preceding) as running from (
         select started_at as at, 1 as delta from tasks where tenant_id = $1 and started_at is not null
         union all
         select finished_at, -1 from tasks where tenant_id = $1 and started_at is not null and finished_at is not null
       ) as changes
     ) as over_time`,
    [tenantId],
  );
  return row!.most;
}

async function benchFairness(databaseUrl: string, slackUrl: string) {
  const service = await startService(databaseUrl, slackUrl, false);
  try {
    const [tenantA, tenantB] = [await registerTenant(service.base, 'bench-a'), await registerTenant(service.base, 'bench-b')];
    await createTasks(service, tenantA.token, BACKLOG, CONCURRENCY);
    await settleDatabase(databaseUrl);
    await startWorker(service);
    const memory = sampleMemory({ worker: service.worker! });
    const drainStarted = performance.now();
    for (let index = 0; index < FAIRNESS_PROBES; index++) {
      const response = await httpJson(service.base, 'POST', '/api/v1/tasks', { token: tenantB.token, json: slackPayload(index) });
      if (response.status !== 201) throw new Error(`tenant B's create answered ${response.status}`);
      await sleep(FAIRNESS_GAP_MS);
    }
    const tenantWhere = (tenantId: string) => `tenant_id = '${tenantId}'`;
    await untilAllFinished(databaseUrl, tenantWhere(tenantB.tenantId), 10 * 60_000, "tenant B's tasks");
    const tenantBPickup = summary(await pickups(databaseUrl, tenantWhere(tenantB.tenantId)));
    await untilAllFinished(databaseUrl, tenantWhere(tenantA.tenantId), 30 * 60_000, "tenant A's backlog");
    const drainPerSecond = BACKLOG / ((performance.now() - drainStarted) / 1000);
    memory.stop();
    const workerRssAfterMb = rssMb(service.worker!.child.pid);
    const tenantAMostRunning = await mostRunningAtOnce(databaseUrl, tenantA.tenantId);
    const tenantAPutBacks = await putBacks(databaseUrl, `tasks.${tenantWhere(tenantA.tenantId)}`);
    return { tenantBPickup, drainPerSecond, tenantAMostRunning, tenantAPutBacks, workerRssPeakMb: memory.peaks.worker ?? NaN, workerRssAfterMb };
  } finally {
    await stopAll([service.api, ...(service.worker ? [service.worker] : [])]);
  }
}

async function benchLoginFlood(databaseUrl: string, slackUrl: string) {
  const service = await startService(databaseUrl, slackUrl, false, { LOGIN_FAILURE_LIMIT: '0' });
  try {
    const tenant = await registerTenant(service.base, 'bench-flood');
    const task = await httpJson(service.base, 'POST', '/api/v1/tasks', { token: tenant.token, json: slackPayload(0) });
    const reads = () =>
      runConcurrently(FLOOD_READS, FLOOD_READERS, async () => {
        const response = await httpJson(service.base, 'GET', `/api/v1/tasks/${task.body.id}`, { token: tenant.token });
        if (response.status !== 200) throw new Error(`read answered ${response.status}`);
      });
    const alone = summary((await reads()).latencies);
    let flooding = true;
    const loginStatuses: Record<number, number> = {};
    const flood = Promise.all(
      Array.from({ length: FLOOD_CLIENTS }, async () => {
        while (flooding) {
          const response = await httpJson(service.base, 'POST', '/api/v1/auth/login', { json: { email: 'nobody@example.com', password: 'wrong password!' } });
          loginStatuses[response.status] = (loginStatuses[response.status] ?? 0) + 1;
        }
      }),
    );
    await sleep(500);
    const during = summary((await reads()).latencies);
    flooding = false;
    await flood;
    return { readAlone: alone, readDuringFlood: during, loginStatuses };
  } finally {
    await stopAll([service.api]);
  }
}

/** An idle worker's CPU and PostgreSQL's beside it, in percent of one core, once it has settled. */
async function benchIdle(databaseUrl: string, slackUrl: string) {
  const service = await startService(databaseUrl, slackUrl, true);
  try {
    await sleep(IDLE_SETTLE_MS);
    const pid = service.worker!.child.pid!;
    const start = { worker: cpuSeconds(pid), postgres: postgresCpuSeconds() };
    await sleep(IDLE_MEASURE_MS);
    const percentOfCore = (seconds: number) => round((seconds * 100_000) / IDLE_MEASURE_MS, 2);
    return { workerCorePercent: percentOfCore(cpuSeconds(pid) - start.worker), postgresCorePercent: percentOfCore(postgresCpuSeconds() - start.postgres) };
  } finally {
    await stopAll([service.api, service.worker!]);
  }
}

// The service runs compiled, with the heap flags of the npm scripts and the image.
await buildService();
const slack = await startFakeSlack();
try {
  const rounds = [];
  for (let index = 0; index < REPEAT; index++) {
    rounds.push({
      bare: await withDatabase(benchBare),
      creates: await withDatabase((url) => benchCreatesOnly(url, slack.url)),
      loaded: await withDatabase((url) => benchLoaded(url, slack.url)),
      raw: await withDatabase((url) => benchRawPgBoss(url, slack.url)),
    });
  }
  // The table is the first round's; the spread over all rounds follows it.
  const { bare, creates, loaded, raw } = rounds[0]!;
  const fairness = args.fairness ? await withDatabase((url) => benchFairness(url, slack.url)) : undefined;
  const loginFlood = args['login-flood'] ? await withDatabase((url) => benchLoginFlood(url, slack.url)) : undefined;
  const idle = args.idle ? await withDatabase((url) => benchIdle(url, slack.url)) : undefined;

  const cpuRow = (cpu: { serviceMs: number; perProcessMs: number[]; postgresMs: number; clientMs: number }) =>
    `${cpu.serviceMs}${cpu.perProcessMs.length > 1 ? ` (${cpu.perProcessMs.join(' + ')})` : ''}, ${cpu.postgresMs}, ${cpu.clientMs}`;
  const ratio = (value: number, reference: number) => round(value / reference, 2);
  const rows: [string, string, string, string, string][] = [
    ['task creation, no worker running (creates/s)', `${round(creates.createsPerSecond, 0)} (p99 ${round(creates.createLatency.p99)} ms)`, `bare one-INSERT endpoint: ${round(bare.createsPerSecond, 0)} (p99 ${round(bare.createLatency.p99)} ms)`, String(ratio(creates.createsPerSecond, bare.createsPerSecond)), '≥ 0.8'],
    ['CPU per created task (ms): service, PostgreSQL, benchmark client', cpuRow(creates.cpuPerTask), `bare: ${cpuRow(bare.cpuPerTask)}`, '', ''],
    [
      'task creation while the worker runs the tasks',
      `${round(loaded.createsPerSecond, 0)}/s, p50 ${round(loaded.createLatency.p50)} ms, p99 ${round(loaded.createLatency.p99)} ms`,
      `raw pg-boss send() while its worker runs: ${round(raw.sendsPerSecond, 0)}/s, p50 ${round(raw.sendLatency.p50)} ms, p99 ${round(raw.sendLatency.p99)} ms`,
      '',
      'p99 ≤ 50 ms',
    ],
    [
      '… of which over 50 ms: as the client saw them, as the API timed them itself',
      `${loaded.slowCreations.client}, ${loaded.slowCreations.api} (of ${loaded.slowCreations.of})`,
      '',
      '',
      '',
    ],
    ['end to end (create → success, tasks/s)', String(round(loaded.endToEndPerSecond, 0)), `raw pg-boss: ${round(raw.endToEndPerSecond, 0)} jobs/s`, String(ratio(loaded.endToEndPerSecond, raw.endToEndPerSecond)), '≥ 0.8'],
    ['CPU per task end to end (ms): service (API + worker), PostgreSQL, benchmark client', cpuRow(loaded.endToEndCpuPerTask), `raw pg-boss: ${cpuRow(raw.endToEndCpuPerTask)}`, '', ''],
    ['pickup under that load (created → started)', `p50 ${round(loaded.loadedPickup.p50)} ms, p99 ${round(loaded.loadedPickup.p99)} ms`, '', '', ''],
    ["deliveries put back at the tenant's cap under that load", `${loaded.loadedPutBacks} (of ${TASKS} tasks)`, '', '', ''],
    [`pickup at ${RATE} tasks/s`, `p50 ${round(loaded.pacedPickup.p50)} ms, p99 ${round(loaded.pacedPickup.p99)} ms`, '', '', 'p50 ≤ 5 ms, p99 ≤ 25 ms'],
    ...(fairness
      ? ([
          [`fairness: tenant B's pickup behind A's ${BACKLOG} backlog`, `p50 ${round(fairness.tenantBPickup.p50)} ms, p99 ${round(fairness.tenantBPickup.p99)} ms`, '', '', 'p99 ≤ 250 ms'],
          ["fairness: the most of A's tasks running at once", String(fairness.tenantAMostRunning), `its cap: ${process.env.TENANT_MAX_ACTIVE_TASKS ?? 32}`, '', ''],
          ["fairness: A's deliveries put back at its cap", `${fairness.tenantAPutBacks} (of ${BACKLOG} tasks)`, '', '', ''],
          ["fairness: A's backlog drains at (tasks/s)", String(round(fairness.drainPerSecond, 0)), `unloaded end to end: ${round(loaded.endToEndPerSecond, 0)}`, String(ratio(fairness.drainPerSecond, loaded.endToEndPerSecond)), '≥ 0.8'],
        ] as [string, string, string, string, string][])
      : []),
    ...(loginFlood
      ? ([
          [
            `GET a task during ${FLOOD_CLIENTS} concurrent wrong-password sign-ins`,
            `p50 ${round(loginFlood.readDuringFlood.p50)} ms, p99 ${round(loginFlood.readDuringFlood.p99)} ms (sign-ins answered: ${Object.entries(loginFlood.loginStatuses).map(([status, n]) => `${n}× ${status}`).join(', ')})`,
            `without the flood: p50 ${round(loginFlood.readAlone.p50)} ms, p99 ${round(loginFlood.readAlone.p99)} ms`,
            String(ratio(loginFlood.readDuringFlood.p99, loginFlood.readAlone.p99)),
            'p99 < 100 ms',
          ],
        ] as [string, string, string, string, string][])
      : []),
    ...(idle
      ? ([['an idle worker (CPU, % of one core): worker, PostgreSQL', `${idle.workerCorePercent}, ${idle.postgresCorePercent}`, '', '', '']] as [string, string, string, string, string][])
      : []),
    ...(loaded.watchedEvents !== undefined
      ? ([
          [
            "task events received by the loaded tenant's stream (--watched)",
            // Created, started and succeeded, for every task of the phase: fewer, and the stream fell behind or ended.
            `${loaded.watchedEvents} of ${3 * (WARMUP + TASKS + PACED)}`,
            '',
            '',
            '',
          ],
        ] as [string, string, string, string, string][])
      : []),
    ['memory (peak RSS, MB)', `API ${round(Math.max(creates.apiRssMb, loaded.apiRssMb), 0)}, worker ${round(loaded.workerRssMb, 0)}${fairness ? `, worker after the backlog ${round(fairness.workerRssAfterMb, 0)} (peak ${round(fairness.workerRssPeakMb, 0)})` : ''}`, '', '', '≤ 200 each'],
  ];
  console.log(
    `\n${TASKS} tasks with ${CONCURRENCY} requests in flight, each phase after ${WARMUP} unmeasured warm-up ones; ${PACED} paced at ${RATE}/s; API and worker as separate processes; Node ${process.version}\n`,
  );
  console.log('| figure | AutonomOS | reference (same run) | ratio | target |');
  console.log('|---|---|---|---|---|');
  for (const row of rows) console.log(`| ${row.join(' | ')} |`);
  if (rounds.length > 1) {
    const spread = (values: number[], digits: number) => {
      const sorted = [...values].sort((a, b) => a - b);
      return `${round(percentile(sorted, 50), digits)} (${round(sorted[0]!, digits)}-${round(sorted.at(-1)!, digits)})`;
    };
    const spreadRows: [string, string, string][] = [
      ['task creation vs the bare one-INSERT endpoint (ratio)', spread(rounds.map((r) => r.creates.createsPerSecond / r.bare.createsPerSecond), 2), '≥ 0.8'],
      ['creation p99 while the worker runs (ms)', spread(rounds.map((r) => r.loaded.createLatency.p99), 1), '≤ 50'],
      ['… creations over 50 ms as the API timed them itself', spread(rounds.map((r) => r.loaded.slowCreations.api), 0), ''],
      ["raw pg-boss send() p99 while its worker runs (ms, a reference)", spread(rounds.map((r) => r.raw.sendLatency.p99), 1), ''],
      ['end to end vs raw pg-boss (ratio)', spread(rounds.map((r) => r.loaded.endToEndPerSecond / r.raw.endToEndPerSecond), 2), '≥ 0.8'],
      [`pickup at ${RATE} tasks/s, p50 (ms)`, spread(rounds.map((r) => r.loaded.pacedPickup.p50), 1), '≤ 5'],
      [`pickup at ${RATE} tasks/s, p99 (ms)`, spread(rounds.map((r) => r.loaded.pacedPickup.p99), 1), '≤ 25'],
    ];
    console.log(`\nOver ${rounds.length} rounds of the throughput phases:\n`);
    console.log('| figure | median (range) | target |');
    console.log('|---|---|---|');
    for (const row of spreadRows) console.log(`| ${row.join(' | ')} |`);
  }
  if (loaded.waits) {
    console.log(`\nWhile the loaded phase's creates ran: the service's database sessions, sampled every ${WAIT_SAMPLE_MS} ms (share of each group's samples):\n`);
    console.log('| pool | statement | samples | on the CPU or waiting |');
    console.log('|---|---|---|---|');
    for (const group of loaded.waits.slice(0, 8)) {
      const shares = Object.entries(group.activities)
        .sort((a, b) => b[1] - a[1])
        .map(([activity, n]) => `${activity} ${Math.round((100 * n) / group.samples)}%`);
      console.log(`| ${group.pool} | ${group.statement.replace(/\|/g, '\\|')} | ${group.samples} | ${shares.join(', ')} |`);
    }
  }
  if (loaded.statements) {
    console.log(`\nThe loaded phase's statements, from the first creation to the last task's end, per task (pg_stat_statements; execution time includes lock waits, not commits):\n`);
    console.log('| statement | calls | rows a call | execution µs | buffers | WAL records | WAL bytes |');
    console.log('|---|---|---|---|---|---|---|');
    for (const row of loaded.statements.slice(0, 12)) {
      console.log(
        `| ${row.statement.replace(/\|/g, '\\|')} | ${row.callsPerTask} | ${row.rowsPerCall} | ${row.execUsPerTask} | ${row.blocksPerTask} | ${row.walRecordsPerTask} | ${row.walBytesPerTask} |`,
      );
    }
  }
  const report = { tasks: TASKS, warmup: WARMUP, repeat: REPEAT, concurrency: CONCURRENCY, paced: PACED, rate: RATE, backlog: fairness ? BACKLOG : undefined, bare, creates, loaded, raw, rounds, fairness, loginFlood, idle };
  if (args.json) {
    writeFileSync(args.json, `${JSON.stringify(report, null, 2)}\n`);
    console.log(`\nwritten to ${args.json}`);
  }
} finally {
  await slack.close();
}
