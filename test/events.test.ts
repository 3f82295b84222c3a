import assert from 'node:assert/strict';
import { createMetrics } from '../src/metrics/metrics.js';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { serve } from '@hono/node-server';
import { sql } from 'kysely';
import pg from 'pg';
import { createNotifications } from '../src/db/notifications.js';
import type { Config } from '../src/config.js';
import { createApp } from '../src/http/app.js';
import { silentLogger } from '../src/logger.js';
import { startTestApp, type TestApp } from './helpers/app.js';
import { createTask, getTask, newChannel, slackPayload, startFakeSlack, waitForStatus, type FakeSlack } from './helpers/engine.js';
import { eventually } from './helpers/poll.js';
import { eventsOfTask, openEventStream, waitForTaskEvents, type SseEvent, type SseStream } from './helpers/sse.js';
import { registerAndLogin, type RegisteredUser } from './helpers/users.js';

// GET /api/v1/events as a client sees it: a real HTTP event stream against the app with an
// in-process worker and a fake Slack. Heartbeats every 0.2 s, a replay window of 100 events, and
// at most 3 streams per tenant, so each of those is seen within a test.

const HEARTBEAT_SECONDS = 0.2;
const REPLAY_WINDOW = 100;
const MAX_STREAMS = 3;

let slack: FakeSlack;
let app: TestApp;
const streams: SseStream[] = [];

before(async () => {
  slack = await startFakeSlack();
  app = await startTestApp({
    env: {
      SLACK_WEBHOOK_URL: slack.url,
      RETRY_DELAYS_SECONDS: '0',
      EVENTS_HEARTBEAT_SECONDS: String(HEARTBEAT_SECONDS),
      EVENTS_REPLAY_WINDOW: String(REPLAY_WINDOW),
      EVENTS_MAX_STREAMS_PER_TENANT: String(MAX_STREAMS),
    },
    worker: true,
  });
});

after(async () => {
  for (const stream of streams) stream.close();
  await app?.close();
  await slack?.close();
});

/** A stream of `user`'s events on `url` (the test app unless told), hung up after the file. */
async function connect(user: RegisteredUser, options: { lastEventId?: string; url?: string; query?: string } = {}): Promise<SseStream> {
  const stream = await openEventStream(`${options.url ?? app.url}/api/v1/events${options.query ?? ''}`, {
    token: user.token,
    ...(options.lastEventId !== undefined ? { lastEventId: options.lastEventId } : {}),
  });
  streams.push(stream);
  assert.equal(stream.status, 200, stream.text);
  return stream;
}

/**
 * A second API process (its own notification connection and event hub) on this file's database,
 * with `config` over the app's, until `work` is done.
 */
async function withSecondApi(config: Partial<Config>, work: (url: string) => Promise<void>): Promise<void> {
  const notifications = createNotifications(app.database.url, { watch: app.watch });
  await notifications.ready;
  const stopping = new AbortController();
  const secondApi = createApp({
    db: app.db,
    boss: app.boss,
    config: { ...app.config, ...config },
    logger: silentLogger,
    notifications,
    metrics: createMetrics(),
    stopping: stopping.signal,
  });
  const server = await new Promise<Server>((resolve) => {
    const listening = serve({ fetch: secondApi.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(listening as Server));
  });
  try {
    await work(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  } finally {
    stopping.abort();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await notifications.close();
  }
}

const summary = (events: SseEvent[]) => events.map((event) => `${event.event} ${JSON.parse(event.data).id ?? ''}`);

describe('a tenant stream', () => {
  test('an SSE client receives created → started → succeeded, and a second tenant receives none', async () => {
    const alice = await registerAndLogin(app, 'events-alice');
    const bob = await registerAndLogin(app, 'events-bob');
    const aliceStream = await connect(alice);
    const bobStream = await connect(bob);
    assert.match(aliceStream.headers.get('content-type') ?? '', /^text\/event-stream/);
    assert.equal(aliceStream.headers.get('cache-control'), 'no-store');

    const channel = newChannel('events');
    const created = await createTask(app, alice.token, { payload: slackPayload(channel) });
    const events = await waitForTaskEvents(aliceStream, created.id, 'task.succeeded');
    assert.deepEqual(
      events.map((event) => event.event),
      ['task.created', 'task.started', 'task.succeeded'],
    );
    const [createdEvent, startedEvent, succeededEvent] = events.map((event) => JSON.parse(event.data));
    assert.deepEqual(createdEvent, created, 'task.created carries the task as the creation answered it');
    assert.equal(startedEvent.status, 'in_progress');
    assert.ok(startedEvent.started_at);
    assert.equal(startedEvent.finished_at, null);
    assert.deepEqual(succeededEvent, await getTask(app, alice.token, created.id), 'task.succeeded carries the task as GET shows it');
    assert.equal(new Set(events.map((event) => event.id)).size, 3, 'every event has an id of its own');

    // Bob's stream is live (his own task arrives), and nothing of Alice's came before it.
    const bobsTask = await createTask(app, bob.token, { payload: slackPayload(newChannel('bob')) });
    await bobStream.waitForEvent((event) => JSON.parse(event.data).id === bobsTask.id);
    assert.deepEqual(
      bobStream.events.filter((event) => JSON.parse(event.data).id !== bobsTask.id),
      [],
      `bob saw only his own task: ${JSON.stringify(summary(bobStream.events))}`,
    );
    assert.deepEqual(eventsOfTask(aliceStream.events, bobsTask.id), []);
  });

  test('a failed attempt that will be retried is task.retry_scheduled; the last one is task.failed', async () => {
    const user = await registerAndLogin(app, 'events-retry');
    const stream = await connect(user);
    const channel = newChannel('failing');
    slack.route(channel, () => ({ status: 500, body: 'down' }));

    const created = await createTask(app, user.token, { payload: slackPayload(channel), max_retries: 1 });
    const events = await waitForTaskEvents(stream, created.id, 'task.failed');
    assert.deepEqual(
      events.map((event) => event.event),
      ['task.created', 'task.started', 'task.retry_scheduled', 'task.started', 'task.failed'],
    );
    const retry = JSON.parse(events[2]!.data);
    assert.equal(retry.status, 'queued');
    assert.equal(retry.retry_count, 1);
    assert.deepEqual(retry.result, { error: 'Slack returned status 500' });
    assert.deepEqual(JSON.parse(events[4]!.data), await getTask(app, user.token, created.id));
  });

  test('a cancel is task.canceled', async () => {
    const user = await registerAndLogin(app, 'events-cancel');
    const stream = await connect(user);
    const created = await createTask(app, user.token, { payload: slackPayload(newChannel('later')), delay_seconds: 3600 });
    const canceled = await app.delete(`/api/v1/tasks/${created.id}`, { token: user.token });
    assert.equal(canceled.status, 200);
    const events = await waitForTaskEvents(stream, created.id, 'task.canceled');
    assert.deepEqual(
      events.map((event) => event.event),
      ['task.created', 'task.canceled'],
    );
    assert.deepEqual(JSON.parse(events[1]!.data), canceled.body);
  });

  test("a chaining task's success shows the link to the task it chained", async () => {
    const user = await registerAndLogin(app, 'events-chain');
    const stream = await connect(user);
    const parent = await createTask(app, user.token, {
      payload: slackPayload(newChannel('first')),
      on_success_next_task: { payload: slackPayload(newChannel('second')) },
    });
    const [succeeded] = (await waitForTaskEvents(stream, parent.id, 'task.succeeded')).filter((event) => event.event === 'task.succeeded');
    const shown = JSON.parse(succeeded!.data);
    assert.ok(shown.next_task_id, 'next_task_id is set');
    assert.deepEqual(shown, await getTask(app, user.token, parent.id));
    await stream.waitForEvent((event) => event.event === 'task.created' && JSON.parse(event.data).id === shown.next_task_id);
    await waitForStatus(app, user.token, shown.next_task_id, 'success');
  });

  test('a task too large for a notification arrives all the same, as GET shows it', async () => {
    const user = await registerAndLogin(app, 'events-large');
    const stream = await connect(user);
    const created = await createTask(app, user.token, { payload: slackPayload(newChannel('large'), 'x'.repeat(10_000)), delay_seconds: 3600 });
    const [event] = await waitForTaskEvents(stream, created.id, 'task.created');
    assert.deepEqual(JSON.parse(event!.data), created);
  });

  test('sends a heartbeat comment at the configured interval', async () => {
    const user = await registerAndLogin(app, 'events-heartbeat');
    const stream = await connect(user);
    await eventually(() => (stream.comments.length >= 3 ? true : undefined), { timeoutMs: 5_000, message: 'three heartbeats' });
    const gaps = stream.comments.slice(1, 3).map((comment, index) => comment.at - stream.comments[index]!.at);
    for (const gap of gaps) assert.ok(gap >= HEARTBEAT_SECONDS * 1000 * 0.5, `heartbeats ${gap} ms apart`);
    assert.deepEqual(stream.events, [], 'a heartbeat is a comment, not an event');
  });
});

describe('resuming with Last-Event-ID', () => {
  test('replays exactly the events missed, in order, from the header or the query', async () => {
    const user = await registerAndLogin(app, 'events-resume');
    const first = await connect(user);
    const seen = await createTask(app, user.token, { payload: slackPayload(newChannel('seen')) });
    const seenEvents = await waitForTaskEvents(first, seen.id, 'task.succeeded');
    first.close();

    const missedA = await createTask(app, user.token, { payload: slackPayload(newChannel('missed-a')) });
    const missedB = await createTask(app, user.token, { payload: slackPayload(newChannel('missed-b')) });
    await waitForStatus(app, user.token, missedA.id, 'success');
    await waitForStatus(app, user.token, missedB.id, 'success');

    const resumed = await connect(user, { lastEventId: seenEvents.at(-1)!.id! });
    const replayed = await resumed.waitForEvents(6);
    assert.deepEqual(eventsOfTask(replayed, seen.id), [], 'nothing already seen comes again');
    assert.deepEqual(
      eventsOfTask(replayed, missedA.id).map((event) => event.event),
      ['task.created', 'task.started', 'task.succeeded'],
    );
    assert.deepEqual(
      eventsOfTask(replayed, missedB.id).map((event) => event.event),
      ['task.created', 'task.started', 'task.succeeded'],
    );
    assert.deepEqual(JSON.parse(eventsOfTask(replayed, missedB.id)[2]!.data), await getTask(app, user.token, missedB.id));
    // A replayed event shows the task as it was then, not as it is now.
    assert.deepEqual(
      eventsOfTask(replayed, missedA.id).map((event) => JSON.parse(event.data).status),
      ['queued', 'in_progress', 'success'],
    );

    // The same from the query string, starting after the third replayed event.
    const fromQuery = await connect(user, { query: `?last_event_id=${encodeURIComponent(replayed[2]!.id!)}` });
    assert.deepEqual(await fromQuery.waitForEvents(3), replayed.slice(3));

    // Nothing else was replayed: the next event either stream gets is the next change.
    const next = await createTask(app, user.token, { payload: slackPayload(newChannel('next')), delay_seconds: 3600 });
    for (const stream of [resumed, fromQuery]) {
      await waitForTaskEvents(stream, next.id, 'task.created');
      assert.deepEqual(summary(stream.events.slice(-1)), [`task.created ${next.id}`]);
    }
    assert.equal(resumed.events.length, 7);
    assert.equal(fromQuery.events.length, 4);
  });

  test('an unknown id gives a reset first', async () => {
    const user = await registerAndLogin(app, 'events-unknown');
    for (const lastEventId of ['999999999999', 'not-an-id']) {
      const stream = await connect(user, { lastEventId });
      const [reset] = await stream.waitForEvents(1);
      assert.equal(reset!.event, 'reset', lastEventId);
      assert.equal(reset!.id, undefined);
      assert.match(JSON.parse(reset!.data).detail, /read the task list again/);
      stream.close();
      await stream.waitForEnd();
    }
  });

  test('an id older than the replay window gives a reset; every event of a large statement arrives, in order', async () => {
    const user = await registerAndLogin(app, 'events-window');
    const live = await connect(user);
    const seen = await createTask(app, user.token, { payload: slackPayload(newChannel('old')), delay_seconds: 3600 });
    const [oldEvent] = await waitForTaskEvents(live, seen.id, 'task.created');

    // One statement of more rows than the window holds, from outside the app (split over many notifications).
    const count = REPLAY_WINDOW + 25;
    const { rows } = await sql<{ id: string }>`
      insert into tasks (tenant_id, payload, status)
      select ${user.tenantId}::uuid, jsonb_build_object('action', 'post_to_slack', 'channel', '#bulk', 'message', 'n' || n), 'canceled'
      from generate_series(1, ${count}) n
      returning id
    `.execute(app.db);
    const bulk = await live.waitForEvents(1 + count);
    assert.deepEqual(
      bulk.slice(1).map((event) => JSON.parse(event.data).id).sort(),
      rows.map((row) => row.id).sort(),
    );
    assert.deepEqual(
      bulk.slice(1).map((event) => JSON.parse(event.data).payload.message),
      Array.from({ length: count }, (_, index) => `n${index + 1}`),
      'in the order the statement wrote them',
    );

    const stream = await connect(user, { lastEventId: oldEvent!.id! });
    const [reset] = await stream.waitForEvents(1);
    assert.equal(reset!.event, 'reset');
    stream.close();

    // The window is the latest REPLAY_WINDOW events exactly, wherever its edge falls in a
    // notification: the oldest of them resumes the stream, the one before it is gone.
    const kept = bulk.slice(-REPLAY_WINDOW);
    const fromOldestKept = await connect(user, { lastEventId: kept[0]!.id! });
    assert.deepEqual(summary(await fromOldestKept.waitForEvents(REPLAY_WINDOW - 1)), summary(kept.slice(1)));
    const fromFirstGone = await eventually(
      async () => {
        const resumed = await openEventStream(`${app.url}/api/v1/events`, { token: user.token, lastEventId: bulk.at(-REPLAY_WINDOW - 1)!.id! });
        streams.push(resumed);
        return resumed.status === 200 ? resumed : undefined;
      },
      { timeoutMs: 5_000, message: 'a stream admitted once one hung up' },
    );
    assert.equal((await fromFirstGone.waitForEvents(1))[0]!.event, 'reset');
  });
});

describe('events from elsewhere', () => {
  test('changes made by another process (plain SQL) reach the stream', async () => {
    const user = await registerAndLogin(app, 'events-sql');
    const stream = await connect(user);
    const created = await createTask(app, user.token, { payload: slackPayload(newChannel('sql')), delay_seconds: 3600 });
    await sql`update tasks set status = 'canceled', finished_at = now() where tenant_id = ${user.tenantId} and id = ${created.id}`.execute(app.db);
    const [, canceled] = await waitForTaskEvents(stream, created.id, 'task.canceled');
    assert.deepEqual(JSON.parse(canceled!.data), await getTask(app, user.token, created.id));

    // A task that never finished and is deleted was taken back: task.deleted, with its id alone.
    const { rows } = await sql<{ id: string }>`
      insert into tasks (tenant_id, payload) values (${user.tenantId}, '{"action": "none"}') returning id
    `.execute(app.db);
    await sql`delete from tasks where tenant_id = ${user.tenantId} and id = ${rows[0]!.id}`.execute(app.db);
    const deleted = await stream.waitForEvent((event) => event.event === 'task.deleted');
    assert.deepEqual(JSON.parse(deleted.data), { id: rows[0]!.id });
  });

  test('a notification holding something that is not an event still delivers the events beside it', async () => {
    const user = await registerAndLogin(app, 'events-malformed');
    const stream = await connect(user);
    const taskId = crypto.randomUUID();
    const payload = JSON.stringify([
      { id: 'x', type: 'task.nonsense', tenant_id: user.tenantId, task_id: taskId, task: null },
      { id: 9_000_000_001, type: 'task.deleted', tenant_id: user.tenantId, task_id: taskId, task: null },
    ]);
    await sql`select pg_notify('autonomos_task_events', ${payload})`.execute(app.db);
    const deleted = await stream.waitForEvent((event) => event.event === 'task.deleted');
    assert.deepEqual({ id: deleted.id, data: JSON.parse(deleted.data) }, { id: '9000000001', data: { id: taskId } });
    assert.ok(!stream.events.some((event) => event.event === 'task.nonsense'));
  });

  test('a stream on a second API process sees the tasks the first one created and its worker ran', async () => {
    await withSecondApi({}, async (url) => {
      const user = await registerAndLogin(app, 'events-second');
      const stream = await connect(user, { url });
      const created = await createTask(app, user.token, { payload: slackPayload(newChannel('second')) });
      const events = await waitForTaskEvents(stream, created.id, 'task.succeeded');
      assert.deepEqual(
        events.map((event) => event.event),
        ['task.created', 'task.started', 'task.succeeded'],
      );
      stream.close();
    });
  });
});

describe('stream lifetime', () => {
  test(`a tenant holds at most ${MAX_STREAMS} streams; a client hanging up frees its place`, async () => {
    const user = await registerAndLogin(app, 'events-cap');
    const open = [];
    for (let index = 0; index < MAX_STREAMS; index += 1) open.push(await connect(user));
    const refused = await openEventStream(`${app.url}/api/v1/events`, { token: user.token });
    assert.equal(refused.status, 429, refused.text);
    assert.match(JSON.parse(refused.text).detail, /event streams open/);

    open[0]!.close();
    const again = await eventually(
      async () => {
        const stream = await openEventStream(`${app.url}/api/v1/events`, { token: user.token });
        streams.push(stream);
        return stream.status === 200 ? stream : undefined;
      },
      { timeoutMs: 5_000, message: 'a stream admitted once one hung up' },
    );
    const created = await createTask(app, user.token, { payload: slackPayload(newChannel('cap')), delay_seconds: 3600 });
    await waitForTaskEvents(again, created.id, 'task.created');
  });

  test('a HEAD request takes no stream: nobody reads its body, so it must hold no place', async () => {
    const user = await registerAndLogin(app, 'events-head');
    for (let index = 0; index < MAX_STREAMS + 2; index += 1) {
      const head = await fetch(`${app.url}/api/v1/events`, { method: 'HEAD', headers: { Authorization: `Bearer ${user.token}` } });
      assert.equal(head.status, 200);
      assert.match(head.headers.get('content-type') ?? '', /^text\/event-stream/);
    }
    const stream = await connect(user);
    const created = await createTask(app, user.token, { payload: slackPayload(newChannel('head')), delay_seconds: 3600 });
    await waitForTaskEvents(stream, created.id, 'task.created');
  });

  test('after the notification connection is lost, streams are told to reset, and old ids give a reset', async () => {
    const user = await registerAndLogin(app, 'events-gap');
    const stream = await connect(user);
    const created = await createTask(app, user.token, { payload: slackPayload(newChannel('gap')), delay_seconds: 3600 });
    const [before] = await waitForTaskEvents(stream, created.id, 'task.created');

    await sql`
      select pg_terminate_backend(pid) from pg_stat_activity
      where datname = current_database() and application_name = 'autonomos-notifications'
    `.execute(app.db);
    const reset = await stream.waitForEvent((event) => event.event === 'reset');
    assert.match(JSON.parse(reset.data).detail, /missed/);

    // Listening again, events flow as before.
    const later = await createTask(app, user.token, { payload: slackPayload(newChannel('gap-later')), delay_seconds: 3600 });
    await waitForTaskEvents(stream, later.id, 'task.created');

    const resumed = await connect(user, { lastEventId: before!.id! });
    const [first] = await resumed.waitForEvents(1);
    assert.equal(first!.event, 'reset');
  });
});

describe('watching a tenant', () => {
  /** The tenant's watch (migration 0017), if it has one. */
  async function watchOf(tenantId: string) {
    const { rows } = await sql<{ watched_from: string; expires_at: Date }>`
      select watched_from, expires_at from task_event_watches where tenant_id = ${tenantId}
    `.execute(app.db);
    return rows[0];
  }

  test('no event is made for a tenant that nobody watches', async () => {
    const listener = new pg.Client({ connectionString: app.database.url });
    await listener.connect();
    const heard: string[] = [];
    listener.on('notification', (message) => heard.push(message.payload ?? ''));
    await listener.query('listen autonomos_task_events');
    try {
      const unwatched = await registerAndLogin(app, 'events-unwatched');
      const watched = await registerAndLogin(app, 'events-watched');
      const stream = await connect(watched);
      await createTask(app, unwatched.token, { payload: slackPayload(newChannel('unwatched')), delay_seconds: 3600 });
      const seen = await createTask(app, watched.token, { payload: slackPayload(newChannel('watched')), delay_seconds: 3600 });
      await waitForTaskEvents(stream, seen.id, 'task.created');
      // One statement for both tenants: the watched one's task alone is news.
      const { rows } = await sql<{ id: string; tenant_id: string }>`
        insert into tasks (tenant_id, payload) values (${unwatched.tenantId}, '{"action": "none"}'), (${watched.tenantId}, '{"action": "none"}')
        returning id, tenant_id
      `.execute(app.db);
      await waitForTaskEvents(stream, rows.find((row) => row.tenant_id === watched.tenantId)!.id, 'task.created');
      // Notifications arrive in commit order: the unwatched tenant's would have come first.
      await eventually(async () => heard.some((payload) => payload.includes(rows.find((row) => row.tenant_id === watched.tenantId)!.id)) || undefined, {
        message: 'the watched tasks notified',
      });
      assert.deepEqual(
        heard.filter((payload) => payload.includes(unwatched.tenantId)),
        [],
      );
      assert.equal(await watchOf(unwatched.tenantId), undefined);
    } finally {
      await listener.end();
    }
  });

  test('a stream opens only once the transactions that changed its tenant unwatched have ended', async () => {
    const user = await registerAndLogin(app, 'events-watch-begins');
    let pending: Promise<SseStream> | undefined;
    const sqlTaskId = await app.db.transaction().execute(async (trx) => {
      const { rows } = await sql<{ id: string }>`
        insert into tasks (tenant_id, payload) values (${user.tenantId}, '{"action": "none"}') returning id
      `.execute(trx);
      let opened = false;
      pending = connect(user).then((stream) => ((opened = true), stream));
      // Either the stream opens (it would then miss this transaction's commit, which comes after),
      // or its watch waits for this transaction to end.
      const first = await eventually(async () => {
        if (opened) return 'the stream opened';
        // The watch's lock (migration 0017: two keys, the first WATCH_LOCK_CLASS), not the worker's claims.
        const waiting = await sql`
          select 1 from pg_locks where locktype = 'advisory' and not granted and classid = 1414743380 and objsubid = 2
          and database = (select oid from pg_database where datname = current_database())
        `.execute(app.db);
        return waiting.rows.length > 0 ? 'the watch waited' : undefined;
      });
      assert.equal(first, 'the watch waited');
      return rows[0]!.id;
    });
    const stream = await pending!;
    const created = await createTask(app, user.token, { payload: slackPayload(newChannel('watch-begins')), delay_seconds: 3600 });
    await waitForTaskEvents(stream, created.id, 'task.created');
    await sql`update tasks set status = 'canceled', finished_at = now() where tenant_id = ${user.tenantId} and id = ${sqlTaskId}`.execute(app.db);
    const [canceled] = await waitForTaskEvents(stream, sqlTaskId, 'task.canceled');
    assert.equal(stream.events[0]!.id, stream.events.find((event) => JSON.parse(event.data).id === created.id)!.id, 'the first event is of the task created after the stream opened');
    assert.equal(JSON.parse(canceled!.data).status, 'canceled');
  });

  test("a first stream waits a second at most for its tenant's transactions, then is refused with 503", async () => {
    const user = await registerAndLogin(app, 'events-watch-busy');
    const refused = await app.db.transaction().execute(async (trx) => {
      await sql`insert into tasks (tenant_id, payload) values (${user.tenantId}, '{"action": "none"}')`.execute(trx);
      // Held open until the stream is answered: without a limit on its wait, it never would be.
      const answer = openEventStream(`${app.url}/api/v1/events`, { token: user.token });
      const deadline = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the stream waited for ever')), 10_000).unref());
      return Promise.race([answer, deadline]);
    });
    assert.equal(refused.status, 503, refused.text);
    assert.equal(refused.headers.get('retry-after'), '1');
    assert.match(JSON.parse(refused.text).detail, /busy/);
    // Once the transaction has ended, the stream opens.
    await connect(user);
  });

  test('a REPEATABLE READ transaction, whose snapshot may predate a watch, makes its events all the same', async () => {
    const user = await registerAndLogin(app, 'events-watch-snapshot');
    let stream: SseStream | undefined;
    const taskId = await app.db
      .transaction()
      .setIsolationLevel('repeatable read')
      .execute(async (trx) => {
        await sql`select 1`.execute(trx); // the transaction's snapshot, before the watch
        stream = await connect(user);
        const { rows } = await sql<{ id: string }>`
          insert into tasks (tenant_id, payload) values (${user.tenantId}, '{"action": "none"}') returning id
        `.execute(trx);
        return rows[0]!.id;
      });
    await waitForTaskEvents(stream!, taskId, 'task.created');
  });

  test(`a watch is renewed while a stream is open, and lasts EVENTS_RESUME_SECONDS after the last one closes`, async () => {
    const resumeSeconds = 2;
    await withSecondApi({ eventsResumeSeconds: resumeSeconds }, async (url) => {
      const user = await registerAndLogin(app, 'events-watch-renewed');
      const stream = await connect(user, { url });
      const first = (await watchOf(user.tenantId))!;
      // Renewed past the length of one watch: the stream is still heard.
      await eventually(
        async () => {
          const watch = await watchOf(user.tenantId);
          return watch && watch.expires_at.getTime() > first.expires_at.getTime() + resumeSeconds * 1000 ? watch : undefined;
        },
        { message: 'the watch renewed' },
      );
      const created = await createTask(app, user.token, { payload: slackPayload(newChannel('renewed')), delay_seconds: 3600 });
      const [createdEvent] = await waitForTaskEvents(stream, created.id, 'task.created');
      assert.equal((await watchOf(user.tenantId))!.watched_from, first.watched_from, 'the same watch all along');
      stream.close();

      // Nobody renews it now: it ends, and what happens meanwhile is not sent. A client coming back
      // from before that is told it may have missed events, then hears what follows.
      await eventually(async () => ((await watchOf(user.tenantId)) === undefined ? true : undefined), { message: 'the watch ended' });
      const unheard = await createTask(app, user.token, { payload: slackPayload(newChannel('unheard')), delay_seconds: 3600 });
      const resumed = await connect(user, { url, lastEventId: createdEvent!.id! });
      const later = await createTask(app, user.token, { payload: slackPayload(newChannel('after')), delay_seconds: 3600 });
      await waitForTaskEvents(resumed, later.id, 'task.created');
      assert.deepEqual(summary(resumed.events), [`reset `, `task.created ${later.id}`]);
      assert.match(JSON.parse(resumed.events[0]!.data).detail, /missed/);
      assert.deepEqual(eventsOfTask(resumed.events, unheard.id), []);
    });
  });

  test('a watch ended elsewhere and begun again resets its streams before any event of the new one', async () => {
    const user = await registerAndLogin(app, 'events-watch-lost');
    const stream = await connect(user);
    // What other processes do when this one could not renew the watch in time (the database was
    // away): one ends it, and another begins a new one, long before this process renews again.
    await sql`delete from task_event_watches where tenant_id = ${user.tenantId}`.execute(app.db);
    const missed = await createTask(app, user.token, { payload: slackPayload(newChannel('lost')), delay_seconds: 3600 });
    await sql`select autonomos_watch_task_events(${user.tenantId}, 120)`.execute(app.db);
    const created = await createTask(app, user.token, { payload: slackPayload(newChannel('found')), delay_seconds: 3600 });
    await waitForTaskEvents(stream, created.id, 'task.created');
    assert.deepEqual(summary(stream.events), ['reset ', `task.created ${created.id}`]);
    assert.match(JSON.parse(stream.events[0]!.data).detail, /missed/);
    assert.deepEqual(eventsOfTask(stream.events, missed.id), []);
  });
});
