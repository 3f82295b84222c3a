import { Hono } from 'hono';
import { describeRoute } from '../http/openapi.js';
import type { AppEnv } from '../http/types.js';
import { formBody, jsonBody } from '../http/validation.js';
import type { AuthService } from './auth.service.js';
import { LegacyRegisterBody, LoginBody, RegisterBody, TokenForm, TokenOut, UserOut } from './auth.schemas.js';
import type { MiddlewareHandler } from 'hono';

const registered = {
  201: { description: 'The user and its new tenant', schema: UserOut },
  400: { description: 'Email already registered' },
  409: { description: 'Tenant name already registered' },
};
const loggedIn = {
  200: { description: 'A bearer token', schema: TokenOut },
  401: { description: 'Incorrect email or password' },
};
const me = { 200: { description: 'The current user', schema: UserOut } };

/** Both route sets of the reference: the original (`/users`, `/token`) and `/api/v1/auth`. */
export function authRoutes(auth: AuthService, authenticated: MiddlewareHandler<AppEnv>) {
  return new Hono<AppEnv>()
    .post(
      '/users/register',
      describeRoute({ summary: 'Register a user and a new tenant', tags: ['auth'], responses: registered }),
      jsonBody(LegacyRegisterBody),
      async (c) => {
        const body = c.req.valid('json');
        const user = await auth.register({ tenantName: body.tenant_name, email: body.email, password: body.password });
        return c.json(user, 201);
      },
    )
    .post(
      '/token',
      describeRoute({ summary: 'Log in with the OAuth2 password form', tags: ['auth'], responses: loggedIn }),
      formBody(TokenForm),
      async (c) => {
        const form = c.req.valid('form');
        return c.json(await auth.login(form.username, form.password));
      },
    )
    .get(
      '/users/me',
      describeRoute({ summary: 'The current user', tags: ['auth'], responses: me }),
      authenticated,
      async (c) => c.json(await auth.currentUser(c.get('auth'))),
    )
    .post(
      '/api/v1/auth/register',
      describeRoute({ summary: 'Register a user and a new tenant', tags: ['auth'], responses: registered }),
      jsonBody(RegisterBody),
      async (c) => {
        const body = c.req.valid('json');
        const user = await auth.register({ tenantName: body.name, email: body.email, password: body.password });
        return c.json(user, 201);
      },
    )
    .post(
      '/api/v1/auth/login',
      describeRoute({ summary: 'Log in with JSON credentials', tags: ['auth'], responses: loggedIn }),
      jsonBody(LoginBody),
      async (c) => {
        const body = c.req.valid('json');
        return c.json(await auth.login(body.email, body.password));
      },
    )
    .get(
      '/api/v1/auth/me',
      describeRoute({ summary: 'The current user', tags: ['auth'], responses: me }),
      authenticated,
      async (c) => c.json(await auth.currentUser(c.get('auth'))),
    );
}
