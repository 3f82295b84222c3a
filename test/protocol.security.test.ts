import assert from 'node:assert/strict';
import { createMetrics } from '../src/metrics/metrics.js';
import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { serve } from '@hono/node-server';
import { createApp } from '../src/http/app.js';
import { createLogger } from '../src/logger.js';
import { startTestApp, type TestApp } from './helpers/app.js';
import { closedPortUrl } from './helpers/dcl.js';
import { eventually } from './helpers/poll.js';
import { registerAndLogin, type RegisteredUser } from './helpers/users.js';

// Requests broken at the HTTP layer, sent over raw sockets to the app served by Node's HTTP server
// as in production, with a logger the test reads. A broken request is answered 400 or dropped,
// never logged as an error or as a 500; a route that does not read its body still answers a client
// that is slow to send it.

/** No client here should need anywhere near this long; it only keeps a broken test from hanging. */
const EXCHANGE_DEADLINE_MS = 20_000;

type LogLine = Record<string, unknown>;

let testApp: TestApp;
let server: Server;
let port: number;
const lines: LogLine[] = [];

before(async () => {
  // AOA jobs are only enqueued here (no worker), so the Legacy DCL is never called.
  testApp = await startTestApp({ env: { LEGACY_DCL_BASE_URL: await closedPortUrl() } });
  const logger = createLogger({ level: 'debug', write: (line) => void lines.push(JSON.parse(line)) });
  const { db, boss, config, notifications } = testApp;
  const app = createApp({ db, boss, config, logger, notifications, metrics: createMetrics() });
  server = await new Promise<Server>((resolve) => {
    const listening = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(listening as Server));
  });
  port = (server.address() as AddressInfo).port;
});

after(async () => {
  server?.closeAllConnections();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  await testApp?.close();
});

interface Exchange {
  /** Everything the server sent before the connection ended. */
  answer: string;
  /** The socket error the client saw, if any (EPIPE, ECONNRESET). */
  error?: string;
}

/**
 * Sends `head`, then the body `pieces` `gapMs` apart, then hangs up if asked to; reads only once
 * everything is sent, as many simple clients do. Resolves with what came back when the
 * connection ends.
 */
function exchange(head: string, pieces: (string | Buffer)[], options: { gapMs?: number; hangUp?: boolean } = {}): Promise<Exchange> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const received: Buffer[] = [];
    let error: string | undefined;
    const deadline = setTimeout(() => socket.destroy(), EXCHANGE_DEADLINE_MS);
    socket.pause();
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    socket.on('error', (failure: NodeJS.ErrnoException) => (error ??= failure.code ?? failure.message));
    socket.on('close', () => {
      clearTimeout(deadline);
      resolve({ answer: Buffer.concat(received).toString('latin1'), ...(error ? { error } : {}) });
    });
    const send = (index: number) => {
      if (socket.destroyed) return;
      if (index === pieces.length) {
        if (options.hangUp) socket.destroy();
        else socket.resume();
        return;
      }
      // The pause between pieces is a slow uploader's, not a wait for the server.
      socket.write(pieces[index]!, () => setTimeout(() => send(index + 1), options.gapMs ?? 0));
    };
    socket.write(head, () => send(0));
  });
}

function requestHead(method: string, path: string, headers: Record<string, string | number>): { head: string; requestId: string } {
  const requestId = `protocol-${randomUUID()}`;
  const all = { Host: '127.0.0.1', 'X-Request-ID': requestId, Connection: 'close', ...headers };
  const lines = Object.entries(all).map(([name, value]) => `${name}: ${value}`);
  return { head: `${method} ${path} HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n`, requestId };
}

function statusOf(answer: string): number | undefined {
  const match = /^HTTP\/1\.1 (\d{3}) /.exec(answer);
  return match ? Number(match[1]) : undefined;
}

/** The request's access-log line, once the app has written it. */
function accessLine(requestId: string): Promise<LogLine> {
  return eventually(() => lines.find((line) => line.msg === 'request' && line.request_id === requestId), {
    message: `access-log line for ${requestId}`,
  });
}

function errorLines(): LogLine[] {
  return lines.filter((line) => line.level === 'error');
}

describe('a malformed or abandoned request body', () => {
  test('an invalid chunk size is answered 400 and logged as a 400, not an error', async () => {
    const { head, requestId } = requestHead('POST', '/api/v1/auth/login', { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
    const { answer } = await exchange(head, ['2\r\n{"\r\n', 'zz\r\n']);

    assert.equal(statusOf(answer), 400, answer);
    assert.equal((await accessLine(requestId)).status, 400);
    assert.deepEqual(errorLines(), []);
  });

  test('a client that hangs up mid-body is dropped, logged at info as a 400', async () => {
    const user = await registerAndLogin(testApp, 'hangup');
    const cases = [
      // a chunked body, read up front by the body limit
      requestHead('POST', '/api/v1/auth/login', { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' }),
      // a body of announced length, read by the validator
      requestHead('POST', '/api/v1/tasks', { 'Content-Type': 'application/json', 'Content-Length': 1000, Authorization: `Bearer ${user.token}` }),
    ];
    for (const [index, { head, requestId }] of cases.entries()) {
      const body = head.includes('chunked') ? '9\r\n{"email":\r\n' : '{"payload":';
      const { answer } = await exchange(head, [body], { hangUp: true });

      assert.equal(answer, '', `case ${index}: nobody is left to answer`);
      assert.equal((await accessLine(requestId)).status, 400, `case ${index}`);
      const note = lines.find((line) => line.request_id === requestId && line.msg === 'request body not received');
      assert.equal(note?.level, 'info', `case ${index}: ${JSON.stringify(note)}`);
    }
    assert.deepEqual(errorLines(), []);
  });

  test('a client that hangs up mid-body on a route that ignores its body leaves an ordinary access line', async () => {
    const user = await registerAndLogin(testApp, 'hangup-aoa');
    const { head, requestId } = requestHead('POST', '/api/v1/aoa/run', { 'Content-Length': 100_000, Authorization: `Bearer ${user.token}` });
    await exchange(head, [Buffer.alloc(10_000, 'a')], { hangUp: true });

    assert.equal((await accessLine(requestId)).status, 202);
    assert.deepEqual(errorLines(), []);
  });
});

describe('a route that ignores its body answers a client still uploading', () => {
  // 512 KiB sent as 16 pieces 100 ms apart: the upload outlasts the answer by more than a second,
  // long past the half second @hono/node-server otherwise lets an unread body drain before closing.
  const BODY_PIECES = Array.from({ length: 16 }, () => Buffer.alloc(32 * 1024, 'a'));
  const BODY_BYTES = BODY_PIECES.reduce((total, piece) => total + piece.length, 0);
  const GAP_MS = 100;

  let user: RegisteredUser;
  before(async () => {
    user = await registerAndLogin(testApp, 'uploader');
  });

  test('40 concurrent clients posting 512 KiB to /api/v1/aoa/run each get their answer: one 202, then 409s', async () => {
    const sent = Array.from({ length: 40 }, () => {
      const { head } = requestHead('POST', '/api/v1/aoa/run', { 'Content-Type': 'application/octet-stream', 'Content-Length': BODY_BYTES, Authorization: `Bearer ${user.token}` });
      return exchange(head, BODY_PIECES, { gapMs: GAP_MS });
    });
    const exchanges = await Promise.all(sent);

    const statuses = exchanges.map(({ answer, error }) => statusOf(answer) ?? `no answer (${error ?? 'closed'})`);
    assert.deepEqual(
      statuses.filter((status) => status !== 202 && status !== 409),
      [],
      'every client gets an HTTP answer',
    );
    assert.equal(statuses.filter((status) => status === 202).length, 1, 'one AOA job per tenant');
    assert.deepEqual(errorLines(), []);
  });

  test('refusals reach such a client too: 401 without a token, 404 for an unknown route', async () => {
    const refusals: { path: string; headers: Record<string, string>; status: number }[] = [
      { path: '/api/v1/aoa/reset', headers: {}, status: 401 },
      { path: '/api/v1/no-such-route', headers: { Authorization: `Bearer ${user.token}` }, status: 404 },
    ];
    const exchanges = await Promise.all(
      refusals.map(({ path, headers }) => exchange(requestHead('POST', path, { 'Content-Length': BODY_BYTES, ...headers }).head, BODY_PIECES, { gapMs: GAP_MS })),
    );
    for (const [index, { status }] of refusals.entries()) {
      assert.equal(statusOf(exchanges[index]!.answer), status, JSON.stringify(exchanges[index]));
    }
  });
});
