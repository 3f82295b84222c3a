import { FetchError, ofetch } from 'ofetch';
import type { Config } from '../config.js';
import type { Db } from '../db/client.js';
import type { Logger } from '../logger.js';
import { assertPublicHost, nonPublicCause, publicOnlyDispatcher } from '../lib/public-address.js';
import { audit } from './audit-messages.js';
import { toTaskOut } from './task-json.js';
import { taskStore } from './tasks.repository.js';

/**
 * Posts a finished task's JSON to its callback URL, once. Every step is audited; the outcome never
 * changes the task.
 */
export function createCallbackSender(deps: { db: Db; config: Config; logger: Logger }) {
  const { db, config, logger } = deps;
  return async function sendCallback(target: { taskId: string; tenantId: string }): Promise<void> {
    const store = taskStore(db, target.tenantId);
    const task = await store.find(target.taskId);
    if (!task?.callback_url) return;
    const url = task.callback_url;
    await store.audit(task.id, audit.callbackAttempt(url));
    try {
      if (!config.callbackAllowPrivateNetworks) assertPublicHost(url);
      const response = await ofetch.raw(url, {
        ...(config.callbackAllowPrivateNetworks ? {} : { dispatcher: publicOnlyDispatcher }),
        method: 'POST',
        body: toTaskOut(task),
        timeout: config.callbackTimeoutSeconds * 1000,
        retry: 0,
        // A redirect could lead anywhere, including to addresses the checks refuse.
        redirect: 'manual',
        responseType: 'text',
      });
      await store.audit(task.id, audit.callbackSent(response.status));
    } catch (error) {
      const refusal = nonPublicCause(error);
      if (refusal) {
        // The resolved address stays in the server log: the tenant reads the audit trail, and must
        // not learn how internal names resolve.
        logger.warn('callback refused', { task_id: task.id, tenant_id: task.tenant_id, reason: refusal.message });
        await store.audit(
          task.id,
          audit.callbackRefused(url, 'the target is not a public address (set CALLBACK_ALLOW_PRIVATE_NETWORKS=true to allow private targets)'),
        );
        return;
      }
      const reason =
        error instanceof FetchError && error.statusCode
          ? `receiver answered with status ${error.statusCode}`
          : (error as Error).name === 'TimeoutError' || /aborted|timeout/i.test((error as Error).message)
            ? `no answer within ${config.callbackTimeoutSeconds} s`
            : (error as Error).message;
      await store.audit(task.id, audit.callbackFailed(reason));
    }
  };
}
