import { randomBytes } from 'node:crypto';
import { hash, verify } from '@node-rs/argon2';
import type { Db } from '../db/client.js';
import { violatedUniqueConstraint } from '../db/errors.js';
import { AppError, notAuthenticated } from '../errors.js';
import type { AuthContext } from '../http/types.js';
import * as users from './auth.repository.js';
import type { TokenOut, UserOut } from './auth.schemas.js';
import type { TokenIssuer } from './tokens.js';

const BAD_CREDENTIALS = 'Incorrect email or password';

export interface AuthService {
  register(input: { tenantName: string; email: string; password: string }): Promise<UserOut>;
  login(email: string, password: string): Promise<TokenOut>;
  currentUser(auth: AuthContext): Promise<UserOut>;
}

function toUserOut(user: { id: string; email: string; tenant_id: string; created_at: Date }, tenantName: string): UserOut {
  return {
    id: user.id,
    email: user.email,
    tenant_id: user.tenant_id,
    tenant: { id: user.tenant_id, name: tenantName },
    created_at: user.created_at.toISOString(),
  };
}

const duplicateEmail = () => new AppError('bad_request', 'Email already registered');
const duplicateTenant = () => new AppError('conflict', 'Tenant name already registered');

export function createAuthService(deps: { db: Db; tokens: TokenIssuer }): AuthService {
  const { db, tokens } = deps;
  // Unknown emails are verified against this hash so that login costs the same either way.
  let decoyHash: Promise<string> | undefined;
  const getDecoyHash = () => (decoyHash ??= hash(randomBytes(32).toString('hex')));

  return {
    async register({ tenantName, email, password }) {
      // Checked first so that repeating a registration says "email" rather than "tenant".
      if (await users.emailExists(db, email)) throw duplicateEmail();
      // @node-rs/argon2 defaults to Argon2id with OWASP's parameters (19 MiB, t=2, p=1).
      const hashedPassword = await hash(password);
      try {
        return await db.transaction().execute(async (trx) => {
          // Joining an existing tenant by typing its name would hand over its data: refuse it.
          const tenant = await users.insertTenant(trx, tenantName);
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

    async login(email, password) {
      const user = await users.findUserByEmail(db, email);
      const passwordMatches = await verify(user?.hashed_password ?? (await getDecoyHash()), password).catch(() => false);
      if (!user || !passwordMatches) {
        throw notAuthenticated(BAD_CREDENTIALS);
      }
      const accessToken = await tokens.issue({ userId: user.id, tenantId: user.tenant_id, email: user.email });
      return { access_token: accessToken, token_type: 'bearer' };
    },

    async currentUser(auth) {
      const user = await users.findUserInTenant(db, auth.tenantId, auth.userId);
      if (!user) throw notAuthenticated();
      return toUserOut(user, user.tenant_name);
    },
  };
}
