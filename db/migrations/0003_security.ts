import { sql, type Kysely } from 'kysely';

// Frozen in time: this file never imports application code.

export async function up(db: Kysely<any>): Promise<void> {
  // Tenant integrity in the schema: every reference between tenant rows names the tenant too, so
  // a row can never point at another tenant's row, even through a bug in a query. The tasks'
  // primary key becomes (tenant_id, id) rather than gaining a second unique index: every state
  // change of a task writes an entry into each of its indexes.
  await sql`alter table task_logs drop constraint task_logs_task_id_fkey`.execute(db);
  await sql`alter table tasks drop constraint tasks_next_task_id_fkey`.execute(db);
  await sql`alter table tasks drop constraint tasks_created_by_fkey`.execute(db);
  await sql`alter table tasks drop constraint tasks_pkey`.execute(db);
  await sql`alter table tasks add constraint tasks_pkey primary key (tenant_id, id)`.execute(db);
  await sql`alter table users add constraint users_tenant_id_id_key unique (tenant_id, id)`.execute(db);
  await sql`drop index users_tenant_id_idx`.execute(db);

  await sql`alter table task_logs add constraint task_logs_task_fkey
            foreign key (tenant_id, task_id) references tasks (tenant_id, id)`.execute(db);
  // The (tenant_id, task_id, seq) index serves every lookup and the foreign key; this one only cost writes.
  await sql`drop index task_logs_task_id_idx`.execute(db);
  await sql`alter table tasks add constraint tasks_next_task_fkey
            foreign key (tenant_id, next_task_id) references tasks (tenant_id, id)`.execute(db);
  // A removed user's tasks stay, with their audit trail; only the link to the user goes.
  await sql`alter table tasks add constraint tasks_created_by_fkey
            foreign key (tenant_id, created_by) references users (tenant_id, id) on delete set null (created_by)`.execute(db);

  // Tokens carry the version of their user's tokens at issue; raising it revokes them all. Every
  // process caches versions and forgets one when told of its change.
  await db.schema
    .alterTable('users')
    .addColumn('token_version', 'integer', (col) => col.notNull().defaultTo(0))
    .execute();
  await sql`
    create function autonomos_user_tokens_changed() returns trigger language plpgsql as $$
    begin
      perform pg_notify('autonomos_user_tokens', old.id::text);
      return null;
    end
    $$`.execute(db);
  await sql`create trigger users_tokens_changed after update of token_version or delete on users
            for each row execute function autonomos_user_tokens_changed()`.execute(db);

  // Failed sign-ins and registrations per account or client address, in fixed windows.
  await db.schema
    .createTable('auth_throttle')
    .addColumn('key', 'text', (col) => col.primaryKey())
    .addColumn('attempts', 'integer', (col) => col.notNull())
    .addColumn('window_ends_at', 'timestamptz', (col) => col.notNull())
    .execute();
  await db.schema.createIndex('auth_throttle_window_ends_at_idx').on('auth_throttle').column('window_ends_at').execute();

  // Each tenant's token bucket for task creation. `granted` is what the last request for tokens got.
  await db.schema
    .createTable('tenant_rate_buckets')
    .addColumn('tenant_id', 'uuid', (col) => col.primaryKey().references('tenants.id').onDelete('cascade'))
    .addColumn('tokens', 'double precision', (col) => col.notNull())
    .addColumn('refilled_at', 'timestamptz', (col) => col.notNull())
    .addColumn('granted', 'integer', (col) => col.notNull())
    .execute();

  // With the queued-task index (tasks_queue_tail_idx) and the AOA one, counts a tenant's
  // unfinished tasks for its quota by index alone. Running tasks are few: a small index.
  await sql`create index tasks_running_idx on tasks (tenant_id) where status = 'in_progress'`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index tasks_running_idx`.execute(db);
  await db.schema.dropTable('tenant_rate_buckets').execute();
  await db.schema.dropTable('auth_throttle').execute();
  await sql`drop trigger users_tokens_changed on users`.execute(db);
  await sql`drop function autonomos_user_tokens_changed()`.execute(db);
  await db.schema.alterTable('users').dropColumn('token_version').execute();

  await sql`alter table tasks drop constraint tasks_created_by_fkey`.execute(db);
  await sql`alter table tasks drop constraint tasks_next_task_fkey`.execute(db);
  await sql`alter table task_logs drop constraint task_logs_task_fkey`.execute(db);
  await sql`create index task_logs_task_id_idx on task_logs (task_id)`.execute(db);
  await sql`create index users_tenant_id_idx on users (tenant_id)`.execute(db);
  await sql`alter table users drop constraint users_tenant_id_id_key`.execute(db);
  await sql`alter table tasks drop constraint tasks_pkey`.execute(db);
  await sql`alter table tasks add constraint tasks_pkey primary key (id)`.execute(db);
  await sql`alter table tasks add constraint tasks_created_by_fkey foreign key (created_by) references users (id)`.execute(db);
  await sql`alter table tasks add constraint tasks_next_task_id_fkey foreign key (next_task_id) references tasks (id)`.execute(db);
  await sql`alter table task_logs add constraint task_logs_task_id_fkey foreign key (task_id) references tasks (id)`.execute(db);
}
