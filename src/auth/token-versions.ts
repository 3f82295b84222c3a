import type { Db } from '../db/client.js';
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
  /** Forgets the user at once (this process has just revoked its tokens). */
  forget(userId: string): void;
}

/**
 * Every authenticated request must know that its token's user still exists and has not revoked
 * its tokens, without a database round trip each time. Answers are remembered and forgotten the
 * moment any process changes them (NOTIFY from a trigger on users); while notifications do not
 * arrive (their connection is being re-made), nothing remembered is trusted.
 */
export function createTokenVersions(db: Db, notifications: Notifications): TokenVersions {
  const known = new Map<string, { holder: TokenHolder; at: number }>();
  const lookups = new Map<string, Promise<TokenHolder>>();
  // Raised by every change heard of: a lookup that began before it may have read the old state.
  let changes = 0;
  notifications.subscribe(USER_TOKENS_CHANNEL, (userId) => {
    changes += 1;
    known.delete(userId);
  });
  notifications.onListening(() => {
    changes += 1;
    known.clear();
  });

  async function lookUp(userId: string): Promise<TokenHolder> {
    const changesBefore = changes;
    const row = await db.selectFrom('users').select(['tenant_id', 'token_version', 'role']).where('id', '=', userId).executeTakeFirst();
    const holder: TokenHolder = row ? { tenantId: row.tenant_id, tokenVersion: row.token_version, role: row.role } : undefined;
    if (changes === changesBefore && notifications.listening) {
      if (known.size >= USERS_KEPT) known.delete(known.keys().next().value!);
      known.set(userId, { holder, at: Date.now() });
    }
    return holder;
  }

  return {
    async holder(userId) {
      const remembered = known.get(userId);
      if (remembered && notifications.listening && Date.now() - remembered.at < KEPT_FOR_MS) {
        // Re-inserted so that the users looked up most recently are the last to be dropped.
        known.delete(userId);
        known.set(userId, remembered);
        return remembered.holder;
      }
      let lookup = lookups.get(userId);
      if (!lookup) {
        lookup = lookUp(userId).finally(() => lookups.delete(userId));
        lookups.set(userId, lookup);
      }
      return lookup;
    },
    forget(userId) {
      changes += 1;
      known.delete(userId);
    },
  };
}
