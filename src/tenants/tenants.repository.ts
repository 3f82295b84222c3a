import { sql, type ExpressionBuilder, type Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import type { Role } from '../http/types.js';

const MEMBER_COLUMNS = ['id', 'email', 'role', 'created_at'] as const;
const INVITATION_COLUMNS = ['id', 'email', 'role', 'created_by', 'created_at', 'expires_at', 'accepted_at'] as const;
const API_KEY_COLUMNS = ['id', 'name', 'role', 'prefix', 'created_by', 'created_at', 'last_used_at'] as const;

/**
 * A tenant's members, invitations and API keys, bound to the tenant: the only way to reach them
 * from a request, so no query can forget the tenant.
 */
export function tenantStore(db: Kysely<Database>, tenantId: string) {
  const users = () => db.selectFrom('users').where('tenant_id', '=', tenantId);

  return {
    async listUsers() {
      return users().select(MEMBER_COLUMNS).orderBy('created_at').orderBy('id').execute();
    },

    /**
     * Locks the tenant's owners until the transaction ends, in one order (no deadlocks): changes
     * that could take the last owner away queue up, and each sees how many the one before left.
     */
    async lockOwners(): Promise<string[]> {
      const rows = await users().select('id').where('role', '=', 'owner').orderBy('id').forUpdate().execute();
      return rows.map((row) => row.id);
    },

    async findUserForUpdate(id: string) {
      return users().select(MEMBER_COLUMNS).where('id', '=', id).forUpdate().executeTakeFirst();
    },

    async setRole(id: string, role: Role) {
      return db
        .updateTable('users')
        .set({ role })
        .where('tenant_id', '=', tenantId)
        .where('id', '=', id)
        .returning(MEMBER_COLUMNS)
        .executeTakeFirstOrThrow();
    },

    /** Their tasks and invitations stay (without the link to them), their API keys go: foreign keys do both. */
    /**
     * Removes a user, and the invitations it made that nobody accepted yet: whoever is removed must
     * not be able to come back through an invitation sent on its way out.
     */
    async deleteUser(id: string): Promise<void> {
      await db
        .deleteFrom('invitations')
        .where('tenant_id', '=', tenantId)
        .where('created_by', '=', id)
        .where('accepted_at', 'is', null)
        .execute();
      await db.deleteFrom('users').where('tenant_id', '=', tenantId).where('id', '=', id).execute();
    },

    async insertInvitation(invitation: { email: string; role: Role; tokenHash: string; createdBy: string; validDays: number }) {
      return db
        .insertInto('invitations')
        .values({
          tenant_id: tenantId,
          email: invitation.email,
          role: invitation.role,
          token_hash: invitation.tokenHash,
          created_by: invitation.createdBy,
          expires_at: sql<Date>`now() + make_interval(days => ${invitation.validDays})`,
        })
        .returning(INVITATION_COLUMNS)
        .executeTakeFirstOrThrow();
    },

    async listInvitations() {
      return db
        .selectFrom('invitations')
        .select(INVITATION_COLUMNS)
        .where('tenant_id', '=', tenantId)
        .orderBy('created_at', 'desc')
        .orderBy('id')
        .execute();
    },

    /** Whether there was such an invitation. */
    async deleteInvitation(id: string): Promise<boolean> {
      const deleted = await db.deleteFrom('invitations').where('tenant_id', '=', tenantId).where('id', '=', id).returning('id').executeTakeFirst();
      return deleted !== undefined;
    },

    async insertApiKey(key: { name: string; role: Role; keyHash: string; prefix: string; createdBy: string }) {
      return db
        .insertInto('api_keys')
        .values({ tenant_id: tenantId, name: key.name, role: key.role, key_hash: key.keyHash, prefix: key.prefix, created_by: key.createdBy })
        .returning(API_KEY_COLUMNS)
        .executeTakeFirstOrThrow();
    },

    async listApiKeys() {
      return db
        .selectFrom('api_keys')
        .select(API_KEY_COLUMNS)
        .where('tenant_id', '=', tenantId)
        .orderBy('created_at', 'desc')
        .orderBy('id')
        .execute();
    },

    /** The deleted key's hash, for the caches that remember it; undefined when there was no such key. */
    async deleteApiKey(id: string): Promise<string | undefined> {
      const deleted = await db.deleteFrom('api_keys').where('tenant_id', '=', tenantId).where('id', '=', id).returning('key_hash').executeTakeFirst();
      return deleted?.key_hash;
    },

    async recordApiKeyUse(id: string): Promise<void> {
      await db.updateTable('api_keys').set({ last_used_at: sql`now()` }).where('tenant_id', '=', tenantId).where('id', '=', id).execute();
    },
  };
}

// Invitations and API keys are found by their secret's hash alone: it is how their tenant is
// found in the first place.

/** The invitation of this token that `email` may accept now: for that address, not accepted, not expired. */
function acceptableBy(tokenHash: string, email: string) {
  return (eb: ExpressionBuilder<Database, 'invitations'>) =>
    eb.and([
      eb('invitations.token_hash', '=', tokenHash),
      eb('invitations.email', '=', email),
      eb('invitations.accepted_at', 'is', null),
      eb('invitations.expires_at', '>', sql<Date>`now()`),
    ]);
}

export async function invitationAcceptable(db: Kysely<Database>, tokenHash: string, email: string): Promise<boolean> {
  return (await db.selectFrom('invitations').select('id').where(acceptableBy(tokenHash, email)).executeTakeFirst()) !== undefined;
}

/**
 * Marks the invitation accepted, if `email` may accept it now: its tenant and role, or undefined.
 * One statement: of simultaneous acceptances, the first takes the row's lock and the others,
 * once it commits, find it accepted.
 */
export async function acceptInvitation(db: Kysely<Database>, tokenHash: string, email: string) {
  return db
    .updateTable('invitations')
    .from('tenants')
    .set({ accepted_at: sql`now()` })
    .whereRef('tenants.id', '=', 'invitations.tenant_id')
    .where(acceptableBy(tokenHash, email))
    .returning(['invitations.tenant_id', 'invitations.role', 'tenants.name as tenant_name'])
    .executeTakeFirst();
}

export async function findApiKeyByHash(db: Kysely<Database>, keyHash: string) {
  return db.selectFrom('api_keys').select(['id', 'tenant_id', 'role', 'created_by', 'last_used_at']).where('key_hash', '=', keyHash).executeTakeFirst();
}
