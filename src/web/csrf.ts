import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { AppError } from '../errors.js';

/** The form field every state-changing dashboard form carries. */
export const CSRF_FIELD = '_csrf';

export const csrfRefused = () =>
  new AppError('forbidden', 'This form has expired or did not come from this dashboard. Go back, reload the page and try again.');

/**
 * Tokens for the dashboard's forms: an HMAC of the browser's random nonce (a cookie) and of its
 * session, under a key of its own derived from the JWT secret. A page from another site can
 * neither read the nonce nor compute the HMAC, so it cannot make a form that is accepted; bound
 * to the session, a token is worthless to anyone who planted a nonce of their own.
 */
export function createCsrf(jwtSecret: string) {
  const key = createHmac('sha256', jwtSecret).update('autonomos dashboard csrf v1').digest();
  const tokenFor = (nonce: string, session: string | undefined) =>
    createHmac('sha256', key).update(nonce).update('\0').update(session ?? '').digest('base64url');
  return {
    newNonce: () => randomBytes(32).toString('base64url'),
    tokenFor,
    /** Whether `token` is the one this nonce and session were given. */
    accepts(token: unknown, nonce: string | undefined, session: string | undefined): boolean {
      if (typeof token !== 'string' || !nonce) return false;
      const expected = Buffer.from(tokenFor(nonce, session));
      const given = Buffer.from(token);
      return given.length === expected.length && timingSafeEqual(given, expected);
    },
  };
}

export type Csrf = ReturnType<typeof createCsrf>;
