import * as v from 'valibot';
import type { TaskKind, TaskStatus } from '../db/schema.js';
import { unstorableTextReason } from '../lib/storable-text.js';
import { decodeCursor } from './task-cursor.js';
import { TaskOut } from './tasks.schemas.js';

export const TASK_STATUSES = ['queued', 'in_progress', 'success', 'failed', 'canceled'] as const satisfies readonly TaskStatus[];
const TASK_KINDS = ['task', 'aoa'] as const satisfies readonly TaskKind[];

export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 200;
export const MAX_SEARCH_LENGTH = 200;
const MAX_ACTION_LENGTH = 100;

/** A query parameter as the query validator hands it over: a string, or an array when repeated. */
const QueryValue = v.union([v.string(), v.array(v.string())]);

/** A parameter that may be given once: a repeated one is refused rather than one value picked. */
function once<TOutput>(name: string, schema: v.GenericSchema<string, TOutput>) {
  return v.pipe(
    QueryValue,
    v.check((value) => typeof value === 'string', `${name} may be given only once`),
    v.transform((value) => value as string),
    schema,
  );
}

function storableText(name: string) {
  return v.check((value: string) => unstorableTextReason(value) === undefined, `${name} must be well-formed text without NUL characters`);
}

/** Whether the calendar date of an ISO 8601 timestamp exists (JavaScript would roll February 30th over into March). */
function isRealDate(value: string): boolean {
  const [year, month, day] = value.slice(0, 10).split('-').map(Number) as [number, number, number];
  return new Date(Date.UTC(year, month - 1, day)).getUTCDate() === day;
}

function timestamp(name: string) {
  const message = `${name} must be an ISO 8601 timestamp with a time zone, e.g. 2030-01-01T12:00:00Z`;
  return once(
    name,
    v.pipe(
      v.string(),
      // An unencoded "+" in a query string arrives as a space: "…T12:00:00 02:00" means +02:00.
      v.transform((value) => value.replace(/ (\d{2}(?::?\d{2})?)$/, '+$1')),
      v.isoTimestamp(message),
      v.check(isRealDate, message),
      v.transform((value) => new Date(value)),
      // The pattern lets through a few forms JavaScript cannot read, such as an hour-only offset.
      v.check((date) => !Number.isNaN(date.getTime()), message),
    ),
  );
}

const Statuses = v.pipe(
  QueryValue,
  v.transform((value) => (typeof value === 'string' ? [value] : value)),
  v.array(v.picklist(TASK_STATUSES, `status must be one of ${TASK_STATUSES.join(', ')}`)),
  v.transform((statuses) => [...new Set(statuses)]),
);

const PageSize = v.pipe(
  v.string(),
  v.regex(/^\d{1,4}$/, `limit must be a whole number from 1 to ${MAX_PAGE_SIZE}`),
  v.transform(Number),
  v.minValue(1, `limit must be a whole number from 1 to ${MAX_PAGE_SIZE}`),
  v.maxValue(MAX_PAGE_SIZE, `limit must be a whole number from 1 to ${MAX_PAGE_SIZE}`),
);

const Cursor = v.pipe(
  v.string(),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const position = decodeCursor(dataset.value);
    if (position) return position;
    addIssue({ message: 'cursor is not one this API issued: pass a page\'s next_cursor back unchanged' });
    return NEVER;
  }),
);

const unknownParameter = (issue: v.ObjectIssue | v.StrictObjectIssue) =>
  issue.expected === 'never' ? `Unknown query parameter ${issue.received}` : `Invalid query parameter ${issue.expected}`;

/** The query of GET /api/v1/tasks. Strict: a misspelt filter must not quietly list everything. */
export const TaskListQuery = v.pipe(
  v.strictObject(
    {
      status: v.optional(Statuses),
      kind: v.optional(once('kind', v.picklist(TASK_KINDS, `kind must be one of ${TASK_KINDS.join(', ')}`))),
      // Any name: actions come and go, and tasks of a retired one can still be listed.
      action: v.optional(
        once('action', v.pipe(v.string(), v.minLength(1, 'action must not be empty'), v.maxLength(MAX_ACTION_LENGTH, `action must be at most ${MAX_ACTION_LENGTH} characters`), storableText('action'))),
      ),
      created_after: v.optional(timestamp('created_after')),
      created_before: v.optional(timestamp('created_before')),
      parent_id: v.optional(once('parent_id', v.pipe(v.string(), v.uuid('parent_id must be a UUID')))),
      q: v.optional(
        once('q', v.pipe(v.string(), v.minLength(1, 'q must not be empty'), v.maxLength(MAX_SEARCH_LENGTH, `q must be at most ${MAX_SEARCH_LENGTH} characters`), storableText('q'))),
      ),
      limit: v.optional(once('limit', PageSize)),
      cursor: v.optional(once('cursor', Cursor)),
    },
    unknownParameter,
  ),
  v.forward(
    v.check(
      (query) => !query.created_after || !query.created_before || query.created_after < query.created_before,
      'created_after must be earlier than created_before',
    ),
    ['created_before'],
  ),
);
export type TaskListQuery = v.InferOutput<typeof TaskListQuery>;

/** The query of GET /api/v1/tasks/stats. */
export const TaskStatsQuery = v.strictObject({ since: v.optional(timestamp('since')) }, unknownParameter);
export type TaskStatsQuery = v.InferOutput<typeof TaskStatsQuery>;

export const TaskPageOut = v.object({
  items: v.array(TaskOut),
  /** Null on the last page. */
  next_cursor: v.nullable(v.string()),
});
export type TaskPageOut = v.InferOutput<typeof TaskPageOut>;

const StatusCounts = v.object(Object.fromEntries(TASK_STATUSES.map((status) => [status, v.number()])) as Record<TaskStatus, v.NumberSchema<undefined>>);
export type StatusCounts = v.InferOutput<typeof StatusCounts>;

export const TaskStatsOut = v.object({
  since: v.nullable(v.pipe(v.string(), v.isoTimestamp())),
  by_status: StatusCounts,
  by_action: v.record(v.string(), StatusCounts),
  total: v.number(),
});
export type TaskStatsOut = v.InferOutput<typeof TaskStatsOut>;
