import type { MiddlewareHandler } from 'hono';
import { AppError, notAuthenticated } from '../errors.js';
import { withDoc } from '../http/openapi.js';
import type { AppEnv } from '../http/types.js';
import type { TokenVersions } from './token-versions.js';
import type { TokenIssuer } from './tokens.js';

/**
 * Requires a verified bearer token of a user that still exists, in the tenant the token names,
 * and whose tokens have not been revoked since it was issued; puts its user and tenant on the
 * context. This is the only place a tenant id enters a request.
 */
export function requireAuth(tokens: TokenIssuer, versions: TokenVersions): MiddlewareHandler<AppEnv> {
  return withDoc(
    async function requireAuth(c, next) {
      const header = c.req.header('Authorization');
      if (!header) throw notAuthenticated('Not authenticated');
      const match = /^Bearer +([^\s]+) *$/i.exec(header);
      // A header that is not a bearer credential at all is refused outright, as the reference did.
      if (!match) throw new AppError('forbidden', 'Not authenticated');
      const auth = await tokens.verify(match[1]!);
      const holder = await versions.holder(auth.userId);
      if (!holder || holder.tenantId !== auth.tenantId || holder.tokenVersion !== auth.tokenVersion) {
        throw notAuthenticated('Token has been revoked');
      }
      c.set('auth', auth);
      await next();
    },
    {
      security: 'bearer',
      responses: {
        401: { description: 'Missing, invalid, expired or revoked token' },
        403: { description: 'Authorization header is not a bearer token' },
      },
    },
  );
}
