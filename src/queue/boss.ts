import { PgBoss } from 'pg-boss';
import type { DatabaseWatch } from '../db/availability.js';
import { idleConnections } from '../db/connection-settings.js';
import { preparingClientClass } from '../db/prepared-statements.js';
import type { Logger } from '../logger.js';

export const BOSS_SCHEMA = 'pgboss';

export interface BossOptions {
  /**
   * Only worker processes supervise (expire, retry, archive) and send the jobs of schedules (task
   * retention); API-only processes just send.
   */
  supervise: boolean;
  /** Receives the queue's errors, so a database outage is logged once instead of by every poll. */
  watch?: DatabaseWatch;
  /** Connections of the queue's own pool (default 10). */
  maxConnections?: number;
  /** Whether its statements (the fetch above all) run prepared; see db/prepared-statements.ts. */
  preparedStatements?: boolean;
  /** Replaces how long the queue's pool keeps an unused connection (idleConnections). */
  idleTimeoutMs?: number;
}

/** A pg-boss instance in the application database, in its own schema. */
export function createBoss(connectionString: string, logger: Logger, options: BossOptions): PgBoss {
  const boss = new PgBoss({
    connectionString,
    schema: BOSS_SCHEMA,
    application_name: 'autonomos-queue',
    max: options.maxConnections ?? 10,
    // Passed to pg-boss's pg.Pool with the rest, though its type does not list them.
    ...idleConnections(options.idleTimeoutMs),
    // Handed to pg-boss's pg.Pool with the rest of this configuration. pg-boss's statements are a
    // fixed set per queue (values travel as parameters), its fetch the longest of all.
    ...(options.preparedStatements === false ? {} : { Client: preparingClientClass(() => true) }),
    supervise: options.supervise,
    // Frequent passes notice a crashed worker's expired or heartbeat-less jobs within seconds.
    superviseIntervalSeconds: 5,
    monitorIntervalSeconds: 5,
    schedule: options.supervise,
    migrate: true,
    // Workers are woken by the process's own listener, one fetch loop at a time (worker/queue-wake.ts);
    // the inserts still notify.
    useListenNotify: false,
  });
  boss.on('error', (error) => (options.watch ? options.watch.failed(error, 'queue') : logger.error('queue error', { error })));
  boss.on('warning', (warning) => logger.warn('queue warning', { warning }));
  return boss;
}
