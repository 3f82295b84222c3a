import { Hono, type MiddlewareHandler } from 'hono';
import { describeRoute } from '../http/openapi.js';
import type { AppEnv } from '../http/types.js';
import { formBody, jsonBody } from '../http/validation.js';
import type { AuthService } from './auth.service.js';
import { LegacyRegisterBody, LoginBody, RegisterBody, TokenForm, TokenOut, UserOut } from './auth.schemas.js';

const registered = describeRoute({
  summary: 'Register a user and a new tenant',
  tags: ['auth'],
  responses: {
    201: { description: 'The user and its new tenant', schema: UserOut },
    400: { description: 'Email already registered' },
    409: { description: 'Tenant name already registered' },
  },
});
const loggedIn = (summary: string) =>
  describeRoute({
    summary,
    tags: ['auth'],
    responses: { 200: { description: 'A bearer token', schema: TokenOut }, 401: { description: 'Incorrect email or password' } },
  });
const me = describeRoute({ summary: 'The current user', tags: ['auth'], responses: { 200: { description: 'The current user', schema: UserOut } } });

/**
 * Both route sets of the reference: the original (`/users/register`, `/token`, `/users/me`) and
 * `/api/v1/auth/*`. They differ only in field names and body encoding; the service is one.
 */
export function authRoutes(auth: AuthService, authenticated: MiddlewareHandler<AppEnv>) {
  const register = async (tenantName: string, email: string, password: string) => auth.register({ tenantName, email, password });
  const currentUser = new Hono<AppEnv>().get('/', me, authenticated, async (c) => c.json(await auth.currentUser(c.get('auth'))));

  return new Hono<AppEnv>()
    .post('/users/register', registered, jsonBody(LegacyRegisterBody), async (c) => {
      const body = c.req.valid('json');
      return c.json(await register(body.tenant_name, body.email, body.password), 201);
    })
    .post('/api/v1/auth/register', registered, jsonBody(RegisterBody), async (c) => {
      const body = c.req.valid('json');
      return c.json(await register(body.name, body.email, body.password), 201);
    })
    .post('/token', loggedIn('Log in with the OAuth2 password form'), formBody(TokenForm), async (c) => {
      const form = c.req.valid('form');
      return c.json(await auth.login(form.username, form.password));
    })
    .post('/api/v1/auth/login', loggedIn('Log in with JSON credentials'), jsonBody(LoginBody), async (c) => {
      const body = c.req.valid('json');
      return c.json(await auth.login(body.email, body.password));
    })
    .route('/users/me', currentUser)
    .route('/api/v1/auth/me', currentUser);
}
