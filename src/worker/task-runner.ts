import { randomUUID } from 'node:crypto';
import type { Job, JobResult } from 'pg-boss';
import * as v from 'valibot';
import type { Action, ActionContext, ActionOutcome, ActionWait } from '../actions/action.js';
import { ActionError } from '../actions/action.js';
import type { Config } from '../config.js';
import { isDatabaseUnavailable, retryWhileUnavailable, type DatabaseWatch } from '../db/availability.js';
import type { Db } from '../db/client.js';
import { injectFault } from '../lib/fault-injection.js';
import { createWriteBuffer, writeEachAloneOnFailure } from '../lib/write-buffer.js';
import type { TaskRow } from '../db/schema.js';
import type { Logger } from '../logger.js';
import { TASK_QUEUE, type TaskJobData } from '../queue/task-queue.js';
import type { Begin, Delivery, Success, TaskExecution } from '../tasks/task-execution.js';
import { writeAuditEntriesOnce, type AuditEntry } from '../tasks/tasks.repository.js';
import { TaskCanceledError, type CancelWatch } from './cancel-watch.js';

export const TaskJobSchema = v.object({ task_id: v.pipe(v.string(), v.uuid()), tenant_id: v.pipe(v.string(), v.uuid()) });

export class AttemptTimeoutError extends Error {
  override name = 'AttemptTimeoutError';
  constructor(seconds: number) {
    super(`Task timed out after ${seconds} seconds`);
  }
}

/** The abort reason an attempt's work gets when its action failed; made once, as its stack says nothing. */
const ACTION_FAILED = new Error('The attempt failed');

/** Resolves with the action's outcome, or rejects the moment `signal` aborts, whether or not the action stops. */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

function describeFailure(error: unknown): string {
  if (error instanceof ActionError || error instanceof AttemptTimeoutError) return error.message;
  if (error instanceof Error) return error.message || error.name;
  return String(error);
}

export interface TaskRunnerDeps {
  db: Db;
  config: Config;
  logger: Logger;
  watch: DatabaseWatch;
  execution: TaskExecution;
  cancelWatch: CancelWatch;
  /** Which action runs a claimed task; undefined when none can. */
  resolveAction(task: TaskRow): Action<any> | undefined;
  /** A tenant's own Slack integration (see ActionContext.slack). */
  slackFor: (tenantId: string) => ReturnType<ActionContext['slack']>;
}

/** Most successes (or audit entries) one statement writes; they are written together as their actions produce them. */
const SUCCESS_BATCH_MAX = 64;
/** Success statements (or transactions) in flight at once; more successes wait (at most SUCCESS_BATCH_WAIT_MS) to join the next. */
const SUCCESS_FLUSHES = 2;
const SUCCESS_BATCH_WAIT_MS = 2;

/**
 * Runs a fetched batch of task deliveries: claims them all in one statement, runs each action
 * under its timeout and cancel watch, and records each outcome; successes finishing together are
 * recorded together. A delivery settles on its own: `failed` when its outcome could not be
 * recorded (pg-boss redelivers it and the attempt is counted as lost), `completed` otherwise,
 * including after it recorded a retry (pg-boss must not fail the job a second time).
 */
export function createTaskRunner(deps: TaskRunnerDeps) {
  const { db, config, logger, execution, cancelWatch, watch } = deps;
  /** A write a delivery must not lose to a database restart: tried again until the database answers. */
  const persist = <T>(operation: string, work: (retrying: boolean) => Promise<T>, signal?: AbortSignal) =>
    retryWhileUnavailable(work, { watch, operation, ...(signal ? { signal } : {}) });
  const successes = createWriteBuffer<Success, void>({
    maxItems: SUCCESS_BATCH_MAX,
    maxWaitMs: SUCCESS_BATCH_WAIT_MS,
    maxConcurrentFlushes: SUCCESS_FLUSHES,
    // One task's failure to record must not fail its batch-mates (persist has already waited
    // out any outage that would fail them all).
    flush: (batch) =>
      writeEachAloneOnFailure(
        batch,
        async (some) => {
          await persist('recording successful attempts', () => execution.succeedMany(some));
          return some.map(() => ({ ok: true, value: undefined }));
        },
        isDatabaseUnavailable,
      ),
  });

  // Audit entries written while actions run (e.g. before a Slack post) are written together too;
  // each action still waits for its own entry before going on.
  const auditEntries = createWriteBuffer<AuditEntry, void>({
    maxItems: SUCCESS_BATCH_MAX,
    maxWaitMs: SUCCESS_BATCH_WAIT_MS,
    maxConcurrentFlushes: SUCCESS_FLUSHES,
    async flush(entries) {
      await writeAuditEntriesOnce(db, entries);
      return entries.map(() => ({ ok: true, value: undefined }));
    },
  });

  /** Runs one claimed delivery's action and records its outcome. */
  async function attempt(job: Job<TaskJobData>, delivery: Delivery, task: TaskRow): Promise<void> {
    const log = logger.child({ task_id: delivery.taskId, tenant_id: delivery.tenantId, delivery: job.retryCount });
    injectFault(config.faultInjectionPoint, 'after-claim');
    const fail = (error: string) => persist('recording a failed attempt', () => execution.fail(delivery, error));
    const action = deps.resolveAction(task);
    if (!action) {
      await fail(`No action can run payload.action ${JSON.stringify((task.payload as { action?: unknown }).action)}`);
      return;
    }

    const controller = new AbortController();
    const unwatch = cancelWatch.watch({ id: task.id, tenantId: task.tenant_id }, controller);
    const timeout = task.timeout_seconds
      ? setTimeout(() => controller.abort(new AttemptTimeoutError(task.timeout_seconds!)), task.timeout_seconds * 1000)
      : undefined;
    const onQueueAbort = () => controller.abort(new Error('The queue stopped the attempt (expired or shutting down)'));
    job.signal.addEventListener('abort', onQueueAbort, { once: true });

    let outcome: ActionOutcome | ActionWait;
    try {
      const audit = async (message: string) => {
        const entry: AuditEntry = { id: randomUUID(), tenantId: task.tenant_id, taskId: task.id, message };
        await persist('writing an audit entry', () => auditEntries.write(entry), controller.signal);
        injectFault(config.faultInjectionPoint, 'during-action');
      };
      outcome = await untilAborted(
        action.run(task.payload as { action: string }, {
          signal: controller.signal,
          config,
          tenantId: task.tenant_id,
          audit,
          slack: () => deps.slackFor(task.tenant_id),
          waitedUntil: task.wait_until,
        }),
        controller.signal,
      );
    } catch (error) {
      // Whatever a failed action still has in flight is no longer wanted. (One that returned has
      // nothing in flight: aborting after it, per attempt, cost its HTTP client's cleanup for nothing.)
      if (!controller.signal.aborted) controller.abort(ACTION_FAILED);
      if (controller.signal.reason instanceof TaskCanceledError) {
        log.info('attempt aborted: task canceled');
        return;
      }
      log.info('attempt failed', { error: describeFailure(error) });
      await fail(describeFailure(error));
      return;
    } finally {
      clearTimeout(timeout);
      unwatch();
      job.signal.removeEventListener('abort', onQueueAbort);
    }
    injectFault(config.faultInjectionPoint, 'after-action');
    if ('waitSeconds' in outcome) {
      await persist('recording a wait', () => execution.wait(delivery, outcome.waitSeconds));
      log.debug('attempt waits', { seconds: outcome.waitSeconds });
      return;
    }
    await successes.write({ delivery, task, outcome });
    log.debug('attempt succeeded');
  }

  /** `onSettled` is called once per delivery, as soon as it has settled (its outcome recorded, or not runnable). */
  return async function runTaskJobs(jobs: readonly Job<TaskJobData>[], onSettled?: (job: Job<TaskJobData>) => void): Promise<JobResult[]> {
    const deliveries = new Map<string, Delivery>();
    for (const job of jobs) {
      const data = v.safeParse(TaskJobSchema, job.data);
      if (data.success) {
        deliveries.set(job.id, {
          taskId: data.output.task_id,
          tenantId: data.output.tenant_id,
          attempt: { id: job.id, retryCount: job.retryCount },
        });
      } else {
        logger.error('malformed task job dropped', { job_id: job.id });
      }
    }
    const settle = (job: Job<TaskJobData>, error?: unknown): JobResult => {
      onSettled?.(job);
      if (error === undefined) return { id: job.id, status: 'completed' };
      logger.error('task delivery could not record its outcome', { job_id: job.id, error });
      return { id: job.id, status: 'failed', output: { error: (error as Error).message } };
    };
    let begun: Begin[];
    try {
      // Only plain tasks are capped per tenant; an AOA tenant runs one job at a time anyway.
      const withinCap = jobs[0]?.name === TASK_QUEUE.task;
      begun = await persist('claiming tasks', (retrying) => execution.beginMany([...deliveries.values()], { retrying, withinCap }));
    } catch (error) {
      return jobs.map((job) => settle(job, deliveries.has(job.id) ? error : undefined));
    }
    const beginOf = new Map([...deliveries.keys()].map((jobId, index) => [jobId, begun[index]!]));
    const deferred = new Set([...beginOf].filter(([, begin]) => !begin.run && begin.reason === 'tenant at its cap').map(([jobId]) => jobId));
    // Put back before the rest run: their tenant may have room again soon after.
    let deferralError: unknown;
    if (deferred.size > 0) {
      const putBack = [...deferred].map((jobId) => deliveries.get(jobId)!);
      await persist('putting back deliveries of tenants at their cap', () => execution.deferAtCap(putBack)).catch((error: unknown) => {
        deferralError = error;
      });
    }
    return Promise.all(
      jobs.map(async (job) => {
        const delivery = deliveries.get(job.id);
        const begin = beginOf.get(job.id);
        if (!delivery || !begin) return settle(job);
        // Settled as completed, the put-back job is no longer this delivery's: pg-boss's completion finds nothing to do.
        if (deferred.has(job.id)) return settle(job, deferralError);
        if (!begin.run) {
          logger.debug('delivery skipped', { task_id: delivery.taskId, reason: begin.reason });
          return settle(job);
        }
        try {
          await attempt(job, delivery, begin.task);
          return settle(job);
        } catch (error) {
          return settle(job, error);
        }
      }),
    );
  };
}
