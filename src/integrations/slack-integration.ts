import type { TenantSlack } from '../actions/action.js';
import type { Config } from '../config.js';
import type { Db } from '../db/client.js';
import { createNotifiedCache } from '../db/notified-cache.js';
import type { Notifications } from '../db/notifications.js';
import { AppError } from '../errors.js';
import type { Principal } from '../http/types.js';
import { isOperatorHost, operatorHosts } from '../lib/operator-hosts.js';
import { assertPublicHost } from '../lib/public-address.js';
import { createSecretBox, type SecretBox } from './encryption.js';
import { slackCiphertextsAfter, slackIntegrationStore, type SlackIntegrationRow } from './integrations.repository.js';
import type { PutSlackIntegration, SlackIntegrationOut } from './integrations.schemas.js';

/** What binds a webhook URL's ciphertext to its tenant (see encryption.ts): copied to another row, it no longer decrypts. */
const ciphertextContext = (tenantId: string) => `tenant_slack_integrations.webhook_url:${tenantId}`;

/** Its scheme and host, and the last 4 characters of a path long enough that they give nothing away. */
export function maskWebhookUrl(url: string): string {
  const parsed = new URL(url);
  const rest = `${parsed.pathname}${parsed.search}`;
  return `${parsed.origin}/****${rest.length >= 16 ? rest.slice(-4) : ''}`;
}

/** The integration is stored, but this process cannot decrypt its webhook URL. */
export class SlackIntegrationUnusableError extends Error {
  override name = 'SlackIntegrationUnusableError';
}

const notFound = () => new AppError('not_found', 'Slack integration not found');
const invalidUrl = (msg: string) => new AppError('validation', [{ loc: ['body', 'webhook_url'], msg, type: 'webhook_url' }]);

export interface SlackIntegrations {
  get(auth: Principal): Promise<SlackIntegrationOut>;
  put(auth: Principal, body: PutSlackIntegration): Promise<SlackIntegrationOut>;
  remove(auth: Principal): Promise<void>;
  /** For a task about to post: the tenant's integration, decrypted; undefined when it has none. */
  forTask(tenantId: string): Promise<TenantSlack | undefined>;
}

export function createSlackIntegrations(deps: { db: Db; config: Config }): SlackIntegrations {
  const { db, config } = deps;
  const box = createSecretBox(config);
  // The Legacy DCL is no Slack: a tenant must not make the service post to it. The operator's Slack
  // host is allowed, since tenants' own webhooks live there too (hooks.slack.com).
  const dclHost = operatorHosts({ slackWebhookUrl: undefined, legacyDclBaseUrl: config.legacyDclBaseUrl });

  function decrypt(row: SlackIntegrationRow): string {
    try {
      return box.decrypt(row.encrypted_webhook_url, ciphertextContext(row.tenant_id));
    } catch (error) {
      throw new SlackIntegrationUnusableError(
        'The Slack webhook URL cannot be decrypted with the configured ENCRYPTION_KEY (or ENCRYPTION_KEY_PREVIOUS): the operator must configure the key it was stored with, or an admin must store it again',
        { cause: error },
      );
    }
  }

  function toOut(row: SlackIntegrationRow, url: string): SlackIntegrationOut {
    return {
      webhook_url: maskWebhookUrl(url),
      default_channel: row.default_channel,
      allowed_channels: row.allowed_channels,
      created_at: row.created_at.toISOString(),
      updated_at: row.updated_at.toISOString(),
    };
  }

  /** The rules for a webhook URL that depend on the configuration, as those for a callback target. */
  function checkWebhookUrl(url: string): void {
    const parsed = new URL(url);
    if (parsed.protocol !== 'https:' && !(parsed.protocol === 'http:' && config.callbackAllowPrivateNetworks)) {
      throw invalidUrl('webhook_url must use https');
    }
    if (parsed.username || parsed.password) throw invalidUrl('webhook_url must not contain a user name or password');
    if (isOperatorHost(url, dclHost)) throw invalidUrl('webhook_url must not point at the Legacy DCL, a host this service itself calls');
    if (!config.callbackAllowPrivateNetworks) {
      try {
        assertPublicHost(url);
      } catch {
        throw invalidUrl('webhook_url must be a public address (set CALLBACK_ALLOW_PRIVATE_NETWORKS=true to allow private targets)');
      }
    }
  }

  const unavailable = (error: SlackIntegrationUnusableError) => new AppError('unavailable', error.message);

  return {
    async get(auth) {
      const row = await slackIntegrationStore(db, auth.tenantId).find();
      if (!row) throw notFound();
      try {
        return toOut(row, decrypt(row));
      } catch (error) {
        if (error instanceof SlackIntegrationUnusableError) throw unavailable(error);
        throw error;
      }
    },

    async put(auth, body) {
      if (!box.canEncrypt) {
        throw new AppError('unavailable', 'Integrations cannot be stored: the operator has not configured ENCRYPTION_KEY');
      }
      checkWebhookUrl(body.webhook_url);
      const row = await slackIntegrationStore(db, auth.tenantId).put({
        encryptedWebhookUrl: box.encrypt(body.webhook_url, ciphertextContext(auth.tenantId)),
        defaultChannel: body.default_channel,
        allowedChannels: body.allowed_channels,
      });
      return toOut(row, body.webhook_url);
    },

    async remove(auth) {
      if (!(await slackIntegrationStore(db, auth.tenantId).delete())) throw notFound();
    },

    async forTask(tenantId) {
      const row = await slackIntegrationStore(db, tenantId).find();
      if (!row) return undefined;
      return { webhookUrl: decrypt(row), defaultChannel: row.default_channel, allowedChannels: row.allowed_channels };
    },
  };
}

export interface ReencryptionReport {
  /** Integrations already encrypted with ENCRYPTION_KEY. */
  current: number;
  reencrypted: number;
  /** Tenants whose ciphertext no configured key decrypts: their admins must store the URL again. */
  unreadable: string[];
}

const REENCRYPTION_PAGE = 500;

/**
 * The last step of a key rotation: every integration secret not yet encrypted with ENCRYPTION_KEY
 * is decrypted (with ENCRYPTION_KEY_PREVIOUS) and encrypted again. Safe to run while the service
 * runs, and again: a row changed in between by a PUT is left as that PUT wrote it.
 */
export async function reencryptSlackIntegrations(db: Db, box: SecretBox): Promise<ReencryptionReport> {
  const report: ReencryptionReport = { current: 0, reencrypted: 0, unreadable: [] };
  for (let after: string | undefined; ; ) {
    const page = await slackCiphertextsAfter(db, after, REENCRYPTION_PAGE);
    if (page.length === 0) return report;
    for (const row of page) {
      if (box.isCurrent(row.encrypted_webhook_url)) {
        report.current += 1;
        continue;
      }
      const context = ciphertextContext(row.tenant_id);
      let url: string;
      try {
        url = box.decrypt(row.encrypted_webhook_url, context);
      } catch {
        report.unreadable.push(row.tenant_id);
        continue;
      }
      if (await slackIntegrationStore(db, row.tenant_id).replaceCiphertext(row.encrypted_webhook_url, box.encrypt(url, context))) {
        report.reencrypted += 1;
      } else {
        report.current += 1;
      }
    }
    after = page.at(-1)!.tenant_id;
  }
}

/** Sent (by a trigger) with the tenant's id whenever its Slack integration is stored, changed or removed. */
export const SLACK_INTEGRATIONS_CHANNEL = 'autonomos_slack_integrations';

/**
 * `forTask` as a worker calls it for every Slack post: remembered per tenant and forgotten when
 * the integration changes (NOTIFY), so a post costs no database round trip of its own.
 */
export function rememberedForTask(integrations: SlackIntegrations, notifications: Notifications): (tenantId: string) => Promise<TenantSlack | undefined> {
  const cache = createNotifiedCache(notifications, {
    channel: SLACK_INTEGRATIONS_CHANNEL,
    lookUp: (tenantId) => integrations.forTask(tenantId),
    maxEntries: 10_000,
    maxAgeMs: 5 * 60_000,
  });
  return (tenantId) => cache.get(tenantId);
}
