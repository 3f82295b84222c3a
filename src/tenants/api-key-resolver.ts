import { API_KEY_PREFIX, type ApiKeyResolver } from '../auth/auth.middleware.js';
import type { TokenVersions } from '../auth/token-versions.js';
import type { Db } from '../db/client.js';
import { createNotifiedCache } from '../db/notified-cache.js';
import type { Notifications } from '../db/notifications.js';
import { roleAtLeast, type Role } from '../http/types.js';
import type { Logger } from '../logger.js';
import { isSecretOfShape, secretHash } from './secrets.js';
import { findApiKeyByHash, tenantStore } from './tenants.repository.js';

/** Sent (by a trigger on api_keys) with a key's hash when it is revoked, its user removed, or its role changed. */
const API_KEYS_CHANNEL = 'autonomos_api_keys';
/** Keys this process remembers; the least recently used go first. */
const KEYS_KEPT = 10_000;
/** A safety net beneath the notifications: a remembered key is looked up again after this long. */
const KEPT_FOR_MS = 60_000;
/** `last_used_at` is written at most this often per key and process: not a write per request. */
const LAST_USE_PRECISION_MS = 60_000;

/** A key as this process remembers it; `lastUsedAt` (ms) is what it last wrote, or read. */
interface KnownKey {
  id: string;
  tenantId: string;
  createdBy: string;
  role: Role;
  lastUsedAt: number | undefined;
}

/**
 * API keys for the authentication middleware. A key acts as its user, with the key's role but
 * never more than the user has now, and not at all once the user is removed: both are read from
 * `versions`, which follows every change to users. Keys are remembered like users' token
 * versions (forgotten when any process revokes one), and each use is written to `last_used_at`
 * at most once a minute, after the answer rather than before it.
 */
export function createApiKeyResolver(deps: {
  db: Db;
  notifications: Notifications;
  versions: TokenVersions;
  logger: Logger;
}): ApiKeyResolver & { forget(keyHash: string): void } {
  const { db, versions, logger } = deps;
  const keys = createNotifiedCache<KnownKey | undefined>(deps.notifications, {
    channel: API_KEYS_CHANNEL,
    maxEntries: KEYS_KEPT,
    maxAgeMs: KEPT_FOR_MS,
    async lookUp(keyHash) {
      const row = await findApiKeyByHash(db, keyHash);
      return (
        row && { id: row.id, tenantId: row.tenant_id, createdBy: row.created_by, role: row.role, lastUsedAt: row.last_used_at?.getTime() }
      );
    },
  });

  function noteUse(key: KnownKey): void {
    const now = Date.now();
    if (key.lastUsedAt !== undefined && now - key.lastUsedAt < LAST_USE_PRECISION_MS) return;
    key.lastUsedAt = now;
    // A lost write costs a minute of precision: not worth failing the request for.
    tenantStore(db, key.tenantId)
      .recordApiKeyUse(key.id)
      .catch((error: unknown) => logger.info('API key use not recorded', { error, api_key_id: key.id }));
  }

  return {
    async principalFor(credential) {
      if (!isSecretOfShape(API_KEY_PREFIX, credential)) return undefined;
      const key = await keys.get(secretHash(credential));
      if (!key) return undefined;
      const user = await versions.holder(key.createdBy);
      if (!user || user.tenantId !== key.tenantId) return undefined;
      noteUse(key);
      const role = roleAtLeast(user.role, key.role) ? key.role : user.role;
      return { tenantId: key.tenantId, userId: key.createdBy, role, apiKeyId: key.id };
    },
    forget: (keyHash) => keys.forget(keyHash),
  };
}
