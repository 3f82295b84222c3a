import type { Context, MiddlewareHandler } from 'hono';
import { AppError, notAuthenticated } from '../errors.js';
import { BEARER_SECURITY, withDoc } from '../http/openapi.js';
import type { AppEnv, AuthContext } from '../http/types.js';
import type { TokenVersions } from './token-versions.js';
import type { TokenIssuer } from './tokens.js';

/** Who an Authorization header proves to be, now; throws the 401 or 403 AppError otherwise. */
async function authenticate(tokens: TokenIssuer, versions: TokenVersions, header: string | undefined): Promise<AuthContext> {
  if (!header) throw notAuthenticated('Not authenticated');
  const match = /^Bearer +([^\s]+) *$/i.exec(header);
  // A header that is not a bearer credential at all is refused outright, as the reference did.
  if (!match) throw new AppError('forbidden', 'Not authenticated');
  const auth = await tokens.verify(match[1]!);
  const holder = await versions.holder(auth.userId);
  if (!holder || holder.tenantId !== auth.tenantId || holder.tokenVersion !== auth.tokenVersion) {
    throw notAuthenticated('Token has been revoked');
  }
  return auth;
}

/**
 * Requires a verified bearer token of a user that still exists, in the tenant the token names,
 * and whose tokens have not been revoked since it was issued; puts its user and tenant on the
 * context. This is the only place a tenant id enters a request.
 */
export function requireAuth(tokens: TokenIssuer, versions: TokenVersions): MiddlewareHandler<AppEnv> {
  return withDoc(
    async function requireAuth(c, next) {
      c.set('auth', await authenticate(tokens, versions, c.req.header('Authorization')));
      await next();
    },
    {
      security: BEARER_SECURITY,
      responses: {
        401: { description: 'Missing, invalid, expired or revoked token' },
        403: { description: 'Authorization header is not a bearer token' },
      },
    },
  );
}

/**
 * For responses that outlast their request (an event stream): whether the request's token would
 * still be accepted now, i.e. it has not expired and its user's tokens were not revoked. An
 * unanswerable question (the database is down) counts as yes: it is asked again later.
 */
export function credentialsStillValid(tokens: TokenIssuer, versions: TokenVersions): (c: Context<AppEnv>) => Promise<boolean> {
  return async (c) => {
    try {
      await authenticate(tokens, versions, c.req.header('Authorization'));
      return true;
    } catch (error) {
      return !(error instanceof AppError);
    }
  };
}
