import * as v from 'valibot';
import { EmailSchema } from '../auth/auth.schemas.js';
import { ROLES } from '../http/types.js';
import { INVISIBLE_OR_CONTROL } from '../lib/text.js';

const RoleSchema = v.picklist(ROLES, `Role must be one of ${ROLES.join(', ')}`);
const Uuid = v.pipe(v.string(), v.uuid());
const Timestamp = v.pipe(v.string(), v.isoTimestamp());

export const ChangeRoleBody = v.object({ role: RoleSchema });

export const InvitationBody = v.object({ email: EmailSchema, role: RoleSchema });

const ApiKeyName = v.pipe(
  v.string('Name must be a string'),
  v.check((name) => !INVISIBLE_OR_CONTROL.test(name), 'Name must not contain control or invisible formatting characters'),
  v.trim(),
  v.nonEmpty('Name is required'),
  v.maxLength(100, 'Name must be at most 100 characters'),
);

export const ApiKeyBody = v.object({ name: ApiKeyName, role: RoleSchema });

export const MemberOut = v.object({ id: Uuid, email: v.pipe(v.string(), v.email()), role: RoleSchema, created_at: Timestamp });
export const MembersOut = v.object({ users: v.array(MemberOut) });

export const InvitationOut = v.object({
  id: Uuid,
  email: v.pipe(v.string(), v.email()),
  role: RoleSchema,
  /** Null once the user who invited has been removed. */
  created_by: v.nullable(Uuid),
  created_at: Timestamp,
  expires_at: Timestamp,
  accepted_at: v.nullable(Timestamp),
});
export const InvitationsOut = v.object({ invitations: v.array(InvitationOut) });
export const CreatedInvitationOut = v.object({
  ...InvitationOut.entries,
  token: v.pipe(v.string(), v.description('Shown this once: pass it as `invite_token` to a register route')),
});

export const ApiKeyOut = v.object({
  id: Uuid,
  name: v.string(),
  role: RoleSchema,
  prefix: v.pipe(v.string(), v.description("The key's first characters, to recognise it by")),
  created_by: Uuid,
  created_at: Timestamp,
  last_used_at: v.pipe(v.nullable(Timestamp), v.description('When the key was last used, to the minute')),
});
export const ApiKeysOut = v.object({ api_keys: v.array(ApiKeyOut) });
export const CreatedApiKeyOut = v.object({
  ...ApiKeyOut.entries,
  key: v.pipe(v.string(), v.description('Shown this once: send it as `Authorization: Bearer <key>`')),
});

export type MemberOut = v.InferOutput<typeof MemberOut>;
export type InvitationOut = v.InferOutput<typeof InvitationOut>;
export type CreatedInvitationOut = v.InferOutput<typeof CreatedInvitationOut>;
export type ApiKeyOut = v.InferOutput<typeof ApiKeyOut>;
export type CreatedApiKeyOut = v.InferOutput<typeof CreatedApiKeyOut>;
