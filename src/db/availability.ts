import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { withTimeout } from '../lib/timeout.js';
import type { Logger } from '../logger.js';
import { CONNECTION_TIMEOUT_MS } from './connection-settings.js';

/** Network errors that mean the server could not be reached, or the connection to it was lost. */
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ENOTFOUND']);
/**
 * SQLSTATEs of a server that is going away or not there yet: admin/crash shutdown, "the database
 * system is starting up / shutting down", too many connections. Class 08 (connection exception)
 * is matched by prefix.
 */
const UNAVAILABLE_SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300']);
/**
 * What node-postgres says when a connection dies or cannot be made in time, and pg-boss when its
 * LISTEN session is lost; these errors carry no code.
 */
const LOST_CONNECTION_MESSAGE =
  /Connection terminated|timeout exceeded when trying to connect|not queryable|Query read timeout|Connection closed|ended by the server|LISTEN\/NOTIFY (heartbeat timed out|connection ended|channel registration was lost)/i;

/**
 * Whether `error` says the database is unreachable right now (stopped, restarting, connection
 * lost) rather than that a statement was wrong. Accepts errors and the plain copies pg-boss emits,
 * and looks through `cause` and AggregateError's `errors`.
 */
export function isDatabaseUnavailable(error: unknown, depth = 0): boolean {
  if (depth > 5 || error === null || typeof error !== 'object') return false;
  const { code, message, cause, errors } = error as { code?: unknown; message?: unknown; cause?: unknown; errors?: unknown };
  if (typeof code === 'string' && (UNREACHABLE_CODES.has(code) || UNAVAILABLE_SQLSTATES.has(code) || /^08/.test(code))) return true;
  if (typeof message === 'string' && LOST_CONNECTION_MESSAGE.test(message)) return true;
  if (Array.isArray(errors) && errors.some((inner) => isDatabaseUnavailable(inner, depth + 1))) return true;
  return isDatabaseUnavailable(cause, depth + 1);
}

/** The short reason an unavailable database gives, for logs and health answers. */
export function unavailableReason(error: unknown): string {
  const message = (error as { message?: unknown } | null)?.message;
  if (typeof message === 'string' && message !== '') return message;
  const inner = (error as { errors?: unknown[] } | null)?.errors?.[0];
  return inner ? unavailableReason(inner) : String(error);
}

export interface DatabaseWatch {
  /**
   * Reports a failed database operation. A lost database is logged once per outage (then probed
   * until it answers again, which is logged too); any other error is logged as an error.
   */
  failed(error: unknown, operation: string): void;
  /** Runs `listener` each time the database answers again after an outage; returns an unsubscribe. */
  onAvailable(listener: () => void): () => void;
  stop(): void;
}

const PROBE_INTERVAL_MS = 500;
/** A probe that hangs (a database that neither answers nor refuses) counts as a failed one. */
const PROBE_TIMEOUT_MS = 2_000;

/**
 * Turns the storm of errors an outage causes (every poll of every queue loop, every heartbeat)
 * into two log lines: "database unavailable" when it starts and "database available again",
 * with how long it was down, when `probe` succeeds again.
 */
export function createDatabaseWatch(probe: () => Promise<unknown>, logger: Logger): DatabaseWatch {
  let downSince: number | undefined;
  let probeTimer: NodeJS.Timeout | undefined;
  let stopped = false;
  const listeners = new Set<() => void>();

  const probeUntilBack = () => {
    probeTimer = setTimeout(() => {
      withTimeout(probe(), PROBE_TIMEOUT_MS, 'database probe timed out').then(
        () => {
          logger.info('database available again', { down_ms: Date.now() - downSince! });
          downSince = undefined;
          probeTimer = undefined;
          for (const listener of listeners) listener();
        },
        () => {
          if (!stopped) probeUntilBack();
        },
      );
    }, PROBE_INTERVAL_MS);
    probeTimer.unref();
  };

  return {
    failed(error, operation) {
      if (!isDatabaseUnavailable(error)) {
        logger.error(`${operation} failed`, { error });
        return;
      }
      if (downSince !== undefined || stopped) {
        logger.debug(`${operation} failed: database unavailable`, { reason: unavailableReason(error) });
        return;
      }
      downSince = Date.now();
      logger.warn('database unavailable; retrying until it answers', { operation, reason: unavailableReason(error) });
      probeUntilBack();
    },
    onAvailable(listener) {
      listeners.add(listener);
      return () => void listeners.delete(listener);
    },
    stop() {
      stopped = true;
      clearTimeout(probeTimer);
    },
  };
}

const FIRST_RETRY_MS = 50;
/**
 * Retries stay frequent (a refused connection costs the stopped server nothing) so a write goes
 * through within a quarter second of the database's return: before pg-boss's supervision, which
 * may then have expired the job, redelivers it to a worker that would count the attempt as lost.
 */
const MAX_RETRY_MS = 250;

/**
 * How long a worker's write (a claim, an outcome, an audit entry, a callback record) keeps trying
 * while the database is unreachable. Beyond it the delivery gives up and its job is redelivered,
 * which records the attempt as lost.
 */
const PATIENCE_MS = 5 * 60_000;

/**
 * Runs `work` and, while it fails only because the database is unreachable, runs it again with a
 * short backoff, for up to PATIENCE_MS. `work` is told whether an earlier try may have committed
 * before its reply was lost, so it can recognise its own effect. Any other error, the end of
 * patience, or an aborted `signal` ends the retries with the last error.
 */
export async function retryWhileUnavailable<T>(
  work: (retrying: boolean) => Promise<T>,
  options: { watch: DatabaseWatch; operation: string; signal?: AbortSignal },
): Promise<T> {
  const giveUpAt = Date.now() + PATIENCE_MS;
  let delay = FIRST_RETRY_MS;
  for (let retrying = false; ; retrying = true) {
    try {
      return await work(retrying);
    } catch (error) {
      if (!isDatabaseUnavailable(error) || Date.now() + delay > giveUpAt || options.signal?.aborted) throw error;
      options.watch.failed(error, options.operation);
      await sleep(delay, undefined, options.signal ? { signal: options.signal } : {}).catch(() => {});
      delay = Math.min(delay * 2, MAX_RETRY_MS);
    }
  }
}

/** Raised when the database did not accept connections within DATABASE_STARTUP_TIMEOUT_SECONDS. */
export class DatabaseStartupTimeoutError extends Error {
  override name = 'DatabaseStartupTimeoutError';
}

const FIRST_STARTUP_RETRY_MS = 250;
/**
 * A process that starts while its database restarts (a worker replaced by its orchestrator at
 * that moment) comes up within about this of the database's return: with a 5 s cap, a worker
 * started during a 3 s restart came up 4.3-5.6 s after the database was back, and under load the
 * chaos run's recovery reached 12 s. One log line per try, so at most one a second.
 */
const MAX_STARTUP_RETRY_MS = 1_000;

/**
 * Waits until the database accepts a connection and answers, as a process started next to a
 * database that is still starting (or briefly down) must: each failed try is logged on one line,
 * with a growing pause between tries. Errors that waiting cannot fix (a wrong password, a missing
 * database) are thrown at once; at `giveUpAt` a DatabaseStartupTimeoutError is, which names
 * `timeoutSeconds`, the whole start-up's limit.
 */
export async function waitForDatabase(
  connectionString: string,
  options: { giveUpAt: number; timeoutSeconds: number; logger: Logger; signal?: AbortSignal },
): Promise<void> {
  const { giveUpAt } = options;
  let delay = FIRST_STARTUP_RETRY_MS;
  for (let attempt = 1; ; attempt++) {
    const client = new pg.Client({ connectionString, connectionTimeoutMillis: CONNECTION_TIMEOUT_MS, application_name: 'autonomos-startup' });
    client.on('error', () => {});
    try {
      await client.connect();
      await client.query('select 1');
      if (attempt > 1) options.logger.info('database reachable', { attempts: attempt });
      return;
    } catch (error) {
      if (!isDatabaseUnavailable(error)) throw error;
      const left = giveUpAt - Date.now();
      if (left <= 0) {
        throw new DatabaseStartupTimeoutError(
          `the database did not accept connections within ${options.timeoutSeconds} s (DATABASE_STARTUP_TIMEOUT_SECONDS); last error: ${unavailableReason(error)}`,
          { cause: error },
        );
      }
      const pause = Math.min(delay, left);
      options.logger.warn('database not reachable yet; retrying', { attempt, reason: unavailableReason(error), retry_in_ms: pause });
      await sleep(pause, undefined, options.signal ? { signal: options.signal } : {});
      delay = Math.min(delay * 2, MAX_STARTUP_RETRY_MS);
    } finally {
      await client.end().catch(() => {});
    }
  }
}
