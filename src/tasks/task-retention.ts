import type { Db } from '../db/client.js';
import { nextTenantWithTasks, taskStore } from './tasks.repository.js';

/**
 * Tasks per delete statement. Each statement commits on its own and, with the audit entries of
 * its tasks, takes some milliseconds: locks are held that long, and never on unfinished tasks.
 */
export const RETENTION_BATCH_SIZE = 500;

export interface RetentionOutcome {
  tasks: number;
  logs: number;
  /** Delete statements run, each its own transaction. */
  statements: number;
  /** False when `signal` stopped the run before everything due was deleted. */
  complete: boolean;
}

/**
 * Deletes every tenant's tasks that finished (success, failed or canceled) more than
 * `retentionDays` days ago, with their audit trails, tenant by tenant, `batchSize` tasks per
 * statement until none is left. Unfinished tasks stay however old. `signal` stops the run between
 * statements; a later run carries on. `retentionDays` is at least 1.
 */
export async function deleteExpiredTasks(
  db: Db,
  options: { retentionDays: number; batchSize?: number; signal?: AbortSignal },
): Promise<RetentionOutcome> {
  // 0 means "keep everything" to the operator; here it would mean "delete every finished task".
  if (!(options.retentionDays >= 1)) throw new RangeError(`retentionDays must be at least 1, not ${options.retentionDays}`);
  const batchSize = options.batchSize ?? RETENTION_BATCH_SIZE;
  const outcome: RetentionOutcome = { tasks: 0, logs: 0, statements: 0, complete: false };
  for (let tenantId = await nextTenantWithTasks(db, undefined); tenantId; tenantId = await nextTenantWithTasks(db, tenantId)) {
    const store = taskStore(db, tenantId);
    for (;;) {
      if (options.signal?.aborted) return outcome;
      const deleted = await store.deleteFinished(options.retentionDays, batchSize);
      outcome.statements += 1;
      outcome.tasks += deleted.tasks;
      outcome.logs += deleted.logs;
      if (deleted.tasks < batchSize) break;
    }
  }
  outcome.complete = true;
  return outcome;
}
