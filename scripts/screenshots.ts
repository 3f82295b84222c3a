/**
 * Screenshots of the dashboard's main pages for the README and docs/dashboard.md:
 *
 *   npx tsx scripts/screenshots.ts [--out docs/screenshots]
 *
 * Starts AutonomOS (API + worker, `src/main/all.ts`) on a fresh database of the local PostgreSQL
 * (SCREENSHOTS_DATABASE_URL names the server, default postgres://postgres@127.0.0.1:5432/postgres),
 * with a local fake Slack and Legacy DCL, seeds a demo tenant through the API, and photographs
 * the pages in headless Chromium (/usr/bin/chromium) at laptop and phone sizes. The database is
 * dropped afterwards.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { chromium, type Page } from 'playwright-core';
import { freePort } from '../src/main/embedded-postgres.js';
import { httpJson, readRequestBody } from './lib/http-json.js';
import { pollUntil } from './lib/poll.js';
import { spawnScript } from './lib/service-process.js';

const { values: args } = parseArgs({ options: { out: { type: 'string', default: 'docs/screenshots' } } });
const OUT = args.out!;
const ADMIN_URL = process.env.SCREENSHOTS_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** A local server answering `reply(method, path, body)`; `hold` answers only when the server closes. */
async function fakeServer(reply: (method: string, path: string, body: any) => { status: number; body: unknown } | 'hold'): Promise<{ url: string; server: Server }> {
  const server = createServer(async (request, response) => {
    const body = await readRequestBody(request);
    const answer = reply(request.method ?? '', request.url ?? '', body);
    if (answer === 'hold') return;
    response.writeHead(answer.status, { 'Content-Type': 'application/json' });
    response.end(JSON.stringify(answer.body));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

const slack = await fakeServer((_method, _path, body) => {
  if (body?.channel === '#on-call') return { status: 500, body: { error: 'channel_is_archived' } };
  if (body?.channel === '#releases') return 'hold';
  return { status: 200, body: 'ok' };
});
const dcl = await fakeServer((method, path) => {
  if (method === 'GET' && path === '/state') {
    return { status: 200, body: { mode: 'development', connected: true, pipelines: 12, last_sync: new Date(Date.now() - 95_000).toISOString() } };
  }
  return path === '/connect' ? 'hold' : { status: 200, body: { ok: true } };
});

const admin = new pg.Client({ connectionString: ADMIN_URL });
await admin.connect();
const database = `autonomos_screenshots_${randomBytes(4).toString('hex')}`;
await admin.query(`create database ${database}`);
const databaseUrl = new URL(ADMIN_URL);
databaseUrl.pathname = `/${database}`;

const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const service = spawnScript('src/main/all.ts', {
  NODE_ENV: 'production',
  DATABASE_URL: databaseUrl.toString(),
  SECRET_KEY: randomBytes(32).toString('hex'),
  HOST: '127.0.0.1',
  PORT: String(port),
  LOG_LEVEL: 'error',
  SLACK_WEBHOOK_URL: `${slack.url}/services/demo`,
  LEGACY_DCL_BASE_URL: dcl.url,
  CALLBACK_ALLOW_PRIVATE_NETWORKS: 'true',
  RETRY_DELAYS_SECONDS: '1',
});

try {
  const up = await pollUntil(async () => ((await fetch(`${base}/health/worker`).catch(() => undefined))?.ok ? true : undefined), 60_000, 200);
  if (!up) throw new Error(`AutonomOS did not start:\n${service.output()}`);

  const owner = { name: 'Acme Robotics', email: 'ada@acme.test', password: 'correct horse battery' };
  const call = async (method: string, path: string, json?: unknown, token?: string) => {
    const answer = await httpJson(base, method, path, { ...(json !== undefined ? { json } : {}), ...(token ? { token } : {}) });
    if (answer.status >= 300) throw new Error(`${method} ${path} answered ${answer.status}: ${JSON.stringify(answer.body)}`);
    return answer.body;
  };
  await call('POST', '/api/v1/auth/register', owner);
  const { access_token: token } = await call('POST', '/api/v1/auth/login', { email: owner.email, password: owner.password });
  const task = (body: unknown) => call('POST', '/api/v1/tasks', body, token);
  const slackTask = (channel: string, message: string, extra: object = {}) => task({ payload: { action: 'post_to_slack', channel, message }, ...extra });

  for (const [email, role] of [['grace@acme.test', 'admin'], ['linus@acme.test', 'member'], ['margaret@acme.test', 'viewer']] as const) {
    await call('POST', '/api/v1/tenant/invitations', { email, role }, token).catch(() => undefined);
  }
  await call('POST', '/api/v1/tenant/api-keys', { name: 'CI deploys', role: 'member' }, token).catch(() => undefined);

  const messages = ['Nightly build is green', 'Deploy of api v2.14 finished', 'Backup verified', 'Weekly report is ready', 'Cache warmed', 'Invoices exported'];
  for (let index = 0; index < 18; index += 1) await slackTask(['#ops', '#builds', '#finance'][index % 3]!, messages[index % messages.length]!);
  await task({ payload: { action: 'http_request', method: 'POST', url: `${slack.url.replace("127.0.0.1", "localhost")}/webhooks/sync`, json: { source: 'crm' } } });
  await task({ payload: { action: 'delay', seconds: 2 } });
  const chain = await slackTask('#ingest', 'Step 1: data processing started', {
    max_retries: 2,
    on_success_next_task: {
      payload: { action: 'delay', seconds: 1 },
      on_success_next_task: { payload: { action: 'post_to_slack', channel: '#team', message: 'Step 3: report ready' } },
    },
  });
  await slackTask('#on-call', 'Disk usage above 90% on db-2', { max_retries: 1 });
  const canceled = await slackTask('#ops', 'Rotate the staging certificates', { delay_seconds: 600 });
  await call('DELETE', `/api/v1/tasks/${canceled.id}`, undefined, token);
  await slackTask('#marketing', 'Launch announcement', { delay_seconds: 3 * 3600 });
  await slackTask('#releases', 'Release notes for v2.15');
  await call('POST', '/api/v1/aoa/run', undefined, token);

  // Until every task that can finish has: the chain's three steps, the failed one after its retry.
  const settled = await pollUntil(
    async () => {
      const stats = await call('GET', '/api/v1/tasks/stats', undefined, token);
      return stats.by_status.success >= 22 && stats.by_status.failed >= 1 ? stats : undefined;
    },
    60_000,
    250,
  );
  if (!settled) throw new Error('the demo tasks did not settle within a minute');

  mkdirSync(OUT, { recursive: true });
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_FLAGS });
  try {
    const shoot = async (page: Page, path: string, name: string, prepare?: (page: Page) => Promise<void>, fullPage = true) => {
      await page.goto(`${base}${path}`);
      await prepare?.(page);
      // The page's live status line settles once the event stream is open.
      await page.waitForLoadState('networkidle').catch(() => undefined);
      await page.screenshot({ path: `${OUT}/${name}.png`, fullPage });
      console.log(`${OUT}/${name}.png`);
    };
    const laptop = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await shoot(laptop, '/app/login', 'sign-in');
    await laptop.getByLabel('Email', { exact: true }).fill(owner.email);
    await laptop.getByLabel('Password', { exact: true }).fill(owner.password);
    await laptop.getByRole('button', { name: 'Sign in' }).click();
    await laptop.waitForURL('**/app/tasks');
    await shoot(laptop, '/app/tasks', 'tasks');
    await shoot(laptop, `/app/tasks/${chain.id}`, 'task');
    await shoot(laptop, '/app/tasks/new', 'new-task', async (page) => {
      await page.getByLabel('Channel').fill('#team');
      await page.getByLabel('Message').fill('Deploy finished');
      await page.getByRole('button', { name: 'Add a chained step' }).click();
      await page.locator('#s1-action').selectOption('http_request');
    });
    await shoot(laptop, '/app/aoa', 'aoa');
    if ((await fetch(`${base}/app/settings`, { redirect: 'manual' })).status !== 404) await shoot(laptop, '/app/settings', 'settings');

    const phoneContext = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
    const phone = await phoneContext.newPage();
    await phone.goto(`${base}/app/login`);
    await phone.getByLabel('Email', { exact: true }).fill(owner.email);
    await phone.getByLabel('Password', { exact: true }).fill(owner.password);
    await phone.getByRole('button', { name: 'Sign in' }).click();
    await phone.waitForURL('**/app/tasks');
    // The first screen only: a phone's page is long.
    await shoot(phone, '/app/tasks', 'tasks-phone', undefined, false);
  } finally {
    await browser.close();
  }
} finally {
  service.child.kill('SIGTERM');
  await service.exited;
  slack.server.closeAllConnections();
  slack.server.close();
  dcl.server.closeAllConnections();
  dcl.server.close();
  await admin.query(`drop database if exists ${database} with (force)`);
  await admin.end();
}
