import assert from 'node:assert/strict';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { sql } from 'kysely';
import { BOSS_SCHEMA } from '../src/queue/boss.js';
import { CALLBACK_QUEUE } from '../src/queue/task-queue.js';
import { startTestApp, withTestApp, type TestApp } from './helpers/app.js';
import { count, createTask, getTask, newChannel, slackPayload, startFakeSlack, waitForLog, type FakeSlack } from './helpers/engine.js';
import { underLocalhostName } from './helpers/fake-server.js';
import { eventually } from './helpers/poll.js';
import { registerAndLogin, uniqueSuffix } from './helpers/users.js';

// Callbacks are signed as Standard Webhooks (https://www.standardwebhooks.com/) with the tenant's
// secret, and retried (CALLBACK_MAX_RETRIES) when the receiver fails. Every signature here is
// checked twice: by the few lines of node:crypto below, written from the specification, and by
// the `standardwebhooks` package.

interface RawRequest {
  path: string;
  headers: IncomingHttpHeaders;
  /** The body exactly as it arrived. */
  raw: string;
}

type Answer = { status: number } | { hang: true };

/** A callback receiver that keeps every request's raw bytes; `answers` decides each path's replies in turn (then 200). */
async function startRawReceiver() {
  const requests: RawRequest[] = [];
  const answers = new Map<string, Answer[]>();
  const server: Server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const path = req.url ?? '';
    requests.push({ path, headers: req.headers, raw: Buffer.concat(chunks).toString('utf8') });
    const answer = answers.get(path)?.shift() ?? { status: 200 };
    if ('hang' in answer) return;
    res.writeHead(answer.status, { 'Content-Type': 'text/plain' }).end('ok');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    /** A path of its own, answered with `replies` in turn. */
    target(replies: Answer[] = []) {
      const path = `/hooks/${uniqueSuffix()}`;
      answers.set(path, [...replies]);
      return { url: `${url}${path}`, received: () => requests.filter((request) => request.path === path) };
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * The receiver's side of Standard Webhooks, from the specification: the signature is
 * base64(HMAC-SHA256(base64-decoded secret after "whsec_", "{id}.{timestamp}.{body}")), prefixed
 * "v1,"; the header may carry several, space-separated. Returns how many of them `secret` made.
 */
function signaturesBy(secret: string, request: RawRequest): number {
  const id = String(request.headers['webhook-id']);
  const timestamp = String(request.headers['webhook-timestamp']);
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  const expected = createHmac('sha256', key).update(`${id}.${timestamp}.${request.raw}`).digest();
  return String(request.headers['webhook-signature'])
    .split(' ')
    .filter((signature) => {
      const [version, value] = signature.split(',');
      const given = Buffer.from(value ?? '', 'base64');
      return version === 'v1' && given.length === expected.length && timingSafeEqual(given, expected);
    }).length;
}

/** Checks the request with the `standardwebhooks` package; returns the payload it verified. */
function verifiedByLibrary(secret: string, request: RawRequest): unknown {
  const headers = Object.fromEntries(['webhook-id', 'webhook-timestamp', 'webhook-signature'].map((name) => [name, String(request.headers[name])]));
  return new Webhook(secret).verify(request.raw, headers);
}

let slack: FakeSlack;
let receiver: Awaited<ReturnType<typeof startRawReceiver>>;

before(async () => {
  slack = await startFakeSlack();
  receiver = await startRawReceiver();
});

after(async () => {
  await slack?.close();
  await receiver?.close();
});

describe('signed callbacks, retried on failure', () => {
  let app: TestApp;

  before(async () => {
    app = await startTestApp({
      env: {
        SLACK_WEBHOOK_URL: underLocalhostName(slack.url),
        CALLBACK_ALLOW_PRIVATE_NETWORKS: 'true',
        CALLBACK_TIMEOUT_SECONDS: '1',
        CALLBACK_MAX_RETRIES: '2',
        CALLBACK_RETRY_DELAYS_SECONDS: '1',
      },
      worker: true,
    });
  });

  after(async () => {
    await app?.close();
  });

  async function secretOf(user: { token: string }): Promise<any> {
    const response = await app.get('/api/v1/tenant/webhook-secret', { token: user.token });
    assert.equal(response.status, 200, JSON.stringify(response.body));
    return response.body;
  }

  test('a callback carries webhook-id, webhook-timestamp and a signature of the exact body with the tenant’s secret', async () => {
    const [user, other] = await Promise.all([registerAndLogin(app, 'signed'), registerAndLogin(app, 'signed-other')]);
    const { secret, previous_secret_expires_at } = await secretOf(user);
    assert.match(secret, /^whsec_[A-Za-z0-9+/]+={0,2}$/);
    assert.ok(Buffer.from(secret.slice('whsec_'.length), 'base64').length >= 24, 'at least 24 random bytes');
    assert.equal(previous_secret_expires_at, null);
    assert.equal((await secretOf(user)).secret, secret, 'made once, then kept');
    const otherSecret = (await secretOf(other)).secret;
    assert.notEqual(otherSecret, secret, 'each tenant has its own');

    const target = receiver.target();
    const startedAt = Math.floor(Date.now() / 1000);
    const task = await createTask(app, user.token, { payload: slackPayload(newChannel('signed')), callback_url: target.url });
    await waitForLog(app, task.id, 'Successfully sent callback with status 200');
    const [request] = target.received();
    assert.ok(request);
    assert.equal(request.headers['content-type'], 'application/json');
    assert.equal(request.headers['webhook-id'], `msg_${task.id}_success`);
    const timestamp = Number(request.headers['webhook-timestamp']);
    assert.ok(Number.isInteger(timestamp) && timestamp >= startedAt - 1 && timestamp <= Math.floor(Date.now() / 1000) + 1, `unix seconds: ${timestamp}`);
    assert.match(String(request.headers['webhook-signature']), /^v1,[A-Za-z0-9+/]+={0,2}$/, 'one signature');

    assert.equal(signaturesBy(secret, request), 1);
    assert.equal(signaturesBy(otherSecret, request), 0, "another tenant's secret does not verify it");
    assert.deepEqual(verifiedByLibrary(secret, request), await getTask(app, user.token, task.id));
    assert.throws(() => verifiedByLibrary(otherSecret, request));
    // The signature covers the body byte for byte.
    assert.equal(signaturesBy(secret, { ...request, raw: `${request.raw} ` }), 0);
  });

  test('during the 24 h after a rotation, callbacks carry two signatures: the new secret’s and the previous one’s', async () => {
    const user = await registerAndLogin(app, 'rotation');
    const before = await secretOf(user);
    const rotated = await app.post('/api/v1/tenant/webhook-secret/rotate', undefined, { token: user.token });
    assert.equal(rotated.status, 200, JSON.stringify(rotated.body));
    const { secret, previous_secret_expires_at } = rotated.body;
    assert.notEqual(secret, before.secret);
    const window = Date.parse(previous_secret_expires_at) - Date.now();
    assert.ok(window > 23.9 * 3600_000 && window <= 24 * 3600_000, `the previous secret signs for 24 h (${window} ms left)`);
    assert.deepEqual(await secretOf(user), rotated.body, 'GET shows the new secret');

    const target = receiver.target();
    const task = await createTask(app, user.token, { payload: slackPayload(newChannel('rotation')), callback_url: target.url });
    await waitForLog(app, task.id, 'Successfully sent callback with status 200');
    const [request] = target.received();
    assert.ok(request);
    assert.equal(String(request.headers['webhook-signature']).split(' ').length, 2);
    assert.equal(signaturesBy(secret, request), 1);
    assert.equal(signaturesBy(before.secret, request), 1);
    for (const key of [secret, before.secret]) assert.equal((verifiedByLibrary(key, request) as any).id, task.id);

    // Once the window is over, only the new secret signs.
    await app.db.updateTable('tenant_webhook_secrets').set({ previous_expires_at: new Date(Date.now() - 1000) }).where('tenant_id', '=', user.tenantId).execute();
    assert.equal((await secretOf(user)).previous_secret_expires_at, null);
    const later = receiver.target();
    const next = await createTask(app, user.token, { payload: slackPayload(newChannel('rotation-over')), callback_url: later.url });
    await waitForLog(app, next.id, 'Successfully sent callback with status 200');
    const [single] = later.received();
    assert.ok(single);
    assert.equal(signaturesBy(secret, single), 1);
    assert.equal(signaturesBy(before.secret, single), 0);
  });

  test('a receiver that times out, then fails, is sent the callback again under the same webhook-id, each attempt audited', async () => {
    const user = await registerAndLogin(app, 'retried');
    const { secret } = await secretOf(user);
    const target = receiver.target([{ hang: true }, { status: 503 }]);
    const task = await createTask(app, user.token, { payload: slackPayload(newChannel('retried')), callback_url: target.url });

    const messages = await waitForLog(app, task.id, 'Successfully sent callback with status 200', 15_000);
    const callbackTrail = messages.slice(messages.indexOf(`Attempting to send callback to ${target.url}`));
    assert.deepEqual(callbackTrail, [
      `Attempting to send callback to ${target.url}`,
      'Callback failed with error: no answer within 1 s',
      'Scheduling callback retry 1/2 in 1 s',
      `Attempting to send callback to ${target.url}`,
      'Callback failed with error: receiver answered with status 503',
      'Scheduling callback retry 2/2 in 1 s',
      `Attempting to send callback to ${target.url}`,
      'Successfully sent callback with status 200',
    ]);
    const requests = target.received();
    assert.equal(requests.length, 3);
    assert.deepEqual(new Set(requests.map((request) => request.headers['webhook-id'])), new Set([`msg_${task.id}_success`]), 'one message id for every attempt');
    for (const request of requests) {
      assert.equal(signaturesBy(secret, request), 1, 'each attempt is signed afresh');
      assert.deepEqual(JSON.parse(request.raw), JSON.parse(requests[0]!.raw), 'the same task JSON each time');
    }
    assert.equal((await getTask(app, user.token, task.id)).status, 'success', 'the callback never changes the task');
  });

  test('after CALLBACK_MAX_RETRIES failed retries the callback is given up, and says so', async () => {
    const user = await registerAndLogin(app, 'given-up');
    const target = receiver.target([{ status: 500 }, { status: 500 }, { status: 500 }, { status: 500 }]);
    const task = await createTask(app, user.token, { payload: slackPayload(newChannel('given-up')), callback_url: target.url });

    const messages = await waitForLog(app, task.id, 'Callback permanently failed after 2 retries', 15_000);
    assert.equal(count(messages, (message) => message === `Attempting to send callback to ${target.url}`), 3);
    assert.equal(count(messages, (message) => message === 'Callback failed with error: receiver answered with status 500'), 3);
    assert.deepEqual(
      messages.filter((message) => message.startsWith('Scheduling callback retry')),
      ['Scheduling callback retry 1/2 in 1 s', 'Scheduling callback retry 2/2 in 1 s'],
    );
    assert.equal(messages.at(-1), 'Callback permanently failed after 2 retries');
    assert.equal(target.received().length, 3);
    const jobs = await callbackJobs(app, task.id);
    assert.deepEqual(jobs.map((job) => job.state).sort(), ['completed', 'completed', 'completed'], 'no job is left to send it again');
  });
});

/** The callback queue's jobs for one task. */
async function callbackJobs(app: TestApp, taskId: string) {
  const { rows } = await sql<{ id: string; state: string }>`
    select id, state::text as state from ${sql.table(`${BOSS_SCHEMA}.job`)}
    where name = ${CALLBACK_QUEUE} and data->>'task_id' = ${taskId}`.execute(app.db);
  return rows;
}

describe('retried callbacks and refused targets', () => {
  test('a refused target is never retried, whatever CALLBACK_MAX_RETRIES says', async () => {
    await withTestApp({ env: { SLACK_WEBHOOK_URL: slack.url, CALLBACK_MAX_RETRIES: '3', CALLBACK_RETRY_DELAYS_SECONDS: '1' }, worker: true }, async (app) => {
      const user = await registerAndLogin(app, 'refused');
      const target = receiver.target();
      // localhost resolves to loopback: refused when it is connected to.
      const url = target.url.replace('//127.0.0.1:', '//localhost:');
      const task = await createTask(app, user.token, { payload: slackPayload(newChannel('to-loopback')), callback_url: url });
      const messages = await waitForLog(app, task.id, /^Callback to .* refused: the target is not a public address/);
      // The refusal and any retry are written in one transaction: once the refusal is there, so would a retry be.
      assert.ok(!messages.some((message) => message.startsWith('Scheduling callback retry')), JSON.stringify(messages));
      await eventually(async () => ((await callbackJobs(app, task.id)).every((job) => job.state === 'completed') ? true : undefined), {
        message: 'the callback job completed',
      });
      assert.equal((await callbackJobs(app, task.id)).length, 1, 'no retry job');
      assert.equal(target.received().length, 0);
    });
  });
});
