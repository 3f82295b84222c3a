import { Hono } from 'hono';
import type { Authenticated } from '../auth/auth.middleware.js';
import { describeRoute, type ParameterDoc } from '../http/openapi.js';
import type { AppEnv } from '../http/types.js';
import { jsonBody } from '../http/validation.js';
import {
  ApiKeyBody,
  ApiKeysOut,
  ChangeRoleBody,
  CreatedApiKeyOut,
  CreatedInvitationOut,
  InvitationBody,
  InvitationsOut,
  MemberOut,
  MembersOut,
} from './tenants.schemas.js';
import { INVITATION_VALID_DAYS, type TenantService } from './tenants.service.js';

const idParameter = (what: string): ParameterDoc => ({
  name: 'id',
  in: 'path',
  description: `The ${what} id (a UUID)`,
  required: true,
  schema: { type: 'string', format: 'uuid' },
});
const aboveOwnRole = { 403: { description: "The role asked for is above the caller's own" } };

/**
 * The tenant's administration: its members and their roles, invitations to join it, and API
 * keys. The rules of who may do what are the service's (see TenantService).
 */
export function tenantRoutes(tenants: TenantService, authenticated: Authenticated) {
  return new Hono<AppEnv>()
    .get(
      '/api/v1/tenant/users',
      describeRoute({
        summary: "The tenant's users and their roles",
        tags: ['tenant'],
        responses: { 200: { description: 'The users, oldest first', schema: MembersOut } },
      }),
      authenticated('admin'),
      async (c) => c.json({ users: await tenants.listUsers(c.get('auth')) }),
    )
    .patch(
      '/api/v1/tenant/users/:id',
      describeRoute({
        summary: "Change a user's role",
        description:
          'Takes effect from the next request of the user (and of its API keys), in every API process. An owner may change its ' +
          'own role while another owner remains.',
        tags: ['tenant'],
        parameters: [idParameter('user')],
        responses: {
          200: { description: 'The user, with its new role', schema: MemberOut },
          404: { description: 'No such user in your tenant' },
          409: { description: 'The tenant would be left without an owner' },
        },
      }),
      authenticated('owner'),
      jsonBody(ChangeRoleBody),
      async (c) => c.json(await tenants.changeRole(c.get('auth'), c.req.param('id'), c.req.valid('json').role)),
    )
    .delete(
      '/api/v1/tenant/users/:id',
      describeRoute({
        summary: 'Remove a user from the tenant',
        description:
          "The user's tokens and API keys are refused from the next request on, in every API process; the tasks it created stay. " +
          'Admins remove members and viewers; removing an admin or an owner takes an owner. The rules are the same for yourself.',
        tags: ['tenant'],
        parameters: [idParameter('user')],
        responses: {
          204: { description: 'Removed' },
          403: { description: 'The user is an admin or an owner, and the caller is not an owner' },
          404: { description: 'No such user in your tenant' },
          409: { description: "The user is the tenant's last owner" },
        },
      }),
      authenticated('admin'),
      async (c) => {
        await tenants.removeUser(c.get('auth'), c.req.param('id'));
        return c.body(null, 204);
      },
    )
    .post(
      '/api/v1/tenant/invitations',
      describeRoute({
        summary: 'Invite someone to join the tenant',
        description:
          `The answer holds the invitation's token, shown this once: whoever registers with it (\`invite_token\`) and the invited ` +
          `email joins the tenant with the role given. It may be accepted once, within ${INVITATION_VALID_DAYS} days.`,
        tags: ['tenant'],
        responses: { 201: { description: 'The invitation and its token', schema: CreatedInvitationOut }, ...aboveOwnRole },
      }),
      authenticated('admin'),
      jsonBody(InvitationBody),
      async (c) => c.json(await tenants.invite(c.get('auth'), c.req.valid('json')), 201),
    )
    .get(
      '/api/v1/tenant/invitations',
      describeRoute({
        summary: "The tenant's invitations, newest first (never their tokens)",
        tags: ['tenant'],
        responses: { 200: { description: 'The invitations', schema: InvitationsOut } },
      }),
      authenticated('admin'),
      async (c) => c.json({ invitations: await tenants.listInvitations(c.get('auth')) }),
    )
    .delete(
      '/api/v1/tenant/invitations/:id',
      describeRoute({
        summary: 'Revoke an invitation',
        description: 'Deletes it: its token is refused from then on. A user who already accepted it stays.',
        tags: ['tenant'],
        parameters: [idParameter('invitation')],
        responses: { 204: { description: 'Revoked' }, 404: { description: 'No such invitation in your tenant' } },
      }),
      authenticated('admin'),
      async (c) => {
        await tenants.revokeInvitation(c.get('auth'), c.req.param('id'));
        return c.body(null, 204);
      },
    )
    .post(
      '/api/v1/tenant/api-keys',
      describeRoute({
        summary: 'Create an API key',
        description:
          'The answer holds the key, shown this once. `Authorization: Bearer <key>` works wherever a token does, with the ' +
          "key's role, but never more than its creator's role at the time of the request; it stops working when revoked or when " +
          'its creator is removed.',
        tags: ['tenant'],
        responses: { 201: { description: 'The key', schema: CreatedApiKeyOut }, ...aboveOwnRole },
      }),
      authenticated('admin'),
      jsonBody(ApiKeyBody),
      async (c) => c.json(await tenants.createApiKey(c.get('auth'), c.req.valid('json')), 201),
    )
    .get(
      '/api/v1/tenant/api-keys',
      describeRoute({
        summary: "The tenant's API keys, newest first (never the keys themselves)",
        tags: ['tenant'],
        responses: { 200: { description: 'The keys', schema: ApiKeysOut } },
      }),
      authenticated('admin'),
      async (c) => c.json({ api_keys: await tenants.listApiKeys(c.get('auth')) }),
    )
    .delete(
      '/api/v1/tenant/api-keys/:id',
      describeRoute({
        summary: 'Revoke an API key',
        description: 'The key is refused (401) from the next request on, in every API process.',
        tags: ['tenant'],
        parameters: [idParameter('API key')],
        responses: { 204: { description: 'Revoked' }, 404: { description: 'No such API key in your tenant' } },
      }),
      authenticated('admin'),
      async (c) => {
        await tenants.revokeApiKey(c.get('auth'), c.req.param('id'));
        return c.body(null, 204);
      },
    );
}
