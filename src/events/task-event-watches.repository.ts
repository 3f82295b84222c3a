import { sql } from 'kysely';
import type { Db } from '../db/client.js';
import { isLockNotAvailable } from '../db/errors.js';
import { AppError } from '../errors.js';

/** The tenant is busy: how long its client should wait before opening a stream again. */
const BUSY_RETRY_AFTER_SECONDS = '1';

/**
 * The watches that make the triggers on tasks send a tenant's events (migration
 * 0017_watched_task_events): each has the event id it began from, and ends when nobody renews it.
 */
export function taskEventWatches(db: Db) {
  return {
    /**
     * Renews the tenant's watch for `seconds`, or begins one (waiting for the tenant's
     * transactions in flight); resolves with the event id it began from. A 503 AppError when the
     * tenant's transactions did not end in time.
     */
    async watch(tenantId: string, seconds: number): Promise<bigint> {
      try {
        const { rows } = await sql<{ since: string }>`select autonomos_watch_task_events(${tenantId}::uuid, ${seconds}) as since`.execute(db);
        return BigInt(rows[0]!.since);
      } catch (error) {
        // A first watch waited longer than its lock timeout (migration 0017) for the tenant's transactions in flight.
        if (!isLockNotAvailable(error)) throw error;
        throw new AppError('unavailable', "The tenant's tasks are busy: open the stream again in a moment", {
          headers: { 'Retry-After': BUSY_RETRY_AFTER_SECONDS },
        });
      }
    },

    /** Renews the watches of `tenantIds` that exist, for `seconds`, and ends the others that expired; resolves with those renewed. */
    async renew(tenantIds: readonly string[], seconds: number): Promise<Map<string, bigint>> {
      const { rows } = await sql<{ tenant_id: string; watched_from: string }>`
        select tenant_id, watched_from from autonomos_renew_task_event_watches(${tenantIds}::uuid[], ${seconds})
      `.execute(db);
      return new Map(rows.map((row) => [row.tenant_id, BigInt(row.watched_from)]));
    },
  };
}
