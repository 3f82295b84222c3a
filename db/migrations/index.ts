import type { Migration } from 'kysely/migration';
import * as init from './0001_init.js';
import * as taskScheduling from './0002_task_scheduling.js';
import * as security from './0003_security.js';

/** Every migration, in order. Listed statically so the compiled image needs no directory scan. */
export const migrations: Record<string, Migration> = {
  '0001_init': init,
  '0002_task_scheduling': taskScheduling,
  '0003_security': security,
};
