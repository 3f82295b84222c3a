import { escapeUnprintable } from '../lib/text.js';

/**
 * Every audit message a task can get, in one place. The reference's wording is kept exactly
 * where it gives one; auditors query these with plain SQL.
 */
export const audit = {
  // Text from outside (errors, URLs) goes through escapeUnprintable: one entry, one line, as seen.
  created: (userId: string | null, tenantId: string) => `Task created by user ${userId ?? 'system'} in tenant ${tenantId}`,
  createdByChain: (parentId: string) => `Task created by the success of task ${parentId}`,
  retryOf: (originalId: string) => `Task created as a retry of task ${originalId}`,
  /** On the original task, followed by the retry's id, which createTasks appends in SQL. */
  retriedAsPrefix: 'Task retried as task ',
  /** Followed by the ISO 8601 time, which createTasks appends in SQL: the database computes it. */
  scheduledPrefix: 'Task scheduled to run at ',
  started: 'Task execution started',
  /** Written with the state change that leaves a task in_progress, held by no worker, until `until`. */
  waiting: (seconds: number, until: Date) => `Task waiting ${seconds} s, until ${until.toISOString()}`,
  resumed: 'Task execution resumed',
  failed: (error: string) => `Task failed with error: ${escapeUnprintable(error)}`,
  retryScheduled: (retry: number, maxRetries: number) => `Scheduling retry ${retry}/${maxRetries}`,
  permanentlyFailed: 'Task permanently failed after all retries',
  canceled: 'Task canceled by user request',
  chaining: 'Task succeeded, creating chained task',
  chained: (taskId: string) => `Created and enqueued chained task ${taskId}`,
  callbackAttempt: (url: string) => `Attempting to send callback to ${escapeUnprintable(url)}`,
  callbackSent: (status: number) => `Successfully sent callback with status ${status}`,
  callbackFailed: (error: string) => `Callback failed with error: ${escapeUnprintable(error)}`,
  callbackRefused: (url: string, reason: string) => `Callback to ${escapeUnprintable(url)} refused: ${escapeUnprintable(reason)}`,
  callbackRetryScheduled: (retry: number, maxRetries: number, delaySeconds: number) =>
    `Scheduling callback retry ${retry}/${maxRetries} in ${delaySeconds} s`,
  callbackPermanentlyFailed: (retries: number) => `Callback permanently failed after ${retries} ${retries === 1 ? 'retry' : 'retries'}`,
} as const;
