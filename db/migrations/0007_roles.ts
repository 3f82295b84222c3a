import { sql, type Kysely } from 'kysely';

// Frozen in time: this file never imports application code.

export async function up(db: Kysely<any>): Promise<void> {
  // Every user so far registered a tenant of their own: each is its owner.
  await db.schema
    .alterTable('users')
    .addColumn('role', 'text', (col) => col.notNull().defaultTo('owner').check(sql`role in ('viewer', 'member', 'admin', 'owner')`))
    .execute();
  // Processes remember each user's role with their token version: a change of either is told.
  await sql`drop trigger users_tokens_changed on users`.execute(db);
  await sql`create trigger users_tokens_changed after update of token_version, role or delete on users
            for each row execute function autonomos_user_tokens_changed()`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop trigger users_tokens_changed on users`.execute(db);
  await sql`create trigger users_tokens_changed after update of token_version or delete on users
            for each row execute function autonomos_user_tokens_changed()`.execute(db);
  await db.schema.alterTable('users').dropColumn('role').execute();
}
