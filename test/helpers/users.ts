import { randomBytes } from 'node:crypto';
import assert from 'node:assert/strict';
import type { TestApp } from './app.js';

export interface RegisteredUser {
  email: string;
  password: string;
  tenantName: string;
  userId: string;
  tenantId: string;
  token: string;
}

export function uniqueSuffix(): string {
  return randomBytes(4).toString('hex');
}

/** Registers a user with a tenant of its own and logs in through the JSON route. */
export async function registerAndLogin(app: TestApp, label = 'tenant'): Promise<RegisteredUser> {
  const suffix = uniqueSuffix();
  const email = `${label}-${suffix}@example.com`;
  const password = 'correct horse battery';
  const tenantName = `${label} ${suffix}`;
  const registered = await app.post('/api/v1/auth/register', { name: tenantName, email, password });
  assert.equal(registered.status, 201, JSON.stringify(registered.body));
  const login = await app.post('/api/v1/auth/login', { email, password });
  assert.equal(login.status, 200, JSON.stringify(login.body));
  return { email, password, tenantName, userId: registered.body.id, tenantId: registered.body.tenant_id, token: login.body.access_token };
}
