import type * as v from 'valibot';
import type { Config } from '../config.js';

export interface ActionContext {
  /** Aborted when the attempt times out, is canceled, or the worker shuts down. */
  signal: AbortSignal;
  config: Config;
  /** Writes an audit entry for this task at once (for steps before a state change). */
  audit(message: string): Promise<void>;
  /** The task's tenant, which downstream calls must carry (e.g. X-Tenant-ID). */
  tenantId: string;
}

export interface ActionOutcome {
  /** Stored as the task's `result`. */
  result: Record<string, unknown>;
  /** Audit entries written in the same transaction that marks the task successful. */
  audit: string[];
}

/**
 * What a task can do. `payloadSchema` validates `payload` when the task is created, so a stored
 * task always has a payload its action accepts.
 */
export interface Action<P extends { action: string } = { action: string }> {
  name: P['action'];
  payloadSchema: v.GenericSchema<unknown, P>;
  run(payload: P, context: ActionContext): Promise<ActionOutcome>;
}

/** An error whose message is safe and useful in the audit trail and the task result. */
export class ActionError extends Error {
  override name = 'ActionError';
}
