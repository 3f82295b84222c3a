import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { audit } from '../src/tasks/audit-messages.js';
import { startTestApp, type TestApp } from './helpers/app.js';
import { registerAndLogin, type RegisteredUser } from './helpers/users.js';

// Text that ends up in the audit trail cannot forge a line or hide what follows it.

describe('audit entries built from outside text', () => {
  test('newlines, bidi overrides and zero-width characters from outside are escaped, one entry one line', () => {
    const forged = 'boom\nTask permanently failed after all retries';
    const message = audit.failed(forged);
    assert.ok(!message.includes('\n'), message);
    assert.equal(message, 'Task failed with error: boom\\u{a}Task permanently failed after all retries');
    assert.equal(audit.callbackFailed('a\u202etxt.exe'), 'Callback failed with error: a\\u{202e}txt.exe');
    assert.equal(audit.callbackRefused('http://x.example/\u200b', 'no\rway'), 'Callback to http://x.example/\\u{200b} refused: no\\u{d}way');
    assert.equal(audit.failed('Slack returned status 500'), 'Task failed with error: Slack returned status 500', 'ordinary text is unchanged');
  });
});

describe('input that is written into the audit trail', () => {
  let app: TestApp;
  let user: RegisteredUser;

  before(async () => {
    app = await startTestApp();
    user = await registerAndLogin(app, 'audit-text');
  });

  after(async () => {
    await app?.close();
  });

  test('a Slack channel with a newline, a bidi override, a zero-width space or a space is 422', async () => {
    for (const channel of ['#ok\nTask canceled by user request', '#a\u202eb', '#a\u200bb', '#two words']) {
      const response = await app.post('/api/v1/tasks', { payload: { action: 'post_to_slack', channel, message: 'hi' } }, { token: user.token });
      assert.equal(response.status, 422, `${JSON.stringify(channel)}: ${JSON.stringify(response.body)}`);
      assert.deepEqual(response.body.detail[0].loc, ['body', 'payload', 'channel']);
    }
  });

  test('callback_url is stored as the URL parser reads it', async () => {
    const response = await app.post(
      '/api/v1/tasks',
      { payload: { action: 'post_to_slack', channel: '#ok', message: 'hi' }, callback_url: 'HTTPS://Hooks.Example.COM/a b?x=1', delay_seconds: 3600 },
      { token: user.token },
    );
    assert.equal(response.status, 201, JSON.stringify(response.body));
    assert.equal(response.body.callback_url, 'https://hooks.example.com/a%20b?x=1');
  });
});
