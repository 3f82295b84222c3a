import { sql, type Kysely } from 'kysely';

// Frozen in time: this file never imports application code.

export async function up(db: Kysely<any>): Promise<void> {
  // A task's turn is found from its tenant's queued tasks of each priority (see createTasks):
  // the last of the same or a higher priority, the first of a lower one. With the old
  // (tenant_id, queue_rank) index the second meant reading every queued task of the tenant, so a
  // creation cost grew with the tenant's backlog; with priority in the key each is one probe per
  // priority level. The tenant prefix still counts its queued tasks for the quota.
  await sql`create index tasks_queue_turn_idx on tasks (tenant_id, priority, queue_rank) include (scheduled_for)
            where status = 'queued' and kind = 'task'`.execute(db);
  await sql`drop index tasks_queue_tail_idx`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`create index tasks_queue_tail_idx on tasks (tenant_id, queue_rank) include (priority, scheduled_for)
            where status = 'queued' and kind = 'task'`.execute(db);
  await sql`drop index tasks_queue_turn_idx`.execute(db);
}
