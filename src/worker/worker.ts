import type { PgBoss } from 'pg-boss';
import type { Config } from '../config.js';
import type { Db } from '../db/client.js';
import type { Logger } from '../logger.js';
import { startHeartbeat } from './heartbeat.js';

export interface WorkerDeps {
  db: Db;
  boss: PgBoss;
  config: Config;
  logger: Logger;
}

export interface Worker {
  /** Stops taking new jobs and waits up to `graceMs` for running ones. */
  stop(graceMs: number): Promise<void>;
}

export async function startWorker(deps: WorkerDeps): Promise<Worker> {
  const heartbeat = await startHeartbeat(deps.db, deps.logger);
  deps.logger.info('worker started', { worker_id: heartbeat.workerId });
  return {
    async stop() {
      await heartbeat.stop();
    },
  };
}
