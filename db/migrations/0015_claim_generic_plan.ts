import { sql, type Kysely } from 'kysely';

// Frozen in time: this file never imports application code.

const CLAIM_TASKS = sql.raw('claim_tasks(uuid[], uuid[], int[], int, text, text)');

export async function up(db: Kysely<any>): Promise<void> {
  // PL/pgSQL caches the claim's query per connection, but under the default plan_cache_mode a
  // connection whose first five claims planned cheaper with their arrays' real lengths keeps
  // planning it on every call: a claim of one task spent about 1 ms planning a query that runs in
  // 0.5 ms (pg_stat_statements with track_planning, tasks at 50 a second: 96-146 plans in 300
  // claims; 3 with this). Every plan looks the tasks up by primary key and counts a tenant's
  // running ones through tasks_running_idx, whatever the arrays hold, so one plan serves all.
  await sql`alter function ${CLAIM_TASKS} set plan_cache_mode = force_generic_plan`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`alter function ${CLAIM_TASKS} reset plan_cache_mode`.execute(db);
}
