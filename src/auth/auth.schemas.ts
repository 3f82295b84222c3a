import * as v from 'valibot';
import { ROLES } from '../http/types.js';
import { INVISIBLE_OR_CONTROL } from '../lib/text.js';

export const EmailSchema = v.pipe(
  v.string('Email must be a string'),
  v.trim(),
  v.toLowerCase(),
  v.nonEmpty('Email is required'),
  v.maxLength(254, 'Email must be at most 254 characters'),
  v.email('Email must be a valid email address'),
);

export const PasswordSchema = v.pipe(
  v.string('Password must be a string'),
  v.minLength(8, 'Password must be at least 8 characters'),
  v.maxLength(128, 'Password must be at most 128 characters'),
);

/**
 * Normalised before the case-insensitive uniqueness check, so that `Acme`, `acme `, `Ａｃｍｅ`
 * (full width) and `Acme \t Corp` / `Acme Corp` are one name; characters that would hide in it
 * (zero-width, bidi overrides, other controls) are refused rather than stripped, so what is
 * stored is what was seen.
 */
const TenantNameSchema = v.pipe(
  v.string('Tenant name must be a string'),
  v.check((name) => !INVISIBLE_OR_CONTROL.test(name), 'Tenant name must not contain control or invisible formatting characters'),
  v.transform((name) => name.normalize('NFKC').trim().replace(/\s+/gu, ' ')),
  v.nonEmpty('Tenant name is required'),
  v.maxLength(255, 'Tenant name must be at most 255 characters'),
);

/** Login takes any non-empty string: a wrong email is a 401, never a hint about format. */
const LoginEmailSchema = v.pipe(v.string('Email must be a string'), v.trim(), v.toLowerCase(), v.nonEmpty('Email is required'), v.maxLength(254));
const LoginPasswordSchema = v.pipe(v.string('Password must be a string'), v.nonEmpty('Password is required'), v.maxLength(1024));

/** Whether it is an invitation is the invitation's business (400 if not); here, only its shape. */
const InviteTokenSchema = v.pipe(v.string(), v.nonEmpty(), v.maxLength(128));
const INVITE_TOKEN_MESSAGE = 'Invitation token must be a non-empty string of at most 128 characters';
const NAME_AND_INVITATION = 'Give either a tenant name (a new tenant) or invite_token (to join one), not both';

/**
 * A registration either founds a tenant (with its name) or joins one by invitation: whether the
 * body has `invite_token` chooses which. The choosing refuses a malformed `invite_token` with
 * this message (and a body that is no object with the usual one).
 */
const inviteTokenMessage = (issue: v.BaseIssue<unknown>) => (issue.path ? INVITE_TOKEN_MESSAGE : issue.message);

export const LegacyRegisterBody = v.variant(
  'invite_token',
  [
    v.object({ tenant_name: TenantNameSchema, email: EmailSchema, password: PasswordSchema, invite_token: v.optional(v.never()) }),
    v.object({ invite_token: InviteTokenSchema, email: EmailSchema, password: PasswordSchema, tenant_name: v.optional(v.never(NAME_AND_INVITATION)) }),
  ],
  inviteTokenMessage,
);

export const RegisterBody = v.variant(
  'invite_token',
  [
    v.object({ name: TenantNameSchema, email: EmailSchema, password: PasswordSchema, invite_token: v.optional(v.never()) }),
    v.object({ invite_token: InviteTokenSchema, email: EmailSchema, password: PasswordSchema, name: v.optional(v.never(NAME_AND_INVITATION)) }),
  ],
  inviteTokenMessage,
);

export const LoginBody = v.object({
  email: LoginEmailSchema,
  password: LoginPasswordSchema,
});

/** The OAuth2 password-flow form; `grant_type` and `scope` are accepted and ignored. */
export const TokenForm = v.object({
  username: LoginEmailSchema,
  password: LoginPasswordSchema,
  grant_type: v.optional(v.string()),
  scope: v.optional(v.string()),
});

export const TokenOut = v.object({
  access_token: v.string(),
  token_type: v.literal('bearer'),
});

export const UserOut = v.object({
  id: v.pipe(v.string(), v.uuid()),
  email: v.pipe(v.string(), v.email()),
  tenant_id: v.pipe(v.string(), v.uuid()),
  tenant: v.object({ id: v.pipe(v.string(), v.uuid()), name: v.string() }),
  role: v.picklist(ROLES),
  created_at: v.pipe(v.string(), v.isoTimestamp()),
});

export type UserOut = v.InferOutput<typeof UserOut>;
export type TokenOut = v.InferOutput<typeof TokenOut>;
