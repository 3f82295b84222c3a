import type { Transaction } from 'kysely';
import type { JobAttempt } from 'pg-boss';
import type { ActionOutcome } from '../actions/action.js';
import type { Config } from '../config.js';
import type { Metrics } from '../metrics/metrics.js';
import type { Db } from '../db/client.js';
import { injectFault } from '../lib/fault-injection.js';
import type { Database, TaskRow } from '../db/schema.js';
import type { TaskQueue } from '../queue/task-queue.js';
import { audit } from './audit-messages.js';
import { AoaSlotTakenError, createTasks } from './task-creation.js';
import { claimTasks, linkNextTasks, recordSuccesses, taskStore } from './tasks.repository.js';
import type { TaskBody } from './tasks.schemas.js';

/** One delivery of a task's job: which task, and which pg-boss attempt carries it. */
export interface Delivery {
  taskId: string;
  tenantId: string;
  attempt: JobAttempt;
}

/** A delivery whose action succeeded, with its task as claimed and what the action produced. */
export interface Success {
  delivery: Delivery;
  task: TaskRow;
  outcome: ActionOutcome;
}

export type Begin =
  | { run: true; task: TaskRow }
  | { run: false; reason: 'missing' | 'finished' | 'held elsewhere' | 'lost attempt recorded' | 'not claimable' }
  /** Its tenant was running its cap of tasks: nothing was claimed, and the delivery is to be put back (deferAtCap). */
  | { run: false; reason: 'tenant at its cap' };

export const LOST_ATTEMPT_ERROR = 'The worker running this attempt stopped before it finished';
export const ORPHANED_ERROR = 'The queue no longer holds a job for this task (its deliveries were used up or it expired)';

/**
 * The worker's side of the task lifecycle. Every transition is guarded in SQL and commits with
 * its audit entries and the jobs that follow from it, so a job delivered twice, or finishing
 * after a cancel, changes nothing.
 */
export function createTaskExecution(deps: {
  db: Db;
  queue: TaskQueue;
  config: Config;
  /** Counts what the worker does: starts, outcomes, retries, chained creations (after each commit). */
  metrics: Metrics;
  /**
   * Told (after commit) when a retry has been scheduled, or a waiting action's resumption, so a
   * worker can be woken right on time.
   */
  onRetryScheduled?: (task: TaskRow, runAt: Date) => void;
}) {
  const { db, queue, config, metrics } = deps;

  /** Records a failed attempt: a retry on the configured schedule while retries remain, else final failure. */
  async function fail(delivery: Delivery, heldBy: number, error: string): Promise<void> {
    const recorded = await db.transaction().execute(async (trx): Promise<{ outcome: 'retried' | 'failed'; task: TaskRow } | undefined> => {
      const store = taskStore(trx, delivery.tenantId);
      const task = await store.findForUpdate(delivery.taskId);
      if (!task || task.status !== 'in_progress' || task.claimed_delivery !== heldBy) return undefined;
      await store.audit(task.id, audit.failed(error));
      if (task.retry_count < task.max_retries) {
        const delays = config.retryDelaysSeconds;
        const delaySeconds = delays[Math.min(task.retry_count, delays.length - 1)] ?? 0;
        const retry = await store.requeueForRetry(task.id, heldBy, {
          retryCount: task.retry_count + 1,
          delaySeconds,
          result: { error },
          // A retried begin() of the delivery that found the attempt lost must not claim the retry.
          recordedBy: delivery.attempt.retryCount,
        });
        await store.audit(task.id, audit.retryScheduled(task.retry_count + 1, task.max_retries));
        await queue.retryAt(trx, task, delivery.attempt, retry!.scheduled_for!, error);
        return { outcome: 'retried', task: retry! };
      }
      const failed = await store.finish(task.id, heldBy, { status: 'failed', result: { error } });
      await store.audit(task.id, audit.permanentlyFailed);
      await queue.complete(trx, [{ task: failed!, attempt: delivery.attempt }]);
      await queue.enqueueCallbacks(trx, [failed!]);
      return { outcome: 'failed', task: failed! };
    });
    if (!recorded) return;
    metrics.tasksFinished(recorded.outcome, [recorded.task]);
    if (recorded.outcome === 'retried') deps.onRetryScheduled?.(recorded.task, recorded.task.scheduled_for!);
  }

  /** Why a delivery that claimed nothing does not run, recording the attempt it finds lost. */
  async function notClaimed(delivery: Delivery, retrying: boolean): Promise<Begin> {
    const thisDelivery = delivery.attempt.retryCount;
    const task = await taskStore(db, delivery.tenantId).find(delivery.taskId);
    if (!task) return { run: false, reason: 'missing' };
    if (task.status === 'in_progress') {
      // An earlier try of this very claim committed, but its reply was lost with the connection.
      if (retrying && task.claimed_delivery === thisDelivery) return { run: true, task };
      if (task.claimed_delivery !== null && task.claimed_delivery >= thisDelivery) return { run: false, reason: 'held elsewhere' };
      await fail(delivery, task.claimed_delivery ?? -1, LOST_ATTEMPT_ERROR);
      return { run: false, reason: 'lost attempt recorded' };
    }
    return { run: false, reason: task.status === 'queued' ? 'not claimable' : 'finished' };
  }

  /**
   * Claims the tasks of a fetched batch of deliveries, in one statement. A task still
   * `in_progress` under an earlier delivery lost its worker (pg-boss only redelivers an active job
   * after its heartbeat or expiry lapsed): that attempt is recorded as failed and retried or
   * failed for good. `retrying` says an earlier try of this claim may have committed without its
   * reply arriving; `withinCap`, that the deliveries are plain tasks, claimed within their
   * tenants' cap of running tasks (the others come back as 'tenant at its cap').
   */
  async function beginMany(deliveries: readonly Delivery[], options: { retrying?: boolean; withinCap?: boolean } = {}): Promise<Begin[]> {
    const { claimed, atCap } = await claimTasks(
      db,
      deliveries.map((delivery) => ({ tenantId: delivery.tenantId, taskId: delivery.taskId, delivery: delivery.attempt.retryCount })),
      { started: audit.started, resumed: audit.resumed, runningCap: options.withinCap ? config.tenantMaxActiveTasks : null },
    );
    // A resumed attempt started when it was first claimed.
    metrics.tasksStarted(claimed.filter((task) => !task.resumed).map((task) => ({ ...task, dueAt: task.due_at })));
    const byId = new Map(claimed.map((task) => [task.id, task]));
    const atCapIds = new Set(atCap);
    return Promise.all(
      deliveries.map(async (delivery): Promise<Begin> => {
        const task = byId.get(delivery.taskId);
        if (task) return { run: true, task };
        return atCapIds.has(delivery.taskId) ? { run: false, reason: 'tenant at its cap' } : notClaimed(delivery, options.retrying ?? false);
      }),
    );
  }

  /**
   * Puts back deliveries (at least one) that claimed nothing because their tenant was running
   * its cap (see claimTasks): their jobs go back in their place in the queue, due at once, and
   * are fetched when the tenant has room. The tasks stay queued.
   */
  async function deferAtCap(deferred: readonly Delivery[]): Promise<void> {
    await db.transaction().execute((trx) => queue.deferAtCap(trx, deferred.map((delivery) => delivery.attempt)));
  }

  /**
   * in_progress → success for several deliveries: the rows with their audit entries and the jobs'
   * completions in one statement, and in the same transaction the chained tasks (created and
   * enqueued) and the callbacks of those that have them. A delivery that no longer holds its
   * attempt (canceled, or recorded by another) changes nothing.
   */
  async function succeedMany(successes: readonly Success[]): Promise<void> {
    const succeeded = successes.map(({ delivery, outcome }) => ({
      tenantId: delivery.tenantId,
      taskId: delivery.taskId,
      delivery: delivery.attempt.retryCount,
      result: outcome.result,
      messages: outcome.audit,
    }));
    // A task's follow-ups are fixed when it is created: without any, one statement is the whole
    // success, and needs no transaction around it.
    const followedUp = successes.some(({ task }) => task.on_success_next_task !== null || task.callback_url !== null);
    const recorded = followedUp
      ? await db.transaction().execute(async (trx) => {
          const finished = await recordSuccesses(trx, succeeded, audit.chaining);
          return { finished, children: await recordFollowUps(trx, finished) };
        })
      : { finished: await recordSuccesses(db, succeeded, audit.chaining), children: [] };
    metrics.tasksFinished('succeeded', recorded.finished);
    metrics.tasksCreated(recorded.children);
  }

  /** The chained tasks and the callbacks of tasks that just succeeded, in their transaction; returns the chained tasks. */
  async function recordFollowUps(trx: Transaction<Database>, finished: readonly TaskRow[]): Promise<TaskRow[]> {
    const parents = finished.filter((task) => task.on_success_next_task);
    const children = await createTasks(
      trx,
      parents.map((parent) => ({
        tenantId: parent.tenant_id,
        body: parent.on_success_next_task as TaskBody,
        kind: 'task' as const,
        createdBy: parent.created_by,
        parentId: parent.id,
      })),
    );
    injectFault(config.faultInjectionPoint, 'during-chaining');
    const links = parents.map((parent, index) => {
      const child = children[index];
      if (!child || child instanceof AoaSlotTakenError) throw new Error('The task queue refused a chained job');
      return { tenantId: parent.tenant_id, taskId: parent.id, nextTaskId: child.id, message: audit.chained(child.id) };
    });
    const linked = new Map((await linkNextTasks(trx, links)).map((task) => [task.id, task]));
    await queue.enqueueCallbacks(trx, finished.map((task) => linked.get(task.id) ?? task));
    return children as TaskRow[];
  }

  return {
    beginMany,
    deferAtCap,
    succeedMany,

    /**
     * Fails a task the queue has given up on, so that no task waits for ever. Checked again under
     * the row lock: a task that moved on, or whose job is live after all, is left alone.
     */
    async failOrphaned(task: { id: string; tenantId: string }): Promise<boolean> {
      const failed = await db.transaction().execute(async (trx) => {
        const store = taskStore(trx, task.tenantId);
        const current = await store.findForUpdate(task.id);
        if (!current || (current.status !== 'queued' && current.status !== 'in_progress')) return undefined;
        if (await queue.hasLiveJob(trx, current)) return undefined;
        const failed = (await store.end(current.id, { status: 'failed', result: { error: ORPHANED_ERROR } }))!;
        await store.audit(current.id, audit.failed(ORPHANED_ERROR), audit.permanentlyFailed);
        await queue.enqueueCallbacks(trx, [failed]);
        return failed;
      });
      if (!failed) return false;
      metrics.tasksFinished('failed', [failed]);
      return true;
    },

    /**
     * The delivery's action asked to wait `seconds`: the task stays in_progress, held by no worker
     * (scheduled_for says until when), and its job comes back then to resume the attempt. No retry
     * is spent. A delivery that no longer holds its attempt (canceled meanwhile) changes nothing.
     */
    async wait(delivery: Delivery, seconds: number): Promise<void> {
      const waiting = await db.transaction().execute(async (trx) => {
        const store = taskStore(trx, delivery.tenantId);
        const task = await store.waitFor(delivery.taskId, delivery.attempt.retryCount, seconds);
        if (!task) return undefined;
        await store.audit(task.id, audit.waiting(seconds, task.wait_until!));
        await queue.resumeAt(trx, task, delivery.attempt, task.wait_until!);
        return task;
      });
      if (waiting) deps.onRetryScheduled?.(waiting, waiting.wait_until!);
    },

    /** Records this delivery's attempt as failed. */
    async fail(delivery: Delivery, error: string): Promise<void> {
      await fail(delivery, delivery.attempt.retryCount, error);
    },
  };
}

export type TaskExecution = ReturnType<typeof createTaskExecution>;
