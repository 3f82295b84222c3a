/**
 * Points in a task's life where a test can make the API or the worker die (SIGKILL, as a crash or an OOM
 * kill would), to prove that every task still ends right. Inert unless FAULT_INJECTION_POINT
 * names one of them, which the configuration refuses in production.
 */
export const WORKER_FAULT_POINTS = [
  /** The task was claimed (in_progress committed), nothing else happened. */
  'after-claim',
  /** The action has started and written its first audit entry. */
  'during-action',
  /** The action returned its outcome, which is not yet committed. */
  'after-action',
  /** The chained task is inserted in the success transaction, which has not committed. */
  'during-chaining',
  /** The callback receiver has answered; the outcome is not yet recorded. */
  'during-callback',
] as const;

export const API_FAULT_POINTS = [
  /** A batch of created tasks committed; none of its requests has been answered. */
  'after-create-commit',
] as const;

export const FAULT_POINTS = [...WORKER_FAULT_POINTS, ...API_FAULT_POINTS] as const;

export type FaultPoint = (typeof FAULT_POINTS)[number];

/** Kills this process on the spot when `point` is the configured fault point. */
export function injectFault(configured: FaultPoint | undefined, point: FaultPoint): void {
  if (configured === point) process.kill(process.pid, 'SIGKILL');
}
