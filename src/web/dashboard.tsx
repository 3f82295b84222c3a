import { Hono, type Context, type MiddlewareHandler } from 'hono';
import type { FC } from 'hono/jsx';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { AoaService } from '../aoa/aoa.service.js';
import type { UserOut } from '../auth/auth.schemas.js';
import type { AuthService } from '../auth/auth.service.js';
import type { TokenVersions } from '../auth/token-versions.js';
import type { TokenIssuer } from '../auth/tokens.js';
import type { Config } from '../config.js';
import { isDatabaseUnavailable } from '../db/availability.js';
import { refusedTextSqlstate } from '../db/errors.js';
import { AppError } from '../errors.js';
import { streamTaskEvents } from '../events/events.routes.js';
import type { TaskEventHub } from '../events/task-events.js';
import { brokenRequestBody } from '../http/request-body.js';
import type { SlackIntegrations } from '../integrations/slack-integration.js';
import type { WebhookSecrets } from '../integrations/webhook-secrets.js';
import type { TaskListing } from '../tasks/task-listing.js';
import type { TenantService } from '../tenants/tenants.service.js';
import type { TaskService } from '../tasks/tasks.service.js';
import { actionForms } from './action-fields.js';
import { aoaPages } from './aoa.pages.js';
import { dashboardAssets } from './assets.js';
import { authPages } from './auth.pages.js';
import { createCsrf } from './csrf.js';
import type { WebKit } from './kit.js';
import { Layout, paths, renderPage, type Frame } from './layout.js';
import { createSessions, DASHBOARD_PATH, SignInRequired, type WebEnv } from './session.js';
import { settingsPages } from './settings.pages.js';
import { actionVisibilityCss, taskFormPages } from './task-form.pages.js';
import { taskPages } from './tasks.pages.js';

/**
 * The dashboard's pages may load only our own script, stylesheet and icon, post forms only to us
 * and open connections (the event stream) only to us; no inline script or style runs.
 */
const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "form-action 'self'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ');

const contentSecurityPolicy: MiddlewareHandler = async function contentSecurityPolicy(c, next) {
  await next();
  c.res.headers.set('Content-Security-Policy', CONTENT_SECURITY_POLICY);
};

/** The services the dashboard shows and changes data through: the API's own, so scoping and rules are the same. */
export interface DashboardDeps {
  auth: AuthService;
  tasks: TaskService;
  listing: TaskListing;
  aoa: AoaService;
  events: TaskEventHub;
  tenants: TenantService;
  slack: SlackIntegrations;
  webhookSecrets: WebhookSecrets;
  tokens: TokenIssuer;
  versions: TokenVersions;
  config: Config;
  /** The client address sign-in attempts are counted by, as the API's auth routes read it. */
  clientAddress: (c: Context) => string;
}

const TITLES: Partial<Record<number, string>> = {
  400: 'Bad request',
  403: 'Not allowed',
  404: 'Not found',
  409: 'Conflict',
  413: 'Too large',
  422: 'Invalid request',
  429: 'Too many requests',
  502: 'A backend failed',
  503: 'Temporarily unavailable',
  504: 'A backend did not answer',
};

const ErrorPage: FC<{ frame: Frame; status: number; message: string }> = ({ frame, status, message }) => (
  <Layout frame={frame} title={TITLES[status] ?? 'Error'}>
    <div class="error-page">
      <p class="error-code">{status}</p>
      <h1>{status === 404 && message !== 'Page not found' ? message : (TITLES[status] ?? 'Something went wrong')}</h1>
      <p>
        {status === 404
          ? message === 'Task not found'
            ? 'No task with this id exists in your tenant.'
            : 'There is no page at this address.'
          : message}
      </p>
      <p>
        <a class="button" href={frame.user ? paths.tasks : paths.login}>
          {frame.user ? 'Back to tasks' : 'Sign in'}
        </a>
      </p>
    </div>
  </Layout>
);

/**
 * The tenant dashboard, served at /app: server-rendered pages over the same services as the API.
 * A browser holds its session in a cookie that only these pages accept (the API takes bearer
 * credentials only), and every form that changes something carries a CSRF token.
 */
export function dashboardRoutes(deps: DashboardDeps) {
  const { config } = deps;
  const sessions = createSessions({
    tokens: deps.tokens,
    versions: deps.versions,
    auth: deps.auth,
    csrf: createCsrf(config.jwtSecret),
    trustedProxies: config.trustedProxies,
    sessionMinutes: config.jwtExpireMinutes,
  });
  const assets = dashboardAssets(DASHBOARD_PATH, actionVisibilityCss(actionForms()));
  const kit: WebKit = { sessions, assets, settings: true };

  const errorPage = (c: Context<WebEnv>, status: ContentfulStatusCode, message: string, headers: Record<string, string> = {}) => {
    const user = (c.var as { user?: UserOut }).user;
    // The form token is set by the first middleware; an error before it (a broken body) has none.
    const frame: Frame = { assets, csrf: c.get('csrf') ?? '', ...(user ? { user } : {}) };
    for (const [name, value] of Object.entries(headers)) c.header(name, value);
    return renderPage(c, <ErrorPage frame={frame} status={status} message={message} />, status);
  };

  const web = new Hono<WebEnv>();
  web.use(contentSecurityPolicy);
  web.route('/', assets.routes);
  web.use(sessions.forms);
  web.get('/', (c) => c.redirect(paths.tasks, 303));
  web.route('/', authPages(kit, deps.auth, deps.clientAddress));
  // Before the task pages: /tasks/new is not a task id.
  web.route('/', taskFormPages(kit, { tasks: deps.tasks, maxTaskBytes: config.maxTaskPayloadBytes }));
  web.route('/', taskPages(kit, { tasks: deps.tasks, listing: deps.listing, config }));
  web.route('/', aoaPages(kit, { aoa: deps.aoa, tasks: deps.tasks }));
  web.route('/', settingsPages(kit, { tenants: deps.tenants, slack: deps.slack, webhookSecrets: deps.webhookSecrets, trustedProxies: config.trustedProxies }));
  web.get('/events', sessions.signedIn('viewer'), (c) =>
    streamTaskEvents(c, deps.events, c.get('auth'), () => sessions.stillValid(c), { heartbeatMs: config.eventsHeartbeatSeconds * 1000 }),
  );
  web.all('*', () => {
    throw new AppError('not_found', 'Page not found');
  });

  web.onError((error, c) => {
    if (error instanceof SignInRequired) {
      if (error.expired) sessions.end(c);
      const url = new URL(c.req.url);
      const query = new URLSearchParams();
      if (error.expired) query.set('notice', 'expired');
      if (c.req.method === 'GET' && url.pathname !== paths.events) query.set('next', `${url.pathname}${url.search}`);
      const search = query.toString();
      return c.redirect(search ? `${paths.login}?${search}` : paths.login, 303);
    }
    if (brokenRequestBody(c)) return errorPage(c, 400, 'The form did not arrive whole. Try again.');
    if (error instanceof AppError) {
      const message = typeof error.detail === 'string' ? error.detail : error.detail.map((issue) => issue.msg).join('; ');
      return errorPage(c, error.status as ContentfulStatusCode, message, error.headers as Record<string, string>);
    }
    if (isDatabaseUnavailable(error)) return errorPage(c, 503, 'The database is unavailable. Try again in a moment.', { 'Retry-After': '2' });
    if (refusedTextSqlstate(error)) return errorPage(c, 422, 'Text must not contain NUL characters or lone surrogates.');
    c.get('logger').error('unhandled error', { error, method: c.req.method, path: c.req.path });
    return errorPage(c, 500, 'Something went wrong on our side. Try again; if it keeps happening, tell your operator.');
  });
  return web;
}
