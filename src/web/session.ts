import type { Context, MiddlewareHandler } from 'hono';
import { readForm } from './read-form.js';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import type { CookieOptions } from 'hono/utils/cookie';
import { principalForToken } from '../auth/auth.middleware.js';
import type { UserOut } from '../auth/auth.schemas.js';
import type { AuthService } from '../auth/auth.service.js';
import type { TokenVersions } from '../auth/token-versions.js';
import type { TokenIssuer } from '../auth/tokens.js';
import { AppError } from '../errors.js';
import { roleAtLeast, type AppVariables, type Principal, type Role } from '../http/types.js';
import { CSRF_FIELD, csrfRefused, type Csrf } from './csrf.js';

/** Where the dashboard is served; its cookies are sent to nothing else. */
export const DASHBOARD_PATH = '/app';
/** The user's token (the JWT the API issues at sign-in): the session is as good as the token, no better. */
const SESSION_COOKIE = 'autonomos_session';
/** A random value per browser that the form tokens are made from (see createCsrf). */
const NONCE_COOKIE = 'autonomos_csrf';

/** Every dashboard request: the token its forms must carry. */
export type WebEnv = { Variables: AppVariables & { csrf: string } };
/**
 * A page behind `signedIn`: the principal, resolved from the session as the API resolves a bearer
 * token, and the user as GET /api/v1/auth/me shows it. A page outside it has neither to read.
 */
export type SignedInEnv = { Variables: AppVariables & { csrf: string; auth: Principal; user: UserOut } };

/** A page needs a signed-in user and the request has none; `expired`: it had one that is no longer valid. */
export class SignInRequired extends Error {
  override name = 'SignInRequired';
  constructor(readonly expired: boolean) {
    super(expired ? 'Session expired' : 'Not signed in');
  }
}

export const roleRefused = (needed: Role, actual: Role) =>
  new AppError('forbidden', `This needs the ${needed} role, and yours is ${actual}. An admin of your tenant can change your role.`);

/**
 * Whether the browser reached us over https: directly, or, behind TRUST_PROXY proxies, as the
 * outermost one says in X-Forwarded-Proto (read like X-Forwarded-For: that many entries from the
 * right, the rest being whatever the client sent). Without proxies the header is ignored.
 */
export function servedOverHttps(c: Context, trustedProxies: number): boolean {
  if (new URL(c.req.url).protocol === 'https:') return true;
  if (trustedProxies === 0) return false;
  const forwarded = (c.req.header('X-Forwarded-Proto') ?? '').split(',').map((entry) => entry.trim().toLowerCase());
  return forwarded[Math.max(0, forwarded.length - trustedProxies)] === 'https';
}

export interface Sessions {
  /** Gives every dashboard request its form token (setting the nonce cookie if the browser has none) and refuses a POST without it. */
  forms: MiddlewareHandler<WebEnv>;
  /** Requires a valid session with at least `role`; puts the principal and the user on the context. */
  signedIn(role: Role): MiddlewareHandler<SignedInEnv>;
  /** Starts a session holding `token` (the API's JWT for the user). */
  start(c: Context, token: string): void;
  /** Ends this browser's session. */
  end(c: Context): void;
  /** For the event stream: whether the request's session would still be accepted now. */
  stillValid(c: Context): Promise<boolean>;
}

export function createSessions(deps: {
  tokens: TokenIssuer;
  versions: TokenVersions;
  auth: AuthService;
  csrf: Csrf;
  trustedProxies: number;
  /** How long the session cookie is kept: the token's own lifetime (JWT_EXPIRE_MINUTES). */
  sessionMinutes: number;
}): Sessions {
  const { csrf } = deps;
  // HttpOnly: no script reads them; SameSite=Strict: no other site's page makes the browser send
  // them; Secure whenever the browser came over https.
  const cookie = (c: Context, maxAgeSeconds?: number): CookieOptions => ({
    path: DASHBOARD_PATH,
    httpOnly: true,
    sameSite: 'Strict',
    secure: servedOverHttps(c, deps.trustedProxies),
    ...(maxAgeSeconds !== undefined ? { maxAge: maxAgeSeconds } : {}),
  });

  const principalOf = (token: string) => principalForToken(deps, token);

  return {
    forms: async function dashboardForms(c, next) {
      let nonce = getCookie(c, NONCE_COOKIE);
      const session = getCookie(c, SESSION_COOKIE);
      if (c.req.method !== 'GET' && c.req.method !== 'HEAD') {
        const form = await readForm(c);
        if (!csrf.accepts(form[CSRF_FIELD], nonce, session)) throw csrfRefused();
      }
      if (!nonce) {
        nonce = csrf.newNonce();
        setCookie(c, NONCE_COOKIE, nonce, cookie(c));
      }
      c.set('csrf', csrf.tokenFor(nonce, session));
      await next();
    },

    signedIn(role) {
      return async function signedIn(c, next) {
        const token = getCookie(c, SESSION_COOKIE);
        if (!token) throw new SignInRequired(false);
        let principal: Principal;
        try {
          principal = await principalOf(token);
        } catch (error) {
          if (error instanceof AppError && error.code === 'unauthorized') throw new SignInRequired(true);
          throw error;
        }
        if (!roleAtLeast(principal.role, role)) throw roleRefused(role, principal.role);
        c.set('auth', principal);
        c.set('user', await deps.auth.currentUser(principal));
        await next();
      };
    },

    start(c, token) {
      setCookie(c, SESSION_COOKIE, token, cookie(c, deps.sessionMinutes * 60));
    },

    end(c) {
      deleteCookie(c, SESSION_COOKIE, cookie(c));
    },

    async stillValid(c) {
      const token = getCookie(c, SESSION_COOKIE);
      if (!token) return false;
      try {
        await principalOf(token);
        return true;
      } catch (error) {
        // An unanswerable question (the database is down) counts as yes: it is asked again later.
        return !(error instanceof AppError);
      }
    },
  };
}
