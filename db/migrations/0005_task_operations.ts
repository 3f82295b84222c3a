import { sql, type Kysely } from 'kysely';

// Frozen in time: this file never imports application code.

export async function up(db: Kysely<any>): Promise<void> {
  // A retry is a new task that re-runs a failed or canceled one. The link survives the
  // original's deletion by retention as a null: the retry itself is a task in its own right.
  await db.schema.alterTable('tasks').addColumn('retry_of', 'uuid').execute();
  await sql`alter table tasks add constraint tasks_retry_of_fkey
            foreign key (tenant_id, retry_of) references tasks (tenant_id, id) on delete set null (retry_of)`.execute(db);
  // Looked up only to find a task's retries, and deleting a task must find what points at it.
  await sql`create index tasks_retry_of_idx on tasks (tenant_id, retry_of) where retry_of is not null`.execute(db);

  // The answers given to requests that carried an Idempotency-Key, per tenant, for 24 hours. A
  // row without a status is a request still being answered.
  await db.schema
    .createTable('idempotency_keys')
    .addColumn('tenant_id', 'uuid', (col) => col.notNull().references('tenants.id').onDelete('cascade'))
    .addColumn('key', 'text', (col) => col.notNull())
    .addColumn('request_hash', 'text', (col) => col.notNull())
    .addColumn('status', 'integer')
    .addColumn('content_type', 'text')
    .addColumn('body', 'text')
    .addColumn('created_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('idempotency_keys_pkey', ['tenant_id', 'key'])
    .execute();
  await db.schema.createIndex('idempotency_keys_created_at_idx').on('idempotency_keys').column('created_at').execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('idempotency_keys').execute();
  await sql`drop index tasks_retry_of_idx`.execute(db);
  await sql`alter table tasks drop constraint tasks_retry_of_fkey`.execute(db);
  await db.schema.alterTable('tasks').dropColumn('retry_of').execute();
}
