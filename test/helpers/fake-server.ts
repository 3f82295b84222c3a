import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readRequestBody } from '../../scripts/lib/http-json.js';

/**
 * The same local server under the name `localhost`. A callback may never go to the host Slack is
 * configured on, so where callback receivers listen on 127.0.0.1 too, Slack is given this name.
 */
export function underLocalhostName(url: string): string {
  return url.replace('//127.0.0.1:', '//localhost:');
}

export interface RecordedRequest {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: any;
  receivedAt: number;
  /** Set when the client went away before the answer (e.g. an aborted call). */
  aborted: boolean;
  /** When the server answered, or would have had the client not gone away (undefined while it hangs or waits). */
  answeredAt?: number;
}

export type Reply =
  /** Answers after `delayMs`, or once `after` settles. */
  | { status: number; body?: unknown; delayMs?: number; after?: Promise<unknown> }
  /** Never answers (until the client gives up or the server closes). */
  | { hang: true };

export interface FakeServer {
  url: string;
  requests: RecordedRequest[];
  /** Decides the reply to each request; replace it between tests. */
  reply: (request: RecordedRequest) => Reply;
  close(): Promise<void>;
}

/**
 * A local HTTP server standing in for Slack, the Legacy DCL backend or a callback receiver. It
 * records every request (JSON bodies parsed) and answers as `reply` says.
 */
export async function startFakeServer(reply: FakeServer['reply'] = () => ({ status: 200, body: 'ok' })): Promise<FakeServer> {
  const fake: FakeServer = { url: '', requests: [], reply, close: async () => {} };
  const server: Server = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    const body = await readRequestBody(req);
    const recorded: RecordedRequest = {
      method: req.method ?? '',
      path: req.url ?? '',
      headers: req.headers,
      body,
      receivedAt: Date.now(),
      aborted: false,
    };
    fake.requests.push(recorded);
    res.on('close', () => {
      if (!res.writableFinished) recorded.aborted = true;
    });
    const answer = fake.reply(recorded);
    if ('hang' in answer) return;
    const send = () => {
      recorded.answeredAt = Date.now();
      if (res.destroyed) return;
      const payload = typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body ?? {});
      res.writeHead(answer.status, { 'Content-Type': typeof answer.body === 'string' ? 'text/plain' : 'application/json' });
      res.end(payload);
    };
    if (answer.after) void answer.after.finally(send);
    else if (answer.delayMs) setTimeout(send, answer.delayMs);
    else send();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  fake.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  fake.close = async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return fake;
}
