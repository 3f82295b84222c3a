import { createHash } from 'node:crypto';
import { fromKysely, type JobAttempt, type JobInsert, type PgBoss } from 'pg-boss';
import { sql, type Kysely, type Transaction } from 'kysely';
import type { Database, TaskKind, TaskRow } from '../db/schema.js';
import type { QueueDepth } from '../metrics/metrics.js';
import { BOSS_SCHEMA } from './boss.js';

/** One pg-boss queue per task kind; AOA jobs are exclusive per tenant. */
export const TASK_QUEUE: Record<TaskKind, string> = { task: 'tasks', aoa: 'aoa' };

/** TASK_QUEUE in SQL: the queue of the job of a task whose kind is in the column `kind` (e.g. `tasks.kind`). */
function taskQueueOf(kind: string) {
  return sql`case ${sql.ref(kind)} when 'aoa' then ${TASK_QUEUE.aoa} else ${TASK_QUEUE.task} end`;
}
export const CALLBACK_QUEUE = 'task-callbacks';
/** Notified when plain tasks are created due now; the payload is their tenants' ids, comma-separated. */
export const TASKS_QUEUED_CHANNEL = 'autonomos_tasks_queued';
/** Deletes finished tasks past TASK_RETENTION_DAYS; sent by a schedule the worker processes keep (see worker/retention.ts). */
export const RETENTION_QUEUE = 'task-retention';
/** Long enough for a large backlog's first run; a run stops between batches when its job expires. */
export const RETENTION_RUN_SECONDS = 30 * 60;
/**
 * How often one callback job is delivered: more than once only when a delivery was lost (its
 * worker died, or the database was gone too long to record the outcome). A receiver's failure is
 * retried by a new job instead (CALLBACK_MAX_RETRIES, see retryCallback), so each retry keeps this
 * allowance of its own.
 */
const CALLBACK_DELIVERIES = 3;

/** A crashed worker's job is noticed once its heartbeat is this old. pg-boss's minimum. */
export const JOB_HEARTBEAT_SECONDS = 10;
/** Past its own timeout an attempt gets this long to record its failure before pg-boss expires it. */
const EXPIRY_MARGIN_SECONDS = 5;
/** Bound for attempts without a timeout; their actions carry their own HTTP timeouts well below it. */
const UNBOUNDED_ATTEMPT_EXPIRY_SECONDS = 15 * 60;
/** pg-boss refuses an expiration over 24 hours, and timeout_seconds may be 86400 itself. */
const MAX_EXPIRY_SECONDS = 24 * 60 * 60;

export interface TaskJobData {
  task_id: string;
  tenant_id: string;
}

export interface CallbackJobData extends TaskJobData {
  /** Which retry of the callback this job sends (CALLBACK_MAX_RETRIES); absent on the first send. */
  retry?: number;
}

type Trx = Transaction<Database>;

/**
 * Deliveries a job may lose before any attempt begins: a fetch whose reply a database restart
 * swallowed, or a heartbeat that lapsed while the database was down. They claim nothing, so they
 * must not use up the deliveries the task's own attempts need (the job would then fail, and the
 * task wait for the orphan sweep).
 */
const LOST_DELIVERY_SPARE = 2;

/**
 * pg-boss retries are only the transport for our own schedule. Each failed attempt uses one
 * (fail + rescheduled start), and an attempt lost with its worker uses one more to be noticed;
 * the limit leaves room for both so a job always returns while its task still has a decision to
 * make, and for a few deliveries lost on the way. A spare delivery runs nothing twice: every
 * claim is fenced by its delivery, and a lost attempt counts against the task's own retries.
 */
function deliveryLimit(maxRetries: number): number {
  return 2 * (maxRetries + 1) + LOST_DELIVERY_SPARE;
}

/**
 * The delivery limit once an attempt waits, at delivery `retryCount`: one more delivery resumes
 * it, and from there the attempt and each retry left may use as many as a new job allows them.
 */
function deliveryLimitAfterWait(task: TaskRow, retryCount: number): number {
  return retryCount + 1 + deliveryLimit(task.max_retries - task.retry_count);
}

/** The task queues' depths, as pg-boss's last maintenance pass counted them (one cheap read each). */
export async function queueDepths(boss: PgBoss): Promise<QueueDepth[]> {
  const queues = await Promise.all([TASK_QUEUE.task, TASK_QUEUE.aoa, CALLBACK_QUEUE].map((name) => boss.getQueue(name)));
  return queues
    .filter((queue) => queue !== null)
    .map((queue) => ({ queue: queue.name, deferred: queue.deferredCount, ready: queue.readyCount, active: queue.activeCount, failed: queue.failedCount }));
}

export async function declareQueues(boss: PgBoss): Promise<void> {
  // Partitioned: each queue gets its own job table, so a large backlog of one never slows the
  // planner's view of another (and a freshly bulk-filled queue avoids the nested-loop plan).
  await boss.createQueue(TASK_QUEUE.task, { policy: 'standard', notify: true, partition: true });
  await boss.createQueue(TASK_QUEUE.aoa, { policy: 'exclusive', notify: true, partition: true });
  // Retries are set per job (enqueueCallbacks), where they only replace lost deliveries.
  await boss.createQueue(CALLBACK_QUEUE, { policy: 'standard', notify: true, retryLimit: 0 });
  // Stately: one run at a time and at most one waiting; a failed run is not retried, the next
  // scheduled one carries on where it stopped.
  await boss.createQueue(RETENTION_QUEUE, { policy: 'stately', notify: true, retryLimit: 0, expireInSeconds: RETENTION_RUN_SECONDS });
}

/** The job operations that must commit with a task's state change; each takes the caller's transaction. */
export interface TaskQueue {
  cancel(trx: Trx, task: TaskRow): Promise<void>;
  /** Ends the current delivery as failed and holds the job back until `runAt`. */
  retryAt(trx: Trx, task: TaskRow, attempt: JobAttempt, runAt: Date, error: string): Promise<void>;
  /**
   * Ends the current delivery and holds the job back until `runAt`, when its next delivery resumes
   * the attempt (its action waits). The wait uses a delivery of the job, never one of the task's.
   */
  resumeAt(trx: Trx, task: TaskRow, attempt: JobAttempt, runAt: Date): Promise<void>;
  /**
   * Ends deliveries (at least one) of plain tasks that claimed nothing as their tenant was
   * running its cap, and puts their jobs back in their place in the queue, due at once: a next
   * delivery claims the task when there is room. It uses a delivery of the job, never one of
   * the task's, and adds one to the job's.
   */
  deferAtCap(trx: Trx, attempts: readonly JobAttempt[]): Promise<void>;
  /**
   * Completes the jobs of tasks that failed for good, in that state change's transaction, for
   * the reason completeTaskJobs gives (which successes use, inside their one statement).
   */
  complete(trx: Trx, finished: readonly { task: TaskRow; attempt: JobAttempt }[]): Promise<void>;
  /** Enqueues the tasks' callbacks, each in its tenant's group (callbacks are limited per tenant, see the worker). */
  enqueueCallbacks(trx: Trx, tasks: readonly TaskRow[]): Promise<void>;
  /**
   * Enqueues retry number `retry` of a task's callback, due at `runAt`: a job of its own, with its
   * own allowance for lost deliveries. Its id follows from the task and the retry, so a
   * transaction repeated after a lost reply enqueues it once.
   */
  retryCallback(trx: Trx, task: Pick<TaskRow, 'id' | 'tenant_id'>, retry: number, runAt: Date): Promise<void>;
  /** Completes a callback job in the transaction that records its outcome, so a crash after it cannot send it again. */
  completeCallback(trx: Trx, attempt: JobAttempt): Promise<void>;
  /** Whether the task's job can still run it (created, waiting for a retry, or active). */
  hasLiveJob(trx: Trx, task: TaskRow): Promise<boolean>;
}

const LIVE_JOB_STATES = ['created', 'retry', 'active'];

/**
 * Unfinished tasks, untouched for `idleSeconds` and due, whose job no longer exists or is
 * settled: the queue gave up on them (retries spent by repeated crashes, or a job deleted by
 * retention while no worker ran). Read across tenants: this is the worker's housekeeping.
 */
export async function tasksWithoutLiveJob(db: Kysely<Database>, idleSeconds: number, limit: number) {
  return db
    .selectFrom('tasks')
    .select(['tasks.id', 'tasks.tenant_id'])
    .where('tasks.status', 'in', ['queued', 'in_progress'])
    .where('tasks.updated_at', '<', sql<Date>`now() - make_interval(secs => ${idleSeconds})`)
    .where((eb) => eb.or([eb('tasks.scheduled_for', 'is', null), eb('tasks.scheduled_for', '<=', sql<Date>`now()`)]))
    .where(({ not, exists }) =>
      not(
        exists(
          sql`(select 1 from ${sql.table(`${BOSS_SCHEMA}.job`)} j
               where j.name = ${taskQueueOf('tasks.kind')}
                 and j.id = tasks.id and j.state::text in (${sql.join(LIVE_JOB_STATES)}))`,
        ),
      ),
    )
    .limit(limit)
    .execute();
}

/** Task priorities span -10..10: 21 levels. */
const PRIORITY_LEVELS = 21;
/**
 * pg-boss priorities are 32-bit. Places in line further back than this share the last priority
 * and keep their creation order: only reached after about 100 million turns without the queue
 * ever emptying (an empty queue starts again at 0).
 */
const LOWEST_JOB_PRIORITY = -2_000_000_000;

/** The channel pg-boss notifies when jobs are inserted into a queue created with `notify` (payload: the queue's name). */
export const BOSS_JOBS_CHANNEL = `pgboss_${createHash('sha224').update(BOSS_SCHEMA).digest('hex').slice(0, 24)}`;

/** How a task's job is delivered, from the task's own settings: the columns insertTaskJobs reads. */
export function jobDeliverySettings(task: Pick<TaskRow, 'max_retries' | 'timeout_seconds'>) {
  return {
    job_retry_limit: deliveryLimit(task.max_retries),
    job_expire_seconds: task.timeout_seconds
      ? Math.min(task.timeout_seconds + EXPIRY_MARGIN_SECONDS, MAX_EXPIRY_SECONDS)
      : UNBOUNDED_ATTEMPT_EXPIRY_SECONDS,
  };
}

/**
 * The statement, for a WITH clause, that enqueues the jobs (job id = task id) of tasks being
 * created, read from the relation `source`, and returns the ids it enqueued: an AOA job whose
 * tenant's exclusive slot is taken is left out. So a task's row can be inserted only for the jobs
 * this returns, in the same statement: creating a task is one round trip, with or without a
 * transaction around it, where pg-boss's insert() would be a statement of its own and so need one.
 *
 * It writes the row pg-boss's insert() writes for the same job, the queue's settings included
 * (test/task-jobs.test.ts compares the two). The statement that holds it also announces the jobs
 * (announceTaskJobs).
 *
 * `source` has the tasks' id, tenant_id, kind, priority, queue_rank, scheduled_for and
 * jobDeliverySettings. Plain tasks are grouped by tenant, which caps how many of a tenant's tasks
 * run at once across all workers (the worker's groupConcurrency); AOA jobs hold their tenant's
 * exclusive slot instead. pg-boss fetches the highest priority first, then the oldest: a plain
 * task's job priority is its place in the turn order (see createTasks), and within one place its
 * own priority; an AOA job, one per tenant at a time, has its own priority.
 */
export function insertTaskJobs(source: string) {
  const task = sql.table(source);
  return sql<{ id: string }>`
    insert into ${sql.table(`${BOSS_SCHEMA}.job`)} (
      id, name, data, priority, start_after, singleton_key, group_id, retry_limit, retry_delay, retry_backoff,
      retry_delay_max, expire_seconds, heartbeat_seconds, deletion_seconds, keep_until, policy, dead_letter)
    select task.id, queue.name, jsonb_build_object('task_id', task.id, 'tenant_id', task.tenant_id),
      case when task.queue_rank is null then task.priority
           else greatest(${LOWEST_JOB_PRIORITY}::bigint, task.priority + 10 - task.queue_rank * ${PRIORITY_LEVELS})::int end,
      task.start_after,
      case when task.kind = 'aoa' then task.tenant_id::text end,
      case when task.kind = 'task' then task.tenant_id::text end,
      task.job_retry_limit, 0, queue.retry_backoff, queue.retry_delay_max, task.job_expire_seconds, ${JOB_HEARTBEAT_SECONDS}::int,
      queue.deletion_seconds, task.start_after + queue.retention_seconds * interval '1 second', queue.policy, queue.dead_letter
    from (select *, coalesce(scheduled_for, ${sql.raw(`${BOSS_SCHEMA}.job_now()`)}) as start_after from ${task}) as task
    join ${sql.table(`${BOSS_SCHEMA}.queue`)} queue
      on queue.name = ${taskQueueOf('task.kind')}
    on conflict do nothing
    returning id, name, group_id, start_after
  `;
}

/**
 * The query, for a WITH clause the statement's result reads (else it does not run), that
 * announces the jobs insertTaskJobs enqueued as `enqueued`, sent at commit: plain tasks due now
 * per tenant (TASKS_QUEUED_CHANNEL: a worker wakes a fetch loop only for a tenant below its cap
 * of running tasks, see worker/queue-wake.ts), AOA jobs due now as pg-boss announces a notifying
 * queue's inserts.
 */
export function announceTaskJobs(enqueued: string) {
  const jobs = sql.table(enqueued);
  return sql`
    select pg_notify(channel, payload) from (
      select ${TASKS_QUEUED_CHANNEL}::text as channel, string_agg(distinct group_id, ',') as payload
      from ${jobs} where name = ${TASK_QUEUE.task} and start_after <= now() having count(*) > 0
      union all
      select ${BOSS_JOBS_CHANNEL}::text, ${TASK_QUEUE.aoa}::text
      from ${jobs} where name = ${TASK_QUEUE.aoa} and start_after <= now() having count(*) > 0
    ) as announcements
  `;
}

/**
 * The statement, for a WITH clause, that completes the jobs of tasks that just finished, read from
 * the relation `source` (their id, kind and claimed_delivery): each job only while the delivery
 * that finished its task still holds it (pg-boss's attempt fence), as pg-boss's complete() does
 * (test/task-jobs.test.ts compares the two). So a task's final state and its job's completion are
 * one statement: pg-boss would only settle the job once the whole fetched batch is done, so an AOA
 * slot would outlive its finished task by a batch-mate's run, and its complete() is a statement of
 * its own.
 */
export function completeTaskJobs(source: string) {
  return sql`
    update ${sql.table(`${BOSS_SCHEMA}.job`)} as job
    set completed_on = ${sql.raw(`${BOSS_SCHEMA}.job_now()`)}, state = 'completed', output = null
    from ${sql.table(source)} as task
    where job.name = ${taskQueueOf('task.kind')} and job.id = task.id
      and job.state = 'active' and job.retry_count = task.claimed_delivery
  `;
}

/** A callback job for the task: one per tenant group, with deliveries to spare for crashed workers. */
function callbackJobFor(task: Pick<TaskRow, 'id' | 'tenant_id'>): JobInsert<CallbackJobData> {
  return {
    data: { task_id: task.id, tenant_id: task.tenant_id },
    group: { id: task.tenant_id },
    retryLimit: CALLBACK_DELIVERIES - 1,
    retryDelay: 0,
    heartbeatSeconds: JOB_HEARTBEAT_SECONDS,
  };
}

/** A UUID that follows from `key`: the same key gives the same job id. */
function deterministicJobId(key: string): string {
  const hex = createHash('sha256').update(key).digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

export function createTaskQueue(boss: PgBoss): TaskQueue {
  return {
    async cancel(trx, task) {
      await boss.cancel(TASK_QUEUE[task.kind], task.id, { db: fromKysely(trx) });
    },

    async retryAt(trx, task, attempt, runAt, error) {
      const db = fromKysely(trx);
      const queue = TASK_QUEUE[task.kind];
      // fail() then update() keeps the same job (and, for AOA, its exclusive slot) with our delay.
      await boss.fail(queue, attempt, { error }, { db });
      await boss.update(queue, undefined, { id: task.id, startAfter: runAt, db });
    },

    async resumeAt(trx, task, attempt, runAt) {
      const db = fromKysely(trx);
      const queue = TASK_QUEUE[task.kind];
      // As retryAt, with one delivery more for the resumption.
      await boss.fail(queue, attempt, { waiting_until: runAt.toISOString() }, { db });
      await boss.update(queue, undefined, { id: task.id, startAfter: runAt, retryLimit: deliveryLimitAfterWait(task, attempt.retryCount), db });
    },

    async deferAtCap(trx, attempts) {
      // In id order, as other statements on a batch's jobs lock them, so that none waits on another.
      const sorted = [...attempts].sort((a, b) => (a.id < b.id ? -1 : 1));
      // One delivery more first, so that failing this one leaves the job to retry even on its last
      // delivery; the fenced fail() then makes it due again at once (task jobs have no retry
      // delay), and pg-boss's group concurrency holds it back until its tenant has room. Two
      // statements for any number of jobs: a race between fetches can put back a whole batch.
      await sql`
        update ${sql.table(`${BOSS_SCHEMA}.job`)} as job set retry_limit = job.retry_limit + 1
        from unnest(${sorted.map((attempt) => attempt.id)}::uuid[], ${sorted.map((attempt) => attempt.retryCount)}::int[]) as attempt(id, retry_count)
        where job.name = ${TASK_QUEUE.task} and job.id = attempt.id and job.state = 'active' and job.retry_count = attempt.retry_count
      `.execute(trx);
      await boss.fail(TASK_QUEUE.task, sorted, { deferred: 'its tenant was running its cap of tasks' }, { db: fromKysely(trx) });
    },

    async complete(trx, finished) {
      for (const kind of ['task', 'aoa'] as const) {
        const attempts = finished.filter(({ task }) => task.kind === kind).map(({ attempt }) => attempt);
        if (attempts.length > 0) await boss.complete(TASK_QUEUE[kind], attempts, null, { db: fromKysely(trx) });
      }
    },

    async hasLiveJob(trx, task) {
      const [job] = await boss.findJobs(TASK_QUEUE[task.kind], { id: task.id, db: fromKysely(trx) });
      return job !== undefined && LIVE_JOB_STATES.includes(job.state);
    },

    async enqueueCallbacks(trx, tasks) {
      const jobs = tasks.filter((task) => task.callback_url).map(callbackJobFor);
      if (jobs.length > 0) await boss.insert(CALLBACK_QUEUE, jobs, { db: fromKysely(trx) });
    },

    async retryCallback(trx, task, retry, runAt) {
      const base = callbackJobFor(task);
      const job: JobInsert<CallbackJobData> = {
        ...base,
        id: deterministicJobId(`callback retry ${task.id} ${retry}`),
        data: { ...base.data!, retry },
        startAfter: runAt.toISOString(),
      };
      await boss.insert(CALLBACK_QUEUE, [job], { db: fromKysely(trx) });
    },

    async completeCallback(trx, attempt) {
      await boss.complete(CALLBACK_QUEUE, attempt, null, { db: fromKysely(trx) });
    },
  };
}
