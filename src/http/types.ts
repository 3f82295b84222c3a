import type { Logger } from '../logger.js';

/** Who is calling, as proven by a verified token. The only source of a tenant id. */
export interface AuthContext {
  userId: string;
  tenantId: string;
  email: string;
}

export interface AppVariables {
  requestId: string;
  logger: Logger;
  auth: AuthContext;
}

export type AppEnv = { Variables: AppVariables };
