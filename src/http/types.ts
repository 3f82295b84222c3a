import type { Logger } from '../logger.js';

/** What a tenant's user may do, each role all that the one before it may: see roleAtLeast. */
export const ROLES = ['viewer', 'member', 'admin', 'owner'] as const;
export type Role = (typeof ROLES)[number];

/** Whether `role` includes everything `needed` may do. */
export function roleAtLeast(role: Role, needed: Role): boolean {
  return ROLES.indexOf(role) >= ROLES.indexOf(needed);
}

/**
 * Who is calling, as proven by a verified token or API key, with the role the tenant gives them
 * now. The only source of a tenant id.
 */
export interface Principal {
  tenantId: string;
  /** The user acting; for an API key, the user who made the key (and whose removal ends it). */
  userId: string;
  role: Role;
  /** Set when the request came with an API key rather than a user's token. */
  apiKeyId?: string;
}

/** Every request's variables. There is no principal here: see AuthenticatedEnv. */
export interface AppVariables {
  requestId: string;
  logger: Logger;
}

export type AppEnv = { Variables: AppVariables };

/**
 * What the authentication middleware adds. A handler sees `auth` in its context's type only when
 * that middleware stands before it in its route, so a route that reads the principal without
 * authenticating does not compile.
 */
export type AuthenticatedEnv = { Variables: AppVariables & { auth: Principal } };
