import { Hono, type MiddlewareHandler } from 'hono';
import { describeRoute } from '../http/openapi.js';
import type { Authenticated } from '../auth/auth.middleware.js';
import type { AppEnv, AuthenticatedEnv } from '../http/types.js';
import { limitBody } from '../http/body-limit.js';
import { jsonBody } from '../http/validation.js';
import { AppError } from '../errors.js';
import { idempotencyKeyParameter } from '../idempotency/idempotency.js';
import { CreateTaskBatchBody, CreateTaskBody, MAX_BATCH_TASKS, TaskBatchOut, TaskLogsOut, TaskOut } from './tasks.schemas.js';
import type { TaskService } from './tasks.service.js';

const taskIdParameter = {
  name: 'id',
  in: 'path' as const,
  description: 'The task id (a UUID)',
  required: true,
  schema: { type: 'string', format: 'uuid' },
};
const notFound = { 404: { description: 'No such task in your tenant' } };
const creationLimits = {
  413: { description: 'A task body exceeds MAX_TASK_PAYLOAD_BYTES' },
  429: { description: "The tenant's creation rate (TENANT_RATE_LIMIT_PER_SECOND) or unfinished-task quota (TENANT_MAX_QUEUED_TASKS) is used up; see Retry-After" },
};

/**
 * The task routes. `maxTaskBytes` (MAX_TASK_PAYLOAD_BYTES, 0 for none) bounds a creation's body
 * (and each task of a batch), below the general body limit; `idempotent` honours Idempotency-Key.
 */
export function taskRoutes(
  tasks: TaskService,
  authenticated: Authenticated,
  idempotent: MiddlewareHandler<AuthenticatedEnv>,
  maxTaskBytes: number,
) {
  const taskBodyLimit: MiddlewareHandler<AppEnv> = maxTaskBytes > 0 ? limitBody(maxTaskBytes, 'Task body') : async (_c, next) => next();
  return new Hono<AppEnv>()
    .post(
      '/api/v1/tasks/batch',
      describeRoute({
        summary: 'Create several tasks at once, all or none',
        description: `Up to ${MAX_BATCH_TASKS} tasks, each validated as \`POST /api/v1/tasks\` validates one; one invalid task refuses them all (422, its index in \`loc\`).`,
        tags: ['tasks'],
        parameters: [idempotencyKeyParameter],
        responses: { 201: { description: 'The tasks, in the order given, status queued', schema: TaskBatchOut }, ...creationLimits },
      }),
      authenticated('member'),
      idempotent,
      jsonBody(CreateTaskBatchBody),
      async (c) => {
        const { tasks: bodies } = c.req.valid('json');
        if (maxTaskBytes > 0) {
          const index = bodies.findIndex((body) => Buffer.byteLength(JSON.stringify(body)) > maxTaskBytes);
          if (index >= 0) throw new AppError('payload_too_large', `Task ${index} of the batch exceeds ${maxTaskBytes} bytes`);
        }
        return c.json({ tasks: await tasks.createBatch(c.get('auth'), bodies) }, 201);
      },
    )
    .post(
      '/api/v1/tasks/:id/retry',
      describeRoute({
        summary: 'Retry a failed or canceled task',
        description: 'Creates a new task with the same body, linked to the original by `retry_of`; both audit trails say so.',
        tags: ['tasks'],
        parameters: [taskIdParameter],
        responses: {
          201: { description: 'The new task, status queued', schema: TaskOut },
          ...notFound,
          409: { description: 'The task is not failed or canceled (or, for an AOA job, another is active)' },
          429: creationLimits[429],
        },
      }),
      authenticated('member'),
      async (c) => c.json(await tasks.retry(c.get('auth'), c.req.param('id')), 201),
    )
    .post(
      '/api/v1/tasks',
      describeRoute({
        summary: 'Create a task and enqueue it',
        description:
          'Validated in full (including every chained task) before anything is stored. `delay_seconds` or `run_at` schedule it for later.',
        tags: ['tasks'],
        parameters: [idempotencyKeyParameter],
        responses: { 201: { description: 'The task, status queued', schema: TaskOut }, ...creationLimits },
      }),
      authenticated('member'),
      taskBodyLimit,
      idempotent,
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
      authenticated('viewer'),
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
      authenticated('member'),
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
      authenticated('viewer'),
      async (c) => c.json(await tasks.logs(c.get('auth'), c.req.param('id'))),
    );
}
