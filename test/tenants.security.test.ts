import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { createTokenVersions } from '../src/auth/token-versions.js';
import { createNotifications } from '../src/db/notifications.js';
import type { Database } from '../src/db/schema.js';
import { createApp } from '../src/http/app.js';
import { silentLogger } from '../src/logger.js';
import { createApiKeyResolver } from '../src/tenants/api-key-resolver.js';
import type { AppError } from '../src/errors.js';
import { createInvitationRedeemer, createTenantService } from '../src/tenants/tenants.service.js';
import { startTestApp, type TestApp } from './helpers/app.js';
import { createTask, slackPayload } from './helpers/engine.js';
import { eventually } from './helpers/poll.js';
import { createApiKey, invite, joinTenant } from './helpers/tenants.js';
import { registerAndLogin, uniqueSuffix, type RegisteredUser } from './helpers/users.js';

// A tenant's own administration: invitations, API keys, members and roles. Two tenants, so that
// each refusal to reach the other's members, invitations and keys is checked too.

const PASSWORD = 'correct horse battery';
const INVALID_INVITATION = { detail: 'Invitation is not valid for this email: unknown, expired, revoked or already used' };

let app: TestApp;
/** A second API process on the same database: only notifications tell it what the first changed. */
let secondApi: ReturnType<typeof createApp>;
let secondNotifications: ReturnType<typeof createNotifications>;
let owner: RegisteredUser;
let stranger: RegisteredUser;

before(async () => {
  app = await startTestApp();
  secondNotifications = createNotifications(app.database.url, { watch: app.watch });
  await secondNotifications.ready;
  secondApi = createApp({ db: app.db, boss: app.boss, config: app.config, logger: silentLogger, notifications: secondNotifications, metrics: app.metrics });
  owner = await registerAndLogin(app, 'owner');
  stranger = await registerAndLogin(app, 'stranger');
});

after(async () => {
  await secondNotifications?.close();
  await app?.close();
});

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
const freshEmail = (label: string) => `${label}-${uniqueSuffix()}@example.com`;

/** The status of a request to the second API process. */
async function onSecondApi(method: string, path: string, token: string): Promise<number> {
  return (await secondApi.request(path, { method, headers: { Authorization: `Bearer ${token}` } })).status;
}

/** Polls until the second API process answers `status`. */
async function secondApiAnswers(method: string, path: string, token: string, status: number, message: string): Promise<void> {
  await eventually(async () => ((await onSecondApi(method, path, token)) === status ? true : undefined), { timeoutMs: 2_000, message });
}

function register(email: string, inviteToken: string, path = '/api/v1/auth/register') {
  return app.post(path, { invite_token: inviteToken, email, password: PASSWORD });
}

async function countUsers(email: string): Promise<number> {
  return (await app.db.selectFrom('users').select('id').where('email', '=', email).execute()).length;
}

/** Every text column of every row of a table, to look for a secret in. */
async function tableText(table: 'invitations' | 'api_keys'): Promise<string> {
  const { rows } = await sql<Record<string, unknown>>`select * from ${sql.table(table)}`.execute(app.db);
  return JSON.stringify(rows);
}

describe('invitations', () => {
  test('an invitation joins its tenant once, with its role; its token is shown once and stored hashed', async () => {
    const email = freshEmail('invited');
    const invitation = await invite(app, owner, email, 'member');
    assert.match(invitation.token, /^inv_[A-Za-z0-9_-]{43}$/);
    assert.equal(invitation.email, email);
    assert.equal(invitation.role, 'member');
    assert.equal(invitation.created_by, owner.userId);
    assert.equal(invitation.accepted_at, null);
    const validFor = Date.parse(invitation.expires_at) - Date.parse(invitation.created_at);
    assert.equal(validFor, 7 * 24 * 3600 * 1000);

    const stored = await app.db.selectFrom('invitations').select('token_hash').where('id', '=', invitation.id).executeTakeFirstOrThrow();
    assert.equal(stored.token_hash, sha256(invitation.token));
    assert.ok(!(await tableText('invitations')).includes(invitation.token.slice(4)), 'the token is not stored');
    const listed = await app.get('/api/v1/tenant/invitations', { token: owner.token });
    assert.equal(listed.status, 200);
    const entry = listed.body.invitations.find((item: any) => item.id === invitation.id);
    const { token: _shownOnce, ...withoutToken } = invitation;
    assert.deepEqual(entry, withoutToken);
    assert.ok(!JSON.stringify(listed.body).includes(invitation.token));

    // The email is normalised as registration normalises it.
    const joined = await register(`  ${email.toUpperCase()} `, invitation.token);
    assert.equal(joined.status, 201, JSON.stringify(joined.body));
    assert.equal(joined.body.tenant_id, owner.tenantId);
    assert.deepEqual(joined.body.tenant, { id: owner.tenantId, name: owner.tenantName });
    assert.equal(joined.body.role, 'member');
    assert.equal(joined.body.email, email);
    const login = await app.post('/api/v1/auth/login', { email, password: PASSWORD });
    const me = await app.get('/api/v1/auth/me', { token: login.body.access_token });
    assert.equal(me.body.role, 'member');
    const task = await createTask(app, owner.token, { payload: slackPayload('#shared') });
    assert.equal((await app.get(`/api/v1/tasks/${task.id}`, { token: login.body.access_token })).status, 200, "the owner's tasks are the member's too");

    const after = await app.get('/api/v1/tenant/invitations', { token: owner.token });
    assert.ok(after.body.invitations.find((item: any) => item.id === invitation.id).accepted_at);

    // Used: refused, on both route sets, and nobody else gets in with it.
    const again = await register(freshEmail('again'), invitation.token);
    assert.equal(again.status, 400);
    assert.deepEqual(again.body, INVALID_INVITATION);
    const sameEmail = await register(email, invitation.token, '/users/register');
    assert.equal(sameEmail.status, 400);
  });

  test('expired, revoked, unknown and wrong-email tokens are refused alike and create no user', async () => {
    const email = freshEmail('refused');
    const expired = await invite(app, owner, email, 'viewer');
    await sql`update invitations set expires_at = now() - interval '1 second' where id = ${expired.id}`.execute(app.db);
    const revoked = await invite(app, owner, email, 'viewer');
    assert.equal((await app.delete(`/api/v1/tenant/invitations/${revoked.id}`, { token: owner.token })).status, 204);
    assert.equal((await app.delete(`/api/v1/tenant/invitations/${revoked.id}`, { token: owner.token })).status, 404);
    const someoneElses = await invite(app, owner, freshEmail('someone-else'), 'viewer');

    for (const [label, token] of [
      ['expired', expired.token],
      ['revoked', revoked.token],
      ['for another email', someoneElses.token],
      ['unknown', `inv_${'A'.repeat(43)}`],
      ['not a token at all', 'hello'],
    ]) {
      for (const path of ['/api/v1/auth/register', '/users/register']) {
        const response = await register(email, token!, path);
        assert.equal(response.status, 400, `${label} on ${path}: ${JSON.stringify(response.body)}`);
        assert.deepEqual(response.body, INVALID_INVITATION, label);
      }
    }
    assert.equal(await countUsers(email), 0);
    // A wrong email does not use the invitation up.
    assert.equal((await register(someoneElses.email, someoneElses.token)).status, 201);
  });

  test('of simultaneous registrations with one token exactly one joins; the acceptance itself happens once', async () => {
    const email = freshEmail('race');
    const invitation = await invite(app, owner, email, 'member');
    const answers = await Promise.all(Array.from({ length: 4 }, () => register(email, invitation.token)));
    assert.deepEqual(answers.map((answer) => answer.status).sort(), [201, 400, 400, 400], JSON.stringify(answers.map((answer) => answer.body)));
    assert.equal(await countUsers(email), 1);

    // Below the email's own uniqueness: the acceptance alone lets one of simultaneous takers through.
    const other = await invite(app, owner, freshEmail('race-direct'), 'member');
    const redeemer = createInvitationRedeemer(app.db);
    const redeemed = await Promise.all(
      Array.from({ length: 4 }, () => app.db.transaction().execute((trx) => redeemer.redeem(trx, other.token, other.email))),
    );
    assert.deepEqual(
      redeemed.filter((result) => result !== undefined),
      [{ tenantId: owner.tenantId, tenantName: owner.tenantName, role: 'member' }],
    );
  });

  test('nobody invites above their own role; members do not invite at all', async () => {
    const admin = await joinTenant(app, owner, 'admin');
    const member = await joinTenant(app, owner, 'member');
    const tooHigh = await app.post('/api/v1/tenant/invitations', { email: freshEmail('x'), role: 'owner' }, { token: admin.token });
    assert.equal(tooHigh.status, 403);
    assert.deepEqual(tooHigh.body, { detail: 'Requires role owner' });
    await invite(app, admin, freshEmail('fellow-admin'), 'admin');
    await invite(app, owner, freshEmail('co-owner'), 'owner');
    const byMember = await app.post('/api/v1/tenant/invitations', { email: freshEmail('x'), role: 'viewer' }, { token: member.token });
    assert.deepEqual([byMember.status, byMember.body], [403, { detail: 'Requires role admin' }]);
  });

  test('invalid invitation and registration bodies are 422 naming the field', async () => {
    const cases: [unknown, string][] = [
      [{ email: 'not-an-email', role: 'member' }, 'body.email'],
      [{ email: freshEmail('x'), role: 'superuser' }, 'body.role'],
      [{ email: freshEmail('x') }, 'body.role'],
    ];
    for (const [body, loc] of cases) {
      const response = await app.post('/api/v1/tenant/invitations', body, { token: owner.token });
      assert.equal(response.status, 422, JSON.stringify(body));
      assert.ok(response.body.detail.some((issue: any) => issue.loc.join('.') === loc), JSON.stringify(response.body));
    }
    const invitation = await invite(app, owner, freshEmail('both'), 'member');
    const registrations: [string, unknown, string][] = [
      ['/api/v1/auth/register', { name: `both ${uniqueSuffix()}`, invite_token: invitation.token, email: invitation.email, password: PASSWORD }, 'body.name'],
      ['/users/register', { tenant_name: `both ${uniqueSuffix()}`, invite_token: invitation.token, email: invitation.email, password: PASSWORD }, 'body.tenant_name'],
      ['/api/v1/auth/register', { invite_token: 42, email: invitation.email, password: PASSWORD }, 'body.invite_token'],
      ['/api/v1/auth/register', { invite_token: '', email: invitation.email, password: PASSWORD }, 'body.invite_token'],
      ['/api/v1/auth/register', { invite_token: invitation.token, email: invitation.email, password: 'short' }, 'body.password'],
    ];
    for (const [path, body, loc] of registrations) {
      const response = await app.post(path, body);
      assert.equal(response.status, 422, `${path} ${JSON.stringify(body)}`);
      assert.deepEqual(response.body.detail.map((issue: any) => issue.loc.join('.')), [loc], JSON.stringify(response.body));
    }
    assert.equal(await countUsers(invitation.email), 0);
    assert.equal((await register(invitation.email, invitation.token)).status, 201, 'the invitation is still there');
  });

  test("another tenant's invitations are neither listed nor revocable", async () => {
    const invitation = await invite(app, owner, freshEmail('private'), 'member');
    const listed = await app.get('/api/v1/tenant/invitations', { token: stranger.token });
    assert.ok(!listed.body.invitations.some((item: any) => item.id === invitation.id));
    const revoke = await app.delete(`/api/v1/tenant/invitations/${invitation.id}`, { token: stranger.token });
    assert.deepEqual([revoke.status, revoke.body], [404, { detail: 'Invitation not found' }]);
    assert.equal((await app.delete('/api/v1/tenant/invitations/not-a-uuid', { token: owner.token })).status, 404);
    assert.equal((await register(invitation.email, invitation.token)).status, 201);
  });
});

describe('API keys', () => {
  test('a key is shown once, stored hashed, listed by its prefix, and acts with its role', async () => {
    const created = await createApiKey(app, owner, 'member', 'deploy bot');
    assert.match(created.key, /^ak_[A-Za-z0-9_-]{43}$/);
    assert.deepEqual(
      { name: created.name, role: created.role, created_by: created.created_by, last_used_at: created.last_used_at },
      { name: 'deploy bot', role: 'member', created_by: owner.userId, last_used_at: null },
    );
    assert.ok(created.key.startsWith(created.prefix) && created.prefix.length === 11, created.prefix);

    const stored = await app.db.selectFrom('api_keys').select('key_hash').where('id', '=', created.id).executeTakeFirstOrThrow();
    assert.equal(stored.key_hash, sha256(created.key));
    assert.ok(!(await tableText('api_keys')).includes(created.key.slice(11)), 'the key is not stored');
    const listed = await app.get('/api/v1/tenant/api-keys', { token: owner.token });
    const { key: _shownOnce, ...withoutKey } = created;
    assert.deepEqual(
      listed.body.api_keys.find((item: any) => item.id === created.id),
      withoutKey,
    );
    assert.ok(!JSON.stringify(listed.body).includes(created.key));

    const task = await createTask(app, created.key, { payload: slackPayload('#from-a-key') });
    assert.equal((await app.get(`/api/v1/tasks/${task.id}`, { token: owner.token })).status, 200);
    const me = await app.get('/api/v1/auth/me', { token: created.key });
    assert.equal(me.body.id, owner.userId, 'a key acts as its user');
    const adminOnly = await app.get('/api/v1/tenant/api-keys', { token: created.key });
    assert.deepEqual([adminOnly.status, adminOnly.body], [403, { detail: 'Requires role admin' }]);
    const logout = await app.post('/api/v1/auth/logout', undefined, { token: created.key });
    assert.equal(logout.status, 400, 'a key does not sign its user out');
    assert.equal((await app.get('/api/v1/auth/me', { token: owner.token })).status, 200);

    // Its use is recorded (after the answer).
    await eventually(
      async () => {
        const keys = await app.get('/api/v1/tenant/api-keys', { token: owner.token });
        return keys.body.api_keys.find((item: any) => item.id === created.id).last_used_at ?? undefined;
      },
      { timeoutMs: 2_000, message: 'last_used_at recorded' },
    );
  });

  test('a revoked key is refused at once, and by every API process', async () => {
    const created = await createApiKey(app, owner, 'viewer');
    assert.equal((await app.get('/api/v1/tasks', { token: created.key })).status, 200);
    assert.equal(await onSecondApi('GET', '/api/v1/tasks', created.key), 200);

    assert.equal((await app.delete(`/api/v1/tenant/api-keys/${created.id}`, { token: owner.token })).status, 204);
    const refused = await app.get('/api/v1/tasks', { token: created.key });
    assert.deepEqual([refused.status, refused.body], [401, { detail: 'Invalid or revoked API key' }]);
    assert.equal(refused.headers.get('www-authenticate'), 'Bearer');
    await secondApiAnswers('GET', '/api/v1/tasks', created.key, 401, 'the second API process refusing the revoked key');
    assert.equal((await app.delete(`/api/v1/tenant/api-keys/${created.id}`, { token: owner.token })).status, 404);
  });

  test("a key's role is at most its creator's, at creation and at every request", async () => {
    const admin = await joinTenant(app, owner, 'admin');
    const tooHigh = await app.post('/api/v1/tenant/api-keys', { name: 'too high', role: 'owner' }, { token: admin.token });
    assert.deepEqual([tooHigh.status, tooHigh.body], [403, { detail: 'Requires role owner' }]);
    const key = (await createApiKey(app, admin, 'admin')).key;
    assert.equal((await app.get('/api/v1/tenant/api-keys', { token: key })).status, 200);
    assert.equal(await onSecondApi('GET', '/api/v1/tenant/api-keys', key), 200);

    const demoted = await app.request('PATCH', `/api/v1/tenant/users/${admin.userId}`, { token: owner.token, json: { role: 'member' } });
    assert.equal(demoted.status, 200);
    const capped = await app.get('/api/v1/tenant/api-keys', { token: key });
    assert.deepEqual([capped.status, capped.body], [403, { detail: 'Requires role admin' }]);
    assert.equal((await app.get('/api/v1/tasks', { token: key })).status, 200, 'the key still does what its creator may');
    await secondApiAnswers('GET', '/api/v1/tenant/api-keys', key, 403, 'the second API process capping the key');

    assert.equal((await app.request('PATCH', `/api/v1/tenant/users/${admin.userId}`, { token: owner.token, json: { role: 'admin' } })).status, 200);
    assert.equal((await app.get('/api/v1/tenant/api-keys', { token: key })).status, 200, 'the key has its own role again');
  });

  test('malformed and unknown keys are 401', async () => {
    for (const key of ['ak_', 'ak_short', `ak_${'A'.repeat(43)}`, `ak_${'A'.repeat(42)}!`, `ak_${'A'.repeat(44)}`]) {
      const response = await app.get('/api/v1/tasks', { token: key });
      assert.deepEqual([response.status, response.body], [401, { detail: 'Invalid or revoked API key' }], key);
    }
  });

  test("a key reaches only its own tenant, and another tenant's admin can neither list nor revoke it", async () => {
    const created = await createApiKey(app, owner, 'admin');
    const foreignTask = await createTask(app, stranger.token, { payload: slackPayload('#foreign') });
    const foreign = await app.get(`/api/v1/tasks/${foreignTask.id}`, { token: created.key });
    assert.deepEqual([foreign.status, foreign.body], [404, { detail: 'Task not found' }]);
    const listed = await app.get('/api/v1/tenant/api-keys', { token: stranger.token });
    assert.ok(!listed.body.api_keys.some((item: any) => item.id === created.id));
    const revoke = await app.delete(`/api/v1/tenant/api-keys/${created.id}`, { token: stranger.token });
    assert.deepEqual([revoke.status, revoke.body], [404, { detail: 'API key not found' }]);
    assert.equal((await app.get('/api/v1/tasks', { token: created.key })).status, 200);
  });

  test('a key is looked up once, and its use written at most once a minute', async () => {
    const created = await createApiKey(app, owner, 'viewer');
    const queries: string[] = [];
    // One connection: statements run in the order they were sent, so a write sent before a read has run by the read's end.
    const db = new Kysely<Database>({
      dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: app.database.url, max: 1 }) }),
      log: (event) => void queries.push(event.query.sql),
    });
    const notifications = createNotifications(app.database.url, { watch: app.watch });
    try {
      await notifications.ready;
      const resolver = createApiKeyResolver({ db, notifications, versions: createTokenVersions(db, notifications), logger: silentLogger });
      for (let i = 0; i < 5; i++) {
        const principal = await resolver.principalFor(created.key);
        assert.deepEqual(principal, { tenantId: owner.tenantId, userId: owner.userId, role: 'viewer', apiKeyId: created.id });
      }
      const row = await db.selectFrom('api_keys').select('last_used_at').where('id', '=', created.id).executeTakeFirstOrThrow();
      assert.ok(row.last_used_at);
      const keyLookups = queries.filter((query) => /from "api_keys" where "key_hash"/.test(query));
      const useWrites = queries.filter((query) => /^update "api_keys" set "last_used_at"/.test(query));
      assert.deepEqual([keyLookups.length, useWrites.length], [1, 1], queries.join('\n'));
    } finally {
      await notifications.close();
      await db.destroy();
    }
  });
});

describe('members and roles', () => {
  test('admins list the users; only owners change roles, which take effect at once', async () => {
    const admin = await joinTenant(app, owner, 'admin');
    const member = await joinTenant(app, owner, 'member');
    const listed = await app.get('/api/v1/tenant/users', { token: admin.token });
    assert.equal(listed.status, 200);
    const roles = new Map(listed.body.users.map((user: any) => [user.id, user.role]));
    assert.equal(roles.get(owner.userId), 'owner');
    assert.equal(roles.get(admin.userId), 'admin');
    assert.equal(roles.get(member.userId), 'member');
    assert.ok(!listed.body.users.some((user: any) => user.id === stranger.userId), "another tenant's users are not listed");
    assert.deepEqual(Object.keys(listed.body.users[0]).sort(), ['created_at', 'email', 'id', 'role']);
    assert.equal((await app.get('/api/v1/tenant/users', { token: member.token })).status, 403);

    const byAdmin = await app.request('PATCH', `/api/v1/tenant/users/${member.userId}`, { token: admin.token, json: { role: 'viewer' } });
    assert.deepEqual([byAdmin.status, byAdmin.body], [403, { detail: 'Requires role owner' }]);
    const promoted = await app.request('PATCH', `/api/v1/tenant/users/${member.userId}`, { token: owner.token, json: { role: 'admin' } });
    assert.equal(promoted.status, 200);
    assert.deepEqual(promoted.body, { ...listed.body.users.find((user: any) => user.id === member.userId), role: 'admin' });
    assert.equal((await app.get('/api/v1/tenant/users', { token: member.token })).status, 200);
    assert.equal(await onSecondApi('GET', '/api/v1/tenant/users', member.token), 200);
    assert.equal((await app.request('PATCH', `/api/v1/tenant/users/${member.userId}`, { token: owner.token, json: { role: 'viewer' } })).status, 200);
    assert.equal((await app.post('/api/v1/tasks', { payload: slackPayload('#demoted') }, { token: member.token })).status, 403);
    await secondApiAnswers('GET', '/api/v1/tenant/users', member.token, 403, 'the second API process seeing the demotion');

    const invalid = await app.request('PATCH', `/api/v1/tenant/users/${member.userId}`, { token: owner.token, json: { role: 'root' } });
    assert.equal(invalid.status, 422);
    for (const id of [stranger.userId, 'not-a-uuid']) {
      const foreign = await app.request('PATCH', `/api/v1/tenant/users/${id}`, { token: owner.token, json: { role: 'viewer' } });
      assert.deepEqual([foreign.status, foreign.body], [404, { detail: 'User not found' }]);
    }
    assert.equal((await app.delete(`/api/v1/tenant/users/${stranger.userId}`, { token: owner.token })).status, 404);
    assert.equal((await app.get('/api/v1/auth/me', { token: stranger.token })).status, 200);
  });

  test("a removed user's tokens, keys and pending invitations go at once; its tasks stay", async () => {
    const admin = await joinTenant(app, owner, 'admin');
    const key = await createApiKey(app, admin, 'member');
    const task = await createTask(app, admin.token, { payload: slackPayload('#kept') });
    const invitation = await invite(app, admin, freshEmail('invited-by-removed'), 'viewer');
    assert.equal(await onSecondApi('GET', '/api/v1/tasks', key.key), 200);
    assert.equal(await onSecondApi('GET', '/api/v1/tasks', admin.token), 200);

    const removed = await app.delete(`/api/v1/tenant/users/${admin.userId}`, { token: owner.token });
    assert.equal(removed.status, 204);
    for (const token of [admin.token, key.key]) {
      assert.equal((await app.get('/api/v1/tasks', { token })).status, 401);
      await secondApiAnswers('GET', '/api/v1/tasks', token, 401, 'the second API process refusing the removed user');
    }
    assert.equal((await app.delete(`/api/v1/tenant/users/${admin.userId}`, { token: owner.token })).status, 404);
    assert.equal(await app.db.selectFrom('api_keys').select('id').where('id', '=', key.id).executeTakeFirst(), undefined);

    const kept = await app.db.selectFrom('tasks').select('created_by').where('id', '=', task.id).executeTakeFirstOrThrow();
    assert.equal(kept.created_by, null);
    // An invitation sent on the way out must not let the removed user (or an accomplice) back in.
    const invitations = await app.get('/api/v1/tenant/invitations', { token: owner.token });
    assert.equal(invitations.body.invitations.find((item: any) => item.id === invitation.id), undefined);
    assert.equal((await register(invitation.email, invitation.token)).status, 400, "a removed user's invitation no longer admits");
  });

  test('an API key cannot make API keys (they would outlive its revocation)', async () => {
    const key = await createApiKey(app, owner, 'admin');
    const made = await app.post('/api/v1/tenant/api-keys', { name: 'offspring', role: 'viewer' }, { token: key.key });
    assert.equal(made.status, 403);
    assert.match(made.body.detail, /API keys are made by users/);
  });

  test('admins remove members and viewers; removing an admin or an owner takes an owner', async () => {
    const admin = await joinTenant(app, owner, 'admin');
    const otherAdmin = await joinTenant(app, owner, 'admin');
    const viewer = await joinTenant(app, owner, 'viewer');
    for (const target of [otherAdmin, owner, admin]) {
      const response = await app.delete(`/api/v1/tenant/users/${target.userId}`, { token: admin.token });
      assert.deepEqual([response.status, response.body], [403, { detail: 'Requires role owner' }], target.email);
    }
    const byViewer = await app.delete(`/api/v1/tenant/users/${viewer.userId}`, { token: viewer.token });
    assert.deepEqual([byViewer.status, byViewer.body], [403, { detail: 'Requires role admin' }]);
    assert.equal((await app.delete(`/api/v1/tenant/users/${viewer.userId}`, { token: admin.token })).status, 204);
    assert.equal((await app.delete(`/api/v1/tenant/users/${otherAdmin.userId}`, { token: owner.token })).status, 204);
  });

  test('a tenant keeps at least one owner, even against simultaneous changes', async () => {
    const founder = await registerAndLogin(app, 'founder');
    const ownersOf = async (tenantId: string) =>
      (await app.db.selectFrom('users').select('id').where('tenant_id', '=', tenantId).where('role', '=', 'owner').execute()).length;
    const demoteSelf = await app.request('PATCH', `/api/v1/tenant/users/${founder.userId}`, { token: founder.token, json: { role: 'admin' } });
    assert.deepEqual([demoteSelf.status, demoteSelf.body], [409, { detail: 'A tenant must keep at least one owner' }]);
    assert.equal((await app.delete(`/api/v1/tenant/users/${founder.userId}`, { token: founder.token })).status, 409);

    // With a second owner, an owner may step down (or leave).
    const second = await joinTenant(app, founder, 'owner');
    assert.equal((await app.request('PATCH', `/api/v1/tenant/users/${founder.userId}`, { token: founder.token, json: { role: 'admin' } })).status, 200);
    assert.equal((await app.delete(`/api/v1/tenant/users/${second.userId}`, { token: second.token })).status, 409, 'the last owner again');
    assert.equal((await app.request('PATCH', `/api/v1/tenant/users/${founder.userId}`, { token: second.token, json: { role: 'owner' } })).status, 200);

    // Two owners demoting or removing each other at the same time, past any check of the callers'
    // own roles (the service is called directly): one wins, and one owner is left.
    const service = createTenantService({ db: app.db, versions: createTokenVersions(app.db, app.notifications), apiKeys: { forget() {} } });
    const asOwner = (user: RegisteredUser) => ({ tenantId: user.tenantId, userId: user.userId, role: 'owner' as const });
    for (const change of ['demote', 'remove', 'demote', 'remove'] as const) {
      const a = await registerAndLogin(app, 'rival');
      const b = await joinTenant(app, a, 'owner');
      const act = (actor: RegisteredUser, target: RegisteredUser) =>
        change === 'demote' ? service.changeRole(asOwner(actor), target.userId, 'member') : service.removeUser(asOwner(actor), target.userId);
      const outcomes = await Promise.allSettled([act(a, b), act(b, a)]);
      const refusals = outcomes.flatMap((outcome) => (outcome.status === 'rejected' ? [(outcome.reason as AppError).detail] : []));
      assert.deepEqual(refusals, ['A tenant must keep at least one owner'], change);
      assert.equal(await ownersOf(a.tenantId), 1, change);
    }
  });
});

describe('tenant integrity in the schema', () => {
  test("an invitation or API key cannot name another tenant's user", async () => {
    await assert.rejects(
      sql`insert into invitations (tenant_id, email, role, token_hash, created_by, expires_at)
          values (${owner.tenantId}, 'x@example.com', 'viewer', ${sha256('an invitation')}, ${stranger.userId}, now())`.execute(app.db),
      /invitations_created_by_fkey/,
    );
    await assert.rejects(
      sql`insert into api_keys (tenant_id, name, role, key_hash, prefix, created_by)
          values (${owner.tenantId}, 'x', 'viewer', ${sha256('a key')}, 'ak_x', ${stranger.userId})`.execute(app.db),
      /api_keys_created_by_fkey/,
    );
  });
});
