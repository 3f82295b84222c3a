import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { sql } from 'kysely';
import type { Db } from '../db/client.js';
import type { DatabaseWatch } from '../db/availability.js';

export const HEARTBEAT_INTERVAL_MS = 10_000;

export interface Heartbeat {
  readonly workerId: string;
  stop(): Promise<void>;
}

/**
 * Records that this worker is alive every 10 s and as soon as the database is back after an
 * outage, so `/health/worker` can tell from any API process whether some worker is running. The
 * row is removed on a clean stop.
 */
export async function startHeartbeat(db: Db, watch: DatabaseWatch): Promise<Heartbeat> {
  const workerId = randomUUID();
  const beat = async () => {
    await db
      .insertInto('worker_heartbeats')
      .values({ id: workerId, hostname: hostname(), pid: process.pid })
      .onConflict((oc) => oc.column('id').doUpdateSet({ last_seen_at: sql`now()` }))
      .execute();
    // Killed workers never delete their row; a day later it only clutters the table.
    await db.deleteFrom('worker_heartbeats').where('last_seen_at', '<', sql<Date>`now() - interval '1 day'`).execute();
  };
  await beat();
  const beatInBackground = () => void beat().catch((error: unknown) => watch.failed(error, 'worker heartbeat'));
  const timer = setInterval(beatInBackground, HEARTBEAT_INTERVAL_MS);
  timer.unref();
  // After an outage, say at once that this worker is alive, rather than at the next beat.
  const unsubscribe = watch.onAvailable(beatInBackground);
  return {
    workerId,
    async stop() {
      clearInterval(timer);
      unsubscribe();
      await db.deleteFrom('worker_heartbeats').where('id', '=', workerId).execute();
    },
  };
}
