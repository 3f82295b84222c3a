import type { PgBoss } from 'pg-boss';
import type { Config } from '../config.js';
import type { DatabaseWatch } from '../db/availability.js';
import type { Db } from '../db/client.js';
import type { Logger } from '../logger.js';
import { CALLBACK_QUEUE, RETENTION_QUEUE, TASK_QUEUE } from '../queue/task-queue.js';
import { deleteExpiredTasks } from '../tasks/task-retention.js';

/**
 * Hourly, a few minutes past: each run deletes only what came due in the hour before, a small
 * amount of work spread over the day rather than one large daily delete.
 */
export const RETENTION_CRON = '7 * * * *';
/** pg-boss's own default for keeping finished jobs. */
const DEFAULT_JOB_KEEP_SECONDS = 7 * 24 * 60 * 60;
const DAY_SECONDS = 24 * 60 * 60;

/**
 * How long the queue keeps a finished job of a task or callback. Nothing reads a job once its task
 * has finished (the task row is the record), and a job, named by its task's id, must not outlive
 * the task that retention deletes: pg-boss's 7 days, or less when tasks are kept less.
 */
export function finishedJobKeepSeconds(retentionDays: number): number {
  return retentionDays > 0 ? Math.min(retentionDays * DAY_SECONDS, DEFAULT_JOB_KEEP_SECONDS) : DEFAULT_JOB_KEEP_SECONDS;
}

/**
 * Task retention in a worker process: matches the queues' own retention to TASK_RETENTION_DAYS
 * and keeps the hourly schedule (or, with 0, removes it), then runs the deletions it sends.
 * Schedules live in the database, so every worker keeping the same one changes nothing; API
 * processes neither keep it nor send its jobs (their pg-boss runs no schedules).
 */
export async function startRetention(deps: {
  db: Db;
  boss: PgBoss;
  config: Config;
  logger: Logger;
  watch: DatabaseWatch;
}): Promise<{ stop(): Promise<void> }> {
  const { db, boss, config, logger, watch } = deps;
  const retentionDays = config.taskRetentionDays;
  // Applies to jobs created from now on; those already there keep the time they were given.
  for (const queue of [TASK_QUEUE.task, TASK_QUEUE.aoa, CALLBACK_QUEUE]) {
    await boss.updateQueue(queue, { deleteAfterSeconds: finishedJobKeepSeconds(retentionDays) });
  }
  if (retentionDays === 0) {
    await boss.unschedule(RETENTION_QUEUE);
    return { stop: async () => {} };
  }
  // A run missed while no worker was up is made up once, as soon as one is.
  await boss.schedule(RETENTION_QUEUE, RETENTION_CRON, null, { missed: 'once' });
  // Shutdown ends a run at its next statement instead of waiting for a backlog to be worked off.
  const stopping = new AbortController();
  await boss.work(RETENTION_QUEUE, { pollingIntervalSeconds: 30 }, async ([job]) => {
    try {
      const outcome = await deleteExpiredTasks(db, { retentionDays, signal: AbortSignal.any([job!.signal, stopping.signal]) });
      if (outcome.tasks > 0 || !outcome.complete) logger.info('finished tasks deleted', { retention_days: retentionDays, ...outcome });
    } catch (error) {
      watch.failed(error, 'task retention');
      throw error;
    }
  });
  return {
    async stop() {
      stopping.abort();
      await boss.offWork(RETENTION_QUEUE, { wait: true });
    },
  };
}
