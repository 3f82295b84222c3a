import { randomUUID } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import type { Logger } from '../logger.js';
import type { AppEnv, AuthenticatedEnv } from './types.js';

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
    await next();
    // On the answer's own headers: c.header() after the answer is made would rebuild it as a
    // streamed WHATWG Response, where @hono/node-server writes a made one straight out.
    c.res.headers.set('X-Request-ID', requestId);
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
