import { Hono, type Context, type MiddlewareHandler } from 'hono';
import { HTTPException } from 'hono/http-exception';
import { methodNotAllowed } from 'hono/method-not-allowed';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { aoaRoutes } from '../aoa/aoa.routes.js';
import { createAoaService } from '../aoa/aoa.service.js';
import { credentialsStillValid, requireAuth } from '../auth/auth.middleware.js';
import { authRoutes } from '../auth/auth.routes.js';
import { createAuthService } from '../auth/auth.service.js';
import { createTokenVersions } from '../auth/token-versions.js';
import { createTokenIssuer } from '../auth/tokens.js';
import type { Config } from '../config.js';
import { isDatabaseUnavailable } from '../db/availability.js';
import type { Db } from '../db/client.js';
import { refusedTextSqlstate } from '../db/errors.js';
import type { Notifications } from '../db/notifications.js';
import { AppError, databaseUnavailable } from '../errors.js';
import { eventRoutes } from '../events/events.routes.js';
import { createTaskEventHub } from '../events/task-events.js';
import { healthRoutes } from '../health/health.routes.js';
import { idempotent } from '../idempotency/idempotency.js';
import { integrationRoutes } from '../integrations/integrations.routes.js';
import { createSlackIntegrations } from '../integrations/slack-integration.js';
import { createWebhookSecrets } from '../integrations/webhook-secrets.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics/metrics.js';
import { httpMetrics, metricsRoutes } from '../metrics/metrics.routes.js';
import { createTaskQueue } from '../queue/task-queue.js';
import { createTaskListing } from '../tasks/task-listing.js';
import { taskListingRoutes } from '../tasks/task-listing.routes.js';
import { taskRoutes } from '../tasks/tasks.routes.js';
import { createTaskCreator } from '../tasks/task-creation.js';
import { createTaskService } from '../tasks/tasks.service.js';
import { createApiKeyResolver } from '../tenants/api-key-resolver.js';
import { tenantRoutes } from '../tenants/tenants.routes.js';
import { createInvitationRedeemer, createTenantService } from '../tenants/tenants.service.js';
import type { PgBoss } from 'pg-boss';
import { dashboardRoutes } from '../web/dashboard.js';
import { DASHBOARD_PATH } from '../web/session.js';
import { apiDocsRoutes } from './api-docs.js';
import { limitBody } from './body-limit.js';
import { errorResponse } from './error-response.js';
import { clientAddress } from './client-address.js';
import { corsForOrigins } from './cors.js';
import { requestContext, withAnswerHeaders } from './middleware.js';
import { openApiDocument } from './openapi.js';
import { brokenRequestBody, drainUnreadBody } from './request-body.js';
import type { AppEnv } from './types.js';

export interface AppDeps {
  db: Db;
  boss: PgBoss;
  config: Config;
  logger: Logger;
  /** This process's LISTEN connection: what other processes change (revoked tokens, ...) reaches it through here. */
  notifications: Notifications;
  /** This process's metrics (shared with its worker when it runs one). */
  metrics: Metrics;
  /** Aborted when the process starts shutting down: open event streams end, so the server can close. */
  stopping?: AbortSignal;
}

const API_INFO = {
  title: 'AutonomOS',
  version: '0.1.0',
  description: 'Multi-tenant task orchestration on PostgreSQL.',
};

/**
 * On every response, unless the route's answer sets the header itself (the dashboard's pages send
 * a fuller CSP, which refuses framing too; the docs' static files may be cached). The set of
 * helmet and hono's secureHeaders by default, with framing refused outright (X-Frame-Options and
 * CSP frame-ancestors), and nothing cached: every answer is private to a tenant or about a
 * credential. HSTS is sent always; browsers heed it only over https, i.e. behind a
 * TLS-terminating proxy.
 */
const SECURITY_HEADERS: readonly (readonly [string, string])[] = [
  ['Content-Security-Policy', "frame-ancestors 'none'"],
  ['Cross-Origin-Opener-Policy', 'same-origin'],
  ['Cross-Origin-Resource-Policy', 'same-origin'],
  ['Origin-Agent-Cluster', '?1'],
  ['Referrer-Policy', 'no-referrer'],
  ['Strict-Transport-Security', 'max-age=15552000; includeSubDomains'],
  ['X-Content-Type-Options', 'nosniff'],
  ['X-DNS-Prefetch-Control', 'off'],
  ['X-Download-Options', 'noopen'],
  ['X-Frame-Options', 'DENY'],
  ['X-Permitted-Cross-Domain-Policies', 'none'],
  ['X-XSS-Protection', '0'],
  ['Cache-Control', 'no-store'],
];

const securityHeaders: MiddlewareHandler = (c, next) => withAnswerHeaders(c, next, SECURITY_HEADERS);

/** Builds the HTTP application. Everything it touches is passed in, so tests build their own. */
export function createApp(deps: AppDeps) {
  const { db, boss, config, logger, notifications, metrics } = deps;
  const tokens = createTokenIssuer(config.jwtSecret, config.jwtExpireMinutes);
  const versions = createTokenVersions(db, notifications);
  const apiKeys = createApiKeyResolver({ db, notifications, versions, logger });
  const credentials = { tokens, versions, apiKeys };
  const authenticated = requireAuth(credentials);

  const app = new Hono<AppEnv>();
  app.use(requestContext(logger));
  app.use(httpMetrics(metrics));
  app.use(drainUnreadBody(config.maxBodyBytes));
  app.use(securityHeaders);
  app.use(corsForOrigins(config.allowedWebOrigins, { exceptUnder: DASHBOARD_PATH }));
  app.use(
    methodNotAllowed({
      app,
      onMethodNotAllowed: (c, methods) =>
        errorResponse(c, new AppError('method_not_allowed', 'Method Not Allowed', { headers: { Allow: methods.join(', ') } })),
    }),
  );
  app.use(limitBody(config.maxBodyBytes));

  app.route('/', healthRoutes(db));
  const invitations = createInvitationRedeemer(db);
  const authService = createAuthService({ db, tokens, versions, invitations, config });
  app.route('/', authRoutes(authService, authenticated, (c) => clientAddress(c, config.trustedProxies)));
  const tenantService = createTenantService({ db, versions, apiKeys });
  app.route('/', tenantRoutes(tenantService, authenticated));
  const queue = createTaskQueue(boss);
  const idempotency = idempotent(db);
  const creator = createTaskCreator({
    db,
    limits: { ratePerSecond: config.tenantRateLimitPerSecond, maxUnfinished: config.tenantMaxQueuedTasks },
    metrics,
    faultPoint: config.faultInjectionPoint,
  });
  // Before the task routes, whose /api/v1/tasks/:id would otherwise take /api/v1/tasks/stats.
  const listing = createTaskListing(db);
  app.route('/', taskListingRoutes(listing, authenticated));
  const taskService = createTaskService({ db, queue, creator, config, metrics });
  app.route('/', taskRoutes(taskService, authenticated, idempotency, config.maxTaskPayloadBytes));
  const aoaService = createAoaService({ db, creator, config });
  app.route('/', aoaRoutes(aoaService, authenticated, idempotency));
  const integrations = { slack: createSlackIntegrations({ db, config }), webhookSecrets: createWebhookSecrets(db) };
  app.route('/', integrationRoutes(integrations, authenticated));
  const events = createTaskEventHub({
    db,
    notifications,
    logger,
    replayWindow: config.eventsReplayWindow,
    resumeSeconds: config.eventsResumeSeconds,
    maxStreamsPerTenant: config.eventsMaxStreamsPerTenant,
  });
  deps.stopping?.addEventListener('abort', () => events.close(), { once: true });
  app.route('/', eventRoutes(events, authenticated, credentialsStillValid(credentials), { heartbeatMs: config.eventsHeartbeatSeconds * 1000 }));
  app.route(
    DASHBOARD_PATH,
    dashboardRoutes({
      auth: authService,
      tasks: taskService,
      listing,
      aoa: aoaService,
      events,
      tenants: tenantService,
      ...integrations,
      tokens,
      versions,
      config,
      clientAddress: (c) => clientAddress(c, config.trustedProxies),
    }),
  );

  if (config.metricsToken) app.route('/', metricsRoutes(metrics, config.metricsToken));

  if (config.apiDocs) {
    app.get('/openapi.json', openApiDocument(app, API_INFO));
    app.route('/', apiDocsRoutes('/openapi.json'));
  }

  app.notFound((c) => errorResponse(c, new AppError('not_found', 'Not Found')));
  app.onError((error, c) => {
    const requestLogger = c.get('logger') ?? logger;
    // Whatever failed, it failed because the body never arrived whole: the client's doing, not a
    // bug (and Node has already answered a malformed one with 400 and closed the connection).
    const bodyFailure = brokenRequestBody(c);
    if (bodyFailure) {
      requestLogger.info('request body not received', { reason: bodyFailure, method: c.req.method, path: c.req.path });
      return errorResponse(c, new AppError('bad_request', 'Malformed request body'));
    }
    if (error instanceof AppError) return errorResponse(c, error);
    // A stopped or restarting database is an outage to report, not a bug: 503, and the client may retry.
    if (isDatabaseUnavailable(error)) return errorResponse(c, databaseUnavailable());
    if (error instanceof HTTPException) {
      // Hono's own refusals (malformed JSON and the like) carry a safe message.
      return c.json({ detail: error.message || 'Bad Request' }, error.status as ContentfulStatusCode);
    }
    // The body validators refuse such text first; this keeps anything that slips past a client error.
    const sqlstate = refusedTextSqlstate(error);
    if (sqlstate) {
      requestLogger.warn('text refused by the database', { sqlstate, method: c.req.method, path: c.req.path });
      return errorResponse(c, new AppError('validation', 'Text must not contain NUL (\\u0000) characters or lone surrogates'));
    }
    requestLogger.error('unhandled error', { error, method: c.req.method, path: c.req.path });
    return c.json({ detail: 'Internal Server Error' }, 500);
  });
  return app;
}

export type App = ReturnType<typeof createApp>;
