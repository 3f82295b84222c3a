import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { freePort } from '../../src/main/embedded-postgres.js';
import { BOSS_SCHEMA } from '../../src/queue/boss.js';
import { startPrivatePostgres, type PrivatePostgres } from './private-postgres.js';
import { httpJson, readRequestBody, registerTenant } from './http-json.js';
import { pollUntil } from './poll.js';
import { buildService, spawnCompiledService, type ServiceProcess } from './service-process.js';

/**
 * The chaos run behind `npm run chaos` and the short one in the test suite: the API and the worker
 * as separate processes on a private PostgreSQL, steady load of every kind of task, database
 * restarts and worker SIGKILLs, then an audit of what became of every task.
 */

export interface ChaosOptions {
  durationSeconds: number;
  databaseRestarts: number;
  workerKills: number;
  /** Tasks created per second. */
  rate: number;
  /** How long the database stays down at each restart. */
  downSeconds: number;
  /** How long to wait after the load for every task to finish. */
  drainSeconds: number;
  /** Progress lines (faults, recoveries); silent when absent. */
  progress?: (line: string) => void;
}

export interface ChaosReport {
  durationSeconds: number;
  databaseRestarts: number;
  workerKills: number;
  /** Creates answered 2xx. */
  accepted: number;
  /** Creates answered 503 (the database was down). */
  refused: number;
  /** Creates answered anything else, or not within CREATE_TIMEOUT_MS. */
  failedRequests: number;
  /** The slowest 503 as the load generator saw it (the machine's load included), ms. */
  slowestRefusalMs: number;
  /** The slowest 503 as the API measured it (its request log), ms: the service's own figure. */
  slowestRefusalServedMs: number;
  /** Accepted tasks missing from the database. */
  lost: number;
  /** Tasks still queued or in_progress after the drain. */
  stuck: number;
  /** Finished tasks in another state than their kind calls for. */
  wrongState: number;
  duplicatedChainLinks: number;
  missingChainLinks: number;
  /** Tasks with more than one terminal audit entry. */
  duplicatedTerminalEntries: number;
  /** Slack calls beyond what each task needs (at-least-once: a crash can repeat an action). */
  duplicateActionCalls: number;
  missingCallbacks: number;
  /** Callbacks delivered more than once (at-least-once). */
  duplicateCallbacks: number;
  /** The longest time from a database restart until health, a new task and its wake-up all worked again, ms. */
  slowestRecoveryMs: number;
  /** Unexpected exits: the API ever, a worker other than by our SIGKILL, or a non-zero exit at the final SIGTERM. */
  processFailures: string[];
  /** Why the run failed; empty when it passed. */
  problems: string[];
  /** Where the processes' logs are, when the run failed. */
  samples: string[];
}

/** Each created task's kind says what must become of it. */
const KINDS = ['success', 'chain', 'failing', 'timeout', 'callback', 'flaky'] as const;
type Kind = (typeof KINDS)[number];
const EXPECTED_STATUS: Record<Kind, string> = {
  success: 'success',
  chain: 'success',
  failing: 'failed',
  timeout: 'failed',
  callback: 'success',
  flaky: 'success',
};
/** Slack calls a task of each kind makes when nothing goes wrong (a chain's child is counted apart). */
const EXPECTED_CALLS: Record<Kind, number> = { success: 1, chain: 1, failing: 2, timeout: 1, callback: 1, flaky: 2 };
/** Entries a task gets once at most: its outcome (one of the first three), and the start of its chaining. */
const OUTCOME_ENTRIES = ['Task permanently failed after all retries', 'Task canceled by user request', 'Successfully posted to Slack with status 200'];
const CHAINING_ENTRY = 'Task succeeded, creating chained task';
const RECOVERY_LIMIT_MS = 10_000;
/** A create without an answer in this long counts as failed: it hung. */
const CREATE_TIMEOUT_MS = 10_000;
/** A request that needs the database answers 503 within this while it is down. */
const REFUSAL_LIMIT_MS = 2_000;

interface Created {
  index: number;
  kind: Kind;
  token: string;
  status: number;
  ms: number;
  startedAt: number;
  id?: string;
  duringOutage: boolean;
}

/** How long each 503 took by the API's own request log. */
function servedRefusals(log: string): number[] {
  return log
    .split('\n')
    .filter((line) => line.includes('"msg":"request"') && line.includes('"status":503'))
    .map((line) => Number(JSON.parse(line).duration_ms));
}

async function listenLocal(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A Slack stand-in whose answer depends on the channel, counting calls per message. */
function fakeSlack() {
  const calls = new Map<string, number>();
  const server = createServer(async (request, response) => {
    const body = await readRequestBody(request);
    const message = String(body?.text ?? '');
    const seen = (calls.get(message) ?? 0) + 1;
    calls.set(message, seen);
    const answer = (status: number) => {
      if (!response.destroyed) response.writeHead(status, { 'Content-Type': 'text/plain' }).end(status === 200 ? 'ok' : 'error');
    };
    switch (body?.channel) {
      case '#chaos-failing':
        return answer(500);
      case '#chaos-timeout':
        return void setTimeout(() => answer(200), 5_000).unref();
      case '#chaos-flaky':
        return answer(seen === 1 ? 500 : 200);
      default:
        return answer(200);
    }
  });
  return { server, calls };
}

function fakeReceiver() {
  const received = new Map<string, number>();
  const server = createServer(async (request, response) => {
    const body = await readRequestBody(request);
    if (typeof body?.id === 'string') received.set(body.id, (received.get(body.id) ?? 0) + 1);
    response.writeHead(204).end();
  });
  return { server, received };
}

function taskBody(kind: Kind, token: string, callbackUrl: string) {
  const slack = (channel: string, message = token) => ({ action: 'post_to_slack', channel, message });
  switch (kind) {
    case 'success':
      return { payload: slack('#chaos'), max_retries: 3 };
    case 'chain':
      return { payload: slack('#chaos'), max_retries: 3, on_success_next_task: { payload: slack('#chaos', `${token}-next`), max_retries: 3 } };
    case 'failing':
      return { payload: slack('#chaos-failing'), max_retries: 1 };
    case 'timeout':
      return { payload: slack('#chaos-timeout'), timeout_seconds: 1 };
    case 'callback':
      return { payload: slack('#chaos'), max_retries: 3, callback_url: `${callbackUrl}/done` };
    case 'flaky':
      return { payload: slack('#chaos-flaky'), max_retries: 3 };
  }
}

export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const progress = options.progress ?? (() => {});
  // Compiled, as production runs: a replacement worker's start-up is then what production's is.
  // Through tsx it transpiled first, and under load that took seconds more (3.4-4.7 s against
  // 2.0-2.3 s with two busy cores), which the recovery after the next database restart measured.
  await buildService();
  const database: PrivatePostgres = await startPrivatePostgres();
  const slack = fakeSlack();
  const receiver = fakeReceiver();
  const slackUrl = await listenLocal(slack.server);
  const receiverUrl = await listenLocal(receiver.server);
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const env = {
    DATABASE_URL: database.url,
    SECRET_KEY: randomBytes(32).toString('hex'),
    PORT: String(port),
    HOST: '127.0.0.1',
    LOG_LEVEL: 'info',
    // Named localhost: callbacks (to 127.0.0.1 here) may never go to the host Slack is on.
    SLACK_WEBHOOK_URL: `${slackUrl.replace('//127.0.0.1:', '//localhost:')}/hook`,
    RETRY_DELAYS_SECONDS: '1',
    CALLBACK_ALLOW_PRIVATE_NETWORKS: 'true',
  };
  const processFailures: string[] = [];
  /** The last output of each process that exited on its own: why it did. */
  const crashLogs: string[] = [];
  const expectedExits = new WeakSet<ServiceProcess>();
  const watchExit = (service: ServiceProcess, name: string) =>
    void service.exited.then((code) => {
      if (expectedExits.has(service)) return;
      processFailures.push(`${name} exited unexpectedly (${code})`);
      crashLogs.push(`${name} log tail:\n${service.output().slice(-3000)}`);
    });
  const api = spawnCompiledService('api', env);
  watchExit(api, 'api');
  const workers: ServiceProcess[] = [];
  const startWorker = () => {
    const worker = spawnCompiledService('worker', env);
    workers.push(worker);
    watchExit(worker, `worker ${workers.length}`);
    return worker;
  };
  let worker = startWorker();
  const created: Created[] = [];
  let outage: { since: number } | undefined;
  const recoveries: number[] = [];
  let client: pg.Client | undefined;

  try {
    const ready = await pollUntil(async () => ((await httpJson(base, 'GET', '/health/worker')).status === 200 ? true : undefined), 60_000, 250);
    if (!ready) throw new Error(`the service did not become healthy:\n${api.output().slice(-2000)}\n${worker.output().slice(-2000)}`);
    const tokens = [(await registerTenant(base, 'chaos-a')).token, (await registerTenant(base, 'chaos-b')).token];

    const createOne = async (index: number) => {
      const kind = KINDS[index % KINDS.length]!;
      const token = `chaos-${index}`;
      const duringOutage = outage !== undefined;
      const startedAt = Date.now();
      const started = performance.now();
      let entry: Created;
      try {
        const response = await httpJson(base, 'POST', '/api/v1/tasks', {
          json: taskBody(kind, token, receiverUrl),
          token: tokens[index % tokens.length]!,
          timeoutMs: CREATE_TIMEOUT_MS,
        });
        entry = { index, kind, token, status: response.status, ms: performance.now() - started, startedAt, duringOutage, id: response.body?.id };
      } catch {
        entry = { index, kind, token, status: 0, ms: performance.now() - started, startedAt, duringOutage };
      }
      created.push(entry);
    };

    // After a restart: both health checks answer 200 again, a new task is accepted, and the
    // worker starts running tasks again (the backlog built up meanwhile may take longer to drain).
    const awaitRecovery = async (since: Date) => {
      const elapsed = () => Date.now() - since.getTime();
      const observer = new pg.Client({ connectionString: database.url });
      observer.on('error', () => {});
      try {
        const healthy = await pollUntil(async () => {
          const [apiHealth, workerHealth] = await Promise.all([httpJson(base, 'GET', '/health/api'), httpJson(base, 'GET', '/health/worker')]);
          return apiHealth.status === 200 && workerHealth.status === 200 ? true : undefined;
        }, 30_000);
        const healthyAfter = elapsed();
        const accepting = await pollUntil(async () => {
          const response = await httpJson(base, 'POST', '/api/v1/tasks', { json: taskBody('success', `probe-${since.getTime()}`, receiverUrl), token: tokens[0]! });
          return response.status === 201 ? true : undefined;
        }, 30_000);
        const acceptingAfter = elapsed();
        await observer.connect();
        const working = await pollUntil(async () => {
          const { rows } = await observer.query('select 1 from tasks where started_at > $1 limit 1', [since]);
          return rows.length > 0 ? true : undefined;
        }, 30_000, 50);
        const recovered = healthy && accepting && working ? elapsed() : Number.POSITIVE_INFINITY;
        progress(`database back; service recovered in ${recovered} ms (healthy after ${healthyAfter} ms, accepting after ${acceptingAfter} ms)`);
        return recovered;
      } finally {
        await observer.end().catch(() => {});
      }
    };

    const faults: ('restart' | 'kill')[] = [];
    for (let i = 0; i < Math.max(options.databaseRestarts, options.workerKills); i++) {
      if (i < options.databaseRestarts) faults.push('restart');
      if (i < options.workerKills) faults.push('kill');
    }
    const durationMs = options.durationSeconds * 1000;
    const loadStarted = Date.now();
    // Faults spread over 10 %..80 % of the run, so the last one's recovery happens under load.
    const spacing = faults.length > 1 ? 0.7 / (faults.length - 1) : 0;
    const faultAt = faults.map((_, i) => loadStarted + durationMs * (0.1 + spacing * i));

    const inFlight = new Set<Promise<void>>();
    const load = (async () => {
      for (let index = 0; Date.now() - loadStarted < durationMs; index++) {
        const request = createOne(index);
        inFlight.add(request);
        void request.finally(() => inFlight.delete(request));
        const next = loadStarted + ((index + 1) * 1000) / options.rate;
        await sleep(Math.max(0, next - Date.now()));
      }
      await Promise.all(inFlight);
    })();

    for (const [i, fault] of faults.entries()) {
      await sleep(Math.max(0, faultAt[i]! - Date.now()));
      if (fault === 'restart') {
        progress(`database restart (down ${options.downSeconds} s)`);
        outage = { since: Date.now() };
        await database.stop();
        await sleep(options.downSeconds * 1000);
        await database.start();
        outage = undefined;
        const recovered = await awaitRecovery(new Date());
        recoveries.push(recovered);
      } else {
        progress('worker SIGKILL');
        expectedExits.add(worker);
        worker.child.kill('SIGKILL');
        await worker.exited;
        worker = startWorker();
      }
    }
    await load;
    const drainStarted = Date.now();
    progress(`load done: ${created.length} creates; draining`);

    client = new pg.Client({ connectionString: database.url });
    client.on('error', () => {});
    await client.connect();
    const db = client;
    const unfinished = async () =>
      Number((await db.query(`select count(*) as n from tasks where status in ('queued', 'in_progress')`)).rows[0].n);
    const callbackTasks = async () =>
      (await db.query(`select id from tasks where callback_url is not null and status in ('success', 'failed', 'canceled')`)).rows.map((row) => row.id as string);
    await pollUntil(
      async () => ((await unfinished()) === 0 && (await callbackTasks()).every((id) => receiver.received.has(id)) ? true : undefined),
      options.drainSeconds * 1000,
      500,
    );
    progress(`drained in ${Math.round((Date.now() - drainStarted) / 1000)} s`);

    // The audit of every task.
    const tasks = (
      await db.query(
        `select id, status, payload->>'message' as token, next_task_id, on_success_next_task is not null as chains, callback_url is not null as calls_back
           from tasks`,
      )
    ).rows as { id: string; status: string; token: string; next_task_id: string | null; chains: boolean; calls_back: boolean }[];
    const byId = new Map(tasks.map((task) => [task.id, task]));
    const entries = (await db.query(`select task_id, message from task_logs`)).rows as { task_id: string; message: string }[];
    const outcomeEntries = new Map<string, number>();
    const chainingEntries = new Map<string, number>();
    const children = new Map<string, number>();
    for (const { task_id, message } of entries) {
      if (OUTCOME_ENTRIES.includes(message)) outcomeEntries.set(task_id, (outcomeEntries.get(task_id) ?? 0) + 1);
      if (message === CHAINING_ENTRY) chainingEntries.set(task_id, (chainingEntries.get(task_id) ?? 0) + 1);
      const parent = /^Task created by the success of task (.+)$/.exec(message)?.[1];
      if (parent) children.set(parent, (children.get(parent) ?? 0) + 1);
    }

    const accepted = created.filter((entry) => entry.status >= 200 && entry.status < 300);
    const refused = created.filter((entry) => entry.status === 503);
    const failedRequests = created.filter((entry) => !(entry.status >= 200 && entry.status < 300) && entry.status !== 503);
    let duplicateActionCalls = 0;
    const wrong: string[] = [];
    for (const entry of accepted) {
      const task = byId.get(entry.id!);
      if (task && !['queued', 'in_progress'].includes(task.status) && task.status !== EXPECTED_STATUS[entry.kind]) {
        wrong.push(`${entry.kind} task ${task.id} ended ${task.status}`);
      }
      duplicateActionCalls += Math.max(0, (slack.calls.get(entry.token) ?? 0) - EXPECTED_CALLS[entry.kind]);
      if (entry.kind === 'chain') duplicateActionCalls += Math.max(0, (slack.calls.get(`${entry.token}-next`) ?? 0) - 1);
    }
    // What a stuck task went through, to find why: its row, its job and its audit trail.
    const stuckDetails = (
      await db.query(
        `select t.id, t.status, t.kind, t.retry_count, t.max_retries, t.claimed_delivery, t.scheduled_for, t.updated_at,
                (select json_agg(json_build_object('state', j.state, 'retry_count', j.retry_count, 'retry_limit', j.retry_limit,
                                                   'start_after', j.start_after, 'started_on', j.started_on, 'completed_on', j.completed_on))
                   from ${BOSS_SCHEMA}.job j where j.data->>'task_id' = t.id::text) as jobs,
                (select json_agg(l.message order by l.seq) from task_logs l where l.tenant_id = t.tenant_id and l.task_id = t.id) as audit
           from tasks t where t.status in ('queued', 'in_progress') limit 5`,
      )
    ).rows.map((row) => `stuck task: ${JSON.stringify(row)}`);
    const report: ChaosReport = {
      durationSeconds: options.durationSeconds,
      databaseRestarts: options.databaseRestarts,
      workerKills: options.workerKills,
      accepted: accepted.length,
      refused: refused.length,
      failedRequests: failedRequests.length,
      slowestRefusalMs: Math.round(Math.max(0, ...refused.map((entry) => entry.ms))),
      slowestRefusalServedMs: Math.round(Math.max(0, ...servedRefusals(api.output()))),
      lost: accepted.filter((entry) => !byId.has(entry.id!)).length,
      stuck: tasks.filter((task) => task.status === 'queued' || task.status === 'in_progress').length,
      wrongState: wrong.length,
      duplicatedChainLinks: [...children.values()].filter((count) => count > 1).length,
      missingChainLinks: tasks.filter((task) => task.chains && task.status === 'success' && (!task.next_task_id || !children.has(task.id))).length,
      duplicatedTerminalEntries: tasks.filter((task) => (outcomeEntries.get(task.id) ?? 0) > 1 || (chainingEntries.get(task.id) ?? 0) > 1).length,
      duplicateActionCalls,
      missingCallbacks: tasks.filter((task) => task.calls_back && task.status !== 'queued' && task.status !== 'in_progress' && !receiver.received.has(task.id)).length,
      duplicateCallbacks: [...receiver.received.values()].filter((count) => count > 1).length,
      slowestRecoveryMs: Math.max(0, ...recoveries),
      processFailures,
      problems: [],
      samples: [
        ...refused.filter((entry) => entry.ms > 2_000).map((entry) => `create #${entry.index} refused after ${Math.round(entry.ms)} ms (started ${new Date(entry.startedAt).toISOString()})`),
        ...wrong.slice(0, 5),
        ...stuckDetails,
        ...failedRequests.slice(0, 5).map((entry) => `create #${entry.index} answered ${entry.status || 'nothing'} after ${Math.round(entry.ms)} ms`)],
    };

    // A clean stop at the end is part of staying healthy.
    for (const service of [api, worker]) {
      expectedExits.add(service);
      service.child.kill('SIGTERM');
      const code = await service.exited;
      if (code !== 0) processFailures.push(`${service === api ? 'api' : 'worker'} exited ${code} after SIGTERM`);
    }

    const problems = report.problems;
    for (const key of ['lost', 'stuck', 'wrongState', 'duplicatedChainLinks', 'missingChainLinks', 'duplicatedTerminalEntries', 'missingCallbacks', 'failedRequests'] as const) {
      if (report[key] > 0) problems.push(`${key}: ${report[key]}`);
    }
    if (report.slowestRefusalServedMs > REFUSAL_LIMIT_MS) problems.push(`a 503 took ${report.slowestRefusalServedMs} ms (limit ${REFUSAL_LIMIT_MS})`);
    if (report.slowestRecoveryMs > RECOVERY_LIMIT_MS) problems.push(`recovery took ${report.slowestRecoveryMs} ms (limit ${RECOVERY_LIMIT_MS})`);
    problems.push(...processFailures);
    if (problems.length > 0) {
      report.samples.push(
        ...api
          .output()
          .split('\n')
          .filter((line) => line.includes('"status":503') && JSON.parse(line).duration_ms > 1_000),
`api log tail:\n${api.output().slice(-3000)}`, `worker log tail:\n${worker.output().slice(-3000)}`, ...crashLogs);
    }
    return report;
  } finally {
    for (const service of [api, ...workers]) {
      expectedExits.add(service);
      if (service.child.exitCode === null && service.child.signalCode === null) service.child.kill('SIGKILL');
    }
    await Promise.all([api, ...workers].map((service) => service.exited));
    await client?.end().catch(() => {});
    slack.server.closeAllConnections();
    receiver.server.closeAllConnections();
    slack.server.close();
    receiver.server.close();
    await database.destroy();
  }
}

/** The one line `npm run chaos` prints. */
export function summarize(report: ChaosReport): string {
  return [
    `chaos: ${report.durationSeconds} s, ${report.databaseRestarts} database restarts, ${report.workerKills} worker kills:`,
    `accepted ${report.accepted}, refused with 503 ${report.refused} (slowest ${report.slowestRefusalServedMs} ms in the API, ${report.slowestRefusalMs} ms at the client), failed requests ${report.failedRequests},`,
    `lost ${report.lost}, stuck ${report.stuck}, wrong final state ${report.wrongState},`,
    `duplicated chain links ${report.duplicatedChainLinks}, missing chain links ${report.missingChainLinks}, duplicated terminal audit entries ${report.duplicatedTerminalEntries},`,
    `duplicate action calls ${report.duplicateActionCalls} (at-least-once), missing callbacks ${report.missingCallbacks}, duplicate callbacks ${report.duplicateCallbacks},`,
    `slowest recovery ${report.slowestRecoveryMs} ms, processes ${report.processFailures.length === 0 ? 'stayed up and healthy' : `FAILED (${report.processFailures.join('; ')})`}`,
    report.problems.length === 0 ? '=> PASS' : `=> FAIL (${report.problems.join(', ')})`,
  ].join(' ');
}
