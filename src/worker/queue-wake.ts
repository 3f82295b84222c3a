import type { PgBoss, WipData } from 'pg-boss';
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
  /** Whether some tenant runs as many tasks as its cap allows. */
  someAtCap(): boolean;
}

/** The queue's loops registered with a batch of one (see worker.ts). */
const fetchesOneJob = (loop: WipData) => loop.options?.batchSize === 1;

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
 * backlog to find nothing. And while some tenant is at its cap, a loop that fetches one job at a
 * time is woken rather than one that fetches a batch: a batch fetch that cannot fill up reads
 * every queued job of the tenant at its cap before it returns (a newly arrived tenant's one task
 * waited 60-180 ms for such a fetch behind a backlog of 10,000), where a fetch of one stops at
 * the first job it may take, the newcomer's, at the head of the turn order.
 */
export function startQueueWake(boss: PgBoss, notifications: Notifications, queues: readonly string[], tenantQueue: TenantQueue): QueueWake {
  /** Per queue (and kind of loop), where the next wake starts looking: wakes close together reach different loops. */
  const rotations = new Map<string, number>();
  const loopsOf = (queue: string) => boss.getWipData().filter((worker) => worker.name === queue);
  /** The next idle loop of `loops` in turn (`key` names the turn), else undefined. */
  const idleInTurn = (loops: WipData[], key: string) => {
    const start = rotations.get(key) ?? 0;
    const chosen = loops.map((_, step) => (start + step) % loops.length).find((index) => loops[index]!.count === 0);
    if (chosen === undefined) return undefined;
    rotations.set(key, chosen + 1);
    return loops[chosen];
  };
  const wakeOne = (queue: string) => {
    const loops = loopsOf(queue);
    if (loops.length === 0) return;
    let kinds = [{ key: queue, loops }];
    if (queue === tenantQueue.queue) {
      const byKind = [
        { key: `${queue} one job`, loops: loops.filter(fetchesOneJob) },
        { key: `${queue} batch`, loops: loops.filter((loop) => !fetchesOneJob(loop)) },
      ];
      kinds = (tenantQueue.someAtCap() ? byKind : byKind.reverse()).filter((kind) => kind.loops.length > 0);
    }
    // An idle loop of the preferred kind, else an idle one of the other: a busy one-job loop must
    // not hold back a tenant with room while batch loops sit idle.
    for (const kind of kinds) {
      const idle = idleInTurn(kind.loops, kind.key);
      if (idle) return boss.notifyWorker(idle.id);
    }
    const { key, loops: busy } = kinds[0]!;
    const turn = (rotations.get(key) ?? 0) % busy.length;
    rotations.set(key, turn + 1);
    boss.notifyWorker(busy[turn]!.id);
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
