import type { MiddlewareHandler } from 'hono';
import { AppError, notAuthenticated } from '../errors.js';
import { BEARER_SECURITY, withDoc } from '../http/openapi.js';
import { roleAtLeast, type AuthenticatedEnv, type Principal, type Role } from '../http/types.js';
import type { TokenVersions } from './token-versions.js';
import type { TokenIssuer } from './tokens.js';

/** API keys are bearer credentials with this prefix; anything else is a user's token (a JWT). */
export const API_KEY_PREFIX = 'ak_';

/** Finds the principal an API key stands for: undefined for an unknown or revoked key. */
export interface ApiKeyResolver {
  principalFor(key: string): Promise<Principal | undefined>;
}

/** Who an Authorization header proves to be, now; throws the 401 or 403 AppError otherwise. */
async function authenticate(
  deps: { tokens: TokenIssuer; versions: TokenVersions; apiKeys: ApiKeyResolver },
  header: string | undefined,
): Promise<Principal> {
  if (!header) throw notAuthenticated('Not authenticated');
  const match = /^Bearer +([^\s]+) *$/i.exec(header);
  // A header that is not a bearer credential at all is refused outright, as the reference did.
  if (!match) throw new AppError('forbidden', 'Not authenticated');
  const credential = match[1]!;
  if (credential.startsWith(API_KEY_PREFIX)) {
    const principal = await deps.apiKeys.principalFor(credential);
    if (!principal) throw notAuthenticated('Invalid or revoked API key');
    return principal;
  }
  return principalForToken(deps, credential);
}

/**
 * Who a user's token (a JWT) stands for now, with the role the tenant gives the user today;
 * throws the 401 AppError when it is invalid, expired or revoked. The dashboard's session holds
 * such a token, so revocation and role changes reach it the same way.
 */
export async function principalForToken(deps: { tokens: TokenIssuer; versions: TokenVersions }, token: string): Promise<Principal> {
  const claims = await deps.tokens.verify(token);
  const holder = await deps.versions.holder(claims.userId);
  if (!holder || holder.tenantId !== claims.tenantId || holder.tokenVersion !== claims.tokenVersion) {
    throw notAuthenticated('Token has been revoked');
  }
  return { tenantId: claims.tenantId, userId: claims.userId, role: holder.role };
}

export const requiresRole = (role: Role) => new AppError('forbidden', `Requires role ${role}`);

/** The authentication of a protected route, at the least role it needs. */
export type Authenticated = (role: Role) => MiddlewareHandler<AuthenticatedEnv>;

/**
 * Requires a bearer credential, a user's token or an API key, that is valid now (a user that still
 * exists, in the tenant the token names, whose tokens were not revoked since; a key not revoked,
 * of a user that still exists), with at least `role` in its tenant (else 403 naming the role);
 * puts the principal on the context. This is the only place a tenant id enters a request.
 */
export function requireAuth(deps: { tokens: TokenIssuer; versions: TokenVersions; apiKeys: ApiKeyResolver }): Authenticated {
  return (role) =>
    withDoc(
      async function requireAuth(c, next) {
        const principal = await authenticate(deps, c.req.header('Authorization'));
        if (!roleAtLeast(principal.role, role)) throw requiresRole(role);
        c.set('auth', principal);
        await next();
      } as MiddlewareHandler<AuthenticatedEnv>,
      {
        security: BEARER_SECURITY,
        responses: {
          401: { description: 'Missing, invalid, expired or revoked token or API key' },
          403: { description: `Authorization header is not a bearer credential, or the caller's role is below ${role}` },
        },
      },
    );
}

/**
 * For responses that outlast their request (an event stream): whether the request's Authorization
 * header would still be accepted now (not expired, revoked or removed). An unanswerable question (the
 * database is down) counts as yes: it is asked again later.
 */
export function credentialsStillValid(deps: {
  tokens: TokenIssuer;
  versions: TokenVersions;
  apiKeys: ApiKeyResolver;
}): (authorization: string | undefined) => Promise<boolean> {
  return async (authorization) => {
    try {
      await authenticate(deps, authorization);
      return true;
    } catch (error) {
      return !(error instanceof AppError);
    }
  };
}
