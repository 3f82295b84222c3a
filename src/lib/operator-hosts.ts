import type { Config } from '../config.js';

/** Why a request to one of the operatorHosts is refused, in words for the tenant. */
export const OPERATOR_HOST_REFUSAL = 'the target is a host this service itself calls (Slack or the Legacy DCL)';

/**
 * The hosts of SLACK_WEBHOOK_URL and LEGACY_DCL_BASE_URL. A request whose target a tenant chose (a
 * callback, an http_request task) never goes to them, whatever CALLBACK_ALLOW_PRIVATE_NETWORKS
 * says: a tenant must not be able to make the service call the operator's own Slack webhook or
 * Legacy DCL, on any port.
 */
export function operatorHosts(config: Pick<Config, 'slackWebhookUrl' | 'legacyDclBaseUrl'>): ReadonlySet<string> {
  return new Set([config.slackWebhookUrl, config.legacyDclBaseUrl].filter((url) => url !== undefined).map(hostOf));
}

/** Whether `url` names one of the operatorHosts. */
export function isOperatorHost(url: string, hosts: ReadonlySet<string>): boolean {
  return hosts.has(hostOf(url));
}

/** The host as the URL parser spells it (lower case, punycode, canonical IP); a trailing dot names the same DNS host. */
function hostOf(url: string): string {
  return new URL(url).hostname.replace(/\.+$/, '');
}
