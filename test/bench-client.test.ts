// The benchmark's load client (jsonPoster) writes and reads HTTP/1.1 by hand: these check that
// it reads each way an answer can end, keeps to its connections, and gives up on silence.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { jsonPoster, readRequestBody } from '../scripts/lib/http-json.js';
import { pollUntil } from '../scripts/lib/poll.js';

async function serve(handle: (request: IncomingMessage, response: ServerResponse, body: any) => void, keepAliveTimeoutMs = 5_000) {
  let connections = 0;
  let closed = 0;
  const server = createServer(async (request, response) => handle(request, response, await readRequestBody(request)));
  server.keepAliveTimeout = keepAliveTimeoutMs;
  server.on('connection', (socket) => {
    connections += 1;
    socket.on('close', () => (closed += 1));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    connections: () => connections,
    closed: () => closed,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

test('answers of a known length, chunked ones and empty ones each resolve with their status, over kept-alive connections', { timeout: 10_000 }, async (t) => {
  const seen: unknown[] = [];
  const server = await serve((request, response, body) => {
    seen.push({ path: request.url, body, authorization: request.headers.authorization });
    if (request.url === '/chunked') {
      response.writeHead(202, { 'Content-Type': 'application/json' });
      response.write('{"part":');
      setImmediate(() => response.end('1}'));
    } else if (request.url === '/empty') response.writeHead(204).end();
    else response.writeHead(201, { 'Content-Type': 'application/json' }).end(JSON.stringify({ echoed: body }));
  });
  t.after(server.close);
  const post = jsonPoster(server.base, 2);

  const statuses = await Promise.all(
    Array.from({ length: 12 }, (_, index) => post(['/sized', '/chunked', '/empty'][index % 3]!, { index, text: 'é ✓' }, { token: 'the-token' })),
  );
  assert.deepEqual(statuses, Array.from({ length: 12 }, (_, index) => [201, 202, 204][index % 3]));
  assert.equal(server.connections(), 2);
  assert.deepEqual(seen[0], { path: '/sized', body: { index: 0, text: 'é ✓' }, authorization: 'Bearer the-token' });
});

test('a connection the server closes is replaced: after an answer with Connection: close, and after idling', { timeout: 10_000 }, async (t) => {
  const server = await serve((request, response) => {
    if (request.url === '/last') response.setHeader('Connection', 'close');
    response.writeHead(200).end('ok');
  }, 100);
  t.after(server.close);
  const post = jsonPoster(server.base, 1);

  assert.equal(await post('/last', {}), 200);
  assert.equal(await post('/next', {}), 200);
  assert.equal(server.connections(), 2);
  // The server ends the idle connection after its keep-alive timeout.
  assert.ok(await pollUntil(async () => (server.closed() === 2 ? true : undefined), 5_000, 10));
  assert.equal(await post('/after-idling', {}), 200);
  assert.equal(server.connections(), 3);
});

test('a request without an answer within timeoutMs is rejected, and the connection is not reused', { timeout: 10_000 }, async (t) => {
  const server = await serve((request, response) => {
    if (request.url !== '/silent') response.writeHead(200).end('ok');
  });
  t.after(server.close);
  const post = jsonPoster(server.base, 1);

  await assert.rejects(post('/silent', {}, { timeoutMs: 200 }), /no answer in time/);
  assert.equal(await post('/answered', {}), 200);
  assert.equal(server.connections(), 2);
});
