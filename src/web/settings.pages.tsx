import { Hono, type Context } from 'hono';
import type { FC } from 'hono/jsx';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { AppError } from '../errors.js';
import { ROLES, roleAtLeast, type Principal, type Role } from '../http/types.js';
import { PutSlackIntegrationBody, type SlackIntegrationOut, type WebhookSecretOut } from '../integrations/integrations.schemas.js';
import type { SlackIntegrations } from '../integrations/slack-integration.js';
import type { WebhookSecrets } from '../integrations/webhook-secrets.js';
import { ApiKeyBody, ChangeRoleBody, InvitationBody, type ApiKeyOut, type InvitationOut, type MemberOut } from '../tenants/tenants.schemas.js';
import type { TenantService } from '../tenants/tenants.service.js';
import { InputField, SelectField, TextAreaField } from './fields.js';
import { errorsByField, formFields, noErrors, parseForm, type FormErrors } from './forms.js';
import { formatTime } from './format.js';
import { signedInFrame, type WebKit } from './kit.js';
import { ActionButton, CsrfField, Layout, Notice, paths, renderPage, type Frame } from './layout.js';
import { servedOverHttps, type SignedInEnv } from './session.js';

// The tenant's settings, for its admins: members and roles, invitations, API keys, the Slack
// integration and the webhook signing secret. Every change goes through the same services as
// /api/v1/tenant/*, which also decide who may do what (an admin removes members and viewers; only
// owners change roles or remove admins); the page offers only what the reader's role allows.

type Section = 'invite' | 'key' | 'slack';

/** Messages a redirect asks the page to show, by a fixed key. */
const DONE: Record<string, string> = {
  role: 'Role changed.',
  removed: 'Member removed.',
  invitation_revoked: 'Invitation revoked.',
  key_revoked: 'API key revoked: it is refused from now on.',
  slack_saved: 'Slack integration saved.',
  slack_removed: 'Slack integration removed.',
  rotated: 'Webhook secret rotated. The previous one keeps signing callbacks for a day, so receivers can switch over.',
};

interface SettingsView {
  members: MemberOut[];
  invitations: InvitationOut[];
  apiKeys: ApiKeyOut[];
  slack: { integration?: SlackIntegrationOut; problem?: string };
  secret: WebhookSecretOut;
}

/** What the page says besides its data: a notice, a secret shown once, what a form was given and its errors. */
interface SettingsMessages {
  notice?: { kind: 'success' | 'error'; text: string };
  created?: { kind: 'invitation'; link: string; email: string } | { kind: 'key'; key: string; name: string };
  values?: Record<string, string>;
  errors?: FormErrors;
}

const grantable = (role: Role) => ROLES.filter((candidate) => roleAtLeast(role, candidate)).map((candidate): [string, string] => [candidate, candidate]);

const Members: FC<{ frame: Frame; auth: Principal; members: MemberOut[] }> = ({ frame, auth, members }) => (
  <section class="card" id="members" aria-labelledby="members-heading">
    <h2 id="members-heading">Members</h2>
    <div class="table-wrap">
      <table class="settings">
        <thead>
          <tr>
            <th scope="col">Email</th>
            <th scope="col">Role</th>
            <th scope="col">Joined</th>
            <th scope="col">
              <span class="visually-hidden">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {members.map((member) => {
            const self = member.id === auth.userId;
            const mayRemove = !self && (auth.role === 'owner' || !roleAtLeast(member.role, 'admin'));
            return (
              <tr>
                <td>
                  {member.email}
                  {self && <span class="muted"> (you)</span>}
                </td>
                <td>
                  {auth.role === 'owner' ? (
                    <form method="post" action={`${paths.settings}/members/${member.id}/role`} class="inline-form">
                      <CsrfField token={frame.csrf} />
                      <label class="visually-hidden" for={`role-${member.id}`}>
                        Role of {member.email}
                      </label>
                      <select id={`role-${member.id}`} name="role">
                        {ROLES.map((role) => (
                          <option value={role} selected={role === member.role}>
                            {role}
                          </option>
                        ))}
                      </select>
                      <button type="submit" class="button small">
                        Change
                      </button>
                    </form>
                  ) : (
                    member.role
                  )}
                </td>
                <td>{formatTime(member.created_at)}</td>
                <td class="row-actions">
                  {mayRemove && <ActionButton action={`${paths.settings}/members/${member.id}/remove`} csrf={frame.csrf} label="Remove" about={member.email} variant="plain" />}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  </section>
);

const Invitations: FC<{ frame: Frame; auth: Principal; invitations: InvitationOut[]; messages: SettingsMessages }> = ({ frame, auth, invitations, messages }) => {
  const errors = messages.errors ?? noErrors();
  const values = messages.values ?? {};
  const created = messages.created?.kind === 'invitation' ? messages.created : undefined;
  const now = Date.now();
  return (
    <section class="card" id="invitations" aria-labelledby="invitations-heading">
      <h2 id="invitations-heading">Invitations</h2>
      {created && (
        <Notice kind="success">
          <p>
            Invitation for {created.email} created. Send them this link; it is shown only now, and works once, for that email, for 7 days:
          </p>
          <p>
            <code class="secret" id="invitation-link">
              {created.link}
            </code>
          </p>
        </Notice>
      )}
      <form method="post" action={`${paths.settings}/invitations`} class="row-form" novalidate>
        <CsrfField token={frame.csrf} />
        <InputField id="invite-email" name="email" label="Email" type="email" autocomplete="off" value={values['invite-email']} error={errors.fields['invite-email']} required />
        <SelectField id="invite-role" name="role" label="Role" value={values['invite-role'] ?? 'member'} options={grantable(auth.role)} error={errors.fields['invite-role']} required />
        <button type="submit" class="button primary">
          Invite
        </button>
      </form>
      {invitations.length > 0 && (
        <div class="table-wrap">
          <table class="settings">
            <thead>
              <tr>
                <th scope="col">Email</th>
                <th scope="col">Role</th>
                <th scope="col">State</th>
                <th scope="col">
                  <span class="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {invitations.map((invitation) => {
                const state = invitation.accepted_at
                  ? `accepted ${formatTime(invitation.accepted_at)}`
                  : Date.parse(invitation.expires_at) < now
                    ? 'expired'
                    : `open until ${formatTime(invitation.expires_at)}`;
                return (
                  <tr>
                    <td>{invitation.email}</td>
                    <td>{invitation.role}</td>
                    <td>{state}</td>
                    <td class="row-actions">
                      {!invitation.accepted_at && (
                        <ActionButton action={`${paths.settings}/invitations/${invitation.id}/revoke`} csrf={frame.csrf} label="Revoke" about={`the invitation for ${invitation.email}`} variant="plain" />
                      )}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
};

const ApiKeys: FC<{ frame: Frame; auth: Principal; apiKeys: ApiKeyOut[]; messages: SettingsMessages }> = ({ frame, auth, apiKeys, messages }) => {
  const errors = messages.errors ?? noErrors();
  const values = messages.values ?? {};
  const created = messages.created?.kind === 'key' ? messages.created : undefined;
  return (
    <section class="card" id="api-keys" aria-labelledby="api-keys-heading">
      <h2 id="api-keys-heading">API keys</h2>
      <p class="muted">Keys act for the tenant with the role they were made with; send one as <code>Authorization: Bearer &lt;key&gt;</code>.</p>
      {created && (
        <Notice kind="success">
          <p>API key “{created.name}” created. Copy it now: it is not shown again.</p>
          <p>
            <code class="secret" id="new-api-key">
              {created.key}
            </code>
          </p>
        </Notice>
      )}
      <form method="post" action={`${paths.settings}/api-keys`} class="row-form" novalidate>
        <CsrfField token={frame.csrf} />
        <InputField id="key-name" name="name" label="Name" autocomplete="off" value={values['key-name']} error={errors.fields['key-name']} placeholder="CI deploys" required />
        <SelectField id="key-role" name="role" label="Role" value={values['key-role'] ?? 'member'} options={grantable(auth.role)} error={errors.fields['key-role']} required />
        <button type="submit" class="button primary">
          Create key
        </button>
      </form>
      {apiKeys.length > 0 && (
        <div class="table-wrap">
          <table class="settings">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Key</th>
                <th scope="col">Role</th>
                <th scope="col">Last used</th>
                <th scope="col">
                  <span class="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {apiKeys.map((key) => (
                <tr>
                  <td>{key.name}</td>
                  <td>
                    <code>{key.prefix}…</code>
                  </td>
                  <td>{key.role}</td>
                  <td>{key.last_used_at ? formatTime(key.last_used_at) : 'never'}</td>
                  <td class="row-actions">
                    <ActionButton action={`${paths.settings}/api-keys/${key.id}/revoke`} csrf={frame.csrf} label="Revoke" about={`the key ${key.name}`} variant="plain" />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
};

const Slack: FC<{ frame: Frame; slack: SettingsView['slack']; messages: SettingsMessages }> = ({ frame, slack, messages }) => {
  const errors = messages.errors ?? noErrors();
  const values = messages.values ?? {};
  const integration = slack.integration;
  const sectionErrors = errors.general.length > 0 && values.section === 'slack' ? errors.general : [];
  return (
    <section class="card" id="slack" aria-labelledby="slack-heading">
      <h2 id="slack-heading">Slack</h2>
      {slack.problem && <Notice kind="error">{slack.problem}</Notice>}
      {sectionErrors.length > 0 && <Notice kind="error">{sectionErrors.join(' ')}</Notice>}
      {integration ? (
        <dl class="facts">
          <dt>Webhook</dt>
          <dd class="wrap">
            <code>{integration.webhook_url}</code>
          </dd>
          <dt>Default channel</dt>
          <dd>{integration.default_channel ?? 'none (tasks name their channel)'}</dd>
          <dt>Allowed channels</dt>
          <dd>{integration.allowed_channels?.join(', ') ?? 'any'}</dd>
          <dt>Updated</dt>
          <dd>{formatTime(integration.updated_at)}</dd>
        </dl>
      ) : (
        !slack.problem && <p class="muted">Not set up: tasks post through the operator's Slack webhook, if there is one.</p>
      )}
      <form method="post" action={`${paths.settings}/slack`} novalidate class="stack-form">
        <CsrfField token={frame.csrf} />
        <InputField
          id="slack-webhook_url"
          name="webhook_url"
          label="Webhook URL"
          type="url"
          autocomplete="off"
          placeholder="https://hooks.slack.com/services/…"
          hint="Stored encrypted and never shown again: enter it each time you save."
          value={values['slack-webhook_url']}
          error={errors.fields['slack-webhook_url']}
          required
        />
        <InputField
          id="slack-default_channel"
          name="default_channel"
          label="Default channel"
          placeholder="#general"
          hint="For tasks that name no channel."
          value={values['slack-default_channel'] ?? integration?.default_channel ?? ''}
          error={errors.fields['slack-default_channel']}
        />
        <TextAreaField
          id="slack-allowed_channels"
          name="allowed_channels"
          label="Allowed channels"
          rows={3}
          hint="One per line; leave empty to allow any."
          value={values['slack-allowed_channels'] ?? integration?.allowed_channels?.join('\n') ?? ''}
          error={errors.fields['slack-allowed_channels']}
        />
        <div class="button-row">
          <button type="submit" class="button primary">
            Save Slack integration
          </button>
        </div>
      </form>
      {integration && (
        <div class="button-row spaced">
          <ActionButton action={`${paths.settings}/slack/remove`} csrf={frame.csrf} label="Remove Slack integration" variant="danger" />
        </div>
      )}
    </section>
  );
};

const WebhookSecret: FC<{ frame: Frame; secret: WebhookSecretOut }> = ({ frame, secret }) => (
  <section class="card" id="webhooks" aria-labelledby="webhooks-heading">
    <h2 id="webhooks-heading">Webhook signing secret</h2>
    <p class="muted">Completion callbacks are signed with this secret (Standard Webhooks), so receivers can tell they come from us.</p>
    <details class="secret-details">
      <summary>Show the secret</summary>
      <code class="secret">{secret.secret}</code>
    </details>
    <dl class="facts">
      <dt>Created</dt>
      <dd>{formatTime(secret.created_at)}</dd>
      <dt>Previous secret</dt>
      <dd>{secret.previous_secret_expires_at ? `still signs until ${formatTime(secret.previous_secret_expires_at)}` : 'none'}</dd>
    </dl>
    <div class="button-row spaced">
      <ActionButton action={`${paths.settings}/webhook-secret/rotate`} csrf={frame.csrf} label="Rotate secret" />
    </div>
  </section>
);

const SettingsPage: FC<{ frame: Frame; auth: Principal; view: SettingsView; messages: SettingsMessages }> = ({ frame, auth, view, messages }) => (
  <Layout frame={frame} title="Settings" section="settings">
    <div class="page-head">
      <h1>Settings</h1>
    </div>
    <nav class="subnav" aria-label="Settings sections">
      <a href="#members">Members</a>
      <a href="#invitations">Invitations</a>
      <a href="#api-keys">API keys</a>
      <a href="#slack">Slack</a>
      <a href="#webhooks">Webhook secret</a>
    </nav>
    {messages.notice && <Notice kind={messages.notice.kind}>{messages.notice.text}</Notice>}
    <Members frame={frame} auth={auth} members={view.members} />
    <Invitations frame={frame} auth={auth} invitations={view.invitations} messages={messages} />
    <ApiKeys frame={frame} auth={auth} apiKeys={view.apiKeys} messages={messages} />
    <Slack frame={frame} slack={view.slack} messages={messages} />
    <WebhookSecret frame={frame} secret={view.secret} />
  </Layout>
);

/** The settings page and its forms (admins and owners). */
export function settingsPages(kit: WebKit, deps: { tenants: TenantService; slack: SlackIntegrations; webhookSecrets: WebhookSecrets; trustedProxies: number }) {
  const { tenants, slack, webhookSecrets } = deps;
  const { signedIn } = kit.sessions;

  async function load(auth: Principal): Promise<SettingsView> {
    const [members, invitations, apiKeys, integration, secret] = await Promise.all([
      tenants.listUsers(auth),
      tenants.listInvitations(auth),
      tenants.listApiKeys(auth),
      slack.get(auth).then(
        (found): SettingsView['slack'] => ({ integration: found }),
        (error: unknown): SettingsView['slack'] => {
          if (error instanceof AppError && error.code === 'not_found') return {};
          // Stored, but not readable with the configured key: the page says so.
          if (error instanceof AppError && error.code === 'unavailable' && typeof error.detail === 'string') return { problem: error.detail };
          throw error;
        },
      ),
      webhookSecrets.get(auth),
    ]);
    return { members, invitations, apiKeys, slack: integration, secret };
  }

  const show = async (c: Context<SignedInEnv>, messages: SettingsMessages = {}, status: ContentfulStatusCode = 200) =>
    renderPage(c, <SettingsPage frame={signedInFrame(kit, c)} auth={c.get('auth')} view={await load(c.get('auth'))} messages={messages} />, status);

  const done = (c: Context, key: keyof typeof DONE, anchor: string) => c.redirect(`${paths.settings}?done=${key}#${anchor}`, 303);

  /** A form's validation issues, by `${section}-${field}`; the form's values kept under the same names. */
  const invalid = (c: Context<SignedInEnv>, section: Section, fields: Record<string, string>, issues: { loc: (string | number)[]; msg: string; type: string }[], status: ContentfulStatusCode = 422) =>
    show(
      c,
      {
        values: { section, ...Object.fromEntries(Object.entries(fields).map(([name, value]) => [`${section}-${name}`, value])) },
        errors: errorsByField(issues, (loc) => (typeof loc[0] === 'string' ? `${section}-${loc[0]}` : undefined)),
      },
      status,
    );

  /** A refusal of the services that the page explains (the last owner, a role above one's own). */
  const refused = (c: Context<SignedInEnv>, error: unknown) => {
    if (error instanceof AppError && typeof error.detail === 'string' && ['conflict', 'forbidden', 'not_found', 'unavailable'].includes(error.code)) {
      return show(c, { notice: { kind: 'error', text: error.detail } }, error.status as ContentfulStatusCode);
    }
    throw error;
  };

  const origin = (c: Context) => {
    const url = new URL(c.req.url);
    return `${servedOverHttps(c, deps.trustedProxies) ? 'https' : url.protocol.slice(0, -1)}://${url.host}`;
  };

  return new Hono<SignedInEnv>()
    .get('/settings', signedIn('admin'), (c) => {
      const text = DONE[c.req.query('done') ?? ''];
      return show(c, text ? { notice: { kind: 'success', text } } : {});
    })
    .post('/settings/members/:id/role', signedIn('owner'), async (c) => {
      const parsed = parseForm(ChangeRoleBody, { role: (await formFields(c)).role ?? '' });
      if (!parsed.ok) return show(c, { notice: { kind: 'error', text: parsed.issues[0]!.msg } }, 422);
      try {
        await tenants.changeRole(c.get('auth'), c.req.param('id'), parsed.value.role);
      } catch (error) {
        return refused(c, error);
      }
      return done(c, 'role', 'members');
    })
    .post('/settings/members/:id/remove', signedIn('admin'), async (c) => {
      try {
        await tenants.removeUser(c.get('auth'), c.req.param('id'));
      } catch (error) {
        return refused(c, error);
      }
      return done(c, 'removed', 'members');
    })
    .post('/settings/invitations', signedIn('admin'), async (c) => {
      const fields = await formFields(c);
      const parsed = parseForm(InvitationBody, { email: fields.email ?? '', role: fields.role ?? '' });
      if (!parsed.ok) return invalid(c, 'invite', fields, parsed.issues);
      try {
        const invitation = await tenants.invite(c.get('auth'), parsed.value);
        const link = `${origin(c)}${paths.join}?token=${encodeURIComponent(invitation.token)}`;
        return show(c, { created: { kind: 'invitation', link, email: invitation.email } }, 201);
      } catch (error) {
        return refused(c, error);
      }
    })
    .post('/settings/invitations/:id/revoke', signedIn('admin'), async (c) => {
      try {
        await tenants.revokeInvitation(c.get('auth'), c.req.param('id'));
      } catch (error) {
        return refused(c, error);
      }
      return done(c, 'invitation_revoked', 'invitations');
    })
    .post('/settings/api-keys', signedIn('admin'), async (c) => {
      const fields = await formFields(c);
      const parsed = parseForm(ApiKeyBody, { name: fields.name ?? '', role: fields.role ?? '' });
      if (!parsed.ok) return invalid(c, 'key', fields, parsed.issues);
      try {
        const key = await tenants.createApiKey(c.get('auth'), parsed.value);
        return show(c, { created: { kind: 'key', key: key.key, name: key.name } }, 201);
      } catch (error) {
        return refused(c, error);
      }
    })
    .post('/settings/api-keys/:id/revoke', signedIn('admin'), async (c) => {
      try {
        await tenants.revokeApiKey(c.get('auth'), c.req.param('id'));
      } catch (error) {
        return refused(c, error);
      }
      return done(c, 'key_revoked', 'api-keys');
    })
    .post('/settings/slack', signedIn('admin'), async (c) => {
      const fields = await formFields(c);
      const channels = (fields.allowed_channels ?? '')
        .split(/[\n,]/)
        .map((channel) => channel.trim())
        .filter((channel) => channel !== '');
      const body = {
        webhook_url: fields.webhook_url ?? '',
        default_channel: (fields.default_channel ?? '').trim() === '' ? null : fields.default_channel,
        allowed_channels: channels.length === 0 ? null : channels,
      };
      const parsed = parseForm(PutSlackIntegrationBody, body);
      if (!parsed.ok) return invalid(c, 'slack', fields, parsed.issues);
      try {
        await slack.put(c.get('auth'), parsed.value);
      } catch (error) {
        if (error instanceof AppError && error.code === 'validation' && Array.isArray(error.detail)) return invalid(c, 'slack', fields, error.detail);
        if (error instanceof AppError && error.code === 'unavailable' && typeof error.detail === 'string') {
          return invalid(c, 'slack', fields, [{ loc: [], msg: error.detail, type: 'unavailable' }], 503);
        }
        throw error;
      }
      return done(c, 'slack_saved', 'slack');
    })
    .post('/settings/slack/remove', signedIn('admin'), async (c) => {
      try {
        await slack.remove(c.get('auth'));
      } catch (error) {
        return refused(c, error);
      }
      return done(c, 'slack_removed', 'slack');
    })
    .post('/settings/webhook-secret/rotate', signedIn('admin'), async (c) => {
      await webhookSecrets.rotate(c.get('auth'));
      return done(c, 'rotated', 'webhooks');
    });
}
