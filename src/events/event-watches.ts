import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'kysely';
import type { Db } from '../db/client.js';

/**
 * Which tenants' task events are sent (migration 0014_task_event_watches): those an event stream
 * watches, and for `resumeSeconds` after their last stream closed, so a client that reconnects in
 * that time resumes where it was. Events nobody watches are not sent at all, because every
 * notifying transaction holds PostgreSQL's cluster-wide notification lock through its commit.
 *
 * A watch that starts again gets a new generation; every event carries its watch's generation,
 * so a stream never resumes across a time its tenant went unwatched.
 */
export interface EventWatches {
  /**
   * Starts the tenant's watch, or keeps it on, and returns its generation once every transaction
   * that might have changed the tenant's tasks unwatched has ended: from then on, every change
   * committed is sent. `settled` is false when some had not ended in time (their changes may be
   * sent or not: the stream is told to read the task list again).
   */
  watch(tenantId: string): Promise<{ generation: string; settled: boolean }>;
  /**
   * Keeps `tenantIds` watched for another `resumeSeconds`, and ends the watches nobody kept on.
   * Returns the generation of each tenant still watched; a tenant missing from it was unwatched
   * meanwhile (this process kept it on too late) and must be watched again.
   */
  keep(tenantIds: readonly string[]): Promise<Map<string, string>>;
}

/** How long a new watch waits for the transactions that were in flight when it started. */
const SETTLE_TIMEOUT_MS = 2_000;
const SETTLE_POLL_MS = 5;

export function createEventWatches(db: Db, resumeSeconds: number): EventWatches {
  const until = sql`now() + make_interval(secs => ${resumeSeconds})`;

  /**
   * The transactions writing to tasks in this database right now: each holds a row-exclusive lock
   * on the table from its first write to its end. (A snapshot's transaction ids would name every
   * transaction of the cluster instead, other databases' included, and a stream would wait for
   * the slowest of them.)
   */
  const writers = (among?: string[]) => sql<{ transaction: string }>`
    select virtualtransaction as transaction from pg_locks
    where locktype = 'relation' and mode = 'RowExclusiveLock' and granted
      and database = (select oid from pg_database where datname = current_database()) and relation = 'tasks'::regclass
      ${among ? sql`and virtualtransaction = any(${among}::text[])` : sql``}
  `;

  /** Whether the transactions of `running` have all ended before the timeout. */
  async function settle(running: string[]): Promise<boolean> {
    const deadline = Date.now() + SETTLE_TIMEOUT_MS;
    while (running.length > 0) {
      if (Date.now() >= deadline) return false;
      await sleep(SETTLE_POLL_MS);
      running = (await writers(running).execute(db)).rows.map((row) => row.transaction);
    }
    return true;
  }

  return {
    async watch(tenantId) {
      const { rows } = await sql<{ generation: string }>`
        insert into task_event_watches (tenant_id, watched_until) values (${tenantId}, ${until})
        on conflict (tenant_id) do update set watched_until = greatest(task_event_watches.watched_until, excluded.watched_until)
        returning generation
      `.execute(db);
      // A transaction whose trigger ran before the watch was committed sent nothing, and may commit
      // after it: wait for every transaction writing tasks now (asked after the commit, so it
      // names all of them; one that writes later sees the watch).
      const running = await writers().execute(db);
      return { generation: rows[0]!.generation, settled: await settle(running.rows.map((row) => row.transaction)) };
    },

    async keep(tenantIds) {
      const { rows } = await sql<{ tenant_id: string; generation: string }>`
        with ended as (
          delete from task_event_watches where watched_until < now() and tenant_id <> all(${tenantIds}::uuid[])
        )
        update task_event_watches set watched_until = greatest(watched_until, ${until})
        where tenant_id = any(${tenantIds}::uuid[])
        returning tenant_id, generation
      `.execute(db);
      return new Map(rows.map((row) => [row.tenant_id, row.generation]));
    },
  };
}
