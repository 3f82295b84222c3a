import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { withTimeout } from '../lib/timeout.js';
import { CONNECTION_TIMEOUT_MS } from './connection-settings.js';
import type { DatabaseWatch } from './availability.js';

/**
 * PostgreSQL notifications (LISTEN/NOTIFY) for this process, on one connection of their own: what
 * another process changed (a revoked token, ...) reaches every process within milliseconds.
 */
export interface Notifications {
  /** Calls `handler` with the payload of each notification on `channel`. Returns an unsubscribe. */
  subscribe(channel: string, handler: (payload: string) => void): () => void;
  /**
   * Whether notifications arrive right now. While they do not, anything kept up to date by them
   * may be stale and must not be trusted.
   */
  readonly listening: boolean;
  /** Runs `listener` whenever listening starts again: whatever was sent in between was missed. */
  onListening(listener: () => void): () => void;
  close(): Promise<void>;
}

/** A listening connection that lost its server unnoticed (no RST) is found by this ping. */
const PING_INTERVAL_MS = 10_000;
const PING_TIMEOUT_MS = 3_000;
const FIRST_RECONNECT_MS = 100;
const MAX_RECONNECT_MS = 2_000;

/**
 * Connects in the background and keeps reconnecting (and listening again to every subscribed
 * channel) until closed; `ready` resolves once the first connection listens, or rejects if it fails.
 */
export function createNotifications(
  connectionString: string,
  options: { applicationName?: string; watch: DatabaseWatch },
): Notifications & { ready: Promise<void> } {
  const handlers = new Map<string, Set<(payload: string) => void>>();
  const listeners = new Set<() => void>();
  let client: pg.Client | undefined;
  // One statement at a time on the listening connection (a LISTEN for a new channel can come
  // while the ping runs): pg warns of, and will refuse, a query sent while another is running.
  let statements: Promise<unknown> = Promise.resolve();
  const serially = (connection: pg.Client, text: string) => {
    const result = statements.then(() => connection.query(text));
    statements = result.catch(() => {});
    return result;
  };
  let listening = false;
  let closed = false;
  let pingTimer: NodeJS.Timeout | undefined;
  const stopSleeping = new AbortController();

  const quoted = (channel: string) => `"${channel.replaceAll('"', '""')}"`;

  async function connect(): Promise<void> {
    const next = new pg.Client({
      connectionString,
      connectionTimeoutMillis: CONNECTION_TIMEOUT_MS,
      application_name: options.applicationName ?? 'autonomos-notifications',
      keepAlive: true,
    });
    const lost = new Promise<void>((resolve) => {
      next.once('end', resolve);
      next.on('error', () => resolve());
    });
    try {
      await next.connect();
      for (const channel of handlers.keys()) await next.query(`listen ${quoted(channel)}`);
    } catch (error) {
      await next.end().catch(() => {});
      throw error;
    }
    // Closed while this connection was being made: it must not outlive the close.
    if (closed) {
      await next.end().catch(() => {});
      return;
    }
    next.on('notification', (message) => {
      for (const handler of handlers.get(message.channel) ?? []) handler(message.payload ?? '');
    });
    client = next;
    listening = true;
    for (const listener of listeners) listener();
    pingTimer = setInterval(() => {
      withTimeout(serially(next, 'select 1'), PING_TIMEOUT_MS, 'notification connection ping timed out').catch(() => void next.end().catch(() => {}));
    }, PING_INTERVAL_MS);
    pingTimer.unref();
    void lost.then(() => reconnectAfterLoss(next));
  }

  async function reconnectAfterLoss(lostClient: pg.Client): Promise<void> {
    if (client !== lostClient) return;
    listening = false;
    client = undefined;
    clearInterval(pingTimer);
    await lostClient.end().catch(() => {});
    let delay = FIRST_RECONNECT_MS;
    while (!closed) {
      try {
        await connect();
        return;
      } catch (error) {
        options.watch.failed(error, 'listening for notifications');
        await sleep(delay, undefined, { signal: stopSleeping.signal }).catch(() => {});
        delay = Math.min(delay * 2, MAX_RECONNECT_MS);
      }
    }
  }

  const ready = connect();

  return {
    ready,
    get listening() {
      return listening;
    },
    subscribe(channel, handler) {
      let channelHandlers = handlers.get(channel);
      if (!channelHandlers) {
        handlers.set(channel, (channelHandlers = new Set()));
        // A failed LISTEN is a lost connection in all but name: start over, listening to everything.
        if (client) {
          const listening = client;
          serially(listening, `listen ${quoted(channel)}`).catch(() => void listening.end().catch(() => {}));
        }
      }
      channelHandlers.add(handler);
      return () => void channelHandlers.delete(handler);
    },
    onListening(listener) {
      listeners.add(listener);
      return () => void listeners.delete(listener);
    },
    async close() {
      closed = true;
      listening = false;
      stopSleeping.abort();
      clearInterval(pingTimer);
      const current = client;
      client = undefined;
      await current?.end().catch(() => {});
    },
  };
}
