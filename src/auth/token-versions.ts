import type { Db } from '../db/client.js';
import { createNotifiedCache } from '../db/notified-cache.js';
import type { Notifications } from '../db/notifications.js';
import type { Role } from '../http/types.js';

/** Sent (by a trigger on users) with the user's id when the user's tokens are revoked, its role changes or the user is removed. */
export const USER_TOKENS_CHANNEL = 'autonomos_user_tokens';
/** Users whose token version this process remembers; the least recently looked up go first. */
const USERS_KEPT = 10_000;
/** A safety net beneath the notifications: a remembered version is looked up again after this long. */
const KEPT_FOR_MS = 60_000;

/** The user a token names, as the database knows it now (tenant, token version, role); undefined when the user is gone. */
export type TokenHolder = { tenantId: string; tokenVersion: number; role: Role } | undefined;

export interface TokenVersions {
  /** Who the user is now: its tenant and current token version, or undefined if it no longer exists. */
  holder(userId: string): Promise<TokenHolder>;
  /** Forgets the user at once (this process has just revoked its tokens, changed its role or removed it). */
  forget(userId: string): void;
}

/**
 * Every authenticated request must know that its token's user still exists and has not revoked
 * its tokens, without a database round trip each time. Answers are remembered and forgotten the
 * moment any process changes them (NOTIFY from a trigger on users); while notifications do not
 * arrive (their connection is being re-made), nothing remembered is trusted.
 */
export function createTokenVersions(db: Db, notifications: Notifications): TokenVersions {
  const holders = createNotifiedCache<TokenHolder>(notifications, {
    channel: USER_TOKENS_CHANNEL,
    maxEntries: USERS_KEPT,
    maxAgeMs: KEPT_FOR_MS,
    async lookUp(userId) {
      const row = await db.selectFrom('users').select(['tenant_id', 'token_version', 'role']).where('id', '=', userId).executeTakeFirst();
      return row ? { tenantId: row.tenant_id, tokenVersion: row.token_version, role: row.role } : undefined;
    },
  });
  return { holder: (userId) => holders.get(userId), forget: (userId) => holders.forget(userId) };
}
