import * as v from 'valibot';
import { PayloadSchema } from '../actions/registry.js';

/** How deep `on_success_next_task` may nest: a chain of at most this many follow-up tasks. */
export const MAX_CHAIN_DEPTH = 25;
export const MAX_DELAY_SECONDS = 365 * 24 * 60 * 60;
/** A `run_at` this far in the past is a mistake, not clock skew. */
const RUN_AT_PAST_TOLERANCE_MS = 60_000;

const CallbackUrl = v.pipe(
  v.string('callback_url must be a string'),
  v.trim(),
  v.maxLength(2048, 'callback_url must be at most 2048 characters'),
  v.url('callback_url must be an absolute URL'),
  v.check((value) => /^https?:$/.test(new URL(value).protocol), 'callback_url must use http or https'),
  // Stored as the URL parser reads it (lower-case host, percent-encoded path), so what the audit
  // trail and the task JSON show is where the callback really goes.
  v.transform((value) => new URL(value).href),
);

const MaxRetries = v.pipe(
  v.number('max_retries must be an integer'),
  v.integer('max_retries must be an integer'),
  v.minValue(0, 'max_retries must be between 0 and 10'),
  v.maxValue(10, 'max_retries must be between 0 and 10'),
);

export const MIN_PRIORITY = -10;
export const MAX_PRIORITY = 10;
const Priority = v.pipe(
  v.number('priority must be an integer'),
  v.integer('priority must be an integer'),
  v.minValue(MIN_PRIORITY, `priority must be between ${MIN_PRIORITY} and ${MAX_PRIORITY}`),
  v.maxValue(MAX_PRIORITY, `priority must be between ${MIN_PRIORITY} and ${MAX_PRIORITY}`),
);

const TimeoutSeconds = v.pipe(
  v.number('timeout_seconds must be an integer'),
  v.integer('timeout_seconds must be an integer'),
  v.minValue(1, 'timeout_seconds must be between 1 and 86400'),
  v.maxValue(86_400, 'timeout_seconds must be between 1 and 86400'),
);

const DelaySeconds = v.pipe(
  v.number('delay_seconds must be an integer'),
  v.integer('delay_seconds must be an integer'),
  v.minValue(0, 'delay_seconds must not be negative'),
  v.maxValue(MAX_DELAY_SECONDS, `delay_seconds must be at most ${MAX_DELAY_SECONDS}`),
);

const RunAt = v.pipe(
  v.string('run_at must be an ISO 8601 timestamp'),
  v.isoTimestamp('run_at must be an ISO 8601 timestamp with a time zone, e.g. 2030-01-01T12:00:00Z'),
  v.check((value) => Date.parse(value) > Date.now() - RUN_AT_PAST_TOLERANCE_MS, 'run_at must not be in the past'),
  v.check((value) => Date.parse(value) < Date.now() + MAX_DELAY_SECONDS * 1000, 'run_at must be within a year'),
);

/** valibot's object schemas accept arrays; a JSON array is never a task or a payload. */
const jsonObject = (message: string) =>
  v.custom<unknown>((value) => typeof value === 'object' && value !== null && !Array.isArray(value), message);

export interface TaskBody {
  payload: v.InferOutput<typeof PayloadSchema>;
  callback_url?: string | null | undefined;
  max_retries?: number | undefined;
  priority?: number | undefined;
  timeout_seconds?: number | null | undefined;
  on_success_next_task?: TaskBody | null | undefined;
  delay_seconds?: number | undefined;
  run_at?: string | undefined;
}

/** A task to create: the request body of POST /api/v1/tasks and, recursively, each chained task. */
export const TaskBody: v.GenericSchema<unknown, TaskBody> = v.pipe(
  jsonObject('A task must be a JSON object'),
  // Strict: a misspelt field (max_retry) must not pass silently as if it had been left out.
  v.strictObject(
    {
      payload: v.pipe(jsonObject('payload must be a JSON object'), PayloadSchema),
      callback_url: v.optional(v.nullable(CallbackUrl)),
      max_retries: v.optional(MaxRetries),
      priority: v.optional(Priority),
      timeout_seconds: v.optional(v.nullable(TimeoutSeconds)),
      on_success_next_task: v.optional(v.nullable(v.lazy(() => TaskBody))),
      delay_seconds: v.optional(DelaySeconds),
      run_at: v.optional(RunAt),
    },
    (issue) => (issue.expected === 'never' ? `Unknown field ${issue.received}` : `Missing field ${issue.expected}`),
  ),
  v.forward(
    v.check((task) => task.delay_seconds === undefined || task.run_at === undefined, 'Give either delay_seconds or run_at, not both'),
    ['run_at'],
  ),
);

/** Depth of a chain counted in follow-up tasks; checked before validation so nesting cannot exhaust the stack. */
export function chainDepth(body: unknown): number {
  let depth = 0;
  let current = body;
  while (typeof current === 'object' && current !== null && 'on_success_next_task' in current) {
    current = (current as { on_success_next_task: unknown }).on_success_next_task;
    if (current === null || current === undefined) break;
    depth += 1;
    if (depth > MAX_CHAIN_DEPTH) break;
  }
  return depth;
}

/**
 * Payloads keep fields we do not know, stored as given; storing means JSON.stringify, which
 * recursion would overflow on a body nested thousands deep. A full chain needs ~27 levels.
 */
export const MAX_JSON_DEPTH = 64;

/** Whether `value` nests objects and arrays at most `max` deep; iterative, so depth cannot overflow it. */
export function nestsAtMost(value: unknown, max: number): boolean {
  const pending: [unknown, number][] = [[value, 1]];
  while (pending.length > 0) {
    const [current, depth] = pending.pop()!;
    if (typeof current !== 'object' || current === null) continue;
    if (depth > max) return false;
    for (const child of Object.values(current)) pending.push([child, depth + 1]);
  }
  return true;
}

const Timestamp = v.nullable(v.pipe(v.string(), v.isoTimestamp()));

export const TaskOut = v.object({
  id: v.pipe(v.string(), v.uuid()),
  kind: v.picklist(['task', 'aoa']),
  status: v.picklist(['queued', 'in_progress', 'success', 'failed', 'canceled']),
  payload: v.record(v.string(), v.unknown()),
  result: v.nullable(v.record(v.string(), v.unknown())),
  callback_url: v.nullable(v.string()),
  retry_count: v.number(),
  max_retries: v.number(),
  priority: v.number(),
  timeout_seconds: v.nullable(v.number()),
  on_success_next_task: v.nullable(v.record(v.string(), v.unknown())),
  next_task_id: v.nullable(v.pipe(v.string(), v.uuid())),
  retry_of: v.nullable(v.pipe(v.string(), v.uuid())),
  scheduled_for: Timestamp,
  started_at: Timestamp,
  finished_at: Timestamp,
  created_at: v.pipe(v.string(), v.isoTimestamp()),
  updated_at: v.pipe(v.string(), v.isoTimestamp()),
});
export type TaskOut = v.InferOutput<typeof TaskOut>;

export const TaskLogOut = v.object({
  id: v.pipe(v.string(), v.uuid()),
  task_id: v.pipe(v.string(), v.uuid()),
  tenant_id: v.pipe(v.string(), v.uuid()),
  timestamp: v.pipe(v.string(), v.isoTimestamp()),
  message: v.string(),
});
export const TaskLogsOut = v.array(TaskLogOut);
export type TaskLogOut = v.InferOutput<typeof TaskLogOut>;

/** The request body: the chain depth is checked before the recursive schema runs. */
export const CreateTaskBody = v.pipe(
  v.unknown(),
  v.check(
    (value) => chainDepth(value) <= MAX_CHAIN_DEPTH,
    `on_success_next_task may nest at most ${MAX_CHAIN_DEPTH} follow-up tasks`,
  ),
  v.check((value) => nestsAtMost(value, MAX_JSON_DEPTH), `The task may nest JSON at most ${MAX_JSON_DEPTH} levels deep`),
  TaskBody,
);

/** Most tasks one batch creates. */
export const MAX_BATCH_TASKS = 500;

/** POST /api/v1/tasks/batch: every task is validated as POST /api/v1/tasks validates one. */
export const CreateTaskBatchBody = v.strictObject(
  {
    tasks: v.pipe(
      v.array(CreateTaskBody, 'tasks must be a list of tasks'),
      v.minLength(1, 'tasks must hold at least one task'),
      v.maxLength(MAX_BATCH_TASKS, `tasks may hold at most ${MAX_BATCH_TASKS} tasks`),
    ),
  },
  (issue) => (issue.expected === 'never' ? `Unknown field ${issue.received}` : `Missing field ${issue.expected}`),
);

export const TaskBatchOut = v.object({ tasks: v.array(TaskOut) });
