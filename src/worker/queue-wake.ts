import type { PgBoss, WipData } from 'pg-boss';
import type { Notifications } from '../db/notifications.js';
import { BOSS_JOBS_CHANNEL } from '../queue/task-queue.js';

export interface QueueWake {
  /**
   * Wakes one of this process's idle fetch loops of `queue` to fetch now; with none idle, tells a
   * busy one to fetch as soon as its batch is done instead of waiting for its next poll. For the
   * plain tasks' queue, a wake while a fetch it started is in flight waits for that fetch first.
   */
  wakeOne(queue: string): void;
  stop(): void;
}

/** A queue whose inserts are announced per tenant, woken only for a tenant that can run more now. */
export interface TenantQueue {
  queue: string;
  /** Notified with the ids of the tenants that have new jobs, comma-separated. */
  channel: string;
  /**
   * Whether a fetch should be made for this tenant's jobs (false: it runs as many as its cap
   * allows, or so many that a batch fetch could not fill up with its jobs; "at its cap" below).
   */
  canRun(tenantId: string): boolean;
  /** Whether some tenant is at its cap (canRun false). */
  someAtCap(): boolean;
}

/** The queue's loops registered with a batch of one (see worker.ts). */
const fetchesOneJob = (loop: WipData) => loop.options?.batchSize === 1;
/**
 * How soon a wake held back behind a fetch in flight looks again: pg-boss does not announce the
 * end of a fetch, so a tenant's task arriving meanwhile waits up to this much longer than the fetch.
 */
const HELD_WAKE_RECHECK_MS = 1;
/**
 * A woken loop's fetch not seen to end after this long no longer holds other wakes back: a
 * stalled database, a loop stopping, or an empty fetch that ended within the millisecond its
 * previous one did (the end of a fetch is known only by its time, in whole milliseconds).
 */
const FETCH_STALL_MS = 250;

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
 * the first job it may take, the newcomer's, at the head of the turn order. Nor is a second loop
 * woken while the fetch of one it woke is still in flight (but for one fetch of one job while a
 * tenant is at its cap): the wake waits for that fetch to end, and is made then if a tenant it
 * was for can still run more (see pendingFetches).
 */
export function startQueueWake(
  boss: PgBoss,
  notifications: Notifications,
  queues: readonly string[],
  tenantQueue: TenantQueue,
  options: { fetchStallMs?: number } = {},
): QueueWake {
  const fetchStallMs = options.fetchStallMs ?? FETCH_STALL_MS;
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
  /**
   * The plain tasks' loops woken while idle, with when their last fetch had ended then: until such
   * a loop's fetch has ended, no other loop is woken for the queue (but see wakeOne). Two fetches
   * at once each count a tenant's running tasks without the other's, and together take more than
   * its cap, which the claim then puts back: in a one-tenant flood a fifth of all deliveries were
   * fetched only to be put back. (Fetches this does not see can still overlap: a busy loop told to
   * fetch after its batch, every loop after the notification connection came back, a loop woken
   * mid-fetch fetching again, and other workers'.)
   */
  const pendingFetches = new Map<string, { lastEnded: number; wokenAt: number }>();
  const lastEnded = (loop: WipData) => Math.max(loop.lastFetchedOn ?? 0, loop.lastErrorOn ?? 0);
  const fetchInFlight = (loops: WipData[]) => {
    let inFlight = false;
    for (const loop of loops) {
      const pending = pendingFetches.get(loop.id);
      if (pending === undefined) continue;
      const ended = lastEnded(loop) !== pending.lastEnded || loop.count > 0 || performance.now() - pending.wokenAt > fetchStallMs;
      if (ended) pendingFetches.delete(loop.id);
      else inFlight = true;
    }
    return inFlight;
  };
  let stopped = false;
  /** A wake held back behind a fetch in flight, looked at again every HELD_WAKE_RECHECK_MS. */
  type HeldWake = { tenantIds: Set<string> | undefined; timer: NodeJS.Timeout };
  let heldWake: HeldWake | undefined;
  const holdWake = (tenantIds: readonly string[] | undefined) => {
    if (heldWake) {
      // A wake for any reason but a tenant's notification is wanted whatever the tenants.
      if (tenantIds === undefined) heldWake.tenantIds = undefined;
      else for (const tenantId of tenantIds) heldWake.tenantIds?.add(tenantId);
      return;
    }
    // Tried again as a new wake: held again while a fetch is in flight, unless a one-job loop may
    // go now; dropped once none of its tenants can run more (one that gets room again is woken
    // for as its tasks end, see worker.ts).
    const recheck = () => {
      heldWake = undefined;
      const wanted = held.tenantIds === undefined ? undefined : [...held.tenantIds];
      if (wanted === undefined || wanted.some(tenantQueue.canRun)) wakeOne(tenantQueue.queue, wanted);
    };
    const held: HeldWake = { tenantIds: tenantIds === undefined ? undefined : new Set(tenantIds), timer: setTimeout(recheck, HELD_WAKE_RECHECK_MS).unref() };
    heldWake = held;
  };
  // A loop whose last fetch failed (the database restarting, its pooled connections going stale)
  // holds no wake back: while fetches fail, several at once find the database back soonest.
  const lastFetchFailed = (loop: WipData) => (loop.lastErrorOn ?? 0) > (loop.lastFetchedOn ?? 0);
  const notifyIdle = (queue: string, loop: WipData) => {
    if (queue === tenantQueue.queue && !lastFetchFailed(loop)) pendingFetches.set(loop.id, { lastEnded: lastEnded(loop), wokenAt: performance.now() });
    boss.notifyWorker(loop.id);
  };
  const wakeOne = (queue: string, tenantIds?: readonly string[]) => {
    const loops = loopsOf(queue);
    if (stopped || loops.length === 0) return;
    let kinds = [{ key: queue, loops }];
    if (queue === tenantQueue.queue) {
      const oneJob = { key: `${queue} one job`, loops: loops.filter(fetchesOneJob) };
      const batch = { key: `${queue} batch`, loops: loops.filter((loop) => !fetchesOneJob(loop)) };
      const someAtCap = tenantQueue.someAtCap();
      if (fetchInFlight(loops)) {
        // Except one fetch of one job while a tenant is at its cap: it takes the head of the turn
        // order, a newly arrived tenant's task, which must not wait for a slow fetch of a batch
        // (one that walks past the backlog of the tenant at its cap), and it can take one task
        // too many at most.
        const oneJobFetching = oneJob.loops.some((loop) => pendingFetches.has(loop.id));
        const idle = someAtCap && !oneJobFetching ? idleInTurn(oneJob.loops, oneJob.key) : undefined;
        return idle ? notifyIdle(queue, idle) : holdWake(tenantIds);
      }
      kinds = (someAtCap ? [oneJob, batch] : [batch, oneJob]).filter((kind) => kind.loops.length > 0);
    }
    // An idle loop of the preferred kind, else an idle one of the other: a busy one-job loop must
    // not hold back a tenant with room while batch loops sit idle.
    for (const kind of kinds) {
      const idle = idleInTurn(kind.loops, kind.key);
      if (idle) return notifyIdle(queue, idle);
    }
    const { key, loops: busy } = kinds[0]!;
    const turn = (rotations.get(key) ?? 0) % busy.length;
    rotations.set(key, turn + 1);
    boss.notifyWorker(busy[turn]!.id);
  };
  const unsubscribeQueues = notifications.subscribe(BOSS_JOBS_CHANNEL, (queue) => {
    if (queues.includes(queue)) wakeOne(queue);
  });
  const unsubscribeTenants = notifications.subscribe(tenantQueue.channel, (payload) => {
    const tenantIds = payload.split(',');
    if (tenantIds.some(tenantQueue.canRun)) wakeOne(tenantQueue.queue, tenantIds);
  });
  // Notifications sent while the connection was down are lost: every loop looks once.
  const stopRelistening = notifications.onListening(() => {
    for (const queue of [...queues, tenantQueue.queue]) for (const loop of loopsOf(queue)) boss.notifyWorker(loop.id);
  });
  return {
    wakeOne: (queue) => wakeOne(queue),
    stop() {
      if (stopped) return;
      stopped = true;
      clearTimeout(heldWake?.timer);
      heldWake = undefined;
      pendingFetches.clear();
      unsubscribeQueues();
      unsubscribeTenants();
      stopRelistening();
    },
  };
}
