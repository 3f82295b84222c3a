import type { Logger } from '../logger.js';

/** Who is calling, as proven by a verified token. The only source of a tenant id. */
export interface AuthContext {
  userId: string;
  tenantId: string;
  email: string;
  /** The user's token version the token was issued at: a token older than the user's current one is revoked. */
  tokenVersion: number;
}

export interface AppVariables {
  requestId: string;
  logger: Logger;
  auth: AuthContext;
}

export type AppEnv = { Variables: AppVariables };
