import * as v from 'valibot';
import { AOA_ACTIONS } from '../aoa/aoa.actions.js';
import type { TaskKind } from '../db/schema.js';
import type { Action } from './action.js';
import { delay } from './delay.js';
import { httpRequest } from './http-request.js';
import { postToSlack } from './post-to-slack.js';

/** Actions a tenant may put in a task's payload. */
const TASK_ACTIONS: readonly Action<any>[] = [postToSlack, httpRequest, delay];

const ACTIONS_BY_KIND: Record<TaskKind, Map<string, Action<any>>> = {
  task: new Map(TASK_ACTIONS.map((action) => [action.name, action])),
  // AOA actions only run as AOA jobs, created by the /api/v1/aoa routes, never from a task body.
  aoa: new Map(AOA_ACTIONS.map((action) => [action.name, action])),
};

export const ACTION_NAMES = TASK_ACTIONS.map((action) => action.name);

/** The action that runs a stored task, by its kind and `payload.action`. */
export function actionFor(kind: TaskKind, payload: unknown): Action<any> | undefined {
  const name = (payload as { action?: unknown } | null)?.action;
  return typeof name === 'string' ? ACTIONS_BY_KIND[kind].get(name) : undefined;
}

/** Validates a payload against the schema of the action it names. */
export const PayloadSchema = v.variant(
  'action',
  TASK_ACTIONS.map((action) => action.payloadSchema) as unknown as [v.VariantOptions<'action'>[number], ...v.VariantOptions<'action'>],
  (issue) => `Unknown action ${JSON.stringify(issue.input)}; known actions: ${ACTION_NAMES.join(', ')}`,
);
