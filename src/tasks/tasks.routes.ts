import { Hono, type MiddlewareHandler } from 'hono';
import { describeRoute } from '../http/openapi.js';
import type { AppEnv } from '../http/types.js';
import { limitBody } from '../http/body-limit.js';
import { jsonBody } from '../http/validation.js';
import { CreateTaskBody, TaskLogsOut, TaskOut } from './tasks.schemas.js';
import type { TaskService } from './tasks.service.js';

const taskIdParameter = {
  name: 'id',
  in: 'path' as const,
  description: 'The task id (a UUID)',
  required: true,
  schema: { type: 'string', format: 'uuid' },
};
const notFound = { 404: { description: 'No such task in your tenant' } };

/**
 * The task routes. `maxTaskBytes` (MAX_TASK_PAYLOAD_BYTES, 0 for none) bounds a creation's body,
 * below the general body limit.
 */
export function taskRoutes(tasks: TaskService, authenticated: MiddlewareHandler<AppEnv>, maxTaskBytes: number) {
  const taskBodyLimit: MiddlewareHandler<AppEnv> = maxTaskBytes > 0 ? limitBody(maxTaskBytes, 'Task body') : async (_c, next) => next();
  return new Hono<AppEnv>()
    .post(
      '/api/v1/tasks',
      describeRoute({
        summary: 'Create a task and enqueue it',
        description:
          'Validated in full (including every chained task) before anything is stored. `delay_seconds` or `run_at` schedule it for later.',
        tags: ['tasks'],
        responses: {
          201: { description: 'The task, status queued', schema: TaskOut },
          413: { description: 'The body exceeds MAX_TASK_PAYLOAD_BYTES' },
          429: { description: "The tenant's creation rate (TENANT_RATE_LIMIT_PER_SECOND) or unfinished-task quota (TENANT_MAX_QUEUED_TASKS) is used up; see Retry-After" },
        },
      }),
      authenticated,
      taskBodyLimit,
      jsonBody(CreateTaskBody),
      async (c) => c.json(await tasks.create(c.get('auth'), c.req.valid('json')), 201),
    )
    .get(
      '/api/v1/tasks/:id',
      describeRoute({
        summary: 'Get a task',
        tags: ['tasks'],
        parameters: [taskIdParameter],
        responses: { 200: { description: 'The task', schema: TaskOut }, ...notFound },
      }),
      authenticated,
      async (c) => c.json(await tasks.get(c.get('auth'), c.req.param('id'))),
    )
    .delete(
      '/api/v1/tasks/:id',
      describeRoute({
        summary: 'Cancel a task',
        description: 'Cancels a queued, scheduled or running task; a running action is aborted.',
        tags: ['tasks'],
        parameters: [taskIdParameter],
        responses: {
          200: { description: 'The canceled task', schema: TaskOut },
          ...notFound,
          409: { description: 'The task already finished' },
        },
      }),
      authenticated,
      async (c) => c.json(await tasks.cancel(c.get('auth'), c.req.param('id'))),
    )
    .get(
      '/api/v1/tasks/:id/logs',
      describeRoute({
        summary: "A task's audit trail, oldest first",
        tags: ['tasks'],
        parameters: [taskIdParameter],
        responses: { 200: { description: 'The audit entries', schema: TaskLogsOut }, ...notFound },
      }),
      authenticated,
      async (c) => c.json(await tasks.logs(c.get('auth'), c.req.param('id'))),
    );
}
