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
  /**
   * The task's tenant's own Slack webhook, if it set one up (undefined: it has none). Throws,
   * with a message fit for the task's result, when it is set up but cannot be used.
   */
  slack(): Promise<TenantSlack | undefined>;
  /**
   * When the wait this task's action asked for (an ActionWait) ended; null while it has not
   * waited. Kept for the task's later attempts too: a wait that has ended is not waited again.
   */
  waitedUntil: Date | null;
}

/** A tenant's Slack integration, decrypted for one post. */
export interface TenantSlack {
  webhookUrl: string;
  defaultChannel: string | null;
  /** Null: any channel. */
  allowedChannels: readonly string[] | null;
}

export interface ActionOutcome {
  /** Stored as the task's `result`. */
  result: Record<string, unknown>;
  /** Audit entries written in the same transaction that marks the task successful. */
  audit: string[];
}

/**
 * Ends the attempt without an outcome: the task stays in_progress but no worker holds it, and the
 * action runs again, with `waitedUntil` set, `waitSeconds` later (see TaskExecution.wait).
 */
export interface ActionWait {
  waitSeconds: number;
}

/**
 * What a task can do. `payloadSchema` validates `payload` when the task is created, so a stored
 * task always has a payload its action accepts.
 */
export interface Action<P extends { action: string } = { action: string }> {
  name: P['action'];
  payloadSchema: v.GenericSchema<unknown, P>;
  run(payload: P, context: ActionContext): Promise<ActionOutcome | ActionWait>;
  /**
   * The URLs of a payload that the action sends requests to, by payload field: refused at
   * creation as a callback_url is (an IP literal outside the public internet, the operator's hosts).
   */
  targets?(payload: P): { field: string; url: string }[];
}

/** An error whose message is safe and useful in the audit trail and the task result. */
export class ActionError extends Error {
  override name = 'ActionError';
}
