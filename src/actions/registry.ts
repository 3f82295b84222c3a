import * as v from 'valibot';
import type { Action } from './action.js';
import { postToSlack } from './post-to-slack.js';

/** Actions a tenant may put in a task's payload. */
const TASK_ACTIONS: readonly Action<any>[] = [postToSlack];

const byName = new Map<string, Action<any>>(TASK_ACTIONS.map((action) => [action.name, action]));

export const ACTION_NAMES = TASK_ACTIONS.map((action) => action.name);

export function findAction(name: string): Action<any> | undefined {
  return byName.get(name);
}

/** Validates a payload against the schema of the action it names. */
export const PayloadSchema = v.variant(
  'action',
  TASK_ACTIONS.map((action) => action.payloadSchema) as unknown as [v.VariantOptions<'action'>[number], ...v.VariantOptions<'action'>],
  (issue) => `Unknown action ${JSON.stringify(issue.input)}; known actions: ${ACTION_NAMES.join(', ')}`,
);
