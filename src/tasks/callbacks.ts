import { randomUUID } from 'node:crypto';
import type { JobAttempt } from 'pg-boss';
import * as v from 'valibot';
import type { Config } from '../config.js';
import { retryWhileUnavailable, type DatabaseWatch } from '../db/availability.js';
import type { Db } from '../db/client.js';
import { injectFault } from '../lib/fault-injection.js';
import { anyAddressAgent, OutboundTimeoutError, publicOnlyAgent, sendOutbound } from '../lib/outbound-http.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics/metrics.js';
import { isOperatorHost, OPERATOR_HOST_REFUSAL, operatorHosts } from '../lib/operator-hosts.js';
import { assertPublicHost, nonPublicCause } from '../lib/public-address.js';
import { webhookHeaders } from '../lib/standard-webhooks.js';
import type { TaskQueue } from '../queue/task-queue.js';
import { audit } from './audit-messages.js';
import { toTaskOut } from './task-json.js';
import { taskStore } from './tasks.repository.js';

interface Delivered {
  outcome: 'sent' | 'failed' | 'refused';
  entry: string;
}

/** A callback job's data: the task, and which retry of its callback this is (0: the first send). */
export const CallbackJobSchema = v.object({
  task_id: v.pipe(v.string(), v.uuid()),
  tenant_id: v.pipe(v.string(), v.uuid()),
  retry: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0)), 0),
});

export interface CallbackDelivery {
  taskId: string;
  tenantId: string;
  /** 0 for the first send, n for the n-th retry after the receiver failed. */
  retry: number;
  attempt: JobAttempt;
}

/**
 * The callback's Standard Webhooks message id. A task finishes once, so its id and final status
 * name the message, the same in every retry and redelivery: receivers deduplicate by it.
 */
export function callbackMessageId(task: { id: string; status: string }): string {
  return `msg_${task.id}_${task.status}`;
}

/**
 * Posts a finished task's JSON to its callback URL, signed with the tenant's secrets (Standard
 * Webhooks). Every step is audited; the outcome never changes the task. The receiver's answer body
 * is never read, and the whole exchange has one deadline, so a receiver that stalls or trickles
 * holds a delivery for CALLBACK_TIMEOUT_SECONDS at most. A receiver that fails (an answer other
 * than 2xx, none in time, or no connection) gets the callback again up to CALLBACK_MAX_RETRIES
 * times, on the CALLBACK_RETRY_DELAYS_SECONDS schedule; a refused target never does. The outcome
 * (and any retry) is recorded with the job's completion, so a delivery is repeated only if its
 * worker died before that.
 */
export function createCallbackSender(deps: {
  db: Db;
  queue: TaskQueue;
  config: Config;
  logger: Logger;
  watch: DatabaseWatch;
  metrics: Metrics;
  /** The tenant's signing secrets (`whsec_...`), current first: each signs every callback. */
  signingSecrets(tenantId: string): Promise<string[]>;
  /** Told (after commit) when a retry has been scheduled, so a worker can be woken right on time. */
  onRetryScheduled?(runAt: Date): void;
}) {
  const { db, queue, config, logger, watch, metrics } = deps;
  const refusedHosts = operatorHosts(config);
  const persist = <T>(operation: string, work: () => Promise<T>) =>
    retryWhileUnavailable(work, { watch, operation });

  /** How the delivery went, and the audit entry that says so. */
  async function deliver(url: string, body: string, headers: Record<string, string>, log: Logger): Promise<Delivered> {
    const refused = (reason: string): Delivered => ({ outcome: 'refused', entry: audit.callbackRefused(url, reason) });
    const failed = (reason: string): Delivered => ({ outcome: 'failed', entry: audit.callbackFailed(reason) });
    try {
      if (!config.callbackAllowPrivateNetworks) assertPublicHost(url);
      // Checked again here: the operator may have moved Slack or the DCL since the task was created.
      if (isOperatorHost(url, refusedHosts)) return refused(OPERATOR_HOST_REFUSAL);
      const response = await sendOutbound({
        method: 'POST',
        url,
        // Sent as the very bytes that were signed.
        body,
        headers: { 'content-type': 'application/json', ...headers },
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

  /** Seconds before retry number `retry` (1-based); the schedule's last value repeats. */
  const retryDelaySeconds = (retry: number) => {
    const delays = config.callbackRetryDelaysSeconds;
    return delays[Math.min(retry, delays.length) - 1]!;
  };

  return async function sendCallback(delivery: CallbackDelivery): Promise<void> {
    const store = taskStore(db, delivery.tenantId);
    const task = await persist('reading a task for its callback', () => store.find(delivery.taskId));
    if (!task?.callback_url) return;
    const log = logger.child({ task_id: task.id, tenant_id: task.tenant_id });
    // Ids chosen here keep each entry single when a write is retried after a lost reply.
    const [attemptEntry, outcomeEntry, followUpEntry] = [randomUUID(), randomUUID(), randomUUID()];
    await persist('auditing a callback', () => store.auditOnce(attemptEntry, task.id, audit.callbackAttempt(task.callback_url!)));
    const secrets = await persist('reading the webhook signing secret', () => deps.signingSecrets(task.tenant_id));
    const body = JSON.stringify(toTaskOut(task));
    const headers = webhookHeaders({ id: callbackMessageId(task), timestamp: Math.floor(Date.now() / 1000), body, secrets });
    const { outcome, entry } = await deliver(task.callback_url, body, headers, log);
    injectFault(config.faultInjectionPoint, 'during-callback');

    const maxRetries = config.callbackMaxRetries;
    const retry = outcome === 'failed' && delivery.retry < maxRetries ? delivery.retry + 1 : undefined;
    let followUp: string | undefined;
    if (retry !== undefined) followUp = audit.callbackRetryScheduled(retry, maxRetries, retryDelaySeconds(retry));
    else if (outcome === 'failed' && delivery.retry > 0) followUp = audit.callbackPermanentlyFailed(delivery.retry);
    let runAt: Date | undefined;
    await persist('recording a callback', () =>
      db.transaction().execute(async (trx) => {
        const trail = taskStore(trx, delivery.tenantId);
        await trail.auditOnce(outcomeEntry, task.id, entry);
        if (followUp) await trail.auditOnce(followUpEntry, task.id, followUp);
        if (retry !== undefined) {
          runAt = new Date(Date.now() + retryDelaySeconds(retry) * 1000);
          await queue.retryCallback(trx, task, retry, runAt);
        }
        await queue.completeCallback(trx, delivery.attempt);
      }),
    );
    if (runAt) deps.onRetryScheduled?.(runAt);
    metrics.callback(outcome);
  };
}
