import type { Db } from '../db/client.js';
import type { Principal } from '../http/types.js';
import { newSigningSecret } from '../lib/standard-webhooks.js';
import { webhookSecretStore, type WebhookSecretsRow } from './integrations.repository.js';
import type { WebhookSecretOut } from './integrations.schemas.js';

/** After a rotation the replaced secret still signs for this long, so receivers can switch over. */
export const ROTATION_WINDOW_SECONDS = 24 * 60 * 60;

export interface WebhookSecrets {
  /** The tenant's current secret (made on first use), for its admins. */
  get(auth: Principal): Promise<WebhookSecretOut>;
  /** A new current secret; the replaced one keeps signing for ROTATION_WINDOW_SECONDS. */
  rotate(auth: Principal): Promise<WebhookSecretOut>;
  /** The secrets a callback of the tenant is signed with now: the current one, then the previous one in its window. */
  signingSecrets(tenantId: string): Promise<string[]>;
}

function toOut(row: WebhookSecretsRow): WebhookSecretOut {
  return {
    secret: row.secret,
    created_at: row.created_at.toISOString(),
    previous_secret_expires_at: row.previous_expires_at?.toISOString() ?? null,
  };
}

/**
 * Each tenant's Standard Webhooks signing secret. It is made the first time anything needs it
 * (an admin reading it, or the tenant's first callback), so tenants created before signing
 * existed, and tenants created by any path, all have one without a step of their own.
 */
export function createWebhookSecrets(db: Db): WebhookSecrets {
  async function current(tenantId: string): Promise<WebhookSecretsRow> {
    const store = webhookSecretStore(db, tenantId);
    const found = await store.find();
    if (found) return found;
    await store.insertIfMissing(newSigningSecret());
    return (await store.find())!;
  }

  return {
    async get(auth) {
      return toOut(await current(auth.tenantId));
    },

    async rotate(auth) {
      return toOut(await webhookSecretStore(db, auth.tenantId).rotate(newSigningSecret(), ROTATION_WINDOW_SECONDS));
    },

    async signingSecrets(tenantId) {
      const row = await current(tenantId);
      return row.previous_secret ? [row.secret, row.previous_secret] : [row.secret];
    },
  };
}
