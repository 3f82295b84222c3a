import { sql, type Kysely } from 'kysely';

// Frozen in time: this file never imports application code.

const ROLE_CHECK = sql`role in ('viewer', 'member', 'admin', 'owner')`;

export async function up(db: Kysely<any>): Promise<void> {
  // Invitations to join a tenant. Only a hash of the token is kept: whoever reads the table
  // cannot join with it. Revoking one deletes it.
  await db.schema
    .createTable('invitations')
    .addColumn('id', 'uuid', (col) => col.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('tenant_id', 'uuid', (col) => col.notNull().references('tenants.id').onDelete('cascade'))
    .addColumn('email', 'text', (col) => col.notNull())
    .addColumn('role', 'text', (col) => col.notNull().check(ROLE_CHECK))
    .addColumn('token_hash', 'text', (col) => col.notNull().unique())
    .addColumn('created_by', 'uuid')
    .addColumn('created_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('expires_at', 'timestamptz', (col) => col.notNull())
    .addColumn('accepted_at', 'timestamptz')
    .execute();
  // As for tasks: a removed user's invitations stay (with their history), only the link goes.
  await sql`alter table invitations add constraint invitations_created_by_fkey
            foreign key (tenant_id, created_by) references users (tenant_id, id) on delete set null (created_by)`.execute(db);
  await db.schema.createIndex('invitations_tenant_id_created_at_idx').on('invitations').columns(['tenant_id', 'created_at']).execute();
  // Serves the foreign key when a user is removed.
  await db.schema.createIndex('invitations_created_by_idx').on('invitations').columns(['tenant_id', 'created_by']).execute();

  // API keys: bearer credentials of a user, for programs. Only a hash of the key is kept; `prefix`
  // (the first characters) lets people recognise a key. A key ends with its user.
  await db.schema
    .createTable('api_keys')
    .addColumn('id', 'uuid', (col) => col.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('tenant_id', 'uuid', (col) => col.notNull().references('tenants.id').onDelete('cascade'))
    .addColumn('name', 'text', (col) => col.notNull())
    .addColumn('role', 'text', (col) => col.notNull().check(ROLE_CHECK))
    .addColumn('key_hash', 'text', (col) => col.notNull().unique())
    .addColumn('prefix', 'text', (col) => col.notNull())
    .addColumn('created_by', 'uuid', (col) => col.notNull())
    .addColumn('created_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('last_used_at', 'timestamptz')
    .execute();
  await sql`alter table api_keys add constraint api_keys_created_by_fkey
            foreign key (tenant_id, created_by) references users (tenant_id, id) on delete cascade`.execute(db);
  // The listing (newest first), and the foreign key's cascade when a user is removed.
  await db.schema.createIndex('api_keys_tenant_id_created_at_idx').on('api_keys').columns(['tenant_id', 'created_at']).execute();
  await db.schema.createIndex('api_keys_created_by_idx').on('api_keys').columns(['tenant_id', 'created_by']).execute();

  // Processes remember keys by their hash, and forget one when told it was revoked (deleted, also
  // by its user's removal) or its role changed (by an operator: the API never changes it).
  await sql`
    create function autonomos_api_key_changed() returns trigger language plpgsql as $$
    begin
      perform pg_notify('autonomos_api_keys', old.key_hash);
      return null;
    end
    $$`.execute(db);
  await sql`create trigger api_keys_changed after update of role or delete on api_keys
            for each row execute function autonomos_api_key_changed()`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop trigger api_keys_changed on api_keys`.execute(db);
  await sql`drop function autonomos_api_key_changed()`.execute(db);
  await db.schema.dropTable('api_keys').execute();
  await db.schema.dropTable('invitations').execute();
}
