import { timingSafeEqual } from 'node:crypto';
import { Hono, type MiddlewareHandler } from 'hono';
import { routePath } from 'hono/route';
import { notAuthenticated } from '../errors.js';
import { describeRoute } from '../http/openapi.js';
import type { AppEnv } from '../http/types.js';
import type { Metrics } from './metrics.js';

const sameToken = (given: string, expected: string) => {
  const [a, b] = [Buffer.from(given), Buffer.from(expected)];
  return a.length === b.length && timingSafeEqual(a, b);
};

/**
 * GET /metrics in Prometheus's text format, for a scraper holding `token` (METRICS_TOKEN) as a
 * bearer token; other callers get 401. Mounted only when a token is configured.
 */
export function metricsRoutes(metrics: Metrics, token: string) {
  return new Hono<AppEnv>().get(
    '/metrics',
    describeRoute({
      summary: "This process's metrics, in Prometheus's text format",
      description: 'Served only when METRICS_TOKEN is set, to `Authorization: Bearer <METRICS_TOKEN>`.',
      tags: ['health'],
      responses: { 200: { description: 'The metrics (text/plain)' }, 401: { description: 'Missing or wrong METRICS_TOKEN' } },
    }),
    async (c) => {
      const presented = /^Bearer +(\S+) *$/i.exec(c.req.header('Authorization') ?? '')?.[1];
      if (!presented || !sameToken(presented, token)) throw notAuthenticated('A valid METRICS_TOKEN is required');
      const { contentType, body } = await metrics.render();
      return c.body(body, 200, { 'Content-Type': contentType });
    },
  );
}

/**
 * Counts every request by method, route template (`/api/v1/tasks/:id`, never the id itself) and
 * status, with its duration. A request no route matched counts as `unmatched`, so probes of
 * random paths cannot make the label set grow.
 */
export function httpMetrics(metrics: Metrics): MiddlewareHandler<AppEnv> {
  return async function httpMetrics(c, next) {
    const startedAt = performance.now();
    await next();
    const route = routePath(c, -1);
    metrics.httpRequest(c.req.method, route === '*' || route === '/*' ? 'unmatched' : route, c.res.status, (performance.now() - startedAt) / 1000);
  };
}
