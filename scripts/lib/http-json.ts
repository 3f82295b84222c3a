import type { IncomingMessage } from 'node:http';
import { createConnection, type Socket } from 'node:net';

export interface JsonResponse {
  status: number;
  headers: Headers;
  body: any;
  /** How long the answer took, ms. */
  ms: number;
}

/** One JSON request to a running service, given up after `timeoutMs` (a hang is an error, not a wait). */
export async function httpJson(
  base: string,
  method: string,
  path: string,
  options: { json?: unknown; token?: string; timeoutMs?: number } = {},
): Promise<JsonResponse> {
  const started = performance.now();
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { 'Content-Type': 'application/json', ...(options.token ? { Authorization: `Bearer ${options.token}` } : {}) },
    body: options.json === undefined ? null : JSON.stringify(options.json),
    signal: AbortSignal.timeout(options.timeoutMs ?? 5_000),
  });
  const text = await response.text();
  let body: unknown = text;
  if ((response.headers.get('content-type') ?? '').includes('application/json')) body = JSON.parse(text);
  return { status: response.status, headers: response.headers, body, ms: performance.now() - started };
}

/** Registers a tenant with one user and logs in; returns the token and ids. */
export async function registerTenant(base: string, label: string) {
  const suffix = Math.random().toString(16).slice(2, 10);
  const email = `${label}-${suffix}@example.com`;
  const password = 'correct horse battery';
  const registered = await httpJson(base, 'POST', '/api/v1/auth/register', { json: { name: `${label} ${suffix}`, email, password } });
  if (registered.status !== 201) throw new Error(`registration answered ${registered.status}: ${JSON.stringify(registered.body)}`);
  const login = await httpJson(base, 'POST', '/api/v1/auth/login', { json: { email, password } });
  if (login.status !== 200) throw new Error(`login answered ${login.status}: ${JSON.stringify(login.body)}`);
  return { token: login.body.access_token as string, tenantId: registered.body.tenant_id as string, userId: registered.body.id as string };
}

/** A request's body as a local test server sees it: parsed JSON, else the text (undefined when empty). */
export async function readRequestBody(request: IncomingMessage): Promise<any> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  if (text === '') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** A kept-alive connection of jsonPoster's, with the request it is answering, if any. */
interface PosterConnection {
  socket: Socket;
  /** What has arrived of the answer so far. */
  received: Buffer;
  answering?: { resolve: (status: number) => void; reject: (error: Error) => void };
}

/** Where the answer at the start of `received` ends, and its status; undefined until it is whole. */
function wholeAnswer(received: Buffer): { status: number; length: number; close: boolean } | undefined {
  const headEnd = received.indexOf('\r\n\r\n');
  if (headEnd < 0) return undefined;
  const head = received.toString('latin1', 0, headEnd);
  const status = Number(head.slice(9, 12));
  const close = /\r\nconnection: *close/i.test(head);
  const contentLength = /\r\ncontent-length: *(\d+)/i.exec(head);
  if (contentLength) {
    const length = headEnd + 4 + Number(contentLength[1]);
    return received.length >= length ? { status, length, close } : undefined;
  }
  if (!/\r\ntransfer-encoding: *chunked/i.test(head)) return { status, length: headEnd + 4, close };
  const lastChunk = received.indexOf('\r\n0\r\n\r\n', headEnd + 2);
  return lastChunk < 0 ? undefined : { status, length: lastChunk + 7, close };
}

/**
 * A lean JSON POST for load generation, resolving with the answer's status: HTTP/1.1 written and
 * read by hand over kept-alive sockets (at most `connections`, one per request in flight;
 * unbounded without). It shares the two cores with what it measures, so its cost is theirs:
 * `fetch` (undici) spent 0.4-0.5 ms of CPU per request, node's http client 0.16 ms (a quarter of a
 * core in the loaded phase, its event loop delayed 12-22 ms at p99), this one 0.04-0.09 ms
 * (docs/performance.md). Only what the benchmark's answers need is read: the status, and the end
 * of the body by its length or its last chunk. A connection silent for `timeoutMs` while it waits
 * for an answer rejects its request.
 */
export function jsonPoster(base: string, connections = Infinity) {
  const { hostname, port } = new URL(base);
  const idle: PosterConnection[] = [];
  const waitingForConnection: ((connection: PosterConnection) => void)[] = [];
  let open = 0;

  const release = (connection: PosterConnection) => {
    const next = waitingForConnection.shift();
    if (next) next(connection);
    else idle.push(connection);
  };
  const connect = (): PosterConnection => {
    open += 1;
    const connection: PosterConnection = { socket: createConnection({ host: hostname, port: Number(port), noDelay: true }), received: Buffer.alloc(0) };
    const { socket } = connection;
    const fail = (error: Error) => {
      const answering = connection.answering;
      connection.answering = undefined;
      answering?.reject(error);
    };
    socket.on('data', (chunk: Buffer) => {
      connection.received = connection.received.length === 0 ? chunk : Buffer.concat([connection.received, chunk]);
      const answer = wholeAnswer(connection.received);
      if (!answer || !connection.answering) return;
      connection.received = connection.received.subarray(answer.length);
      const { resolve } = connection.answering;
      connection.answering = undefined;
      socket.setTimeout(0);
      if (answer.close) socket.end();
      else release(connection);
      resolve(answer.status);
    });
    socket.on('timeout', () => socket.destroy(new Error('no answer in time')));
    socket.on('error', fail);
    socket.on('close', () => {
      open -= 1;
      const at = idle.indexOf(connection);
      if (at >= 0) idle.splice(at, 1);
      fail(new Error('the connection closed before the answer'));
      // A request waiting for a connection gets a new one in place of this.
      const next = waitingForConnection.shift();
      if (next) next(connect());
    });
    return connection;
  };
  const acquire = () =>
    new Promise<PosterConnection>((resolve) => {
      const connection = idle.pop();
      if (connection) resolve(connection);
      else if (open < connections) resolve(connect());
      else waitingForConnection.push(resolve);
    });

  return async (path: string, json: unknown, options: { token?: string; timeoutMs?: number } = {}) => {
    const body = JSON.stringify(json);
    const connection = await acquire();
    return new Promise<number>((resolve, reject) => {
      connection.answering = { resolve, reject };
      connection.socket.setTimeout(options.timeoutMs ?? 5_000);
      connection.socket.write(
        `POST ${path} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
          `${options.token ? `Authorization: Bearer ${options.token}\r\n` : ''}\r\n${body}`,
        // A socket already gone raises no event of its own: only this says the request was not sent.
        (error) => {
          if (error && connection.answering?.reject === reject) {
            connection.answering = undefined;
            reject(error);
          }
        },
      );
    });
  };
}
