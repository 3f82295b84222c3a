import { randomUUID } from 'node:crypto';
import type { JobAttempt } from 'pg-boss';
import type { Config } from '../config.js';
import { retryWhileUnavailable, type DatabaseWatch } from '../db/availability.js';
import type { Db } from '../db/client.js';
import { injectFault } from '../lib/fault-injection.js';
import { anyAddressAgent, OutboundTimeoutError, publicOnlyAgent, sendOutbound } from '../lib/outbound-http.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics/metrics.js';
import { assertPublicHost, nonPublicCause } from '../lib/public-address.js';
import type { TaskQueue } from '../queue/task-queue.js';
import { audit } from './audit-messages.js';
import { toTaskOut } from './task-json.js';
import { taskStore } from './tasks.repository.js';

/** Why a callback to one of the operatorHosts is refused, in words for the tenant. */
export const OPERATOR_HOST_REFUSAL = 'the target is a host this service itself calls (Slack or the Legacy DCL)';

/**
 * The hosts of SLACK_WEBHOOK_URL and LEGACY_DCL_BASE_URL. A callback never goes to them, whatever
 * CALLBACK_ALLOW_PRIVATE_NETWORKS says: a tenant must not be able to make the service post its
 * own task JSON to the operator's Slack webhook or Legacy DCL, on any port.
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

interface Delivered {
  outcome: 'sent' | 'failed' | 'refused';
  entry: string;
}

export interface CallbackDelivery {
  taskId: string;
  tenantId: string;
  attempt: JobAttempt;
}

/**
 * Posts a finished task's JSON to its callback URL. Every step is audited; the outcome never
 * changes the task. The receiver's answer body is never read, and the whole exchange has one
 * deadline, so a receiver that stalls or trickles holds a delivery for CALLBACK_TIMEOUT_SECONDS
 * at most. The outcome is recorded with the job's completion, so a delivery is repeated only if
 * its worker died before that.
 */
export function createCallbackSender(deps: { db: Db; queue: TaskQueue; config: Config; logger: Logger; watch: DatabaseWatch; metrics: Metrics }) {
  const { db, queue, config, logger, watch, metrics } = deps;
  const refusedHosts = operatorHosts(config);
  const persist = <T>(operation: string, work: () => Promise<T>) =>
    retryWhileUnavailable(work, { watch, operation });

  /** How the delivery went, and the audit entry that says so. */
  async function deliver(url: string, body: unknown, log: Logger): Promise<Delivered> {
    const refused = (reason: string): Delivered => ({ outcome: 'refused', entry: audit.callbackRefused(url, reason) });
    const failed = (reason: string): Delivered => ({ outcome: 'failed', entry: audit.callbackFailed(reason) });
    try {
      if (!config.callbackAllowPrivateNetworks) assertPublicHost(url);
      // Checked again here: the operator may have moved Slack or the DCL since the task was created.
      if (isOperatorHost(url, refusedHosts)) return refused(OPERATOR_HOST_REFUSAL);
      const response = await sendOutbound({
        method: 'POST',
        url,
        json: body,
        timeoutMs: config.callbackTimeoutSeconds * 1000,
        maxBodyBytes: 0,
        agent: config.callbackAllowPrivateNetworks ? anyAddressAgent : publicOnlyAgent,
      });
      if (response.status >= 200 && response.status < 300) return { outcome: 'sent', entry: audit.callbackSent(response.status) };
      return failed(`receiver answered with status ${response.status}`);
    } catch (error) {
      const refusal = nonPublicCause(error);
      if (refusal) {
        // The resolved address stays in the server log: the tenant reads the audit trail, and must
        // not learn how internal names resolve.
        log.warn('callback refused', { reason: refusal.message });
        return refused('the target is not a public address (set CALLBACK_ALLOW_PRIVATE_NETWORKS=true to allow private targets)');
      }
      if (error instanceof OutboundTimeoutError) return failed(`no answer within ${config.callbackTimeoutSeconds} s`);
      return failed((error as Error).message);
    }
  }

  return async function sendCallback(delivery: CallbackDelivery): Promise<void> {
    const store = taskStore(db, delivery.tenantId);
    const task = await persist('reading a task for its callback', () => store.find(delivery.taskId));
    if (!task?.callback_url) return;
    const log = logger.child({ task_id: task.id, tenant_id: task.tenant_id });
    // Ids chosen here keep each entry single when a write is retried after a lost reply.
    const [attemptEntry, outcomeEntry] = [randomUUID(), randomUUID()];
    await persist('auditing a callback', () => store.auditOnce(attemptEntry, task.id, audit.callbackAttempt(task.callback_url!)));
    const { outcome, entry } = await deliver(task.callback_url, toTaskOut(task), log);
    injectFault(config.faultInjectionPoint, 'during-callback');
    await persist('recording a callback', () =>
      db.transaction().execute(async (trx) => {
        await taskStore(trx, delivery.tenantId).auditOnce(outcomeEntry, task.id, entry);
        await queue.completeCallback(trx, delivery.attempt);
      }),
    );
    metrics.callback(outcome);
  };
}
