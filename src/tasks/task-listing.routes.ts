import { Hono, type MiddlewareHandler } from 'hono';
import { validator } from 'hono/validator';
import type * as v from 'valibot';
import { describeRoute, type ParameterDoc } from '../http/openapi.js';
import type { Authenticated } from '../auth/auth.middleware.js';
import type { AppEnv } from '../http/types.js';
import { parseOrThrow } from '../http/validation.js';
import { EXAMINED_PER_PAGE, type TaskListing } from './task-listing.js';
import {
  DEFAULT_PAGE_SIZE,
  MAX_PAGE_SIZE,
  MAX_SEARCH_LENGTH,
  TASK_STATUSES,
  TaskListQuery,
  TaskPageOut,
  TaskStatsOut,
  TaskStatsQuery,
} from './task-listing.schemas.js';

/** Validates the query string; a parameter given twice arrives as an array, for the schema to judge. */
function validQuery<S extends v.GenericSchema>(schema: S) {
  return validator('query', (value): v.InferOutput<S> => parseOrThrow(schema, value, 'query'));
}

const timestampSchema = { type: 'string', format: 'date-time' };
const invalidQuery = { 422: { description: 'A query parameter is invalid, repeated or unknown; every failing one is listed' } };

const listParameters: ParameterDoc[] = [
  {
    name: 'status',
    in: 'query',
    description: 'Only tasks in this status; repeat it for several (`status=queued&status=in_progress`)',
    schema: { type: 'array', items: { type: 'string', enum: [...TASK_STATUSES] } },
  },
  { name: 'kind', in: 'query', description: 'Only plain tasks (`task`) or AOA jobs (`aoa`)', schema: { type: 'string', enum: ['task', 'aoa'] } },
  { name: 'action', in: 'query', description: "Only tasks whose payload's `action` is this, e.g. `post_to_slack`", schema: { type: 'string' } },
  { name: 'created_after', in: 'query', description: 'Only tasks created at this time or later (ISO 8601 with a time zone)', schema: timestampSchema },
  { name: 'created_before', in: 'query', description: 'Only tasks created before this time (ISO 8601 with a time zone)', schema: timestampSchema },
  {
    name: 'parent_id',
    in: 'query',
    description: 'Only the task that the task with this id chained to on success (`next_task_id`); a list of at most one',
    schema: { type: 'string', format: 'uuid' },
  },
  {
    name: 'q',
    in: 'query',
    description: 'Only tasks with this text in a string of their payload (channel, message, …), ignoring case',
    schema: { type: 'string', minLength: 1, maxLength: MAX_SEARCH_LENGTH },
  },
  {
    name: 'limit',
    in: 'query',
    description: `Tasks per page (default ${DEFAULT_PAGE_SIZE})`,
    schema: { type: 'integer', minimum: 1, maximum: MAX_PAGE_SIZE, default: DEFAULT_PAGE_SIZE },
  },
  { name: 'cursor', in: 'query', description: "The previous page's `next_cursor`, unchanged", schema: { type: 'string' } },
];

/**
 * The tenant's tasks in bulk. Mounted before the task routes: `/api/v1/tasks/stats` must reach
 * its own handler, not the one for `/api/v1/tasks/:id`.
 */
export function taskListingRoutes(listing: TaskListing, authenticated: Authenticated) {
  return new Hono<AppEnv>()
    .get(
      '/api/v1/tasks',
      describeRoute({
        summary: "List the tenant's tasks, newest first",
        description:
          'Filters combine (all must hold). Pages follow each other by `cursor`: tasks created meanwhile never shift a page, so ' +
          'paging through lists every task that existed when it began exactly once. `next_cursor` is null on the last page. ' +
          `With \`kind\`, \`action\` or \`q\`, a page looks at no more than ${EXAMINED_PER_PAGE} tasks (of the wanted statuses ` +
          'and creation times) for matches: when they are rare it holds fewer than `limit`, even none, and a `next_cursor` to go on.',
        tags: ['tasks'],
        parameters: listParameters,
        responses: { 200: { description: 'One page of tasks', schema: TaskPageOut }, ...invalidQuery },
      }),
      authenticated('viewer'),
      validQuery(TaskListQuery),
      async (c) => c.json(await listing.list(c.get('auth'), c.req.valid('query'))),
    )
    .get(
      '/api/v1/tasks/stats',
      describeRoute({
        summary: "Count the tenant's tasks by status and by action",
        description: 'Every status appears, with 0 when there is none; `by_action` has each action the tenant has tasks of.',
        tags: ['tasks'],
        parameters: [{ name: 'since', in: 'query', description: 'Count only tasks created at this time or later', schema: timestampSchema }],
        responses: { 200: { description: 'The counts', schema: TaskStatsOut }, ...invalidQuery },
      }),
      authenticated('viewer'),
      validQuery(TaskStatsQuery),
      async (c) => c.json(await listing.stats(c.get('auth'), c.req.valid('query'))),
    );
}
