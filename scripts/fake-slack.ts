/**
 * `npm run fake-slack`: a stand-in for a Slack incoming webhook, to see tasks succeed without a
 * Slack workspace. Listens on 127.0.0.1:4000 (FAKE_SLACK_PORT), answers every POST with 200 "ok"
 * and prints the channel and text it got (with FAKE_SLACK_QUIET=1, nothing but that it listens: the
 * benchmark runs it so). Point the service at it:
 *
 *   SLACK_WEBHOOK_URL=http://127.0.0.1:4000/hook npm start
 */
import { createServer, type ServerResponse } from 'node:http';
import { readRequestBody } from './lib/http-json.js';

const port = Number(process.env.FAKE_SLACK_PORT ?? 4000);
const quiet = process.env.FAKE_SLACK_QUIET === '1';

const answer = (response: ServerResponse) => response.writeHead(200, { 'Content-Type': 'text/plain' }).end('ok');

const server = createServer(async (request, response) => {
  if (quiet) {
    // Read, not parsed: the benchmark's 1,000 posts a second share the cores with what it measures.
    request.resume().on('end', () => answer(response));
    return;
  }
  const body = await readRequestBody(request);
  const { channel, text } = (typeof body === 'object' && body !== null ? body : {}) as { channel?: unknown; text?: unknown };
  console.log(`${new Date().toISOString()} ${request.method} ${request.url} ${String(channel)}: ${String(text)}`);
  answer(response);
});

server.listen(port, '127.0.0.1', () => {
  console.log(`fake Slack listening: set SLACK_WEBHOOK_URL=http://127.0.0.1:${port}/hook (Ctrl-C stops it)`);
});
process.on('SIGINT', () => server.close(() => process.exit(0)));
