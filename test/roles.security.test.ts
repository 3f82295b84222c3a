import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { createApp } from '../src/http/app.js';
import { ROLES, roleAtLeast, type Role } from '../src/http/types.js';
import { silentLogger } from '../src/logger.js';
import { CSRF_FIELD, createCsrf } from '../src/web/csrf.js';
import { createMetrics } from '../src/metrics/metrics.js';
import { startTestApp, type TestApp } from './helpers/app.js';
import { startFakeDcl, type FakeDcl } from './helpers/dcl.js';
import { createApiKey, joinTenant } from './helpers/tenants.js';
import { registerAndLogin } from './helpers/users.js';

// Every route of the app, with every role's token, an API key of every role, and no credential:
// each answers as the table below says. The dashboard's pages (under /app) take the same tokens
// as a session cookie instead, and bearer credentials not at all. The routes come from the app
// itself, so a route added without an entry here fails this test.

/** Who may call a route: a tenant's role and those above it, anyone, or the operator's METRICS_TOKEN. */
type Access = Role | 'public' | 'operator';

const MINIMUM_ROLE: Record<string, Access> = {
  'GET /health/api': 'public',
  'GET /health/worker': 'public',
  'POST /users/register': 'public',
  'POST /api/v1/auth/register': 'public',
  'POST /token': 'public',
  'POST /api/v1/auth/login': 'public',
  'GET /openapi.json': 'public',
  'GET /docs': 'public',
  'GET /redoc': 'public',
  'GET /docs/assets/:file': 'public',
  'GET /metrics': 'operator',

  'GET /users/me': 'viewer',
  'GET /api/v1/auth/me': 'viewer',
  'POST /api/v1/auth/logout': 'viewer',

  'GET /api/v1/tasks': 'viewer',
  'GET /api/v1/tasks/stats': 'viewer',
  'GET /api/v1/tasks/:id': 'viewer',
  'GET /api/v1/tasks/:id/logs': 'viewer',
  'GET /api/v1/events': 'viewer',
  'POST /api/v1/tasks': 'member',
  'POST /api/v1/tasks/batch': 'member',
  'POST /api/v1/tasks/:id/retry': 'member',
  'DELETE /api/v1/tasks/:id': 'member',

  'GET /api/v1/aoa/state': 'viewer',
  'POST /api/v1/aoa/run': 'member',
  'POST /api/v1/aoa/reset': 'member',
  'POST /api/v1/aoa/prod-mode': 'member',

  'GET /api/v1/tenant/users': 'admin',
  'PATCH /api/v1/tenant/users/:id': 'owner',
  'DELETE /api/v1/tenant/users/:id': 'admin',
  'POST /api/v1/tenant/invitations': 'admin',
  'GET /api/v1/tenant/invitations': 'admin',
  'DELETE /api/v1/tenant/invitations/:id': 'admin',
  'POST /api/v1/tenant/api-keys': 'admin',
  'GET /api/v1/tenant/api-keys': 'admin',
  'DELETE /api/v1/tenant/api-keys/:id': 'admin',

  'GET /api/v1/tenant/integrations/slack': 'admin',
  'PUT /api/v1/tenant/integrations/slack': 'admin',
  'DELETE /api/v1/tenant/integrations/slack': 'admin',
  'GET /api/v1/tenant/webhook-secret': 'admin',
  'POST /api/v1/tenant/webhook-secret/rotate': 'admin',

  'GET /app': 'public',
  'GET /app/assets/:file': 'public',
  'GET /app/login': 'public',
  'POST /app/login': 'public',
  'GET /app/register': 'public',
  'POST /app/register': 'public',
  'GET /app/join': 'public',
  'POST /app/join': 'public',
  'POST /app/logout': 'public',
  'GET /app/tasks': 'viewer',
  'GET /app/tasks/:id': 'viewer',
  'GET /app/events': 'viewer',
  'GET /app/aoa': 'viewer',
  'GET /app/tasks/new': 'member',
  'POST /app/tasks/new': 'member',
  'POST /app/tasks/:id/cancel': 'member',
  'POST /app/tasks/:id/retry': 'member',
  'POST /app/aoa/run': 'member',
  'POST /app/aoa/reset': 'member',
  'POST /app/aoa/prod-mode': 'member',
  'GET /app/settings': 'admin',
  'POST /app/settings/members/:id/role': 'owner',
  'POST /app/settings/members/:id/remove': 'admin',
  'POST /app/settings/invitations': 'admin',
  'POST /app/settings/invitations/:id/revoke': 'admin',
  'POST /app/settings/api-keys': 'admin',
  'POST /app/settings/api-keys/:id/revoke': 'admin',
  'POST /app/settings/slack': 'admin',
  'POST /app/settings/slack/remove': 'admin',
  'POST /app/settings/webhook-secret/rotate': 'admin',
};

/** The dashboard's pages: a browser's session cookie, never a bearer credential, signs in there. */
const DASHBOARD = '/app';
// The dashboard's cookies, as a browser holds them: the session (the user's token) and the form nonce.
const SESSION_COOKIE = 'autonomos_session';
const NONCE_COOKIE = 'autonomos_csrf';
const NONCE = 'role-matrix-nonce';

/** Signs its holder out: checked last, when no later request needs the token. */
const LOGOUT = 'POST /api/v1/auth/logout';

interface Credential {
  label: string;
  /** The role it acts with; undefined for no credential. */
  role?: Role;
  bearer?: string;
  /** A user's token, which the dashboard also takes as its session. */
  isToken?: boolean;
}

let app: TestApp;
let dcl: FakeDcl;
let credentials: Credential[];
let csrf: ReturnType<typeof createCsrf>;
/** Every route the app registers, as `METHOD /path`. */
let routes: string[];

before(async () => {
  dcl = await startFakeDcl();
  app = await startTestApp({ env: { LEGACY_DCL_BASE_URL: dcl.url, METRICS_TOKEN: 'metrics-token-for-the-role-matrix' } });
  csrf = createCsrf(app.config.jwtSecret);
  const inProcess = createApp({ db: app.db, boss: app.boss, config: app.config, logger: silentLogger, notifications: app.notifications, metrics: createMetrics() });
  routes = [...new Set(inProcess.routes.filter((route) => route.method !== 'ALL').map((route) => `${route.method} ${route.path}`))];
  const owner = await registerAndLogin(app, 'matrix');
  credentials = [{ label: 'no credential' }, { label: 'owner token', role: 'owner', bearer: owner.token, isToken: true }];
  for (const role of ROLES.filter((role) => role !== 'owner')) {
    credentials.push({ label: `${role} token`, role, bearer: (await joinTenant(app, owner, role)).token, isToken: true });
  }
  for (const role of ROLES) {
    credentials.push({ label: `${role} API key`, role, bearer: (await createApiKey(app, owner, role)).key });
  }
});

after(async () => {
  await app?.close();
  await dcl?.close();
});

const onDashboard = (path: string) => path === DASHBOARD || path.startsWith(`${DASHBOARD}/`);

interface Answer {
  status: number;
  /** The JSON `detail`, or the text of an HTML page. */
  detail?: unknown;
  location?: string | null;
}

/**
 * One request to `route`, with `bearer` in the Authorization header or, as a browser would send
 * it, `session` as the dashboard's cookie (its forms with their CSRF token). A stream (the events
 * routes) is closed as soon as its status is known.
 */
async function send(route: string, credential: { bearer?: string; session?: string }): Promise<Answer> {
  const [method, template] = route.split(' ') as [string, string];
  const path = template.replace(/:\w+/g, () => randomUUID());
  const headers: Record<string, string> = credential.bearer ? { Authorization: `Bearer ${credential.bearer}` } : {};
  let body: string | URLSearchParams | null = null;
  if (onDashboard(path)) {
    headers.Cookie = [`${NONCE_COOKIE}=${NONCE}`, ...(credential.session ? [`${SESSION_COOKIE}=${credential.session}`] : [])].join('; ');
    if (method !== 'GET') body = new URLSearchParams({ [CSRF_FIELD]: csrf.tokenFor(NONCE, credential.session) });
  } else if (method !== 'GET' && method !== 'DELETE') {
    headers['Content-Type'] = 'application/json';
    body = '{}';
  }
  const response = await fetch(`${app.url}${path}`, { method, headers, body, redirect: 'manual' });
  const location = response.headers.get('location');
  if ((response.headers.get('content-type') ?? '').startsWith('text/event-stream')) {
    await response.body?.cancel();
    return { status: response.status, location };
  }
  const text = await response.text();
  return { status: response.status, detail: text.startsWith('{') ? JSON.parse(text).detail : text, location };
}

/** Whether the answer sends the browser to sign in. */
const toSignIn = (answer: Answer) => answer.status === 303 && (answer.location ?? '').startsWith(`${DASHBOARD}/login`);

test('every route of the app has an entry in the table, and every entry is a route', () => {
  assert.deepEqual(routes.filter((route) => !(route in MINIMUM_ROLE)), [], 'routes without an entry');
  assert.deepEqual(Object.keys(MINIMUM_ROLE).filter((route) => !routes.includes(route)), [], 'entries that are no route');
});

test('each route answers each role, API key and no credential as the table says', async () => {
  const mismatches: string[] = [];
  for (const route of [...routes].sort((a, b) => Number(a === LOGOUT) - Number(b === LOGOUT))) {
    const access = MINIMUM_ROLE[route];
    if (access === undefined) continue;
    if (access === 'public' || access === 'operator') {
      // Open to anyone, or to the operator only: a tenant's credentials neither open nor matter.
      for (const credential of credentials.slice(0, 2)) {
        const { status } = await send(route, credential);
        const expected = access === 'public' ? status !== 401 && status !== 403 : status === 401;
        if (!expected) mismatches.push(`${route} with ${credential.label}: ${status}`);
      }
      continue;
    }
    const dashboard = onDashboard(route.split(' ')[1]!);
    for (const credential of credentials) {
      const label = `${route} with ${credential.label}${dashboard && credential.isToken ? ' as the session' : ''}`;
      if (dashboard) {
        // A bearer credential is no session: the page asks to sign in, as without any.
        const bearerOnly = await send(route, { ...(credential.bearer ? { bearer: credential.bearer } : {}) });
        if (!toSignIn(bearerOnly)) mismatches.push(`${route} with ${credential.label} as a bearer credential: ${bearerOnly.status}, not sent to sign in`);
        if (!credential.isToken) continue;
      }
      const answer = await send(route, dashboard ? { session: credential.bearer! } : credential);
      const refusal = dashboard ? `This needs the ${access} role` : `Requires role ${access}`;
      if (!credential.role) {
        if (answer.status !== 401) mismatches.push(`${label}: ${answer.status}, not 401`);
      } else if (roleAtLeast(credential.role, access)) {
        if (answer.status === 401 || answer.status === 403 || toSignIn(answer)) mismatches.push(`${label}: ${answer.status}, not allowed`);
      } else if (answer.status !== 403 || !String(answer.detail).includes(refusal)) {
        mismatches.push(`${label}: ${answer.status} ${JSON.stringify(answer.detail).slice(0, 200)}, not 403 "${refusal}"`);
      }
    }
  }
  assert.deepEqual(mismatches, []);
});
