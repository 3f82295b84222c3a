import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startTestApp, type TestApp } from './helpers/app.js';
import { createTask, newChannel, slackPayload, startFakeSlack, type FakeSlack } from './helpers/engine.js';
import { eventsOfTask, openEventStream, waitForTaskEvents, type SseStream } from './helpers/sse.js';
import { registerAndLogin, type RegisteredUser } from './helpers/users.js';

// GET /api/v1/events with two tenants: a stream carries its own tenant's tasks and nothing else,
// needs a valid token for as long as it lasts, and one tenant's streams do not crowd out another's.

const HEARTBEAT_SECONDS = 0.2;
const MAX_STREAMS = 2;

let slack: FakeSlack;
let app: TestApp;
const streams: SseStream[] = [];

before(async () => {
  slack = await startFakeSlack();
  app = await startTestApp({
    env: {
      SLACK_WEBHOOK_URL: slack.url,
      EVENTS_HEARTBEAT_SECONDS: String(HEARTBEAT_SECONDS),
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

async function connect(user: RegisteredUser, lastEventId?: string): Promise<SseStream> {
  const stream = await openEventStream(`${app.url}/api/v1/events`, { token: user.token, ...(lastEventId !== undefined ? { lastEventId } : {}) });
  streams.push(stream);
  assert.equal(stream.status, 200, stream.text);
  return stream;
}

test('refuses a request without a valid token (401), as the OpenAPI document says', async () => {
  const missing = await openEventStream(`${app.url}/api/v1/events`);
  assert.equal(missing.status, 401);
  assert.equal(missing.headers.get('www-authenticate'), 'Bearer');
  assert.deepEqual(JSON.parse(missing.text), { detail: 'Not authenticated' });
  const forged = await openEventStream(`${app.url}/api/v1/events`, { token: 'not.a.token' });
  assert.equal(forged.status, 401);

  const documented = (await app.get('/openapi.json')).body.paths['/api/v1/events']?.get;
  assert.ok(documented, 'the route is in the OpenAPI document');
  assert.deepEqual(documented.security, [{ bearerAuth: [] }]);
});

test('two tenants working at once each see exactly their own tasks', async () => {
  const alice = await registerAndLogin(app, 'events-sec-alice');
  const bob = await registerAndLogin(app, 'events-sec-bob');
  const aliceStream = await connect(alice);
  const bobStream = await connect(bob);

  const tasks = await Promise.all(
    [alice, bob, alice, bob].map(async (user) => ({ user, task: await createTask(app, user.token, { payload: slackPayload(newChannel('both')) }) })),
  );
  for (const { user, task } of tasks) {
    await waitForTaskEvents(user === alice ? aliceStream : bobStream, task.id, 'task.succeeded');
  }
  for (const [user, stream] of [
    [alice, aliceStream],
    [bob, bobStream],
  ] as const) {
    const own = new Set(tasks.filter((entry) => entry.user === user).map((entry) => entry.task.id));
    const seen = new Set(stream.events.map((event) => JSON.parse(event.data).id));
    assert.deepEqual(seen, own, `${user.email} saw only its own tasks`);
  }
});

test("another tenant's event id resumes nothing: a reset, and none of the other tenant's events", async () => {
  const alice = await registerAndLogin(app, 'events-sec-owner');
  const mallory = await registerAndLogin(app, 'events-sec-mallory');
  const aliceStream = await connect(alice);
  const first = await createTask(app, alice.token, { payload: slackPayload(newChannel('first')), delay_seconds: 3600 });
  const [firstEvent] = await waitForTaskEvents(aliceStream, first.id, 'task.created');
  const second = await createTask(app, alice.token, { payload: slackPayload(newChannel('second')), delay_seconds: 3600 });
  await waitForTaskEvents(aliceStream, second.id, 'task.created');

  const stream = await connect(mallory, firstEvent!.id!);
  const [reset] = await stream.waitForEvents(1);
  assert.equal(reset!.event, 'reset');
  // Mallory's own next change is the next thing on the stream: nothing of Alice's was replayed.
  const own = await createTask(app, mallory.token, { payload: slackPayload(newChannel('own')), delay_seconds: 3600 });
  await waitForTaskEvents(stream, own.id, 'task.created');
  assert.deepEqual(eventsOfTask(stream.events, second.id), []);
  assert.deepEqual(
    stream.events.map((event) => event.event),
    ['reset', 'task.created'],
  );
});

test("a tenant at its stream limit does not keep another tenant's streams out", async () => {
  const busy = await registerAndLogin(app, 'events-sec-busy');
  const other = await registerAndLogin(app, 'events-sec-quiet');
  for (let index = 0; index < MAX_STREAMS; index += 1) await connect(busy);
  const refused = await openEventStream(`${app.url}/api/v1/events`, { token: busy.token });
  assert.equal(refused.status, 429);
  await connect(other);
});

test('a stream ends once its token is revoked, and the token opens no new one', async () => {
  const user = await registerAndLogin(app, 'events-sec-revoked');
  const stream = await connect(user);
  const logout = await app.post('/api/v1/auth/logout', undefined, { token: user.token });
  assert.equal(logout.status, 204);
  await stream.waitForEnd(5_000);
  const refused = await openEventStream(`${app.url}/api/v1/events`, { token: user.token });
  assert.equal(refused.status, 401);
});
