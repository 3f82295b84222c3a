import { sql, type Kysely } from 'kysely';

// Frozen in time: this file never imports application code.

export async function up(db: Kysely<any>): Promise<void> {
  // A tenant's tasks newest first, page by page, with or without a status filter: the listing walks
  // each wanted status's run of this index in (created_at, id) order and merges the runs, so a page
  // reads about a page of entries whichever statuses it asks for, and never sorts the tenant's
  // tasks. Retention reads the old end of the finished statuses' runs. It replaces the
  // (tenant_id, created_at) index rather than joining it: every state change of a task writes an
  // entry into each of its indexes. Having status in it costs no extra writes either: status
  // appears in partial index predicates, so a status change is never a HOT update and writes a new
  // entry into every index of the table already.
  await sql`create index tasks_tenant_status_created_idx on tasks (tenant_id, status, created_at desc, id desc)`.execute(db);
  await sql`drop index tasks_tenant_id_created_at_idx`.execute(db);

  // Retention deletes finished tasks. A parent finishes before its chained task is created, so it
  // is never the younger of the two; still, deleting a chained task must never depend on the order
  // of deletion: it clears its parent's link instead of failing.
  await sql`alter table tasks drop constraint tasks_next_task_fkey`.execute(db);
  await sql`alter table tasks add constraint tasks_next_task_fkey
            foreign key (tenant_id, next_task_id) references tasks (tenant_id, id) on delete set null (next_task_id)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`alter table tasks drop constraint tasks_next_task_fkey`.execute(db);
  await sql`alter table tasks add constraint tasks_next_task_fkey
            foreign key (tenant_id, next_task_id) references tasks (tenant_id, id)`.execute(db);
  await sql`create index tasks_tenant_id_created_at_idx on tasks (tenant_id, created_at)`.execute(db);
  await sql`drop index tasks_tenant_status_created_idx`.execute(db);
}
