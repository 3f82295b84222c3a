import { randomUUID } from 'node:crypto';
import type { HttpBindings } from '@hono/node-server';
import type { Context, MiddlewareHandler, Next } from 'hono';
import type { Logger } from '../logger.js';
import type { AppEnv, AuthenticatedEnv } from './types.js';

/**
 * Runs the rest of the request with `headers` on its answer, whatever the answer turns out to be
 * (a task, an error, a stream, a page), except those the answer sets itself. Served by Node, they
 * are written on Node's response, under which @hono/node-server's writeHead lays the answer's own
 * headers, so the answer stays as made: touching `c.res.headers` after it is made turns its plain
 * header object into a WHATWG Headers, validated, copied and sorted again to be written out:
 * about 5% of the API's CPU per created task (docs/performance.md). Served without Node (Hono's
 * app.request), they go on the answer itself. Either way an answer's own header replaces the one
 * given here, so one that should combine with the answer's (Vary) is given here only while no
 * route sets it.
 */
export async function withAnswerHeaders(c: Context, next: Next, headers: readonly (readonly [string, string])[]): Promise<void> {
  const outgoing = (c.env as Partial<HttpBindings> | undefined)?.outgoing;
  if (outgoing) {
    for (const [name, value] of headers) outgoing.setHeader(name, value);
    return next();
  }
  await next();
  for (const [name, value] of headers) if (!c.res.headers.has(name)) c.res.headers.set(name, value);
}

const INCOMING_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * Gives every request an id (the caller's X-Request-ID when it is sane), a logger that carries
 * it, and one access-log line when the response is ready.
 */
export function requestContext(logger: Logger): MiddlewareHandler<AppEnv> {
  return async function requestContext(c, next) {
    const incoming = c.req.header('X-Request-ID');
    const requestId = incoming && INCOMING_REQUEST_ID.test(incoming) ? incoming : randomUUID();
    const requestLogger = logger.child({ request_id: requestId });
    c.set('requestId', requestId);
    c.set('logger', requestLogger);
    const startedAt = performance.now();
    await withAnswerHeaders(c, next, [['X-Request-ID', requestId]]);
    // Set only on authenticated routes, which is why the type of every request's context lacks it.
    const auth = (c.var as Partial<AuthenticatedEnv['Variables']>).auth;
    requestLogger.info('request', {
      method: c.req.method,
      path: c.req.path,
      status: c.res.status,
      duration_ms: Math.round((performance.now() - startedAt) * 10) / 10,
      ...(auth ? { tenant_id: auth.tenantId, user_id: auth.userId } : {}),
    });
  };
}
