import type { Db } from '../db/client.js';
import type { Notifications } from '../db/notifications.js';
import type { TaskRow } from '../db/schema.js';
import { AppError } from '../errors.js';
import type { Logger } from '../logger.js';
import { toTaskOut } from '../tasks/task-json.js';
import { taskStore } from '../tasks/tasks.repository.js';
import { taskEventWatches } from './task-event-watches.repository.js';
import { taskRowFromJson } from './task-row.js';

/** Where triggers on tasks send every change (migration 0006_task_events), from any process. */
export const TASK_EVENTS_CHANNEL = 'autonomos_task_events';

export const TASK_EVENT_TYPES = [
  'task.created',
  'task.started',
  'task.succeeded',
  'task.failed',
  'task.retry_scheduled',
  'task.canceled',
  'task.deleted',
] as const;
export type TaskEventType = (typeof TASK_EVENT_TYPES)[number];

/** One message of an event stream. */
export interface StreamEvent {
  /** What a client resumes after (Last-Event-ID); a reset has none. */
  readonly id?: string;
  readonly event: TaskEventType | 'reset';
  /** The data line: the task as GET /api/v1/tasks/{id} shows it, read first if the notification could not carry it. */
  data(): Promise<string>;
}

export interface EventSubscriber {
  /** Called for each of the tenant's events as it arrives, and with a reset when events were missed. */
  deliver(event: StreamEvent): void;
  /** The hub is closing (the process is stopping): the stream ends. */
  end(): void;
}

export interface TaskEventHub {
  /**
   * Subscribes to a tenant's events. `replay` is what the client missed since `lastEventId`, in
   * the order this process received it; or a reset when that event is no longer here (too old,
   * unknown, another tenant's, before a gap in the notifications, or from before the tenant's
   * current watch). Rejects with a 429 AppError when the tenant already holds its share of streams.
   */
  subscribe(
    tenantId: string,
    lastEventId: string | undefined,
    subscriber: EventSubscriber,
  ): Promise<{ replay: StreamEvent[]; unsubscribe: () => void }>;
  /** Ends every subscription and stops listening. */
  close(): void;
}

/** Beside the count (EVENTS_REPLAY_WINDOW), the replay window holds at most about this much event data. */
const REPLAY_WINDOW_BYTES = 32 * 1024 * 1024;

/** A notification the replay window holds: its text, read again only for a stream that resumes, and how many events it holds. */
interface HeldNotification {
  readonly payload: string;
  readonly events: number;
}

function resetEvent(detail: string): StreamEvent {
  const data = JSON.stringify({ detail });
  return { event: 'reset', data: async () => data };
}

const MISSED_RESET = 'Events may have been missed: read the task list again';
const GAP_RESET = 'Notifications were interrupted and events may have been missed: read the task list again';
const WATCH_RESET = "This tenant's events went unwatched for a while and some may have been missed: read the task list again";

/**
 * Reads tasks the notifications could not carry, batched: the reads asked for in one turn of the
 * event loop become one query per tenant.
 */
function createTaskReader(db: Db) {
  type Waiter = { resolve: (row: TaskRow | undefined) => void; reject: (error: unknown) => void };
  let pending = new Map<string, Map<string, Waiter[]>>();
  let scheduled = false;

  function flush(): void {
    const batch = pending;
    pending = new Map();
    scheduled = false;
    for (const [tenantId, tasks] of batch) {
      taskStore(db, tenantId)
        .findMany([...tasks.keys()])
        .then(
          (rows) => {
            const byId = new Map(rows.map((row) => [row.id, row]));
            for (const [taskId, waiters] of tasks) for (const waiter of waiters) waiter.resolve(byId.get(taskId));
          },
          (error: unknown) => {
            for (const waiters of tasks.values()) for (const waiter of waiters) waiter.reject(error);
          },
        );
    }
  }

  return (tenantId: string, taskId: string) =>
    new Promise<TaskRow | undefined>((resolve, reject) => {
      let tasks = pending.get(tenantId);
      if (!tasks) pending.set(tenantId, (tasks = new Map()));
      let waiters = tasks.get(taskId);
      if (!waiters) tasks.set(taskId, (waiters = []));
      waiters.push({ resolve, reject });
      if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    });
}

/** What the trigger sends for one changed row. */
interface NotifiedEvent {
  id: number | string;
  type: TaskEventType;
  tenant_id: string;
  task_id: string;
  task: Record<string, unknown> | null;
}

function isNotifiedEvent(value: unknown): value is NotifiedEvent {
  const event = value as Partial<NotifiedEvent> | null;
  return (
    typeof event === 'object' &&
    event !== null &&
    (typeof event.id === 'number' || typeof event.id === 'string') &&
    TASK_EVENT_TYPES.includes(event.type as TaskEventType) &&
    typeof event.tenant_id === 'string' &&
    typeof event.task_id === 'string' &&
    (event.task === null || (typeof event.task === 'object' && !Array.isArray(event.task)))
  );
}

/** What a tenant's new watch announces (migration 0017): the event id it began from. */
interface WatchBegan {
  watch_began: string;
  tenant_id: string;
}

function isWatchBegan(value: unknown): value is WatchBegan {
  const began = value as Partial<WatchBegan> | null;
  return typeof began === 'object' && began !== null && typeof began.watch_began === 'string' && /^\d{1,19}$/.test(began.watch_began) && typeof began.tenant_id === 'string';
}

/**
 * The events of a parsed notification; `heard` is told of each watch that began, and of each
 * element that is neither (dropped).
 */
function eventsIn(parsed: unknown, heard?: { watchBegan(tenantId: string, since: bigint): void; dropped(): void }): NotifiedEvent[] {
  if (!Array.isArray(parsed)) return [];
  const events: NotifiedEvent[] = [];
  for (const notified of parsed) {
    if (isNotifiedEvent(notified)) events.push(notified);
    else if (isWatchBegan(notified)) heard?.watchBegan(notified.tenant_id, BigInt(notified.watch_began));
    else heard?.dropped();
  }
  return events;
}

/** The events of a held notification's text (what is not an event was logged when it arrived). */
const eventsOf = (payload: string) => eventsIn(JSON.parse(payload));

/**
 * Whether the row the trigger saw is the row the transaction committed. A chaining task's
 * success is recorded before its successor exists, and the link (next_task_id) is written later
 * in the same transaction: such a row is read again once committed.
 */
function isFinalSnapshot(event: NotifiedEvent): boolean {
  const task = event.task;
  if (!task) return false;
  return !(event.type === 'task.succeeded' && task.on_success_next_task != null && task.next_task_id == null);
}

/**
 * This process's view of every tenant's task events: it listens on TASK_EVENTS_CHANNEL (the
 * triggers notify from whichever process changed a task, API or worker) and hands each event to
 * the streams of its tenant, and of its tenant only. The latest events are kept for streams that
 * resume (Last-Event-ID). Events arrive in commit order, the same order in every process, so a
 * client may resume on any API process; one that lost its notification connection cannot know
 * what it missed and tells its streams to start over (a reset).
 *
 * The task JSON is made only when a stream needs it, once per event whatever the number of streams.
 */
export function createTaskEventHub(deps: {
  db: Db;
  notifications: Notifications;
  logger: Logger;
  /** How many events are kept for resuming streams. */
  replayWindow: number;
  /** Streams per tenant in this process; 0: no limit. */
  maxStreamsPerTenant: number;
  /** How long a tenant's watch outlives its last stream (EVENTS_RESUME_SECONDS). */
  resumeSeconds: number;
}): TaskEventHub {
  const { db, notifications, logger, replayWindow, maxStreamsPerTenant, resumeSeconds } = deps;
  const readTask = createTaskReader(db);
  const watches = taskEventWatches(db);
  const subscribers = new Map<string, Set<EventSubscriber>>();
  /**
   * The triggers make a tenant's events only while it is watched (migration 0017): for each
   * tenant with a stream here, the event id its current watch began from. A watch that ends and
   * begins again has a new one, and whatever happened between was never sent.
   */
  const watchedFrom = new Map<string, bigint>();
  /**
   * The replay window: the notifications received last, oldest first (the live part from `head`
   * on), of which the first `headSkipped` events of the one at `head` have left the window.
   *
   * It keeps each notification's text, not its events: a notification is parsed as it arrives
   * (to hand its events to this process's streams) and parsed again only for a stream that
   * resumes. Kept as objects (with the closures that make their data), the window's thousands
   * of events cost the API 0.01-0.05 ms of CPU per created task with no stream open, 4-13% of
   * what it spends on a creation (docs/performance.md).
   */
  let window: HeldNotification[] = [];
  let head = 0;
  let headSkipped = 0;
  let windowEvents = 0;
  let windowBytes = 0;
  let closed = false;

  /** A notified event as streams get it: its data is made once, when a stream first asks for it. */
  function streamEvent(notified: NotifiedEvent): StreamEvent {
    const { type, tenant_id: tenantId, task_id: taskId } = notified;
    let snapshot = isFinalSnapshot(notified) ? notified.task : null;
    let data: Promise<string> | undefined;
    const make = async (): Promise<string> => {
      if (type === 'task.deleted') return JSON.stringify({ id: taskId });
      const row = snapshot ? taskRowFromJson(snapshot) : await readTask(tenantId, taskId);
      // A task that no longer exists (deleted since) is named by its id alone.
      return JSON.stringify(row ? toTaskOut(row) : { id: taskId });
    };
    return {
      id: String(notified.id),
      event: type,
      data() {
        data ??= make().then(
          (text) => {
            snapshot = null;
            return text;
          },
          (error: unknown) => {
            data = undefined; // the next stream to ask reads it again
            throw error;
          },
        );
        return data;
      },
    };
  }

  function hold(payload: string, events: number): void {
    window.push({ payload, events });
    windowEvents += events;
    windowBytes += payload.length;
    // Whole notifications leave while the rest is still enough, then the oldest events of the next.
    while (head < window.length - 1) {
      const oldest = window[head]!;
      const remaining = oldest.events - headSkipped;
      if (windowBytes <= REPLAY_WINDOW_BYTES && windowEvents - remaining < replayWindow) break;
      head += 1;
      headSkipped = 0;
      windowEvents -= remaining;
      windowBytes -= oldest.payload.length;
    }
    if (windowEvents > replayWindow) {
      headSkipped += windowEvents - replayWindow;
      windowEvents = replayWindow;
    }
    if (head > 1024 && head * 2 > window.length) {
      window = window.slice(head);
      head = 0;
    }
  }

  function forgetAll(): void {
    window = [];
    head = 0;
    headSkipped = 0;
    windowEvents = 0;
    windowBytes = 0;
  }

  function receive(payload: string): void {
    let parsed: unknown;
    try {
      parsed = JSON.parse(payload);
    } catch (error) {
      logger.error('unreadable task event notification', { error });
      return;
    }
    const events = eventsIn(parsed, {
      // A watch that begins while streams here were on an earlier one: they start over, before
      // the new watch's first event (its notifications come after this one).
      watchBegan: (tenantId, since) => {
        if (subscribers.has(tenantId)) watching(tenantId, since);
      },
      // Not the event itself in the log: it may carry a task's payload.
      dropped: () => logger.error('malformed task event dropped'),
    });
    if (events.length === 0) return;
    hold(payload, events.length);
    for (const notified of events) {
      const streams = subscribers.get(notified.tenant_id);
      if (!streams) continue;
      const event = streamEvent(notified);
      // Started now, so the reads of one notification's events share a query.
      event.data().catch(() => {});
      for (const subscriber of streams) subscriber.deliver(event);
    }
  }

  const stopReceiving = notifications.subscribe(TASK_EVENTS_CHANNEL, receive);
  // Listening again after the connection was lost: whatever was sent meanwhile never arrives.
  const stopWatchingGaps = notifications.onListening(() => {
    forgetAll();
    for (const streams of subscribers.values()) for (const subscriber of streams) subscriber.deliver(resetEvent(GAP_RESET));
  });

  /**
   * The tenant's events after `lastEventId`, read again from the window's notifications; a reset
   * when that event is not in the window (too old, unknown, another tenant's). Looked for from the
   * newest: a client back after a short gap finds its event among the last notifications. Those
   * after it that hold the tenant's events are parsed again: from the window's far end, with the
   * tenant's events in every notification, some 8 MB, about a tenth of a second here.
   */
  function missedSince(tenantId: string, lastEventId: string, since: bigint): StreamEvent[] {
    // How the trigger starts each event's text (migration 0006_task_events): a notification
    // without this cannot hold the event, and is not parsed.
    const start = `{"id":${lastEventId},"type":"`;
    // And each event's tenant so (PostgreSQL writes a uuid in lower case).
    const tenant = `"tenant_id":"${tenantId.toLowerCase()}"`;
    if (!/^\d{1,19}$/.test(lastEventId)) return [resetEvent(MISSED_RESET)];
    // Sent before the watch began (before a time nobody watched): what followed may be missing.
    if (BigInt(lastEventId) < since) return [resetEvent(MISSED_RESET)];
    for (let index = window.length - 1; index >= head; index -= 1) {
      const held = window[index]!;
      if (!held.payload.includes(start)) continue;
      const events = eventsOf(held.payload);
      const gone = index === head ? headSkipped : 0;
      const position = events.findIndex((event, eventIndex) => eventIndex >= gone && String(event.id) === lastEventId);
      if (position < 0) continue;
      // Another tenant's event id says nothing about this tenant's events, and must not reveal whether it is recent.
      if (events[position]!.tenant_id !== tenantId) break;
      const later = [events.slice(position + 1), ...window.slice(index + 1).filter((next) => next.payload.includes(tenant)).map((next) => eventsOf(next.payload))];
      return later.flat().filter((event) => event.tenant_id === tenantId).map(streamEvent);
    }
    return [resetEvent(MISSED_RESET)];
  }

  /** The watches begun or renewed from here and not yet answered, by tenant: concurrent first streams share one. */
  const watchesPending = new Map<string, Promise<bigint>>();

  /** Begins or renews the tenant's watch; resolves with the event id it began from. */
  function watch(tenantId: string): Promise<bigint> {
    let pending = watchesPending.get(tenantId);
    if (!pending) {
      pending = watches.watch(tenantId, resumeSeconds).finally(() => watchesPending.delete(tenantId));
      watchesPending.set(tenantId, pending);
    }
    return pending;
  }

  /** Records the tenant's watch; its streams start over if it is not the one they were watching. */
  function watching(tenantId: string, since: bigint): void {
    const known = watchedFrom.get(tenantId);
    watchedFrom.set(tenantId, since);
    if (known === undefined || known === since) return;
    for (const subscriber of subscribers.get(tenantId) ?? []) subscriber.deliver(resetEvent(WATCH_RESET));
  }

  /**
   * Renews the watch of every tenant with a stream here, and ends the watches that nobody renewed
   * in time. A watch of ours that another process ended (ours could not be renewed for longer
   * than resumeSeconds: the database was away) begins again.
   */
  async function renewWatches(): Promise<void> {
    const tenants = [...subscribers.keys()];
    const renewed = await watches.renew(tenants, resumeSeconds);
    // Not those whose first stream opened meanwhile: their watch was just begun or renewed.
    const begun = tenants.filter((tenantId) => !renewed.has(tenantId));
    const outcomes = await Promise.allSettled(begun.map(async (tenantId) => [tenantId, await watch(tenantId)] as const));
    for (const outcome of outcomes) {
      if (outcome.status === 'fulfilled') renewed.set(...outcome.value);
      else logger.warn('task event watch not begun again', { error: outcome.reason });
    }
    // Only the tenants still streamed to: a last stream may have closed meanwhile.
    for (const [tenantId, since] of renewed) if (subscribers.has(tenantId)) watching(tenantId, since);
  }

  let renewing = false;
  const renewal = setInterval(() => {
    if (renewing) return;
    renewing = true;
    renewWatches()
      .catch((error: unknown) => logger.warn('task event watches not renewed', { error }))
      .finally(() => (renewing = false));
  }, (resumeSeconds * 1000) / 4);
  renewal.unref();

  /** Refuses a stream while the hub is closing, or when the tenant holds its share of them. */
  function refuseUnlessRoom(tenantId: string): void {
    if (closed) throw new AppError('unavailable', 'The server is shutting down');
    if (maxStreamsPerTenant > 0 && (subscribers.get(tenantId)?.size ?? 0) >= maxStreamsPerTenant) {
      throw new AppError('too_many_requests', `This tenant already has ${maxStreamsPerTenant} event streams open`);
    }
  }

  return {
    async subscribe(tenantId, lastEventId, subscriber) {
      refuseUnlessRoom(tenantId);
      const since = await watch(tenantId);
      // Asked again: other streams may have opened, or the hub closed, while the watch began.
      refuseUnlessRoom(tenantId);
      let streams = subscribers.get(tenantId);
      if (!streams) subscribers.set(tenantId, (streams = new Set()));
      watching(tenantId, since);
      streams.add(subscriber);
      const replay = lastEventId === undefined ? [] : missedSince(tenantId, lastEventId, since);
      return {
        replay,
        unsubscribe() {
          streams.delete(subscriber);
          if (streams.size > 0 || subscribers.get(tenantId) !== streams) return;
          // Not renewed from here any more: the watch lasts resumeSeconds, for clients that come back.
          subscribers.delete(tenantId);
          watchedFrom.delete(tenantId);
        },
      };
    },
    close() {
      closed = true;
      clearInterval(renewal);
      stopReceiving();
      stopWatchingGaps();
      const all = [...subscribers.values()].flatMap((streams) => [...streams]);
      subscribers.clear();
      watchedFrom.clear();
      forgetAll();
      for (const subscriber of all) subscriber.end();
    },
  };
}
