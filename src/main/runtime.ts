import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import type { PgBoss } from 'pg-boss';
import { ConfigError, loadConfig, type Config } from '../config.js';
import { createDatabaseWatch, isDatabaseUnavailable, unavailableReason, waitForDatabase, type DatabaseWatch } from '../db/availability.js';
import { createDb, pingDatabase, type Db } from '../db/client.js';
import { createNotifications, type Notifications } from '../db/notifications.js';
import { migrateToLatest } from '../db/migrate.js';
import { createApp } from '../http/app.js';
import { createLogger, type Logger } from '../logger.js';
import { createMetrics } from '../metrics/metrics.js';
import { declareQueues, queueDepths } from '../queue/task-queue.js';
import { createBoss } from '../queue/boss.js';
import { startWorker, type Worker } from '../worker/worker.js';
import { workerHttpApp } from '../worker/worker-http.js';
import { persistentDevelopmentSecret } from './dev-secret.js';
import { startEmbeddedPostgres, type EmbeddedPostgres } from './embedded-postgres.js';

export type Mode = 'api' | 'worker' | 'all';

/** How long running tasks get to finish after SIGTERM before they are failed back to the queue. */
const SHUTDOWN_GRACE_MS = 25_000;
const REPEATED_SIGNAL_MS = 2_000;

function loadConfigOrExit(logger: Logger): Config {
  try {
    return loadConfig(process.env, { developmentSecret: () => persistentDevelopmentSecret(logger) });
  } catch (error) {
    if (error instanceof ConfigError) {
      logger.error(error.message);
      process.exit(1);
    }
    throw error;
  }
}

/** A start-up failure as one line an operator can act on, without a stack trace. */
function describeStartupFailure(error: unknown, config: Config): string {
  const { code, message } = error as { code?: string; message?: string };
  if (code === 'EADDRINUSE') return `${message}: another process is listening on port ${config.port}; stop it or set PORT to a free port`;
  if (code === 'EACCES' && message?.startsWith('listen')) return `${message}: this user may not listen on port ${config.port}; set PORT to a port above 1023`;
  const cause = (error as { cause?: { message?: string } }).cause?.message;
  return cause && !message?.includes(cause) ? `${message}: ${cause}` : (message ?? String(error));
}

/** The parts of a process that use the database, each present once started; stopping handles any subset. */
interface Running {
  db?: Db;
  watch?: DatabaseWatch;
  notifications?: Notifications;
  /** Aborted first when stopping: long-lived responses (event streams) end so the server can close. */
  stopping?: AbortController;
  boss?: PgBoss;
  worker?: Worker;
  server?: Server;
}

/** Serves `app` on `host:port`; `announce` logs where to find it once it listens. */
function listen(
  app: { fetch: (request: Request) => Response | Promise<Response> },
  address: { host: string; port: number },
  announce: (base: string) => void,
): Promise<Server> {
  return new Promise<Server>((resolve, reject) => {
    const server = serve({ fetch: app.fetch, hostname: address.host, port: address.port }, (info: AddressInfo) => {
      server.off('error', reject);
      const host = info.address === '0.0.0.0' || info.address === '::' ? 'localhost' : info.address;
      announce(`http://${host}:${info.port}`);
      resolve(server as Server);
    }) as Server;
    // EADDRINUSE and the like arrive as an 'error' event, which unheard would crash with a stack trace.
    server.once('error', reject);
  });
}

/** Runs one step of a shutdown; a failed step is logged and the next one runs all the same. */
async function shutdownStep(logger: Logger, name: string, work: () => Promise<unknown>): Promise<void> {
  try {
    await work();
  } catch (error) {
    logger.warn(`shutdown step failed: ${name}`, { error });
  }
}

/**
 * Stops whatever has started, newest first: the HTTP server stops taking requests, the worker
 * lets running tasks finish (up to `graceMs`), then the queue and the pool. Each step runs even
 * if one before it failed: a lost database must not keep the rest open.
 */
async function stopRunning(running: Running, graceMs: number, logger: Logger): Promise<void> {
  const step = (name: string, work: () => Promise<unknown>) => shutdownStep(logger, name, work);
  const { server, worker, boss, db, watch, notifications } = running;
  running.stopping?.abort();
  const serverClosed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
  if (worker) await step('worker', () => worker.stop(graceMs));
  // Anything still running after the grace period is failed back to the queue for another worker.
  if (boss) await step('queue', () => boss.stop({ graceful: true, timeout: 1_000 }));
  await step('http server', () => serverClosed);
  if (notifications) await step('notifications', () => notifications.close());
  watch?.stop();
  if (db) await step('database pool', () => db.destroy());
}

/**
 * Starts the API, the worker, or both in one process, and stops them gracefully on SIGTERM/SIGINT.
 * A process started before its database waits for it (DATABASE_STARTUP_TIMEOUT_SECONDS); any
 * start-up failure is one log line, everything already started is stopped, and the exit code is 1.
 */
export async function run(mode: Mode): Promise<void> {
  const bootLogger = createLogger({ base: { mode } });
  const config = loadConfigOrExit(bootLogger);
  const logger = createLogger({ level: config.logLevel, base: { mode } });
  let embedded: EmbeddedPostgres | undefined;
  let running: Running = {};
  // Aborts a start-up still waiting for the database when a signal arrives.
  const startup = new AbortController();
  /** The embedded PostgreSQL, if any, goes last: everything else still talks to it until then. */
  const stopEverything = async (graceMs: number) => {
    await stopRunning(running, graceMs, logger);
    if (embedded) await shutdownStep(logger, 'embedded PostgreSQL', () => embedded!.stop());
  };

  let stoppingSince: number | undefined;
  const shutdown = async (signal: string) => {
    if (stoppingSince !== undefined) {
      // Under npm/tsx the same signal can arrive twice (to the group and relayed): only a
      // deliberate second signal, later, cuts the grace period short.
      if (Date.now() - stoppingSince < REPEATED_SIGNAL_MS) return;
      logger.warn('second signal: exiting now', { signal });
      process.exit(1);
    }
    stoppingSince = Date.now();
    logger.info('shutting down', { signal });
    startup.abort();
    await stopEverything(SHUTDOWN_GRACE_MS);
    logger.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));

  /** Everything that needs the database: migrations, the queue, the worker, then the HTTP server. */
  const startOnDatabase = async (parts: Running, databaseUrl: string) => {
    const db = (parts.db = createDb(databaseUrl, { applicationName: `autonomos-${mode}`, preparedStatements: config.databasePreparedStatements }));
    const watch = (parts.watch = createDatabaseWatch(() => pingDatabase(db), logger));
    const applied = await migrateToLatest(db);
    if (applied.length > 0) logger.info('migrations applied', { migrations: applied });

    const boss = (parts.boss = createBoss(databaseUrl, logger, { supervise: mode !== 'api', watch, preparedStatements: config.databasePreparedStatements }));
    await boss.start();
    await declareQueues(boss);

    // One registry per process: in `all` mode the API's /metrics shows the worker's counters too.
    const metrics = createMetrics();
    metrics.observeQueues(() => queueDepths(boss));
    // Every mode listens: the API for revoked tokens and task events, the worker for changed integrations.
    const notifications = (parts.notifications = createNotifications(databaseUrl, { applicationName: `autonomos-${mode}-listen`, watch }));
    await notifications.ready;
    if (mode !== 'api') parts.worker = await startWorker({ db, boss, config, logger, watch, metrics, notifications });
    if (mode === 'worker' && config.workerHttpPort !== undefined) {
      parts.server = await listen(workerHttpApp({ db, logger, metrics, metricsToken: config.metricsToken }), { host: config.host, port: config.workerHttpPort }, (base) =>
        logger.info('worker http listening', { health: `${base}/health/worker`, ...(config.metricsToken ? { metrics: `${base}/metrics` } : {}) }),
      );
    }
    if (mode !== 'worker') {
      const stopping = (parts.stopping = new AbortController());
      const app = createApp({ db, boss, config, logger, notifications, metrics, stopping: stopping.signal });
      parts.server = await listen(app, config, (base) => logger.info('api listening', { url: base, docs: `${base}/docs` }));
    }
  };

  try {
    let databaseUrl = config.databaseUrl;
    if (databaseUrl === '') {
      // Without DATABASE_URL, development gets a real PostgreSQL of its own in .data/postgres; in
      // production that is a mistake, not a reason to keep data inside a container.
      if (config.env === 'production') {
        throw new Error('DATABASE_URL is not set: in production point it at your PostgreSQL, e.g. postgres://user:pass@db:5432/autonomos');
      }
      embedded = await startEmbeddedPostgres(logger);
      databaseUrl = embedded.url;
    }
    const giveUpAt = Date.now() + config.databaseStartupTimeoutSeconds * 1000;
    for (;;) {
      await waitForDatabase(databaseUrl, { giveUpAt, timeoutSeconds: config.databaseStartupTimeoutSeconds, logger, signal: startup.signal });
      try {
        await startOnDatabase(running, databaseUrl);
        break;
      } catch (error) {
        // The database went away again in the middle of start-up (a restart, a container started
        // next to a database that is still settling): start over once it is back, within the same limit.
        if (!isDatabaseUnavailable(error) || Date.now() >= giveUpAt || stoppingSince !== undefined) throw error;
        logger.warn('database lost during start-up; starting over once it answers', { reason: unavailableReason(error) });
        await stopRunning(running, 0, logger);
        running = {};
      }
    }
  } catch (error) {
    if (stoppingSince !== undefined) return; // a signal interrupted start-up; shutdown() is on it
    // A signal from here on finds a shutdown under way, as during a stop.
    stoppingSince = Date.now();
    logger.error(`start-up failed: ${describeStartupFailure(error, config)}`);
    await stopEverything(0);
    process.exit(1);
  }
}
