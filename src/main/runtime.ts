import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { ConfigError, loadConfig, type Config } from '../config.js';
import { createDb } from '../db/client.js';
import { migrateToLatest } from '../db/migrate.js';
import { createApp } from '../http/app.js';
import { createLogger, type Logger } from '../logger.js';
import { declareQueues } from '../queue/task-queue.js';
import { createBoss } from '../queue/boss.js';
import { startWorker } from '../worker/worker.js';
import { persistentDevelopmentSecret } from './dev-secret.js';
import { EmbeddedPostgresError, startEmbeddedPostgres, type EmbeddedPostgres } from './embedded-postgres.js';

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

/**
 * Without DATABASE_URL, development gets a real PostgreSQL of its own in .data/postgres; in
 * production a missing DATABASE_URL is a mistake, not a reason to keep data inside a container.
 */
async function startEmbeddedOrExit(config: Config, logger: Logger): Promise<EmbeddedPostgres> {
  if (config.env === 'production') {
    logger.error('DATABASE_URL is not set: in production point it at your PostgreSQL, e.g. postgres://user:pass@db:5432/autonomos');
    process.exit(1);
  }
  try {
    return await startEmbeddedPostgres(logger);
  } catch (error) {
    if (error instanceof EmbeddedPostgresError) {
      logger.error(error.message);
      process.exit(1);
    }
    throw error;
  }
}

/** Starts the API, the worker, or both in one process, and stops them gracefully on SIGTERM/SIGINT. */
export async function run(mode: Mode): Promise<void> {
  const bootLogger = createLogger({ base: { mode } });
  const config = loadConfigOrExit(bootLogger);
  const logger = createLogger({ level: config.logLevel, base: { mode } });
  const embedded = config.databaseUrl === '' ? await startEmbeddedOrExit(config, logger) : undefined;
  const databaseUrl = embedded?.url ?? config.databaseUrl;

  const db = createDb(databaseUrl, { applicationName: `autonomos-${mode}` });
  const applied = await migrateToLatest(db);
  if (applied.length > 0) logger.info('migrations applied', { migrations: applied });

  const boss = createBoss(databaseUrl, logger, { supervise: mode !== 'api' });
  await boss.start();
  await declareQueues(boss);

  const worker = mode === 'api' ? undefined : await startWorker({ db, boss, config, logger });

  const server =
    mode === 'worker'
      ? undefined
      : await new Promise<ReturnType<typeof serve>>((resolve) => {
          const app = createApp({ db, boss, config, logger });
          const listening = serve({ fetch: app.fetch, hostname: config.host, port: config.port }, (info: AddressInfo) => {
            const host = info.address === '0.0.0.0' || info.address === '::' ? 'localhost' : info.address;
            logger.info('api listening', { url: `http://${host}:${info.port}`, docs: `http://${host}:${info.port}/docs` });
            resolve(listening);
          });
        });

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
    // Each step runs even if one before it failed: a lost database must not keep the rest open.
    const step = async (name: string, work: () => Promise<unknown>) => {
      try {
        await work();
      } catch (error) {
        logger.warn(`shutdown step failed: ${name}`, { error });
      }
    };
    const serverClosed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
    await step('worker', async () => worker?.stop(SHUTDOWN_GRACE_MS));
    // Anything still running after the grace period is failed back to the queue for another worker.
    await step('queue', () => boss.stop({ graceful: true, timeout: 1_000 }));
    await step('http server', () => serverClosed);
    await step('database pool', () => db.destroy());
    await step('embedded PostgreSQL', async () => embedded?.stop());
    logger.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}
