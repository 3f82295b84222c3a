import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { hash, verify } from '@node-rs/argon2';
import type { Config } from '../config.js';
import type { Db } from '../db/client.js';
import { violatedUniqueConstraint } from '../db/errors.js';
import { AppError, notAuthenticated } from '../errors.js';
import type { Principal, Role } from '../http/types.js';
import { createSemaphore, SemaphoreFullError } from '../lib/semaphore.js';
import * as users from './auth.repository.js';
import type { TokenOut, UserOut } from './auth.schemas.js';
import { countAttempt, forgiveAttempt } from './throttle.js';
import type { TokenVersions } from './token-versions.js';
import type { TokenIssuer } from './tokens.js';

const BAD_CREDENTIALS = 'Incorrect email or password';
const LOGIN_WINDOW_SECONDS = 15 * 60;
const REGISTRATION_WINDOW_SECONDS = 60 * 60;

/**
 * Argon2 runs on libuv's thread pool, which also serves DNS lookups and WebCrypto. Hashes are
 * CPU-bound: more at once than cores-1 would only take the CPU from every other request. Those
 * beyond wait their turn, in a line long enough that clients waiting for their answer (50 at once
 * on one core: about 1.5 s each) are served rather than sent back to retry at once, which costs
 * more CPU than waiting; a flood beyond it is answered 503 at once instead of queueing without bound.
 */
const HASH_SLOTS = Math.max(1, availableParallelism() - 1);
const HASHES_WAITING = 64 * HASH_SLOTS;
/** How many sign-ins and registrations may be hashing or waiting to at once; more are 503. */
export const PASSWORD_HASHES_ADMITTED = HASH_SLOTS + HASHES_WAITING;

/** A registration founds a tenant, or joins one by invitation. */
export type Registration = { email: string; password: string; clientAddress: string } & ({ tenantName: string } | { inviteToken: string });

/** How registration reaches the invitations (which the tenants domain keeps). */
export interface InvitationRedeemer {
  /** Whether `email` may accept the invitation of `token` now. */
  acceptable(token: string, email: string): Promise<boolean>;
  /** Accepts it in `trx`, at most once ever: its tenant and role, or undefined when `email` may not (or no longer). */
  redeem(trx: Db, token: string, email: string): Promise<{ tenantId: string; tenantName: string; role: Role } | undefined>;
}

export interface AuthService {
  register(input: Registration): Promise<UserOut>;
  login(input: { email: string; password: string; clientAddress: string }): Promise<TokenOut>;
  currentUser(auth: Principal): Promise<UserOut>;
  /**
   * Revokes every token of the user, this one included (signing out everywhere). Not with an API
   * key: a key acting for its user must not end the user's sessions (it is revoked on its own).
   */
  revokeTokens(auth: Principal): Promise<void>;
}

function toUserOut(user: { id: string; email: string; tenant_id: string; role: Role; created_at: Date }, tenantName: string): UserOut {
  return {
    id: user.id,
    email: user.email,
    tenant_id: user.tenant_id,
    tenant: { id: user.tenant_id, name: tenantName },
    role: user.role,
    created_at: user.created_at.toISOString(),
  };
}

const duplicateEmail = () => new AppError('bad_request', 'Email already registered');
const duplicateTenant = () => new AppError('conflict', 'Tenant name already registered');
/** One answer for an unknown, expired, revoked, used or someone else's token: it tells no more than that. */
const invalidInvitation = () =>
  new AppError('bad_request', 'Invitation is not valid for this email: unknown, expired, revoked or already used');

export function createAuthService(deps: {
  db: Db;
  tokens: TokenIssuer;
  versions: TokenVersions;
  invitations: InvitationRedeemer;
  config: Config;
}): AuthService {
  const { db, tokens, versions, invitations, config } = deps;
  const hashing = createSemaphore({ slots: HASH_SLOTS, waiting: HASHES_WAITING });
  const hashed = async <T>(work: () => Promise<T>): Promise<T> => {
    try {
      return await hashing.run(work);
    } catch (error) {
      if (!(error instanceof SemaphoreFullError)) throw error;
      throw new AppError('unavailable', 'Too many sign-ins and registrations in progress; try again shortly', {
        headers: { 'Retry-After': '1' },
      });
    }
  };
  // Unknown emails are verified against this hash so that login costs the same either way.
  let decoyHash: Promise<string> | undefined;
  const getDecoyHash = () => (decoyHash ??= hash(randomBytes(32).toString('hex')));

  const loginLimits = (email: string, clientAddress: string) => [
    {
      key: `login:account:${email}`,
      max: config.loginFailureLimit,
      windowSeconds: LOGIN_WINDOW_SECONDS,
      refusal: 'Too many failed sign-in attempts for this account',
    },
    {
      key: `login:address:${clientAddress}`,
      max: config.loginFailureLimit,
      windowSeconds: LOGIN_WINDOW_SECONDS,
      refusal: 'Too many failed sign-in attempts from this address',
    },
  ];

  return {
    async register(registration) {
      const { email, password, clientAddress } = registration;
      // Counted before anything else: each registration costs a hash, and the email check below
      // tells whether an address is registered.
      await countAttempt(db, [
        {
          key: `register:address:${clientAddress}`,
          max: config.registrationLimitPerHour,
          windowSeconds: REGISTRATION_WINDOW_SECONDS,
          refusal: 'Too many registrations from this address',
        },
      ]);
      // Checked first so that repeating a registration says "email" rather than "tenant".
      if (await users.emailExists(db, email)) throw duplicateEmail();
      // Checked before the hash, so that a wrong token costs none; accepted in the transaction.
      if ('inviteToken' in registration && !(await invitations.acceptable(registration.inviteToken, email))) throw invalidInvitation();
      // @node-rs/argon2 defaults to Argon2id with OWASP's parameters (19 MiB, t=2, p=1).
      const hashedPassword = await hashed(() => hash(password));
      try {
        return await db.transaction().execute(async (trx) => {
          if ('inviteToken' in registration) {
            // Still acceptable now? Only one registration can make it accepted.
            const invitation = await invitations.redeem(trx, registration.inviteToken, email);
            if (!invitation) throw invalidInvitation();
            const user = await users.insertUser(trx, { tenantId: invitation.tenantId, email, hashedPassword, role: invitation.role });
            return toUserOut(user, invitation.tenantName);
          }
          // Joining an existing tenant by typing its name would hand over its data: refuse it.
          const tenant = await users.insertTenant(trx, registration.tenantName);
          const user = await users.insertUser(trx, { tenantId: tenant.id, email, hashedPassword });
          return toUserOut(user, tenant.name);
        });
      } catch (error) {
        const constraint = violatedUniqueConstraint(error);
        if (constraint === 'tenants_name_key') throw duplicateTenant();
        if (constraint === 'users_email_key') throw duplicateEmail();
        throw error;
      }
    },

    async login({ email, password, clientAddress }) {
      const limits = loginLimits(email, clientAddress);
      // Every attempt counts until it succeeds, so simultaneous guesses cannot slip past the limit.
      await countAttempt(db, limits);
      // The lookup waits for a hashing slot too: a flood beyond the line costs no query.
      const user = await hashed(async () => {
        const found = await users.findUserByEmail(db, email);
        const passwordMatches = await verify(found?.hashed_password ?? (await getDecoyHash()), password).catch(() => false);
        return passwordMatches ? found : undefined;
      });
      if (!user) throw notAuthenticated(BAD_CREDENTIALS);
      if (config.loginFailureLimit > 0) await forgiveAttempt(db, { reset: [limits[0]!.key], refund: [limits[1]!.key] });
      const accessToken = await tokens.issue({ userId: user.id, tenantId: user.tenant_id, email: user.email, tokenVersion: user.token_version });
      return { access_token: accessToken, token_type: 'bearer' };
    },

    async currentUser(auth) {
      const user = await users.findUserInTenant(db, auth.tenantId, auth.userId);
      if (!user) throw notAuthenticated();
      return toUserOut(user, user.tenant_name);
    },

    async revokeTokens(auth) {
      if (auth.apiKeyId) throw new AppError('bad_request', 'An API key does not sign out; revoke it instead (DELETE /api/v1/tenant/api-keys/{id})');
      await users.revokeTokens(db, auth.tenantId, auth.userId);
      versions.forget(auth.userId);
    },
  };
}
