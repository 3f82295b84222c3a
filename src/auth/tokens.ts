import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import { notAuthenticated } from '../errors.js';
import type { AuthContext } from '../http/types.js';
import { isUuid } from '../lib/uuid.js';

const ALGORITHM = 'HS256';

export interface TokenIssuer {
  issue(user: AuthContext): Promise<string>;
  /** Verifies signature (HS256 only), expiry and claims; throws a 401 AppError otherwise. */
  verify(token: string): Promise<AuthContext>;
}

export function createTokenIssuer(secret: string, expireMinutes: number): TokenIssuer {
  const key = new TextEncoder().encode(secret);
  return {
    async issue(user) {
      return new SignJWT({ user_id: user.userId, tenant_id: user.tenantId })
        .setProtectedHeader({ alg: ALGORITHM, typ: 'JWT' })
        .setSubject(user.email)
        .setIssuedAt()
        .setExpirationTime(`${expireMinutes}m`)
        .sign(key);
    },
    async verify(token) {
      try {
        const { payload } = await jwtVerify(token, key, { algorithms: [ALGORITHM], requiredClaims: ['exp', 'sub'] });
        const { user_id: userId, tenant_id: tenantId, sub } = payload;
        if (!isUuid(userId) || !isUuid(tenantId)) {
          throw notAuthenticated();
        }
        return { userId, tenantId, email: sub as string };
      } catch (error) {
        if (error instanceof joseErrors.JWTExpired) throw notAuthenticated('Token has expired');
        throw notAuthenticated();
      }
    },
  };
}
