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
  await sql`create index tasks_queue_tail_idx on tasks (tenant_id, queue_rank) include (priority)
            where status = 'queued' and kind = 'task'`.execute(db);
  await sql`create index tasks_queue_head_idx on tasks (queue_rank) include (scheduled_for)
            where status = 'queued' and kind = 'task'`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index tasks_queue_head_idx`.execute(db);
  await sql`drop index tasks_queue_tail_idx`.execute(db);
  await db.schema.alterTable('tasks').dropColumn('queue_rank').dropColumn('priority').execute();
}
