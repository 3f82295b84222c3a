import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import type { PgBoss } from 'pg-boss';
import { loadConfig, type Config } from '../../src/config.js';
import { createDatabaseWatch, type DatabaseWatch } from '../../src/db/availability.js';
import { createDb, pingDatabase, type Db } from '../../src/db/client.js';
import { createNotifications, type Notifications } from '../../src/db/notifications.js';
import { createApp } from '../../src/http/app.js';
import { silentLogger } from '../../src/logger.js';
import { createMetrics, type Metrics } from '../../src/metrics/metrics.js';
import { declareQueues, queueDepths } from '../../src/queue/task-queue.js';
import { createBoss } from '../../src/queue/boss.js';
import { startWorker, type Worker } from '../../src/worker/worker.js';
import { createTestDatabase, type TestDatabase } from './database.js';

export interface RequestOptions {
  token?: string;
  headers?: Record<string, string>;
}

export interface TestResponse<T = any> {
  status: number;
  headers: Headers;
  body: T;
}

export interface TestApp {
  url: string;
  db: Db;
  boss: PgBoss;
  config: Config;
  watch: DatabaseWatch;
  notifications: Notifications;
  /** The app's metrics, shared with its in-process workers (as in `npm start`). */
  metrics: Metrics;
  database: TestDatabase;
  request(method: string, path: string, init?: RequestOptions & { json?: unknown; body?: string | URLSearchParams }): Promise<TestResponse>;
  get(path: string, options?: RequestOptions): Promise<TestResponse>;
  post(path: string, json?: unknown, options?: RequestOptions): Promise<TestResponse>;
  delete(path: string, options?: RequestOptions): Promise<TestResponse>;
  /** Starts an in-process worker (API and worker then share the process, as with `npm start`). */
  startWorker(): Promise<Worker>;
  /** Stops the in-process workers started so far (running tasks finish first). */
  stopWorkers(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Test configuration: a random strong secret and whatever the test overrides. Every test signs
 * in and registers from 127.0.0.1, and many create tasks faster than a tenant may by default: the
 * sign-in, registration and creation-rate limits are off unless a test sets them.
 */
export function testConfig(databaseUrl: string, env: Record<string, string> = {}): Config {
  return loadConfig({
    NODE_ENV: 'test',
    DATABASE_URL: databaseUrl,
    SECRET_KEY: randomBytes(32).toString('hex'),
    LOGIN_FAILURE_LIMIT: '0',
    REGISTRATION_LIMIT_PER_HOUR: '0',
    TENANT_RATE_LIMIT_PER_SECOND: '0',
    ...env,
  });
}

const TEST_IDLE_TIMEOUT_MS = 10_000;

/**
 * The real app on a real port against a database of its own, with a real pg-boss. With
 * `worker: true` a worker runs in the same process.
 */
export async function startTestApp(options: { env?: Record<string, string>; worker?: boolean } = {}): Promise<TestApp> {
  const database = await createTestDatabase();
  const config = testConfig(database.url, options.env);
  // Small pools that give back what they do not use after pg's default 10 s: three test files run
  // at once next to a fault test that keeps several apps open, and the server allows 100
  // connections in all.
  const db = createDb(database.url, { max: 6, idleTimeoutMs: TEST_IDLE_TIMEOUT_MS });
  const watch = createDatabaseWatch(() => pingDatabase(db), silentLogger);
  const boss = createBoss(database.url, silentLogger, { supervise: true, watch, maxConnections: 6, idleTimeoutMs: TEST_IDLE_TIMEOUT_MS });
  await boss.start();
  await declareQueues(boss);
  const notifications = createNotifications(database.url, { watch });
  await notifications.ready;
  const metrics = createMetrics();
  metrics.observeQueues(() => queueDepths(boss));
  const app = createApp({ db, boss, config, logger: silentLogger, notifications, metrics });
  const server = await new Promise<Server>((resolve) => {
    const listening = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(listening as Server));
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const workers: Worker[] = [];

  const request: TestApp['request'] = async (method, path, init = {}) => {
    const headers: Record<string, string> = { ...init.headers };
    if (init.token) headers.Authorization = `Bearer ${init.token}`;
    let body = init.body;
    if (init.json !== undefined) {
      headers['Content-Type'] ??= 'application/json';
      body = JSON.stringify(init.json);
    }
    const response = await fetch(`${url}${path}`, { method, headers, body: body ?? null });
    const text = await response.text();
    let parsed: unknown = text;
    if ((response.headers.get('content-type') ?? '').includes('application/json')) parsed = JSON.parse(text);
    return { status: response.status, headers: response.headers, body: parsed };
  };

  const testApp: TestApp = {
    url,
    db,
    boss,
    config,
    watch,
    notifications,
    metrics,
    database,
    request,
    get: (path, opts) => request('GET', path, opts),
    post: (path, json, opts) => request('POST', path, { ...opts, json }),
    delete: (path, opts) => request('DELETE', path, opts),
    async startWorker() {
      const worker = await startWorker({ db, boss, config, logger: silentLogger, watch, metrics, notifications });
      workers.push(worker);
      return worker;
    },
    async stopWorkers() {
      for (const worker of workers.splice(0)) await worker.stop(5_000);
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await testApp.stopWorkers();
      await boss.stop({ graceful: false });
      await notifications.close();
      watch.stop();
      await db.destroy();
      await database.drop();
    },
  };
  if (options.worker) await testApp.startWorker();
  return testApp;
}

/**
 * Runs `work` against an app of its own, closed when `work` ends: a file that needs apps of
 * several configurations holds one at a time (each holds ~20 of the server's 100 connections).
 */
export async function withTestApp<T>(options: { env?: Record<string, string>; worker?: boolean }, work: (app: TestApp) => Promise<T>): Promise<T> {
  const app = await startTestApp(options);
  try {
    return await work(app);
  } finally {
    await app.close();
  }
}
