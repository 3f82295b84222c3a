import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import { notAuthenticated } from '../errors.js';
import { isUuid } from '../lib/uuid.js';

const ALGORITHM = 'HS256';
/** Who issues the tokens and what they are for: a token signed with the same secret for anything else is refused. */
export const TOKEN_ISSUER = 'autonomos';
export const TOKEN_AUDIENCE = 'autonomos-api';
/**
 * Verified tokens remembered until they expire, so a client's every request does not pay for an
 * HMAC check on the crypto thread pool (jose's WebCrypto verify is asynchronous): the signature
 * of a given token string never changes. Bounded; the oldest entries go first.
 */
const VERIFIED_TOKENS_KEPT = 10_000;

/** What a token says: whose it is, in which tenant, and the user's token version when it was issued. */
export interface TokenClaims {
  userId: string;
  tenantId: string;
  email: string;
  /** A token older than the user's current version is revoked. */
  tokenVersion: number;
}

export interface TokenIssuer {
  issue(user: TokenClaims): Promise<string>;
  /**
   * Verifies signature (HS256 only), expiry and claims; throws a 401 AppError otherwise. Whether
   * the user still exists and the token is not revoked is for the caller to check (TokenVersions).
   */
  verify(token: string): Promise<TokenClaims>;
}

export function createTokenIssuer(secret: string, expireMinutes: number): TokenIssuer {
  const key = new TextEncoder().encode(secret);
  const verified = new Map<string, { auth: TokenClaims; expiresAtMs: number }>();
  return {
    async issue(user) {
      return new SignJWT({ user_id: user.userId, tenant_id: user.tenantId, ver: user.tokenVersion })
        .setProtectedHeader({ alg: ALGORITHM, typ: 'JWT' })
        .setSubject(user.email)
        .setIssuer(TOKEN_ISSUER)
        .setAudience(TOKEN_AUDIENCE)
        .setIssuedAt()
        .setExpirationTime(`${expireMinutes}m`)
        .sign(key);
    },
    async verify(token) {
      const known = verified.get(token);
      if (known) {
        if (Date.now() < known.expiresAtMs) return known.auth;
        verified.delete(token);
      }
      try {
        const { payload } = await jwtVerify(token, key, {
          algorithms: [ALGORITHM],
          issuer: TOKEN_ISSUER,
          audience: TOKEN_AUDIENCE,
          requiredClaims: ['exp', 'sub', 'iss', 'aud'],
        });
        const { user_id: userId, tenant_id: tenantId, sub, ver } = payload;
        if (!isUuid(userId) || !isUuid(tenantId) || !Number.isSafeInteger(ver)) {
          throw notAuthenticated();
        }
        const auth = { userId, tenantId, email: sub as string, tokenVersion: ver as number };
        if (verified.size >= VERIFIED_TOKENS_KEPT) verified.delete(verified.keys().next().value!);
        verified.set(token, { auth, expiresAtMs: payload.exp! * 1000 });
        return auth;
      } catch (error) {
        if (error instanceof joseErrors.JWTExpired) throw notAuthenticated('Token has expired');
        throw notAuthenticated();
      }
    },
  };
}
