import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import type { Role } from '../http/types.js';

export interface UserWithTenant {
  id: string;
  email: string;
  hashed_password: string;
  token_version: number;
  role: Role;
  tenant_id: string;
  tenant_name: string;
  created_at: Date;
}

function usersWithTenant(db: Kysely<Database>) {
  return db
    .selectFrom('users')
    .innerJoin('tenants', 'tenants.id', 'users.tenant_id')
    .select([
      'users.id',
      'users.email',
      'users.hashed_password',
      'users.token_version',
      'users.role',
      'users.tenant_id',
      'tenants.name as tenant_name',
      'users.created_at',
    ]);
}

export async function emailExists(db: Kysely<Database>, email: string): Promise<boolean> {
  const row = await db.selectFrom('users').select('id').where('email', '=', email).executeTakeFirst();
  return row !== undefined;
}

export async function insertTenant(db: Kysely<Database>, name: string) {
  return db.insertInto('tenants').values({ name }).returning(['id', 'name', 'created_at']).executeTakeFirstOrThrow();
}

export async function insertUser(
  db: Kysely<Database>,
  user: { tenantId: string; email: string; hashedPassword: string; role?: Role },
) {
  return db
    .insertInto('users')
    .values({ tenant_id: user.tenantId, email: user.email, hashed_password: user.hashedPassword, role: user.role })
    .returning(['id', 'email', 'tenant_id', 'role', 'created_at'])
    .executeTakeFirstOrThrow();
}

/** Login looks a user up by email alone: it is how the tenant is found in the first place. */
export async function findUserByEmail(db: Kysely<Database>, email: string): Promise<UserWithTenant | undefined> {
  return usersWithTenant(db).where('users.email', '=', email).executeTakeFirst();
}

export async function findUserInTenant(
  db: Kysely<Database>,
  tenantId: string,
  userId: string,
): Promise<UserWithTenant | undefined> {
  return usersWithTenant(db).where('users.tenant_id', '=', tenantId).where('users.id', '=', userId).executeTakeFirst();
}

/** Raises the user's token version: every token issued to it so far stops working. */
export async function revokeTokens(db: Kysely<Database>, tenantId: string, userId: string): Promise<void> {
  await db
    .updateTable('users')
    .set((eb) => ({ token_version: eb('token_version', '+', 1) }))
    .where('tenant_id', '=', tenantId)
    .where('id', '=', userId)
    .execute();
}
