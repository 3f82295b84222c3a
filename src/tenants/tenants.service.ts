import { API_KEY_PREFIX, requiresRole } from '../auth/auth.middleware.js';
import type { InvitationRedeemer } from '../auth/auth.service.js';
import type { TokenVersions } from '../auth/token-versions.js';
import type { Db } from '../db/client.js';
import { AppError } from '../errors.js';
import { roleAtLeast, type Principal, type Role } from '../http/types.js';
import { isUuid } from '../lib/uuid.js';
import { newSecret, secretHash } from './secrets.js';
import { acceptInvitation, invitationAcceptable, tenantStore } from './tenants.repository.js';
import type { ApiKeyOut, CreatedApiKeyOut, CreatedInvitationOut, InvitationOut, MemberOut } from './tenants.schemas.js';

/** How long an invitation may be accepted. */
export const INVITATION_VALID_DAYS = 7;
const INVITATION_PREFIX = 'inv_';
/** How much of a key its listing shows: the prefix and 8 of its 43 random characters. */
const SHOWN_KEY_CHARACTERS = API_KEY_PREFIX.length + 8;

const userNotFound = () => new AppError('not_found', 'User not found');
const invitationNotFound = () => new AppError('not_found', 'Invitation not found');
const apiKeyNotFound = () => new AppError('not_found', 'API key not found');
const lastOwner = () => new AppError('conflict', 'A tenant must keep at least one owner');

/**
 * A tenant's members, invitations and API keys. Who may do what: admins manage invitations and
 * API keys and remove members and viewers; owners also change roles and remove admins and owners.
 * Nobody may invite, or make a key, with a role above their own. The rules are the same for a
 * user acting on itself: an owner may step down or leave while another owner remains, an admin
 * asks an owner. A tenant always keeps an owner.
 */
export interface TenantService {
  listUsers(auth: Principal): Promise<MemberOut[]>;
  changeRole(auth: Principal, userId: string, role: Role): Promise<MemberOut>;
  /** The user's tokens and API keys stop working at once; its tasks and invitations stay. */
  removeUser(auth: Principal, userId: string): Promise<void>;
  invite(auth: Principal, invitation: { email: string; role: Role }): Promise<CreatedInvitationOut>;
  listInvitations(auth: Principal): Promise<InvitationOut[]>;
  revokeInvitation(auth: Principal, invitationId: string): Promise<void>;
  createApiKey(auth: Principal, key: { name: string; role: Role }): Promise<CreatedApiKeyOut>;
  listApiKeys(auth: Principal): Promise<ApiKeyOut[]>;
  /** The key is refused from the next request on, by every API process. */
  revokeApiKey(auth: Principal, keyId: string): Promise<void>;
}

const iso = (date: Date) => date.toISOString();

function toMemberOut(row: { id: string; email: string; role: Role; created_at: Date }): MemberOut {
  return { id: row.id, email: row.email, role: row.role, created_at: iso(row.created_at) };
}

function toInvitationOut(row: {
  id: string;
  email: string;
  role: Role;
  created_by: string | null;
  created_at: Date;
  expires_at: Date;
  accepted_at: Date | null;
}): InvitationOut {
  return {
    id: row.id,
    email: row.email,
    role: row.role,
    created_by: row.created_by,
    created_at: iso(row.created_at),
    expires_at: iso(row.expires_at),
    accepted_at: row.accepted_at && iso(row.accepted_at),
  };
}

function toApiKeyOut(row: {
  id: string;
  name: string;
  role: Role;
  prefix: string;
  created_by: string;
  created_at: Date;
  last_used_at: Date | null;
}): ApiKeyOut {
  return {
    id: row.id,
    name: row.name,
    role: row.role,
    prefix: row.prefix,
    created_by: row.created_by,
    created_at: iso(row.created_at),
    last_used_at: row.last_used_at && iso(row.last_used_at),
  };
}

/** 403 naming `role` unless the caller has it: to act at all, or to hand out as much. */
function requireRole(auth: Principal, role: Role): void {
  if (!roleAtLeast(auth.role, role)) throw requiresRole(role);
}

/**
 * `versions` and `apiKeys` are this process's memories of users and keys, told at once of what
 * this process changes (other processes hear of it through NOTIFY).
 */
export function createTenantService(deps: { db: Db; versions: TokenVersions; apiKeys: { forget(keyHash: string): void } }): TenantService {
  const { db, versions, apiKeys } = deps;

  /**
   * Runs `change` on the user in a transaction that holds the tenant's owners locked, so that of
   * simultaneous changes none can take away the last owner.
   */
  async function changeUser<T>(
    auth: Principal,
    userId: string,
    change: (store: ReturnType<typeof tenantStore>, user: { role: Role }, owners: number) => Promise<T>,
  ): Promise<T> {
    if (!isUuid(userId)) throw userNotFound();
    const result = await db.transaction().execute(async (trx) => {
      const store = tenantStore(trx, auth.tenantId);
      const owners = await store.lockOwners();
      const user = await store.findUserForUpdate(userId);
      if (!user) throw userNotFound();
      return change(store, user, owners.length);
    });
    versions.forget(userId);
    return result;
  }

  return {
    async listUsers(auth) {
      return (await tenantStore(db, auth.tenantId).listUsers()).map(toMemberOut);
    },

    async changeRole(auth, userId, role) {
      requireRole(auth, 'owner');
      return changeUser(auth, userId, async (store, user, owners) => {
        if (user.role === 'owner' && role !== 'owner' && owners === 1) throw lastOwner();
        return toMemberOut(await store.setRole(userId, role));
      });
    },

    async removeUser(auth, userId) {
      await changeUser(auth, userId, async (store, user, owners) => {
        if (roleAtLeast(user.role, 'admin')) requireRole(auth, 'owner');
        if (user.role === 'owner' && owners === 1) throw lastOwner();
        await store.deleteUser(userId);
      });
    },

    async invite(auth, { email, role }) {
      requireRole(auth, role);
      const { secret, hash } = newSecret(INVITATION_PREFIX);
      const row = await tenantStore(db, auth.tenantId).insertInvitation({
        email,
        role,
        tokenHash: hash,
        createdBy: auth.userId,
        validDays: INVITATION_VALID_DAYS,
      });
      return { ...toInvitationOut(row), token: secret };
    },

    async listInvitations(auth) {
      return (await tenantStore(db, auth.tenantId).listInvitations()).map(toInvitationOut);
    },

    async revokeInvitation(auth, invitationId) {
      if (!isUuid(invitationId) || !(await tenantStore(db, auth.tenantId).deleteInvitation(invitationId))) throw invitationNotFound();
    },

    async createApiKey(auth, { name, role }) {
      // A key makes no keys: those would outlive its revocation, a way to keep access once found out.
      if (auth.apiKeyId) throw new AppError('forbidden', 'API keys are made by users, not by other API keys');
      requireRole(auth, role);
      const { secret, hash } = newSecret(API_KEY_PREFIX);
      const row = await tenantStore(db, auth.tenantId).insertApiKey({
        name,
        role,
        keyHash: hash,
        prefix: secret.slice(0, SHOWN_KEY_CHARACTERS),
        createdBy: auth.userId,
      });
      return { ...toApiKeyOut(row), key: secret };
    },

    async listApiKeys(auth) {
      return (await tenantStore(db, auth.tenantId).listApiKeys()).map(toApiKeyOut);
    },

    async revokeApiKey(auth, keyId) {
      const keyHash = isUuid(keyId) ? await tenantStore(db, auth.tenantId).deleteApiKey(keyId) : undefined;
      if (!keyHash) throw apiKeyNotFound();
      apiKeys.forget(keyHash);
    },
  };
}

/** Registration's way into the invitations: by the token's hash, and for the invited email only. */
export function createInvitationRedeemer(db: Db): InvitationRedeemer {
  return {
    acceptable: (token, email) => invitationAcceptable(db, secretHash(token), email),
    async redeem(trx, token, email) {
      const accepted = await acceptInvitation(trx, secretHash(token), email);
      return accepted && { tenantId: accepted.tenant_id, tenantName: accepted.tenant_name, role: accepted.role };
    },
  };
}
