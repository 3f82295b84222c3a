import { randomUUID } from 'node:crypto';
import type { Job } from 'pg-boss';
import * as v from 'valibot';
import type { Action, ActionOutcome } from '../actions/action.js';
import { ActionError } from '../actions/action.js';
import type { Config } from '../config.js';
import { retryWhileUnavailable, type DatabaseWatch } from '../db/availability.js';
import type { Db } from '../db/client.js';
import { injectFault } from '../lib/fault-injection.js';
import type { TaskRow } from '../db/schema.js';
import type { Logger } from '../logger.js';
import type { TaskJobData } from '../queue/task-queue.js';
import type { Delivery, TaskExecution } from '../tasks/task-execution.js';
import { taskStore } from '../tasks/tasks.repository.js';
import { TaskCanceledError, type CancelWatch } from './cancel-watch.js';

export const TaskJobSchema = v.object({ task_id: v.pipe(v.string(), v.uuid()), tenant_id: v.pipe(v.string(), v.uuid()) });

export class AttemptTimeoutError extends Error {
  override name = 'AttemptTimeoutError';
  constructor(seconds: number) {
    super(`Task timed out after ${seconds} seconds`);
  }
}

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
}

/**
 * Runs one delivery of a task job: claim, run the action under its timeout and cancel watch,
 * record the outcome. Never throws after it has recorded a retry (pg-boss would fail the job a
 * second time); a failure to record anything is thrown, so pg-boss redelivers and the attempt
 * is counted as lost.
 */
export function createTaskRunner(deps: TaskRunnerDeps) {
  const { db, config, logger, execution, cancelWatch, watch } = deps;
  /** A write a delivery must not lose to a database restart: tried again until the database answers. */
  const persist = <T>(operation: string, work: (retrying: boolean) => Promise<T>, signal?: AbortSignal) =>
    retryWhileUnavailable(work, { watch, operation, ...(signal ? { signal } : {}) });

  return async function runTaskJob(job: Job<TaskJobData>): Promise<void> {
    const data = v.safeParse(TaskJobSchema, job.data);
    if (!data.success) {
      logger.error('malformed task job dropped', { job_id: job.id });
      return;
    }
    const delivery: Delivery = {
      taskId: data.output.task_id,
      tenantId: data.output.tenant_id,
      attempt: { id: job.id, retryCount: job.retryCount },
    };
    const log = logger.child({ task_id: delivery.taskId, tenant_id: delivery.tenantId, delivery: job.retryCount });
    const begun = await persist('claiming a task', (retrying) => execution.begin(delivery, { retrying }));
    if (!begun.run) {
      log.debug('delivery skipped', { reason: begun.reason });
      return;
    }
    injectFault(config.faultInjectionPoint, 'after-claim');
    const task = begun.task;
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

    let outcome: ActionOutcome;
    try {
      const store = taskStore(db, task.tenant_id);
      const audit = async (message: string) => {
        const entryId = randomUUID();
        await persist('writing an audit entry', () => store.auditOnce(entryId, task.id, message), controller.signal);
        injectFault(config.faultInjectionPoint, 'during-action');
      };
      outcome = await untilAborted(
        action.run(task.payload as { action: string }, { signal: controller.signal, config, tenantId: task.tenant_id, audit }),
        controller.signal,
      );
    } catch (error) {
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
      // Whatever the action still has in flight is no longer wanted.
      if (!controller.signal.aborted) controller.abort(new Error('Attempt finished'));
    }
    injectFault(config.faultInjectionPoint, 'after-action');
    await persist('recording a successful attempt', () => execution.succeed(delivery, outcome));
    log.debug('attempt succeeded');
  };
}
