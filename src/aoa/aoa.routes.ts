import { Hono, type MiddlewareHandler } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import * as v from 'valibot';
import { describeRoute } from '../http/openapi.js';
import type { Authenticated } from '../auth/auth.middleware.js';
import type { AppEnv, AuthenticatedEnv } from '../http/types.js';
import { jsonBody } from '../http/validation.js';
import { idempotencyKeyParameter } from '../idempotency/idempotency.js';
import { TaskOut } from '../tasks/tasks.schemas.js';
import type { AoaService } from './aoa.service.js';

const ProdModeBody = v.object({ enabled: v.boolean('enabled must be true or false') });
const AoaState = v.record(v.string(), v.unknown());

const accepted = {
  202: { description: 'The AOA job, status queued', schema: TaskOut },
  409: { description: 'An AOA job is already active for this tenant (its id is in task_id)' },
  429: { description: "The tenant's creation rate (TENANT_RATE_LIMIT_PER_SECOND) or unfinished-task quota (TENANT_MAX_QUEUED_TASKS) is used up; see Retry-After" },
};

/** The AOA routes; `idempotent` honours Idempotency-Key on the job-creating ones. */
export function aoaRoutes(aoa: AoaService, authenticated: Authenticated, idempotent: MiddlewareHandler<AuthenticatedEnv>) {
  return new Hono<AppEnv>()
    .get(
      '/api/v1/aoa/state',
      describeRoute({
        summary: 'The Legacy DCL state (synchronous proxy)',
        tags: ['aoa'],
        responses: {
          200: { description: "The backend's JSON answer, with its status", schema: AoaState },
          502: { description: 'The backend is unreachable or failed' },
          503: { description: 'LEGACY_DCL_BASE_URL is not configured' },
          504: { description: 'The backend did not answer within 10 s' },
        },
      }),
      authenticated('viewer'),
      async (c) => {
        const answer = await aoa.state(c.get('auth'), c.get('requestId'));
        return c.json(answer.body as object, answer.status as ContentfulStatusCode);
      },
    )
    .post(
      '/api/v1/aoa/run',
      describeRoute({ summary: 'Enqueue an AOA connect job (Legacy DCL POST /connect)', tags: ['aoa'], parameters: [idempotencyKeyParameter], responses: accepted }),
      authenticated('member'),
      idempotent,
      async (c) => c.json(await aoa.enqueue(c.get('auth'), c.get('requestId'), { action: 'aoa_connect' }), 202),
    )
    .post(
      '/api/v1/aoa/reset',
      describeRoute({ summary: 'Enqueue an AOA reset job (Legacy DCL POST /reset)', tags: ['aoa'], parameters: [idempotencyKeyParameter], responses: accepted }),
      authenticated('member'),
      idempotent,
      async (c) => c.json(await aoa.enqueue(c.get('auth'), c.get('requestId'), { action: 'aoa_reset' }), 202),
    )
    .post(
      '/api/v1/aoa/prod-mode',
      describeRoute({
        summary: 'Enqueue a production-mode toggle job (Legacy DCL POST /toggle_dev_mode)',
        tags: ['aoa'],
        parameters: [idempotencyKeyParameter],
        responses: accepted,
      }),
      authenticated('member'),
      idempotent,
      jsonBody(ProdModeBody),
      async (c) => {
        const { enabled } = c.req.valid('json');
        return c.json(await aoa.enqueue(c.get('auth'), c.get('requestId'), { action: 'aoa_toggle_dev_mode', enabled }), 202);
      },
    );
}
