/**
 * `npm run demo`: the whole system in a minute. Starts AutonomOS (API + worker) on its own
 * embedded PostgreSQL (or DATABASE_URL if set) with a local fake Slack, registers a tenant,
 * creates a 3-step chain, and prints each task's status and audit trail as they happen.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { silentLogger } from '../src/logger.js';
import { startEmbeddedPostgres } from '../src/main/embedded-postgres.js';

const DEMO_DATA_DIR = '.data/demo-postgres';
const ROOT = new URL('../', import.meta.url).pathname;

const say = (line: string) => console.log(line);
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const slack = createServer((req, res) => {
  let body = '';
  req.on('data', (chunk: Buffer) => (body += chunk.toString()));
  req.on('end', () => {
    const { channel, text } = JSON.parse(body) as { channel: string; text: string };
    say(`  [fake Slack] ${channel}: ${text}`);
    // A slow Slack, so each task is seen running before it succeeds.
    setTimeout(() => res.end('ok'), 700);
  });
});
await new Promise<void>((resolve) => slack.listen(0, '127.0.0.1', resolve));

say('Starting PostgreSQL and AutonomOS (API + worker)...');
const embedded = process.env.DATABASE_URL ? undefined : await startEmbeddedPostgres(silentLogger, DEMO_DATA_DIR);
const port = await freePort();
const service = spawn(process.execPath, ['--import', 'tsx', 'src/main/all.ts'], {
  cwd: ROOT,
  env: {
    ...process.env,
    NODE_ENV: 'development',
    DATABASE_URL: embedded?.url ?? process.env.DATABASE_URL,
    SECRET_KEY: randomBytes(32).toString('hex'),
    PORT: String(port),
    HOST: '127.0.0.1',
    LOG_LEVEL: 'error',
    SLACK_WEBHOOK_URL: `http://127.0.0.1:${(slack.address() as AddressInfo).port}/services/demo`,
  },
  stdio: ['ignore', 'ignore', 'inherit'],
});
const base = `http://127.0.0.1:${port}`;

async function call<T = any>(method: string, path: string, body?: unknown, token?: string): Promise<T> {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { 'Content-Type': 'application/json', ...(token ? { Authorization: `Bearer ${token}` } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const json = (await response.json()) as T;
  if (!response.ok) throw new Error(`${method} ${path} answered ${response.status}: ${JSON.stringify(json)}`);
  return json;
}

try {
  for (let tries = 0; ; tries++) {
    if (await fetch(`${base}/health/worker`).then((r) => r.ok).catch(() => false)) break;
    if (tries > 300) throw new Error('AutonomOS did not start within a minute');
    await pause(200);
  }
  say(`AutonomOS is up at ${base} (API docs: ${base}/docs)\n`);

  const suffix = randomBytes(3).toString('hex');
  const email = `demo-${suffix}@example.com`;
  const password = 'demo-password';
  const user = await call('POST', '/api/v1/auth/register', { name: `Demo Corp ${suffix}`, email, password });
  say(`1. Registered ${user.email} in tenant "${user.tenant.name}" (${user.tenant_id})`);
  const { access_token: token } = await call('POST', '/api/v1/auth/login', { email, password });
  say('2. Logged in: got a JWT bearer token');

  const step = (n: number, channel: string, message: string) => ({ payload: { action: 'post_to_slack', channel, message: `Step ${n}: ${message}` } });
  const chain = {
    ...step(1, '#ingest', 'data processing started'),
    on_success_next_task: {
      ...step(2, '#analysis', 'results analysed'),
      on_success_next_task: step(3, '#team', 'report ready, notifying the team'),
    },
  };
  const first = await call('POST', '/api/v1/tasks', chain, token);
  say(`3. Created a 3-step chain; first task ${first.id} is ${first.status}\n`);

  const ids: string[] = [first.id];
  const lastStatus = new Map<string, string>();
  const printedLogs = new Map<string, number>();
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    for (const [index, id] of ids.entries()) {
      const task = await call('GET', `/api/v1/tasks/${id}`, undefined, token);
      if (lastStatus.get(id) !== task.status) {
        say(`Task ${index + 1} (${id}): ${task.status}`);
        lastStatus.set(id, task.status);
      }
      const logs = await call<{ timestamp: string; message: string }[]>('GET', `/api/v1/tasks/${id}/logs`, undefined, token);
      for (const entry of logs.slice(printedLogs.get(id) ?? 0)) say(`    ${entry.timestamp}  ${entry.message}`);
      printedLogs.set(id, logs.length);
      if (task.next_task_id && !ids.includes(task.next_task_id)) ids.push(task.next_task_id);
    }
    if (ids.length === 3 && [...lastStatus.values()].filter((status) => status === 'success').length === 3) break;
    await pause(150);
  }
  const succeeded = [...lastStatus.values()].filter((status) => status === 'success').length;
  say(`\n${succeeded === 3 ? 'Done' : 'Stopped waiting'}: ${succeeded} of 3 chained tasks succeeded. Each task's next_task_id links the chain:`);
  say(ids.map((id, index) => `  task ${index + 1} ${id}`).join('\n'));
  say('The audit trail is plain SQL too: select * from task_logs where task_id = ... order by seq;');
  process.exitCode = succeeded === 3 ? 0 : 1;
} finally {
  service.kill('SIGTERM');
  await new Promise((resolve) => service.once('exit', resolve));
  await embedded?.stop();
  slack.close();
}
