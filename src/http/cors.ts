import type { MiddlewareHandler } from 'hono';
import { withAnswerHeaders } from './middleware.js';

const ALLOWED_METHODS = 'GET, POST, PUT, PATCH, DELETE, OPTIONS';
const ALLOWED_HEADERS = 'Authorization, Content-Type, X-Request-ID, Last-Event-ID, Idempotency-Key';
/** What a browser client may read of an answer: the request id, when to retry, whether it was a replay. */
const EXPOSED_HEADERS = 'X-Request-ID, Retry-After, Idempotent-Replayed';
/** Every answer off the dashboard: whether it carries the allow headers depends on the Origin. */
const VARY_ORIGIN = ['Vary', 'Origin'] as const;

/**
 * CORS for exactly the configured origins: they get the allow headers (with credentials, for the
 * Authorization header); any other origin, or a request without one, gets none at all. Paths
 * under `exceptUnder` (the dashboard, signed in by cookie) get none either: an allowed origin must
 * never read a page that the browser's cookie unlocked.
 */
export function corsForOrigins(origins: readonly string[], options: { exceptUnder: string }): MiddlewareHandler {
  const excepted = (path: string) => path === options.exceptUnder || path.startsWith(`${options.exceptUnder}/`);
  return async function cors(c, next) {
    if (excepted(c.req.path)) return next();
    const origin = c.req.header('Origin');
    const allowed = origin !== undefined && origins.includes(origin);
    if (c.req.method === 'OPTIONS' && origin !== undefined && c.req.header('Access-Control-Request-Method')) {
      const headers: Record<string, string> = { Vary: 'Origin' };
      if (allowed) {
        Object.assign(headers, {
          'Access-Control-Allow-Origin': origin,
          'Access-Control-Allow-Credentials': 'true',
          'Access-Control-Allow-Methods': ALLOWED_METHODS,
          'Access-Control-Allow-Headers': ALLOWED_HEADERS,
          'Access-Control-Max-Age': '600',
        });
      }
      return c.body(null, 204, headers);
    }
    // No route sets any of these itself (one that set Vary would replace Origin in it).
    return withAnswerHeaders(
      c,
      next,
      allowed
        ? [
            VARY_ORIGIN,
            ['Access-Control-Allow-Origin', origin],
            ['Access-Control-Allow-Credentials', 'true'],
            ['Access-Control-Expose-Headers', EXPOSED_HEADERS],
          ]
        : [VARY_ORIGIN],
    );
  };
}
