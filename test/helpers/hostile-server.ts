import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readRequestBody } from '../../scripts/lib/http-json.js';

/** What a hostile outside server does with a request. */
export type Hostility =
  /** Reads the request and never answers. */
  | 'silent'
  /** Sends its status line, then one byte of headers every second, never finishing them. */
  | 'slow-headers'
  /** Sends 200 and its headers, then one byte of body every second, for ever. */
  | 'trickle'
  /** Sends 200 and an endless body as fast as the client reads it. */
  | 'endless'
  /** Sends 200 with a 20 MB JSON body. */
  | 'huge'
  /** Resets the connection after reading the request. */
  | 'reset'
  /** Answers 500. */
  | 'error'
  /** Redirects (302) to `redirectTo`. */
  | 'redirect'
  /** Behaves: 200 with a small JSON body. */
  | 'ok';

export interface HostileExchange {
  hostility: Hostility;
  path: string;
  body: any;
  receivedAt: number;
  /** When the client closed the connection (gave up, or was done); undefined while it is open. */
  closedAt?: number;
  /** Body bytes the server got to write before the client stopped reading or went away. */
  bytesWritten: number;
}

export interface HostileServer {
  url: string;
  exchanges: HostileExchange[];
  close(): Promise<void>;
}

const HUGE_BYTES = 20 * 1024 * 1024;
let hugeBody: Buffer | undefined;

/**
 * A local server that misbehaves as `choose` says for each request: the outside world at its
 * worst, for Slack, the Legacy DCL and callback receivers.
 */
export async function startHostileServer(choose: (request: IncomingMessage, body: any) => Hostility, redirectTo = 'http://169.254.169.254/latest/meta-data/'): Promise<HostileServer> {
  const exchanges: HostileExchange[] = [];
  // Built before any request: making 20 MB while a request is timed would stall this process,
  // which the app under test shares, and eat into the deadline being tested.
  hugeBody ??= Buffer.concat([Buffer.from('"'), Buffer.alloc(HUGE_BYTES, 'x'), Buffer.from('"')]);
  const timers = new Set<NodeJS.Timeout>();
  const server: Server = createServer(async (request: IncomingMessage, response: ServerResponse) => {
    const body = await readRequestBody(request);
    const hostility = choose(request, body);
    const exchange: HostileExchange = { hostility, path: request.url ?? '', body, receivedAt: Date.now(), bytesWritten: 0 };
    exchanges.push(exchange);
    response.on('close', () => (exchange.closedAt = Date.now()));
    const write = (chunk: string | Buffer) => {
      exchange.bytesWritten += Buffer.byteLength(chunk);
      return response.write(chunk);
    };
    switch (hostility) {
      case 'silent':
        return;
      case 'slow-headers': {
        request.socket.write('HTTP/1.1 200 OK\r\n');
        const timer = setInterval(() => (request.socket.destroyed ? clearInterval(timer) : request.socket.write('X')), 1_000);
        timers.add(timer);
        return;
      }
      case 'trickle': {
        response.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': '1000000' });
        write('{');
        const timer = setInterval(() => (response.destroyed ? clearInterval(timer) : write(' ')), 1_000);
        timers.add(timer);
        return;
      }
      case 'endless': {
        response.writeHead(200, { 'Content-Type': 'application/json' });
        const block = Buffer.alloc(64 * 1024, 'x');
        const pump = () => {
          while (!response.destroyed && write(block));
        };
        response.on('drain', pump);
        pump();
        return;
      }
      case 'huge': {
        response.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': String(hugeBody!.length) });
        write(hugeBody!);
        response.end();
        return;
      }
      case 'reset':
        request.socket.resetAndDestroy();
        return;
      case 'error':
        response.writeHead(500, { 'Content-Type': 'application/json' }).end('{"error":"boom"}');
        return;
      case 'ok':
        response.writeHead(200, { 'Content-Type': 'application/json' }).end('{"ok":true}');
        return;
      case 'redirect':
        response.writeHead(302, { Location: redirectTo, 'Content-Type': 'application/json' }).end('{"moved":true}');
        return;
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    exchanges,
    async close() {
      for (const timer of timers) clearInterval(timer);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
