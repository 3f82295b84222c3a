import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { createApp } from '../src/http/app.js';
import type { Role } from '../src/http/types.js';
import { createSecretBox } from '../src/integrations/encryption.js';
import { createSlackIntegrations, reencryptSlackIntegrations, SlackIntegrationUnusableError } from '../src/integrations/slack-integration.js';
import { createLogger } from '../src/logger.js';
import { startWorker } from '../src/worker/worker.js';
import { startTestApp, withTestApp, type TestApp } from './helpers/app.js';
import { createTask, logMessages, startFakeSlack, waitForStatus, type FakeSlack } from './helpers/engine.js';
import { underLocalhostName } from './helpers/fake-server.js';
import { eventually } from './helpers/poll.js';
import { registerAndLogin, uniqueSuffix, type RegisteredUser } from './helpers/users.js';

// A tenant's own Slack webhook (PUT/GET/DELETE /api/v1/tenant/integrations/slack): stored
// encrypted, shown masked, used by its post_to_slack tasks instead of the operator's shared one.
// The fake Slacks listen on 127.0.0.1, so the apps that post to them allow private networks.

const SLACK_PATH = '/api/v1/tenant/integrations/slack';
const newKey = () => randomBytes(32).toString('hex');

let shared: FakeSlack;
let slackA: FakeSlack;
let slackB: FakeSlack;

before(async () => {
  [shared, slackA, slackB] = await Promise.all([startFakeSlack(), startFakeSlack(), startFakeSlack()]);
});

after(async () => {
  await Promise.all([shared?.close(), slackA?.close(), slackB?.close()]);
});

/** A webhook URL on `slack` with a secret path of its own, as Slack's look. */
function webhookOn(slack: FakeSlack): { url: string; token: string } {
  const token = randomBytes(18).toString('base64url');
  return { url: `${slack.url}/services/T${uniqueSuffix()}/B${uniqueSuffix()}/${token}`, token };
}

function put(app: TestApp, user: { token: string }, body: unknown) {
  return app.request('PUT', SLACK_PATH, { token: user.token, json: body });
}

async function putSlack(app: TestApp, user: { token: string }, body: Record<string, unknown>) {
  const response = await put(app, user, body);
  assert.equal(response.status, 200, JSON.stringify(response.body));
  return response.body;
}

/** Whatever the tenant can see or the database keeps of its tasks, as one string. */
async function everythingStoredFor(app: TestApp, tenantId: string): Promise<string> {
  const tasks = await app.db.selectFrom('tasks').selectAll().where('tenant_id', '=', tenantId).execute();
  const logs = await app.db.selectFrom('task_logs').select('message').where('tenant_id', '=', tenantId).execute();
  return JSON.stringify({ tasks, logs });
}

/** Gives the user another role (as a tenant administrator would) and waits until the API applies it. */
async function demote(app: TestApp, user: RegisteredUser, role: Role): Promise<void> {
  await app.db.updateTable('users').set({ role }).where('id', '=', user.userId).execute();
  await eventually(async () => ((await app.get('/api/v1/auth/me', { token: user.token })).body.role === role ? true : undefined), {
    message: `${user.email} becoming ${role}`,
  });
  // /me reads the user's row; authorization reads what this process remembers of it, which the
  // change's notification updates a moment later (the role is below admin in every use here).
  // Asked through a route that only reads: until the notification lands the caller is still
  // admin, and reading the webhook secret then would create it.
  await eventually(async () => ((await app.get(SLACK_PATH, { token: user.token })).status === 403 ? true : undefined), {
    message: `${user.email} refused as ${role}`,
  });
}

describe('Slack integrations (private networks allowed)', () => {
  let app: TestApp;

  before(async () => {
    app = await startTestApp({
      env: {
        // Named localhost: the callback rules keep tenants away from the host of the operator's Slack.
        SLACK_WEBHOOK_URL: `${underLocalhostName(shared.url)}/services/shared`,
        CALLBACK_ALLOW_PRIVATE_NETWORKS: 'true',
        ENCRYPTION_KEY: newKey(),
      },
      worker: true,
    });
  });

  after(async () => {
    await app?.close();
  });

  test('PUT stores the webhook URL encrypted; GET shows it masked; DELETE removes it', async () => {
    const admin = await registerAndLogin(app, 'slack-crud');
    const webhook = webhookOn(slackA);
    const stored = await putSlack(app, admin, { webhook_url: webhook.url, default_channel: '#alerts', allowed_channels: ['#alerts', '#ops'] });
    const { host, port } = new URL(webhook.url);
    assert.equal(stored.webhook_url, `http://${host}/****${webhook.token.slice(-4)}`);
    assert.equal(stored.default_channel, '#alerts');
    assert.deepEqual(stored.allowed_channels, ['#alerts', '#ops']);

    const [row] = await app.db.selectFrom('tenant_slack_integrations').selectAll().where('tenant_id', '=', admin.tenantId).execute();
    assert.ok(row);
    const rowText = JSON.stringify(row);
    const parts = [webhook.url, webhook.token, webhook.token.slice(0, 8), new URL(webhook.url).pathname, host, `:${port}`, 'services'];
    for (const part of parts) assert.ok(!rowText.includes(part), `the stored row does not contain ${part}`);
    assert.match(row.encrypted_webhook_url, /^v1\.[0-9a-f]{8}\.[\w-]+\.[\w-]+\.[\w-]+$/);

    const shown = await app.get(SLACK_PATH, { token: admin.token });
    assert.equal(shown.status, 200);
    assert.deepEqual(shown.body, stored);
    assert.ok(!JSON.stringify(shown.body).includes(webhook.token.slice(0, -4)));

    // PUT replaces the whole integration: what it leaves out is cleared.
    const replaced = await putSlack(app, admin, { webhook_url: webhook.url });
    assert.equal(replaced.default_channel, null);
    assert.equal(replaced.allowed_channels, null);

    assert.equal((await app.delete(SLACK_PATH, { token: admin.token })).status, 204);
    assert.equal((await app.get(SLACK_PATH, { token: admin.token })).status, 404);
    assert.deepEqual((await app.delete(SLACK_PATH, { token: admin.token })).body, { detail: 'Slack integration not found' });
  });

  test('the integration routes need an admin: members and viewers get 403, and change nothing', async () => {
    const owner = await registerAndLogin(app, 'slack-roles');
    await putSlack(app, owner, { webhook_url: webhookOn(slackA).url });
    const lesser = await registerAndLogin(app, 'slack-roles');
    await putSlack(app, lesser, { webhook_url: webhookOn(slackA).url });
    for (const role of ['member', 'viewer'] as const) {
      await demote(app, lesser, role);
      for (const [method, path] of [
        ['GET', SLACK_PATH],
        ['PUT', SLACK_PATH],
        ['DELETE', SLACK_PATH],
        ['GET', '/api/v1/tenant/webhook-secret'],
        ['POST', '/api/v1/tenant/webhook-secret/rotate'],
      ] as const) {
        const response = await app.request(method, path, { token: lesser.token, json: method === 'PUT' ? { webhook_url: webhookOn(slackA).url } : undefined });
        assert.equal(response.status, 403, `${role} ${method} ${path}: ${JSON.stringify(response.body)}`);
        assert.deepEqual(response.body, { detail: 'Requires role admin' });
      }
    }
    const rows = await app.db.selectFrom('tenant_slack_integrations').select('tenant_id').where('tenant_id', '=', lesser.tenantId).execute();
    assert.equal(rows.length, 1, 'the refused DELETE removed nothing');
    assert.equal((await app.db.selectFrom('tenant_webhook_secrets').select('tenant_id').where('tenant_id', '=', lesser.tenantId).execute()).length, 0);
  });

  test('the body is strict: channels as a task names them, default_channel among allowed_channels, no unknown fields', async () => {
    const admin = await registerAndLogin(app, 'slack-validation');
    const url = webhookOn(slackA).url;
    for (const [body, loc] of [
      [{}, ['body', 'webhook_url']],
      [{ webhook_url: 'not a url' }, ['body', 'webhook_url']],
      [{ webhook_url: 'ftp://files.example.com/hook' }, ['body', 'webhook_url']],
      [{ webhook_url: url, default_channel: '#two words' }, ['body', 'default_channel']],
      [{ webhook_url: url, allowed_channels: [] }, ['body', 'allowed_channels']],
      [{ webhook_url: url, allowed_channels: ['#ok', '#a\u202eb'] }, ['body', 'allowed_channels', 1]],
      [{ webhook_url: url, default_channel: '#elsewhere', allowed_channels: ['#alerts'] }, ['body', 'default_channel']],
      [{ webhook_url: url, channel: '#alerts' }, ['body', 'channel']],
    ] as const) {
      const response = await put(app, admin, body);
      assert.equal(response.status, 422, `${JSON.stringify(body)}: ${JSON.stringify(response.body)}`);
      assert.deepEqual(response.body.detail[0].loc, loc, JSON.stringify(body));
    }
    assert.equal((await app.get(SLACK_PATH, { token: admin.token })).status, 404, 'nothing was stored');
  });

  test("each tenant's tasks post through its own webhook; a tenant without one through the shared webhook", async () => {
    const [a, b, c] = await Promise.all([registerAndLogin(app, 'slack-a'), registerAndLogin(app, 'slack-b'), registerAndLogin(app, 'slack-c')]);
    const [hookA, hookB] = [webhookOn(slackA), webhookOn(slackB)];
    await putSlack(app, a, { webhook_url: hookA.url });
    await putSlack(app, b, { webhook_url: hookB.url });
    const channel = `#per-tenant-${uniqueSuffix()}`;
    const tasks = await Promise.all(
      [a, b, c].map((user) => createTask(app, user.token, { payload: { action: 'post_to_slack', channel, message: `from ${user.tenantName}` } })),
    );
    const done = await Promise.all(tasks.map((task, index) => waitForStatus(app, [a, b, c][index]!.token, task.id, ['success', 'failed'])));
    for (const task of done) assert.equal(task.status, 'success', JSON.stringify(task));

    const received = (slack: FakeSlack) => slack.requestsFor(channel).map((request) => ({ path: request.path, text: request.body.text }));
    assert.deepEqual(received(slackA), [{ path: new URL(hookA.url).pathname, text: `from ${a.tenantName}` }]);
    assert.deepEqual(received(slackB), [{ path: new URL(hookB.url).pathname, text: `from ${b.tenantName}` }]);
    assert.deepEqual(received(shared), [{ path: '/services/shared', text: `from ${c.tenantName}` }]);

    // The result and the audit trail read as before; the webhook URL is in neither, nor in the API's answers.
    assert.deepEqual(done[0].result, { message: 'Successfully posted to Slack', channel, slack_response_status: 200 });
    const trail = await logMessages(app, tasks[0].id);
    for (const message of [`Attempting to post message to Slack channel ${channel}`, 'Successfully posted to Slack with status 200']) assert.ok(trail.includes(message), message);
    for (const [user, hook] of [[a, hookA], [b, hookB]] as const) {
      const stored = await everythingStoredFor(app, user.tenantId);
      const answers = JSON.stringify([(await app.get(`/api/v1/tasks/${tasks[0].id}`, { token: user.token })).body, (await app.get(SLACK_PATH, { token: user.token })).body]);
      for (const text of [stored, answers]) assert.ok(!text.includes(hook.token.slice(0, -4)) && !text.includes(new URL(hook.url).pathname));
    }
  });

  test('a task without a channel uses default_channel; allowed_channels refuses any other channel', async () => {
    const admin = await registerAndLogin(app, 'slack-channels');
    const hook = webhookOn(slackA);
    const [alerts, ops, random] = ['alerts', 'ops', 'random'].map((name) => `#${name}-${uniqueSuffix()}`) as [string, string, string];
    await putSlack(app, admin, { webhook_url: hook.url, default_channel: alerts, allowed_channels: [alerts, ops] });

    const withoutChannel = await createTask(app, admin.token, { payload: { action: 'post_to_slack', message: 'to the default' } });
    const done = await waitForStatus(app, admin.token, withoutChannel.id, ['success', 'failed']);
    assert.equal(done.status, 'success', JSON.stringify(done));
    assert.equal(done.result.channel, alerts);
    assert.deepEqual(slackA.requestsFor(alerts).map((request) => request.body.text), ['to the default']);

    // Allowed channels compare as Slack names them: without the # and in any case.
    const sameChannel = await createTask(app, admin.token, { payload: { action: 'post_to_slack', channel: ops.slice(1).toUpperCase(), message: 'ops' } });
    assert.equal((await waitForStatus(app, admin.token, sameChannel.id, ['success', 'failed'])).status, 'success');

    const elsewhere = await createTask(app, admin.token, { payload: { action: 'post_to_slack', channel: random, message: 'not allowed' } });
    const refused = await waitForStatus(app, admin.token, elsewhere.id, ['success', 'failed']);
    assert.equal(refused.status, 'failed');
    assert.deepEqual(refused.result, { error: `Channel ${random} is not in the Slack integration's allowed_channels` });
    assert.ok((await logMessages(app, elsewhere.id)).includes(`Task failed with error: Channel ${random} is not in the Slack integration's allowed_channels`));
    assert.equal(slackA.requestsFor(random).length + shared.requestsFor(random).length, 0, 'nothing was posted');

    // Without an integration there is no default: the shared webhook needs the channel.
    const noIntegration = await registerAndLogin(app, 'slack-no-default');
    const nowhere = await createTask(app, noIntegration.token, { payload: { action: 'post_to_slack', message: 'where to?' } });
    const failed = await waitForStatus(app, noIntegration.token, nowhere.id, ['success', 'failed']);
    assert.equal(failed.status, 'failed');
    assert.match(failed.result.error, /names no channel/);
  });

  test('mentions that would notify a whole channel or group arrive as plain text', async () => {
    const admin = await registerAndLogin(app, 'slack-mentions');
    await putSlack(app, admin, { webhook_url: webhookOn(slackA).url });
    const channel = `#mentions-${uniqueSuffix()}`;
    const message = 'Deploy done <!channel> <!here|here> <!everyone> <!subteam^S0123|@oncall> <@U0123> & <https://evil.example|click>';
    const task = await createTask(app, admin.token, { payload: { action: 'post_to_slack', channel, message } });
    assert.equal((await waitForStatus(app, admin.token, task.id, ['success', 'failed'])).status, 'success');
    const [posted] = slackA.requestsFor(channel);
    assert.ok(posted);
    assert.equal(
      posted.body.text,
      'Deploy done &lt;!channel&gt; &lt;!here|here&gt; &lt;!everyone&gt; &lt;!subteam^S0123|@oncall&gt; &lt;@U0123&gt; &amp; &lt;https://evil.example|click&gt;',
    );
    assert.ok(!/[<>]/.test(posted.body.text), 'no Slack control sequence survives');
    // The task keeps the message as it was given.
    assert.equal((await app.get(`/api/v1/tasks/${task.id}`, { token: admin.token })).body.payload.message, message);
  });

  test('an integration that cannot be decrypted fails the task, and never falls back to the shared webhook', async () => {
    const [victim, other] = await Promise.all([registerAndLogin(app, 'slack-copied'), registerAndLogin(app, 'slack-original')]);
    await putSlack(app, victim, { webhook_url: webhookOn(slackB).url });
    await putSlack(app, other, { webhook_url: webhookOn(slackA).url });
    // Another tenant's ciphertext, copied into this tenant's row: bound to its own tenant, it does not decrypt here.
    const { encrypted_webhook_url } = await app.db
      .selectFrom('tenant_slack_integrations')
      .select('encrypted_webhook_url')
      .where('tenant_id', '=', other.tenantId)
      .executeTakeFirstOrThrow();
    await app.db.updateTable('tenant_slack_integrations').set({ encrypted_webhook_url }).where('tenant_id', '=', victim.tenantId).execute();

    const shown = await app.get(SLACK_PATH, { token: victim.token });
    assert.equal(shown.status, 503);
    assert.match(shown.body.detail, /cannot be decrypted.*ENCRYPTION_KEY/);

    const channel = `#undecryptable-${uniqueSuffix()}`;
    const task = await createTask(app, victim.token, { payload: { action: 'post_to_slack', channel, message: 'hello?' } });
    const failed = await waitForStatus(app, victim.token, task.id, ['success', 'failed']);
    assert.equal(failed.status, 'failed');
    assert.match(failed.result.error, /Slack webhook URL cannot be decrypted/);
    assert.equal(shared.requestsFor(channel).length + slackA.requestsFor(channel).length + slackB.requestsFor(channel).length, 0);
  });
});

describe('Slack integrations with the shared webhook turned off and no ENCRYPTION_KEY', () => {
  test('a tenant without an integration cannot post, and none can be stored (503 naming ENCRYPTION_KEY)', async () => {
    await withTestApp({ env: { SLACK_WEBHOOK_URL: shared.url, SLACK_SHARED_WEBHOOK: 'false', CALLBACK_ALLOW_PRIVATE_NETWORKS: 'true' }, worker: true }, async (app) => {
      const admin = await registerAndLogin(app, 'slack-unshared');
      const refused = await put(app, admin, { webhook_url: webhookOn(slackA).url });
      assert.equal(refused.status, 503);
      assert.deepEqual(refused.body, { detail: 'Integrations cannot be stored: the operator has not configured ENCRYPTION_KEY' });
      assert.equal((await app.get(SLACK_PATH, { token: admin.token })).status, 404);

      const channel = `#unshared-${uniqueSuffix()}`;
      const task = await createTask(app, admin.token, { payload: { action: 'post_to_slack', channel, message: 'hi' } });
      const failed = await waitForStatus(app, admin.token, task.id, ['success', 'failed']);
      assert.equal(failed.status, 'failed');
      assert.match(failed.result.error, /no Slack integration.*SLACK_SHARED_WEBHOOK=false.*PUT \/api\/v1\/tenant\/integrations\/slack/);
      assert.equal(shared.requestsFor(channel).length, 0, 'the shared webhook got nothing');
    });
  });
});

describe('Slack integrations with the default network rules', () => {
  test('the webhook URL must be https and public, and not the Legacy DCL; a name resolving to loopback is refused when posting', async () => {
    await withTestApp({ env: { ENCRYPTION_KEY: newKey(), LEGACY_DCL_BASE_URL: 'https://dcl.internal.example.com/api' }, worker: true }, async (app) => {
      const admin = await registerAndLogin(app, 'slack-ssrf');
      const { port } = new URL(slackA.url);
      for (const [webhookUrl, message] of [
        [`http://hooks.slack.com/services/T/B/X`, /must use https/],
        [`https://127.0.0.1:${port}/services/T/B/X`, /public address.*CALLBACK_ALLOW_PRIVATE_NETWORKS/],
        ['https://[::ffff:169.254.169.254]/latest/meta-data', /public address/],
        ['https://10.1.2.3/hook', /public address/],
        ['https://user:pass@hooks.slack.com/services/T/B/X', /user name or password/],
        ['https://DCL.internal.example.com./anything', /Legacy DCL/],
      ] as const) {
        const response = await put(app, admin, { webhook_url: webhookUrl });
        assert.equal(response.status, 422, `${webhookUrl}: ${JSON.stringify(response.body)}`);
        assert.deepEqual(response.body.detail[0].loc, ['body', 'webhook_url']);
        assert.match(response.body.detail[0].msg, message, webhookUrl);
      }

      // A name is checked when it is connected to, as for callbacks.
      await putSlack(app, admin, { webhook_url: `https://localhost:${port}/services/T/B/${uniqueSuffix()}` });
      const channel = `#ssrf-${uniqueSuffix()}`;
      const task = await createTask(app, admin.token, { payload: { action: 'post_to_slack', channel, message: 'hi' } });
      const failed = await waitForStatus(app, admin.token, task.id, ['success', 'failed']);
      assert.equal(failed.status, 'failed');
      assert.equal(failed.result.error, "The Slack webhook's host is not a public address (set CALLBACK_ALLOW_PRIVATE_NETWORKS=true to allow private targets)");
      assert.equal(slackA.requestsFor(channel).length, 0);
    });
  });
});

describe('the webhook URL in logs', () => {
  test('no log line of the API or the worker carries it, even when Slack fails or cannot be reached', async () => {
    await withTestApp({ env: { CALLBACK_ALLOW_PRIVATE_NETWORKS: 'true', ENCRYPTION_KEY: newKey(), LOG_LEVEL: 'debug' } }, async (app) => {
      const lines: string[] = [];
      const logger = createLogger({ level: 'debug', write: (line) => void lines.push(line) });
      // The API and a worker of this app, both logging everything they log at debug level.
      const api = createApp({ db: app.db, boss: app.boss, config: app.config, logger, notifications: app.notifications, metrics: app.metrics });
      const worker = await startWorker({ db: app.db, boss: app.boss, config: app.config, logger, watch: app.watch, metrics: app.metrics, notifications: app.notifications });
      try {
        const admin = await registerAndLogin(app, 'slack-logs');
        const call = (method: string, body?: unknown) =>
          api.request(SLACK_PATH, {
            method,
            headers: { Authorization: `Bearer ${admin.token}`, 'Content-Type': 'application/json' },
            ...(body ? { body: JSON.stringify(body) } : {}),
          });
        const working = webhookOn(slackA);
        const channel = `#logs-${uniqueSuffix()}`;
        slackA.route(channel, () => ({ status: 500, body: 'no' }));
        // A closed port: the connection is refused, and the error is logged and stored.
        const closed = await startFakeSlack();
        await closed.close();
        const unreachable = webhookOn(closed);
        for (const [hook, expected] of [
          [working, 'Slack returned status 500'],
          [unreachable, /^Could not reach Slack: /],
        ] as const) {
          assert.equal((await call('PUT', { webhook_url: hook.url })).status, 200);
          assert.equal((await call('GET')).status, 200);
          const task = await createTask(app, admin.token, { payload: { action: 'post_to_slack', channel, message: 'hi' } });
          const failed = await waitForStatus(app, admin.token, task.id, ['success', 'failed']);
          assert.equal(failed.status, 'failed');
          if (typeof expected === 'string') assert.equal(failed.result.error, expected);
          else assert.match(failed.result.error, expected);
          assert.ok(!JSON.stringify(failed).includes(new URL(hook.url).pathname));
        }
        assert.ok(lines.some((line) => line.includes('attempt failed')), 'the worker logged the failures');
        const logged = lines.join('');
        for (const hook of [working, unreachable]) {
          for (const part of [hook.token, new URL(hook.url).pathname]) assert.ok(!logged.includes(part), `the logs do not contain ${part}`);
        }
      } finally {
        await worker.stop(5_000);
      }
    });
  });
});

describe('rotating ENCRYPTION_KEY', () => {
  test('the previous key still decrypts; re-encryption moves every integration to the new key', async () => {
    const [oldKey, nextKey] = [randomBytes(32), randomBytes(32)];
    await withTestApp({ env: { ENCRYPTION_KEY: oldKey.toString('base64'), CALLBACK_ALLOW_PRIVATE_NETWORKS: 'true' } }, async (app) => {
      const admin = await registerAndLogin(app, 'slack-rotation');
      const hook = webhookOn(slackA);
      await putSlack(app, admin, { webhook_url: hook.url, default_channel: '#alerts' });
      const ciphertext = async () =>
        (await app.db.selectFrom('tenant_slack_integrations').select('encrypted_webhook_url').where('tenant_id', '=', admin.tenantId).executeTakeFirstOrThrow())
          .encrypted_webhook_url;
      const before = await ciphertext();
      const withKeys = (current: Buffer, previous?: Buffer) => ({ ...app.config, encryptionSecret: current, previousEncryptionSecret: previous });

      // Step 1: the new key is ENCRYPTION_KEY, the old one ENCRYPTION_KEY_PREVIOUS; both read.
      const rotating = createSlackIntegrations({ db: app.db, config: withKeys(nextKey, oldKey) });
      assert.deepEqual(await rotating.forTask(admin.tenantId), { webhookUrl: hook.url, defaultChannel: '#alerts', allowedChannels: null });
      // Without the previous key, the old ciphertext is unusable.
      await assert.rejects(createSlackIntegrations({ db: app.db, config: withKeys(nextKey) }).forTask(admin.tenantId), SlackIntegrationUnusableError);

      // Step 2: re-encryption; running it again changes nothing.
      const box = createSecretBox(withKeys(nextKey, oldKey));
      assert.deepEqual(await reencryptSlackIntegrations(app.db, box), { current: 0, reencrypted: 1, unreadable: [] });
      const after = await ciphertext();
      assert.notEqual(after, before);
      assert.notEqual(after.split('.')[1], before.split('.')[1], 'the ciphertext names the new key');
      assert.deepEqual(await reencryptSlackIntegrations(app.db, box), { current: 1, reencrypted: 0, unreadable: [] });

      // Step 3: the previous key is gone, and the new one alone reads everything.
      assert.equal((await createSlackIntegrations({ db: app.db, config: withKeys(nextKey) }).forTask(admin.tenantId))?.webhookUrl, hook.url);
      // A ciphertext no configured key made is reported, not skipped silently.
      const stranger = createSecretBox(withKeys(randomBytes(32)));
      assert.deepEqual(await reencryptSlackIntegrations(app.db, stranger), { current: 0, reencrypted: 0, unreadable: [admin.tenantId] });
    });
  });
});
