import type { HttpBindings } from '@hono/node-server';
import { Hono, type Context, type MiddlewareHandler } from 'hono';
import { streamSSE } from 'hono/streaming';
import { describeRoute } from '../http/openapi.js';
import type { Authenticated } from '../auth/auth.middleware.js';
import type { AppEnv, Principal } from '../http/types.js';
import type { StreamEvent, TaskEventHub } from './task-events.js';

/**
 * Events waiting for one stream. A client that falls this far behind (it does not read) is
 * disconnected rather than buffered for without bound; it resumes with Last-Event-ID.
 */
const MAX_PENDING_EVENTS = 1_000;
/** How long a stream the server ends may take to flush before its connection is cut. */
const END_GRACE_MS = 1_000;

/** A stream's queue of events to write, and why it ended once it has. */
function createMailbox(onClose: (reason: string) => void) {
  const items: StreamEvent[] = [];
  let wake: (() => void) | undefined;
  let closedFor: string | undefined;
  const mailbox = {
    push(event: StreamEvent): void {
      if (closedFor !== undefined) return;
      if (items.length >= MAX_PENDING_EVENTS) return mailbox.close('the client did not keep up');
      items.push(event);
      wake?.();
    },
    close(reason: string): void {
      if (closedFor !== undefined) return;
      closedFor = reason;
      items.length = 0;
      wake?.();
      onClose(reason);
    },
    get closedFor() {
      return closedFor;
    },
    /** The next event, or undefined once closed. */
    async take(): Promise<StreamEvent | undefined> {
      for (;;) {
        if (closedFor !== undefined) return undefined;
        const next = items.shift();
        if (next) return next;
        await new Promise<void>((resolve) => (wake = resolve));
      }
    },
  };
  return mailbox;
}

/**
 * GET /api/v1/events: the tenant's task changes as Server-Sent Events. `stillAuthorized` is
 * asked with every heartbeat: a stream ends once its token has expired or been revoked.
 */
export function eventRoutes(
  hub: TaskEventHub,
  authenticated: Authenticated,
  stillAuthorized: (authorization: string | undefined) => Promise<boolean>,
  options: { heartbeatMs: number },
) {
  return new Hono<AppEnv>().get(
    '/api/v1/events',
    describeRoute({
      summary: "A stream of the tenant's task changes (Server-Sent Events)",
      description: [
        [
          "A `text/event-stream` of every change to the tenant's tasks, made by any API or worker process. Each event has an `id`,",
          'an `event` (`task.created`, `task.started`, `task.succeeded`, `task.failed` (final), `task.retry_scheduled` (a failed',
          'attempt that will be retried), `task.canceled`, or `task.deleted` for an unfinished task deleted outside the service, e.g.',
          'by an operator) and as `data` the task as `GET /api/v1/tasks/{id}` shows it (a task too large for a notification is read when it is',
          'sent, and so shows its state at that time; a deleted task is `{"id": …}`). Event ids are unique but not ascending: order',
          'is arrival order.',
        ],
        [
          'A client that reconnects with `Last-Event-ID` (or `?last_event_id=`, for clients that cannot set headers) gets the events',
          'it missed, if they are among the latest EVENTS_REPLAY_WINDOW and it comes back within EVENTS_RESUME_SECONDS of its',
          "tenant's last stream closing; otherwise, or when the server may have missed events, it",
          'gets an `event: reset` and should read the task list again. A comment line is sent every EVENTS_HEARTBEAT_SECONDS.',
          "The stream ends when the token expires or is revoked, and when the client falls far behind. Browsers' EventSource",
          'cannot send the Authorization header: use a fetch-based client.',
        ],
      ]
        .map((paragraph) => paragraph.join(' '))
        .join('\n\n'),
      tags: ['events'],
      parameters: [
        {
          name: 'Last-Event-ID',
          in: 'header',
          description: 'The id of the last event received: the stream starts with the events that followed it',
          schema: { type: 'string' },
        },
        { name: 'last_event_id', in: 'query', description: 'The same as the Last-Event-ID header', schema: { type: 'string' } },
      ],
      responses: {
        200: { description: 'The event stream (text/event-stream)' },
        429: { description: 'The tenant already holds EVENTS_MAX_STREAMS_PER_TENANT streams on this server' },
        503: { description: "The tenant's first stream waited a second for its tasks' transactions in flight: try again (Retry-After)" },
      },
    }),
    authenticated('viewer'),
    (c) => streamTaskEvents(c, hub, c.get('auth'), () => stillAuthorized(c.req.header('Authorization')), options),
  );
}

/**
 * Answers `c` with the event stream of `auth`'s tenant: what GET /api/v1/events serves, and the
 * dashboard's own stream. `stillAuthorized` is asked with every heartbeat: the stream ends once
 * the credential it was opened with has expired or been revoked.
 */
export async function streamTaskEvents<E extends AppEnv>(
  c: Context<E>,
  hub: TaskEventHub,
  auth: Principal,
  stillAuthorized: () => Promise<boolean>,
  options: { heartbeatMs: number },
): Promise<Response> {
  // Hono answers HEAD with the GET handler and drops the body: nobody would read or end this
  // stream, and its subscription would be held for ever. A HEAD learns the type, and no more.
  if (c.req.method === 'HEAD') return c.body(null, 200, { 'Content-Type': 'text/event-stream' });
  const logger = c.get('logger');
  const lastEventId = c.req.header('Last-Event-ID') || c.req.query('last_event_id') || undefined;
  const openedAt = performance.now();
  // A stream ended by the server gets a moment to flush, then its connection is cut: a client
  // that does not read would otherwise hold it (and a shutdown) open.
  const outgoing = (c.env as Partial<HttpBindings> | undefined)?.outgoing;
  const mailbox = createMailbox((reason) => {
    if (reason === 'client gone' || !outgoing) return;
    setTimeout(() => {
      if (!outgoing.writableFinished) outgoing.destroy();
    }, END_GRACE_MS).unref();
  });
  // Subscribed before the response starts, so that a refusal (429) is an ordinary answer, and
  // the tenant is watched once the client sees the stream open.
  const { replay, unsubscribe } = await hub.subscribe(auth.tenantId, lastEventId, {
    deliver: (event) => mailbox.push(event),
    end: () => mailbox.close('server stopping'),
  });
  for (const event of replay) mailbox.push(event);

  const response = streamSSE(c, async (stream) => {
    stream.onAbort(() => mailbox.close('client gone'));
    let beating = false;
    const beat = async () => {
      if (beating) return;
      beating = true;
      try {
        if (await stillAuthorized()) await stream.write(': ping\n\n');
        else mailbox.close('token expired or revoked');
      } finally {
        beating = false;
      }
    };
    const heartbeat = setInterval(() => void beat(), options.heartbeatMs);
    try {
      for (let next = await mailbox.take(); next; next = await mailbox.take()) {
        const data = await next.data();
        await stream.writeSSE({ ...(next.id !== undefined ? { id: next.id } : {}), event: next.event, data });
      }
    } catch (error) {
      // The task could not be read (the database is away): the client resumes from the last event it got.
      logger.warn('event stream failed', { error, tenant_id: auth.tenantId });
      mailbox.close('task read failed');
    } finally {
      clearInterval(heartbeat);
      unsubscribe();
      logger.info('event stream closed', {
        reason: mailbox.closedFor,
        tenant_id: auth.tenantId,
        user_id: auth.userId,
        duration_ms: Math.round(performance.now() - openedAt),
      });
    }
  });
  // Not stored anywhere, like every other answer; and not held back by a buffering proxy (nginx).
  response.headers.set('Cache-Control', 'no-store');
  response.headers.set('X-Accel-Buffering', 'no');
  return response;
}
