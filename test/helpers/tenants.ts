import assert from 'node:assert/strict';
import type { Role } from '../../src/http/types.js';
import type { TestApp } from './app.js';
import { uniqueSuffix, type RegisteredUser } from './users.js';

/** Invites `email` into the inviter's tenant; returns the invitation with its token. */
export async function invite(app: TestApp, inviter: { token: string }, email: string, role: Role): Promise<any> {
  const response = await app.post('/api/v1/tenant/invitations', { email, role }, { token: inviter.token });
  assert.equal(response.status, 201, JSON.stringify(response.body));
  return response.body;
}

/** A new user of the inviter's tenant with `role`, joined by invitation and logged in. */
export async function joinTenant(app: TestApp, inviter: RegisteredUser, role: Role, label: string = role): Promise<RegisteredUser> {
  const email = `${label}-${uniqueSuffix()}@example.com`;
  const password = 'correct horse battery';
  const { token: inviteToken } = await invite(app, inviter, email, role);
  const registered = await app.post('/api/v1/auth/register', { invite_token: inviteToken, email, password });
  assert.equal(registered.status, 201, JSON.stringify(registered.body));
  assert.equal(registered.body.role, role);
  const login = await app.post('/api/v1/auth/login', { email, password });
  assert.equal(login.status, 200, JSON.stringify(login.body));
  return { email, password, tenantName: inviter.tenantName, userId: registered.body.id, tenantId: registered.body.tenant_id, token: login.body.access_token };
}

/** Creates an API key as `creator`; returns it with its key. */
export async function createApiKey(app: TestApp, creator: { token: string }, role: Role, name = `${role} key`): Promise<any> {
  const response = await app.post('/api/v1/tenant/api-keys', { name, role }, { token: creator.token });
  assert.equal(response.status, 201, JSON.stringify(response.body));
  return response.body;
}
