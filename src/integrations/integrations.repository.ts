import { sql, type Kysely } from 'kysely';
import type { Database } from '../db/schema.js';

export interface SlackIntegrationRow {
  tenant_id: string;
  encrypted_webhook_url: string;
  default_channel: string | null;
  allowed_channels: string[] | null;
  created_at: Date;
  updated_at: Date;
}

/** The one door to a tenant's Slack integration: every statement is scoped to `tenantId`. */
export function slackIntegrationStore(db: Kysely<Database>, tenantId: string) {
  return {
    async find(): Promise<SlackIntegrationRow | undefined> {
      return db.selectFrom('tenant_slack_integrations').selectAll().where('tenant_id', '=', tenantId).executeTakeFirst();
    },

    /** Creates or replaces the integration (PUT semantics: every field is as given). */
    async put(values: { encryptedWebhookUrl: string; defaultChannel: string | null; allowedChannels: string[] | null }): Promise<SlackIntegrationRow> {
      const row = {
        encrypted_webhook_url: values.encryptedWebhookUrl,
        default_channel: values.defaultChannel,
        allowed_channels: values.allowedChannels,
      };
      return db
        .insertInto('tenant_slack_integrations')
        .values({ tenant_id: tenantId, ...row })
        .onConflict((oc) => oc.column('tenant_id').doUpdateSet({ ...row, updated_at: sql`now()` }))
        .returningAll()
        .executeTakeFirstOrThrow();
    },

    /** Whether there was one to delete. */
    async delete(): Promise<boolean> {
      const result = await db.deleteFrom('tenant_slack_integrations').where('tenant_id', '=', tenantId).executeTakeFirst();
      return result.numDeletedRows > 0n;
    },

    /** Replaces the ciphertext only if it is still `expected`: a PUT in between wins over a re-encryption. */
    async replaceCiphertext(expected: string, replacement: string): Promise<boolean> {
      const result = await db
        .updateTable('tenant_slack_integrations')
        .set({ encrypted_webhook_url: replacement })
        .where('tenant_id', '=', tenantId)
        .where('encrypted_webhook_url', '=', expected)
        .executeTakeFirst();
      return result.numUpdatedRows > 0n;
    },
  };
}

/**
 * Every tenant's Slack ciphertext, a page at a time in tenant order: an operator's key rotation
 * (scripts/reencrypt-integrations.ts) reads across tenants, and writes back through the store above.
 */
export async function slackCiphertextsAfter(db: Kysely<Database>, afterTenantId: string | undefined, limit: number) {
  let query = db.selectFrom('tenant_slack_integrations').select(['tenant_id', 'encrypted_webhook_url']).orderBy('tenant_id').limit(limit);
  if (afterTenantId) query = query.where('tenant_id', '>', afterTenantId);
  return query.execute();
}

export interface WebhookSecretsRow {
  secret: string;
  /** Only while its rotation window lasts. */
  previous_secret: string | null;
  previous_expires_at: Date | null;
  created_at: Date;
}

/** The one door to a tenant's callback signing secrets. */
export function webhookSecretStore(db: Kysely<Database>, tenantId: string) {
  return {
    /** The secrets in use now: a previous secret past its window is left out. */
    async find(): Promise<WebhookSecretsRow | undefined> {
      return db
        .selectFrom('tenant_webhook_secrets')
        .select([
          'secret',
          sql<string | null>`case when previous_expires_at > now() then previous_secret end`.as('previous_secret'),
          sql<Date | null>`case when previous_expires_at > now() then previous_expires_at end`.as('previous_expires_at'),
          'created_at',
        ])
        .where('tenant_id', '=', tenantId)
        .executeTakeFirst();
    },

    /** Stores `secret` unless the tenant has one already (two first uses at once keep the same one). */
    async insertIfMissing(secret: string): Promise<void> {
      await db
        .insertInto('tenant_webhook_secrets')
        .values({ tenant_id: tenantId, secret })
        .onConflict((oc) => oc.column('tenant_id').doNothing())
        .execute();
    },

    /** Makes `secret` the current one; the one it replaces keeps signing for `windowSeconds`. */
    async rotate(secret: string, windowSeconds: number): Promise<WebhookSecretsRow> {
      return db
        .insertInto('tenant_webhook_secrets')
        .values({ tenant_id: tenantId, secret })
        .onConflict((oc) =>
          oc.column('tenant_id').doUpdateSet({
            secret,
            previous_secret: sql`tenant_webhook_secrets.secret`,
            previous_expires_at: sql`now() + make_interval(secs => ${windowSeconds})`,
            created_at: sql`now()`,
          }),
        )
        .returning(['secret', 'previous_secret', 'previous_expires_at', 'created_at'])
        .executeTakeFirstOrThrow();
    },
  };
}
