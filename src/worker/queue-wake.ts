import type { PgBoss } from 'pg-boss';
import type { Notifications } from '../db/notifications.js';
import { BOSS_JOBS_CHANNEL } from '../queue/task-queue.js';

export interface QueueWake {
  /**
   * Wakes one of this process's idle fetch loops of `queue` to fetch now; with none idle, tells a
   * busy one to fetch as soon as its batch is done instead of waiting for its next poll.
   */
  wakeOne(queue: string): void;
  stop(): void;
}

/** A queue whose inserts are announced per tenant, woken only for a tenant that can run more now. */
export interface TenantQueue {
  queue: string;
  /** Notified with the ids of the tenants that have new jobs, comma-separated. */
  channel: string;
  /** Whether a fetch could return this tenant's jobs (false: it already runs as many as its cap allows). */
  canRun(tenantId: string): boolean;
}

/**
 * Wakes this process's fetch loops when jobs arrive, one loop per notification. pg-boss's own
 * listener (off, see createBoss) wakes every idle loop of the queue for each insert: with
 * WORKER_CONCURRENCY loops all but one fetched nothing, and those empty fetches cost PostgreSQL
 * more than the work and delayed the one fetch that mattered. A loop whose fetch came back full
 * wakes the next one (the worker's job handler calls wakeOne), so a burst still reaches every loop; what
 * a notification misses (its connection down, a job coming due) the loops' polling finds.
 *
 * The plain tasks' queue is woken only for a tenant below its cap: a fetch walks past the jobs
 * of tenants at their cap, so for a tenant flooding the service every wake would read its whole
 * backlog to find nothing.
 */
export function startQueueWake(boss: PgBoss, notifications: Notifications, queues: readonly string[], tenantQueue: TenantQueue): QueueWake {
  /** Per queue, where the next wake starts looking: wakes close together reach different loops. */
  const rotations = new Map<string, number>();
  const loopsOf = (queue: string) => boss.getWipData().filter((worker) => worker.name === queue);
  const wakeOne = (queue: string) => {
    const loops = loopsOf(queue);
    if (loops.length === 0) return;
    const start = (rotations.get(queue) ?? 0) % loops.length;
    const inTurn = loops.map((_, step) => (start + step) % loops.length);
    const chosen = inTurn.find((index) => loops[index]!.count === 0) ?? start;
    rotations.set(queue, (chosen + 1) % loops.length);
    boss.notifyWorker(loops[chosen]!.id);
  };
  const unsubscribeQueues = notifications.subscribe(BOSS_JOBS_CHANNEL, (queue) => {
    if (queues.includes(queue)) wakeOne(queue);
  });
  const unsubscribeTenants = notifications.subscribe(tenantQueue.channel, (tenantIds) => {
    if (tenantIds.split(',').some(tenantQueue.canRun)) wakeOne(tenantQueue.queue);
  });
  // Notifications sent while the connection was down are lost: every loop looks once.
  const stopRelistening = notifications.onListening(() => {
    for (const queue of [...queues, tenantQueue.queue]) for (const loop of loopsOf(queue)) boss.notifyWorker(loop.id);
  });
  return {
    wakeOne,
    stop() {
      unsubscribeQueues();
      unsubscribeTenants();
      stopRelistening();
    },
  };
}
