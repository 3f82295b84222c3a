import { sql, type Kysely } from 'kysely';

// Frozen in time: this file never imports application code.

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('tenants')
    .addColumn('id', 'uuid', (col) => col.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('name', 'text', (col) => col.notNull())
    .addColumn('created_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .execute();
  // Names are unique regardless of case so "ACME CORP" cannot pose as "Acme Corp".
  await sql`create unique index tenants_name_key on tenants (lower(name))`.execute(db);

  await db.schema
    .createTable('users')
    .addColumn('id', 'uuid', (col) => col.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('tenant_id', 'uuid', (col) => col.notNull().references('tenants.id'))
    .addColumn('email', 'text', (col) => col.notNull())
    .addColumn('hashed_password', 'text', (col) => col.notNull())
    .addColumn('created_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addUniqueConstraint('users_email_key', ['email'])
    .execute();
  await db.schema.createIndex('users_tenant_id_idx').on('users').column('tenant_id').execute();

  await db.schema
    .createTable('tasks')
    .addColumn('id', 'uuid', (col) => col.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('tenant_id', 'uuid', (col) => col.notNull().references('tenants.id'))
    .addColumn('kind', 'text', (col) => col.notNull().defaultTo('task').check(sql`kind in ('task', 'aoa')`))
    .addColumn('status', 'text', (col) =>
      col
        .notNull()
        .defaultTo('queued')
        .check(sql`status in ('queued', 'in_progress', 'success', 'failed', 'canceled')`),
    )
    .addColumn('payload', 'jsonb', (col) => col.notNull())
    .addColumn('result', 'jsonb')
    .addColumn('callback_url', 'text')
    .addColumn('retry_count', 'integer', (col) => col.notNull().defaultTo(0).check(sql`retry_count >= 0`))
    .addColumn('max_retries', 'integer', (col) => col.notNull().defaultTo(0).check(sql`max_retries >= 0`))
    .addColumn('timeout_seconds', 'integer', (col) => col.check(sql`timeout_seconds > 0`))
    .addColumn('on_success_next_task', 'jsonb')
    .addColumn('next_task_id', 'uuid', (col) => col.references('tasks.id'))
    .addColumn('created_by', 'uuid', (col) => col.references('users.id'))
    // Which delivery of the task's job runs the current attempt (pg-boss retryCount): fences off a
    // delivery that lost its claim, e.g. one whose worker stalled past the job's expiry.
    .addColumn('claimed_delivery', 'integer')
    .addColumn('scheduled_for', 'timestamptz')
    .addColumn('started_at', 'timestamptz')
    .addColumn('finished_at', 'timestamptz')
    .addColumn('created_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema.createIndex('tasks_tenant_id_created_at_idx').on('tasks').columns(['tenant_id', 'created_at']).execute();
  // A task chains to at most one successor: the database refuses a second one.
  await sql`create unique index tasks_next_task_id_key on tasks (next_task_id) where next_task_id is not null`.execute(db);
  await sql`create index tasks_active_kind_idx on tasks (tenant_id, kind) where status in ('queued', 'in_progress')`.execute(db);
  await db.schema.createIndex('tasks_created_by_idx').on('tasks').column('created_by').execute();

  await db.schema
    .createTable('task_logs')
    .addColumn('id', 'uuid', (col) => col.primaryKey().defaultTo(sql`gen_random_uuid()`))
    // Orders entries written in the same transaction, where timestamps can tie.
    .addColumn('seq', 'bigint', (col) => col.notNull().generatedAlwaysAsIdentity())
    .addColumn('task_id', 'uuid', (col) => col.notNull().references('tasks.id'))
    .addColumn('tenant_id', 'uuid', (col) => col.notNull().references('tenants.id'))
    .addColumn('timestamp', 'timestamptz', (col) => col.notNull().defaultTo(sql`clock_timestamp()`))
    .addColumn('message', 'text', (col) => col.notNull())
    .execute();
  await db.schema.createIndex('task_logs_tenant_task_seq_idx').on('task_logs').columns(['tenant_id', 'task_id', 'seq']).execute();
  await db.schema.createIndex('task_logs_task_id_idx').on('task_logs').column('task_id').execute();

  await db.schema
    .createTable('worker_heartbeats')
    .addColumn('id', 'uuid', (col) => col.primaryKey())
    .addColumn('hostname', 'text', (col) => col.notNull())
    .addColumn('pid', 'integer', (col) => col.notNull())
    .addColumn('started_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('last_seen_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema.createIndex('worker_heartbeats_last_seen_at_idx').on('worker_heartbeats').column('last_seen_at').execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const table of ['worker_heartbeats', 'task_logs', 'tasks', 'users', 'tenants']) {
    await db.schema.dropTable(table).execute();
  }
}
