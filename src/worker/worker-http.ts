import { Hono } from 'hono';
import type { Db } from '../db/client.js';
import { AppError } from '../errors.js';
import { healthRoutes } from '../health/health.routes.js';
import { errorResponse } from '../http/error-response.js';
import { requestContext } from '../http/middleware.js';
import type { AppEnv } from '../http/types.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics/metrics.js';
import { metricsRoutes } from '../metrics/metrics.routes.js';

/**
 * What a worker process started alone serves on WORKER_HTTP_PORT: its health checks, for an
 * orchestrator's probes, and its own /metrics (with METRICS_TOKEN), since its counters live in
 * its memory and no API process can show them.
 */
export function workerHttpApp(deps: { db: Db; logger: Logger; metrics: Metrics; metricsToken: string | undefined }) {
  const app = new Hono<AppEnv>();
  app.use(requestContext(deps.logger));
  app.route('/', healthRoutes(deps.db));
  if (deps.metricsToken) app.route('/', metricsRoutes(deps.metrics, deps.metricsToken));
  app.notFound((c) => errorResponse(c, new AppError('not_found', 'Not Found')));
  app.onError((error, c) => {
    if (error instanceof AppError) return errorResponse(c, error);
    deps.logger.error('unhandled error', { error, method: c.req.method, path: c.req.path });
    return c.json({ detail: 'Internal Server Error' }, 500);
  });
  return app;
}
