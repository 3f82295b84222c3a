import { sql, type Kysely } from 'kysely';

// Frozen in time: this file never imports application code.

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .alterTable('tasks')
    .addColumn('priority', 'smallint', (col) => col.notNull().defaultTo(0).check(sql`priority between -10 and 10`))
    // A plain task's place in its tenant's turn order, given at creation (see task-creation.ts).
    .addColumn('queue_rank', 'bigint')
    .execute();
  // The tenant's last place in line (at a priority or above), and the head of the whole line.
  await sql`create index tasks_queue_tail_idx on tasks (tenant_id, queue_rank) include (priority, scheduled_for)
            where status = 'queued' and kind = 'task'`.execute(db);
  await sql`create index tasks_queue_head_idx on tasks (queue_rank) include (scheduled_for)
            where status = 'queued' and kind = 'task'`.execute(db);
  // Every state change of a task writes a new row version into each index whose predicate it
  // meets, so indexes no query reads are pure cost on the hottest table. Only AOA jobs are ever
  // looked up as "active"; nothing looks tasks up by their creator.
  await sql`drop index tasks_active_kind_idx`.execute(db);
  await sql`create index tasks_active_aoa_idx on tasks (tenant_id) where kind = 'aoa' and status in ('queued', 'in_progress')`.execute(db);
  await sql`drop index tasks_created_by_idx`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`create index tasks_created_by_idx on tasks (created_by)`.execute(db);
  await sql`drop index tasks_active_aoa_idx`.execute(db);
  await sql`create index tasks_active_kind_idx on tasks (tenant_id, kind) where status in ('queued', 'in_progress')`.execute(db);
  await sql`drop index tasks_queue_head_idx`.execute(db);
  await sql`drop index tasks_queue_tail_idx`.execute(db);
  await db.schema.alterTable('tasks').dropColumn('queue_rank').dropColumn('priority').execute();
}
