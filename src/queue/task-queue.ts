import { fromKysely, type JobAttempt, type PgBoss } from 'pg-boss';
import { sql, type Kysely, type Transaction } from 'kysely';
import type { Database, TaskKind, TaskRow } from '../db/schema.js';
import { BOSS_SCHEMA } from './boss.js';

/** One pg-boss queue per task kind; AOA jobs are exclusive per tenant. */
export const TASK_QUEUE: Record<TaskKind, string> = { task: 'tasks', aoa: 'aoa' };
export const CALLBACK_QUEUE = 'task-callbacks';
/**
 * A callback is sent again only when its delivery was lost (its worker died, or the database was
 * gone too long to record the outcome); a receiver's failure is recorded and never retried.
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

type Trx = Transaction<Database>;

/**
 * pg-boss retries are only the transport for our own schedule. Each failed attempt uses one
 * (fail + rescheduled start), and an attempt lost with its worker uses one more to be noticed;
 * the limit leaves room for both so a job always returns while its task still has a decision to make.
 */
function deliveryLimit(maxRetries: number): number {
  return 2 * (maxRetries + 1);
}

export async function declareQueues(boss: PgBoss): Promise<void> {
  // Partitioned: each queue gets its own job table, so a large backlog of one never slows the
  // planner's view of another (and a freshly bulk-filled queue avoids the nested-loop plan).
  await boss.createQueue(TASK_QUEUE.task, { policy: 'standard', notify: true, partition: true });
  await boss.createQueue(TASK_QUEUE.aoa, { policy: 'exclusive', notify: true, partition: true });
  // Retries are set per job (enqueueCallback), where they only replace lost deliveries.
  await boss.createQueue(CALLBACK_QUEUE, { policy: 'standard', notify: true, retryLimit: 0 });
}

/** The job operations that must commit with a task's state change; each takes the caller's transaction. */
export interface TaskQueue {
  /** Enqueues the task's job (id = task id). Returns false when an exclusive slot is taken. */
  enqueue(trx: Trx, task: TaskRow): Promise<boolean>;
  cancel(trx: Trx, task: TaskRow): Promise<void>;
  /** Ends the current delivery as failed and holds the job back until `runAt`. */
  retryAt(trx: Trx, task: TaskRow, attempt: JobAttempt, runAt: Date, error: string): Promise<void>;
  /**
   * Completes the job of a task that reached a final state, in that state change's transaction.
   * pg-boss would only settle it once the whole fetched batch is done, so an AOA slot would
   * outlive its finished task by a batch-mate's run.
   */
  complete(trx: Trx, task: TaskRow, attempt: JobAttempt): Promise<void>;
  /** Enqueues the task's callback, in its tenant's group (callbacks are limited per tenant, see the worker). */
  enqueueCallback(trx: Trx, task: TaskRow): Promise<void>;
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
               where j.name = case tasks.kind when 'aoa' then ${TASK_QUEUE.aoa} else ${TASK_QUEUE.task} end
                 and j.id = tasks.id and j.state::text in (${sql.join(LIVE_JOB_STATES)}))`,
        ),
      ),
    )
    .limit(limit)
    .execute();
}

export function createTaskQueue(boss: PgBoss): TaskQueue {
  return {
    async enqueue(trx, task) {
      const data: TaskJobData = { task_id: task.id, tenant_id: task.tenant_id };
      const jobId = await boss.send(TASK_QUEUE[task.kind], data, {
        db: fromKysely(trx),
        id: task.id,
        ...(task.scheduled_for ? { startAfter: task.scheduled_for } : {}),
        ...(task.kind === 'aoa' ? { singletonKey: task.tenant_id } : {}),
        retryLimit: deliveryLimit(task.max_retries),
        retryDelay: 0,
        heartbeatSeconds: JOB_HEARTBEAT_SECONDS,
        expireInSeconds: task.timeout_seconds
          ? Math.min(task.timeout_seconds + EXPIRY_MARGIN_SECONDS, MAX_EXPIRY_SECONDS)
          : UNBOUNDED_ATTEMPT_EXPIRY_SECONDS,
      });
      return jobId !== null;
    },

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

    async complete(trx, task, attempt) {
      await boss.complete(TASK_QUEUE[task.kind], attempt, null, { db: fromKysely(trx) });
    },

    async hasLiveJob(trx, task) {
      const [job] = await boss.findJobs(TASK_QUEUE[task.kind], { id: task.id, db: fromKysely(trx) });
      return job !== undefined && LIVE_JOB_STATES.includes(job.state);
    },

    async enqueueCallback(trx, task) {
      const data: TaskJobData = { task_id: task.id, tenant_id: task.tenant_id };
      await boss.send(CALLBACK_QUEUE, data, {
        db: fromKysely(trx),
        group: { id: task.tenant_id },
        retryLimit: CALLBACK_DELIVERIES - 1,
        retryDelay: 0,
        heartbeatSeconds: JOB_HEARTBEAT_SECONDS,
      });
    },

    async completeCallback(trx, attempt) {
      await boss.complete(CALLBACK_QUEUE, attempt, null, { db: fromKysely(trx) });
    },
  };
}
