import { sql } from 'kysely';
import type { Db } from '../db/client.js';

/** Workers whose heartbeat is younger than `freshSeconds`, and the newest heartbeat of all. */
export async function workerPresence(db: Db, freshSeconds: number) {
  return db
    .selectFrom('worker_heartbeats')
    .select((eb) => [
      eb.fn.count<string>('id').filterWhere(sql<boolean>`last_seen_at > now() - make_interval(secs => ${freshSeconds})`).as('fresh'),
      eb.fn.max('last_seen_at').as('last_seen'),
    ])
    .executeTakeFirstOrThrow();
}
