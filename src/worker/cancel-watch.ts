import type { Db } from '../db/client.js';
import type { DatabaseWatch } from '../db/availability.js';
import { canceledAmong } from '../tasks/tasks.repository.js';

/** How often running tasks are checked for a cancel: keeps the abort well within a second. */
const CHECK_INTERVAL_MS = 250;

export class TaskCanceledError extends Error {
  override name = 'TaskCanceledError';
  constructor() {
    super('Task canceled by user');
  }
}

export interface CancelWatch {
  /** Aborts `controller` once the task is canceled, whichever process canceled it. Returns an unwatch. */
  watch(task: { id: string; tenantId: string }, controller: AbortController): () => void;
  stop(): void;
}

/**
 * Cancels arrive as a status change in the database (from any API process), so the worker
 * checks the tasks it is running, in one query, while it is running any.
 */
export function startCancelWatch(db: Db, watch: DatabaseWatch): CancelWatch {
  const running = new Map<string, { tenantId: string; controller: AbortController }>();
  let checking = false;
  const timer = setInterval(() => {
    if (running.size === 0 || checking) return;
    checking = true;
    const watched = [...running].map(([taskId, entry]) => ({ taskId, tenantId: entry.tenantId }));
    canceledAmong(db, watched)
      .then((canceled) => {
        for (const taskId of canceled) running.get(taskId)?.controller.abort(new TaskCanceledError());
      })
      .catch((error: unknown) => watch.failed(error, 'cancel check'))
      .finally(() => {
        checking = false;
      });
  }, CHECK_INTERVAL_MS);
  timer.unref();
  return {
    watch(task, controller) {
      running.set(task.id, { tenantId: task.tenantId, controller });
      return () => running.delete(task.id);
    },
    stop() {
      clearInterval(timer);
    },
  };
}
