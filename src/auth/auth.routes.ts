import { Hono, type Context, type MiddlewareHandler } from 'hono';
import { describeRoute } from '../http/openapi.js';
import type { Authenticated } from './auth.middleware.js';
import type { AppEnv } from '../http/types.js';
import { formBody, jsonBody } from '../http/validation.js';
import type { AuthService } from './auth.service.js';
import { LegacyRegisterBody, LoginBody, RegisterBody, TokenForm, TokenOut, UserOut } from './auth.schemas.js';

const registered = describeRoute({
  summary: 'Register a user and a new tenant, or a user of a tenant that invited it',
  description:
    'With a tenant name, the user founds that tenant and owns it. With `invite_token` instead, the user joins the tenant that ' +
    'invited it, with the role the invitation gives; the email must be the one invited, and an invitation is accepted once.',
  tags: ['auth'],
  responses: {
    201: { description: 'The user and its tenant', schema: UserOut },
    400: { description: 'Email already registered; or the invitation is unknown, expired, revoked, used, or for another email' },
    409: { description: 'Tenant name already registered' },
    429: { description: 'Too many registrations from this client address (REGISTRATION_LIMIT_PER_HOUR); see Retry-After' },
    503: { description: 'Too many sign-ins and registrations in progress; see Retry-After' },
  },
});
const loggedIn = (summary: string) =>
  describeRoute({
    summary,
    tags: ['auth'],
    responses: {
      200: { description: 'A bearer token', schema: TokenOut },
      401: { description: 'Incorrect email or password' },
      429: { description: 'Too many failed sign-ins for this account or from this address (LOGIN_FAILURE_LIMIT); see Retry-After' },
      503: { description: 'Too many sign-ins and registrations in progress; see Retry-After' },
    },
  });
const revoke = describeRoute({
  summary: 'Sign out everywhere',
  description: 'Revokes every token issued to the current user so far, this one included: each is refused (401) from the next request on, by every API process.',
  tags: ['auth'],
  responses: { 204: { description: 'Revoked' }, 400: { description: 'The credential is an API key, which is revoked on its own' } },
});
const me = describeRoute({ summary: 'The current user', tags: ['auth'], responses: { 200: { description: 'The current user', schema: UserOut } } });

/**
 * Both route sets of the reference: the original (`/users/register`, `/token`, `/users/me`) and
 * `/api/v1/auth/*`. They differ only in field names and body encoding; the service is one.
 */
export function authRoutes(auth: AuthService, authenticated: Authenticated, clientAddress: (c: Context) => string) {
  const register = async (c: Context, tenant: { tenantName: string } | { inviteToken: string }, email: string, password: string) =>
    auth.register({ ...tenant, email, password, clientAddress: clientAddress(c) });
  const login = async (c: Context, email: string, password: string) => auth.login({ email, password, clientAddress: clientAddress(c) });
  const currentUser = new Hono<AppEnv>().get('/', me, authenticated('viewer'), async (c) => c.json(await auth.currentUser(c.get('auth'))));

  return new Hono<AppEnv>()
    .post('/users/register', registered, jsonBody(LegacyRegisterBody), async (c) => {
      const body = c.req.valid('json');
      const tenant = body.invite_token !== undefined ? { inviteToken: body.invite_token } : { tenantName: body.tenant_name };
      return c.json(await register(c, tenant, body.email, body.password), 201);
    })
    .post('/api/v1/auth/register', registered, jsonBody(RegisterBody), async (c) => {
      const body = c.req.valid('json');
      const tenant = body.invite_token !== undefined ? { inviteToken: body.invite_token } : { tenantName: body.name };
      return c.json(await register(c, tenant, body.email, body.password), 201);
    })
    .post('/token', loggedIn('Log in with the OAuth2 password form'), formBody(TokenForm), async (c) => {
      const form = c.req.valid('form');
      return c.json(await login(c, form.username, form.password));
    })
    .post('/api/v1/auth/login', loggedIn('Log in with JSON credentials'), jsonBody(LoginBody), async (c) => {
      const body = c.req.valid('json');
      return c.json(await login(c, body.email, body.password));
    })
    .post('/api/v1/auth/logout', revoke, authenticated('viewer'), async (c) => {
      await auth.revokeTokens(c.get('auth'));
      return c.body(null, 204);
    })
    .route('/users/me', currentUser)
    .route('/api/v1/auth/me', currentUser);
}
