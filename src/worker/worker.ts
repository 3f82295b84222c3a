import type { Job, JobResult, PgBoss } from 'pg-boss';
import { setTimeout as sleep } from 'node:timers/promises';
import * as v from 'valibot';
import { actionFor } from '../actions/registry.js';
import { deleteEndedWindows } from '../auth/throttle.js';
import { deleteExpiredIdempotencyKeys } from '../idempotency/idempotency.js';
import type { Config } from '../config.js';
import type { DatabaseWatch } from '../db/availability.js';
import type { Db } from '../db/client.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics/metrics.js';
import type { Notifications } from '../db/notifications.js';
import { CALLBACK_QUEUE, createTaskQueue, RETENTION_QUEUE, TASK_QUEUE, TASKS_QUEUED_CHANNEL, tasksWithoutLiveJob, type CallbackJobData, type TaskJobData } from '../queue/task-queue.js';
import { createSlackIntegrations, rememberedForTask } from '../integrations/slack-integration.js';
import { createWebhookSecrets } from '../integrations/webhook-secrets.js';
import { CallbackJobSchema, createCallbackSender } from '../tasks/callbacks.js';
import { createTaskExecution, type TaskExecution } from '../tasks/task-execution.js';
import { startCancelWatch } from './cancel-watch.js';
import { startHeartbeat } from './heartbeat.js';
import { startQueueWake } from './queue-wake.js';
import { startRetention } from './retention.js';
import { createTaskRunner } from './task-runner.js';

export interface WorkerDeps {
  db: Db;
  boss: PgBoss;
  config: Config;
  logger: Logger;
  /** Where database failures are reported: an outage is logged once, and retried until it ends. */
  watch: DatabaseWatch;
  metrics: Metrics;
  /** This process's LISTEN connection: tells the worker when what it remembers (tenants' Slack integrations) changed. */
  notifications: Notifications;
}

export interface Worker {
  /** Stops fetching and waits up to `graceMs` for running tasks, then stops the heartbeat. */
  stop(graceMs: number): Promise<void>;
}

const TASKS_PER_FETCH = 16;
/**
 * Of the plain tasks' WORKER_CONCURRENCY loops, this share fetch one job at a time (none below 4
 * loops), woken instead of the others while a tenant is at its cap (see startQueueWake): a tenant
 * arriving behind another's backlog is fetched at once. `npm run bench -- --fairness` measures it
 * (docs/performance.md).
 */
const oneJobLoops = (workerConcurrency: number) => Math.floor(workerConcurrency / 4);
/**
 * A backstop poll for work that no NOTIFY announces: retries and scheduled tasks coming due, and
 * jobs returned by expiry. Half a second keeps retries "exact to within a second". One loop of
 * each task queue looks this often, woken in turn (an idle one, else a busy one once its batch is
 * done): every loop polling on its own made WORKER_CONCURRENCY fetches per interval, nearly all of
 * them empty (an idle worker used 2.1% of a core, and PostgreSQL as much: `npm run bench -- --idle`).
 */
const DUE_WORK_POLL_MS = 500;
/** Each loop's own poll, behind the one above: it matters only if the process stopped waking its loops. */
const LOOP_POLL_SECONDS = 30;
/**
 * How often a running job's pg-boss heartbeat is refreshed. Well inside its 10 s limit, so a
 * database outage of several seconds does not make a live worker's jobs look abandoned.
 */
const HEARTBEAT_REFRESH_SECONDS = 2;
/** Wake a little after the due time, so the job's start_after has passed on the database's clock too. */
const RETRY_WAKE_SLACK_MS = 20;
/**
 * Callbacks run one per fetch loop, so a slow receiver holds only its own slot, and at most
 * CALLBACKS_PER_TENANT of a tenant's callbacks run at once (across all workers): a tenant whose
 * receivers stall cannot take every slot from the others.
 */
const CALLBACK_SLOTS = 16;
const CALLBACKS_PER_TENANT = 2;
/**
 * A notification wakes a callback loop for new callbacks; this backstop finds the rest (a tenant's
 * callbacks held back by its limit, deliveries returned after a crash). With 16 loops polling
 * independently, one of them looks about every 0.3 s.
 */
const CALLBACK_BACKSTOP_POLL_SECONDS = 5;
/** How often a worker sweeps orphaned tasks, ended sign-in throttle windows and expired idempotency keys. */
const HOUSEKEEPING_INTERVAL_MS = 60_000;
/** A task untouched this long while its job is gone is past any transition in flight. */
const ORPHAN_IDLE_SECONDS = 120;

/** Fails the tasks whose jobs the queue has given up on; returns how many. */
export async function sweepOrphanedTasks(db: Db, execution: TaskExecution, idleSeconds = ORPHAN_IDLE_SECONDS): Promise<number> {
  let failed = 0;
  for (const task of await tasksWithoutLiveJob(db, idleSeconds, 100)) {
    if (await execution.failOrphaned({ id: task.id, tenantId: task.tenant_id })) failed += 1;
  }
  return failed;
}

/**
 * How long a worker's start waits in all for its plain-task loops' first fetches, one after
 * another, before it starts the rest at once (a database slow to answer, a great many loops).
 */
const FIRST_FETCHES_WAIT_MS = 3_000;
const FIRST_FETCH_CHECK_MS = 5;

/** Resolves once the loop pg-boss registered as `workId` has made its first fetch, or failed it, or at `deadline`. */
async function firstFetchMade(boss: PgBoss, workId: string, deadline: number): Promise<void> {
  const fetched = () => boss.getWipData().some((loop) => loop.workId === workId && (loop.lastFetchedOn || loop.lastErrorOn));
  while (!fetched() && Date.now() < deadline) await sleep(FIRST_FETCH_CHECK_MS);
}

export async function startWorker(deps: WorkerDeps): Promise<Worker> {
  const { db, boss, config, logger, watch, metrics } = deps;
  const heartbeat = await startHeartbeat(db, watch);
  const cancelWatch = startCancelWatch(db, watch);
  const queue = createTaskQueue(boss);
  const queues = [TASK_QUEUE.task, TASK_QUEUE.aoa];
  // Plain tasks this process runs, per tenant: a tenant running its cap here runs it everywhere.
  const runningPerTenant = new Map<string, number>();
  // Where the cap holds two batches or more (the default, 32), a tenant's room is given back task
  // by task, and it is woken for only while it has room for a whole batch: a batch fetch that
  // cannot fill up with its tasks reads the rest of its backlog before it returns (see
  // startQueueWake), and in a flood room given back task by task would make such a fetch every
  // few tasks. With a smaller cap a batch's tasks give their room back together, when the batch
  // ends, as its tasks then hold the whole cap or most of it, and a tenant is woken for while it
  // has room for one task (a fetch for it need not wait for its running tasks to end).
  const roomPerTask = config.tenantMaxActiveTasks >= 2 * TASKS_PER_FETCH;
  const wakeRoom = roomPerTask ? TASKS_PER_FETCH : 1;
  const atCap = (tenantId: string) => config.tenantMaxActiveTasks - (runningPerTenant.get(tenantId) ?? 0) < wakeRoom;
  const wake = startQueueWake(boss, deps.notifications, [TASK_QUEUE.aoa, CALLBACK_QUEUE, RETENTION_QUEUE], {
    queue: TASK_QUEUE.task,
    channel: TASKS_QUEUED_CHANNEL,
    canRun: (tenantId) => !atCap(tenantId),
    someAtCap: () => [...runningPerTenant.keys()].some(atCap),
  });
  const tenantOf = (job: Job<TaskJobData>) => (typeof job.data?.tenant_id === 'string' ? job.data.tenant_id : undefined);
  const tenantsOf = (jobs: Iterable<Job<TaskJobData>>) => [...jobs].map(tenantOf).filter((tenantId): tenantId is string => tenantId !== undefined);
  /** Counts tasks of these tenants as no longer running here; a tenant that was at its cap and has room again is fetched for at once. */
  const release = (tenantIds: readonly string[]) => {
    const capped = tenantIds.filter(atCap);
    for (const tenantId of tenantIds) {
      const left = runningPerTenant.get(tenantId)! - 1;
      if (left > 0) runningPerTenant.set(tenantId, left);
      else runningPerTenant.delete(tenantId);
    }
    // Its queued tasks were passed over by every wake since: one loop fetches them now.
    if (capped.some((tenantId) => !atCap(tenantId))) wake.wakeOne(TASK_QUEUE.task);
  };
  /**
   * Runs a fetched batch of plain tasks, counting them per tenant while they run. Given back task
   * by task (see roomPerTask), a batch's slowest task no longer holds the room its others left:
   * with two batches of 16 at a cap of 32, each waiting for its slowest, a tenant's backlog drained
   * at half the rate it does now (docs/performance.md).
   */
  const runCountedTaskJobs = async (jobs: Job<TaskJobData>[]) => {
    for (const tenantId of tenantsOf(jobs)) runningPerTenant.set(tenantId, (runningPerTenant.get(tenantId) ?? 0) + 1);
    const unsettled = new Set(jobs);
    const settled = (job: Job<TaskJobData>) => {
      const tenantId = tenantOf(job);
      if (unsettled.delete(job) && tenantId) release([tenantId]);
    };
    try {
      return await runTaskJobs(jobs, roomPerTask ? settled : undefined);
    } finally {
      // Whatever did not settle on its own (all of the batch, where room is given back together).
      release(tenantsOf(unsettled));
    }
  };
  // Polling alone would start a retry late (up to half a second for tasks, seconds for callbacks);
  // one of this process's loops of the queue is woken when it comes due (other processes still find it by polling).
  const wakeWorkersAt = (queueName: string, runAt: Date) => {
    const timer = setTimeout(() => wake.wakeOne(queueName), Math.max(0, runAt.getTime() - Date.now()) + RETRY_WAKE_SLACK_MS);
    timer.unref();
  };
  const execution = createTaskExecution({
    db,
    queue,
    config,
    metrics,
    onRetryScheduled: (task, runAt) => wakeWorkersAt(TASK_QUEUE[task.kind], runAt),
  });
  const runTaskJobs = createTaskRunner({
    db,
    config,
    logger,
    watch,
    execution,
    cancelWatch,
    resolveAction: (task) => actionFor(task.kind, task.payload),
    slackFor: rememberedForTask(createSlackIntegrations({ db, config }), deps.notifications),
  });
  const webhookSecrets = createWebhookSecrets(db);
  const sendCallback = createCallbackSender({
    db,
    queue,
    config,
    logger,
    watch,
    metrics,
    signingSecrets: webhookSecrets.signingSecrets,
    onRetryScheduled: (runAt) => wakeWorkersAt(CALLBACK_QUEUE, runAt),
  });
  const housekeeping = setInterval(() => {
    sweepOrphanedTasks(db, execution).catch((error: unknown) => watch.failed(error, 'orphaned task sweep'));
    deleteEndedWindows(db).catch((error: unknown) => watch.failed(error, 'sign-in throttle cleanup'));
    deleteExpiredIdempotencyKeys(db).catch((error: unknown) => watch.failed(error, 'idempotency key cleanup'));
  }, HOUSEKEEPING_INTERVAL_MS);
  housekeeping.unref();

  const pollOptions = {
    pollingIntervalSeconds: LOOP_POLL_SECONDS,
    heartbeatRefreshSeconds: HEARTBEAT_REFRESH_SECONDS,
  };
  const duePoll = setInterval(() => {
    for (const queue of queues) wake.wakeOne(queue);
  }, DUE_WORK_POLL_MS);
  duePoll.unref();
  const oneJob = oneJobLoops(config.workerConcurrency);
  const taskLoops = [
    { queue: TASK_QUEUE.aoa, batchSize: TASKS_PER_FETCH, loops: config.workerConcurrency },
    { queue: TASK_QUEUE.task, batchSize: TASKS_PER_FETCH, loops: config.workerConcurrency - oneJob },
    { queue: TASK_QUEUE.task, batchSize: 1, loops: oneJob },
  ].filter(({ loops }) => loops > 0);
  // The plain tasks' loops start one after another, each once the one before has made its first
  // fetch (pg-boss starts a loop with one), for at most FIRST_FETCHES_WAIT_MS in all: started
  // together, every first fetch counted a tenant's running tasks without the others' and read
  // its backlog at the same time. (A worker starting on one tenant's backlog then ran 48-91 of its
  // tasks at once with a cap of 16; the claim now puts back what is beyond the cap, but those
  // fetches would still be made, put back, and keep a newly arriving tenant waiting.)
  const staggerUntil = Date.now() + FIRST_FETCHES_WAIT_MS;
  for (const { queue, batchSize, loops } of taskLoops) {
    if (queue !== TASK_QUEUE.task) {
      await startTaskLoops(queue, batchSize, loops);
      continue;
    }
    for (let started = 0; started < loops; started += 1) {
      await firstFetchMade(boss, await startTaskLoops(queue, batchSize, 1), staggerUntil);
    }
  }
  async function startTaskLoops(queue: string, batchSize: number, loops: number) {
    return boss.work<TaskJobData>(
      queue,
      {
        ...pollOptions,
        batchSize,
        localConcurrency: loops,
        // No burstWhenBatchFull: a loop fetching again the moment its full batch ended did so beside
        // the loop woken for the tenant that batch had held at its cap, and two fetches at once each
        // count the tenant's running jobs without the other's (together they took twice its share,
        // which the claim now puts back: a fetch made for nothing).
        // Each delivery settles on its own: one that could not record its outcome is failed (and
        // redelivered) without failing batch-mates that already scheduled their own retries.
        perJobResults: true,
        // Fairness between tenants (plain tasks are grouped by tenant; AOA jobs are one per
        // tenant already): a fetch skips the tenants already running their share, across all
        // workers, so a tenant with a backlog cannot take every slot. Fetches at the same instant
        // can each see room (two workers; within one, its wakes mostly keep them apart, see
        // startQueueWake); the claim counts again under a lock and puts back what is beyond the
        // cap (claimTasks). See README, "Performance".
        ...(queue === TASK_QUEUE.task ? { groupConcurrency: config.tenantMaxActiveTasks } : {}),
      },
      (jobs) => {
        // Counted first (runCountedTaskJobs counts before it awaits anything), so the wake below
        // sees a tenant this batch brought to its cap.
        const running = queue === TASK_QUEUE.task ? runCountedTaskJobs(jobs) : runTaskJobs(jobs);
        // A fetch that came back full left work behind: another loop joins in (see startQueueWake).
        if (jobs.length >= batchSize) wake.wakeOne(queue);
        return running;
      },
    );
  }
  await boss.work<CallbackJobData>(
    CALLBACK_QUEUE,
    {
      ...pollOptions,
      pollingIntervalSeconds: CALLBACK_BACKSTOP_POLL_SECONDS,
      batchSize: 1,
      localConcurrency: CALLBACK_SLOTS,
      groupConcurrency: CALLBACKS_PER_TENANT,
    },
    async ([job]) => {
      // One callback per fetch: there may be more (see startQueueWake).
      wake.wakeOne(CALLBACK_QUEUE);
      const data = v.safeParse(CallbackJobSchema, job!.data);
      if (!data.success) {
        logger.error('malformed callback job dropped', { job_id: job!.id });
        return;
      }
      await sendCallback({
        taskId: data.output.task_id,
        tenantId: data.output.tenant_id,
        retry: data.output.retry,
        attempt: { id: job!.id, retryCount: job!.retryCount },
      });
    },
  );

  const retention = await startRetention({ db, boss, config, logger, watch });

  logger.info('worker started', { worker_id: heartbeat.workerId, concurrency: config.workerConcurrency });
  return {
    async stop(graceMs) {
      const drained = Promise.all([retention.stop(), ...[...queues, CALLBACK_QUEUE].map((queue) => boss.offWork(queue, { wait: true }))]);
      let graceTimer: NodeJS.Timeout | undefined;
      await Promise.race([drained, new Promise((resolve) => (graceTimer = setTimeout(resolve, graceMs)))]);
      clearTimeout(graceTimer);
      clearInterval(duePoll);
      cancelWatch.stop();
      wake.stop();
      clearInterval(housekeeping);
      await heartbeat.stop();
    },
  };
}
