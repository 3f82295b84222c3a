import { sql, type Kysely } from 'kysely';

// Frozen in time: this file never imports application code.

export async function up(db: Kysely<any>): Promise<void> {
  // An audit entry's tenant is already held by its key to its task, (tenant_id, task_id) →
  // tasks (tenant_id, id), both columns not null, and a task's tenant by the task's own key to
  // tenants; neither a tenant nor a task can go while the rows naming it stay. This third key
  // proved nothing more, and checking it cost every audit entry a lookup of its tenant's row
  // with a share lock on it, which every creation, claim and outcome of the tenant then took in
  // turn (four per task, a quarter of a creation statement's time in the database:
  // docs/performance.md).
  await sql`alter table task_logs drop constraint task_logs_tenant_id_fkey`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`alter table task_logs add constraint task_logs_tenant_id_fkey foreign key (tenant_id) references tenants (id)`.execute(db);
}
