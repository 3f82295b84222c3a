import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { startTestApp, type TestApp } from './helpers/app.js';
import {
  createTask,
  newChannel,
  slackPayload,
  startFakeSlack,
  taskLogs,
  waitForLog,
  waitForStatus,
  type FakeSlack,
} from './helpers/engine.js';
import { startFakeServer, underLocalhostName, type FakeServer } from './helpers/fake-server.js';
import { registerAndLogin, type RegisteredUser } from './helpers/users.js';

// The reference's "Log Events Captured", each checked in the scenario that produces it, in the
// task_logs rows of the right task and with the right tenant_id. Two tenants run at once so a
// mixed-up tenant would show.

let slack: FakeSlack;
let receiver: FakeServer;
let app: TestApp;

before(async () => {
  slack = await startFakeSlack();
  receiver = await startFakeServer(() => ({ status: 200, body: 'ok' }));
  app = await startTestApp({
    env: { SLACK_WEBHOOK_URL: underLocalhostName(slack.url), CALLBACK_ALLOW_PRIVATE_NETWORKS: 'true', RETRY_DELAYS_SECONDS: '1' },
    worker: true,
  });
});

after(async () => {
  await app?.close();
  await receiver?.close();
  await slack?.close();
});

interface Scenario {
  user: RegisteredUser;
  taskId: string;
}

/** Every row of the task's trail belongs to the task's tenant; returns the messages. */
async function trailOf(scenario: Scenario): Promise<string[]> {
  const rows = await taskLogs(app, scenario.taskId);
  assert.ok(rows.length > 0);
  for (const row of rows) {
    assert.equal(row.tenant_id, scenario.user.tenantId, `"${row.message}" carries the tenant of its task`);
  }
  return rows.map((row) => row.message);
}

describe('audit trail', () => {
  test('every event of the reference list is logged in its scenario, with the right tenant', async () => {
    const [alpha, beta] = [await registerAndLogin(app, 'audit-alpha'), await registerAndLogin(app, 'audit-beta')];

    // Success with a callback (tenant alpha).
    const okChannel = newChannel('audit-ok');
    const callbackUrl = `${receiver.url}/audit-${okChannel.slice(1)}`;
    const ok = await createTask(app, alpha.token, { payload: slackPayload(okChannel), callback_url: callbackUrl });
    // Failure with one retry (tenant beta).
    const failChannel = newChannel('audit-fail');
    slack.route(failChannel, () => ({ status: 500, body: 'down' }));
    const failing = await createTask(app, beta.token, { payload: slackPayload(failChannel), max_retries: 1 });
    // Cancel (tenant alpha).
    const later = await createTask(app, alpha.token, { payload: slackPayload(newChannel('audit-cancel')), delay_seconds: 60 });
    assert.equal((await app.delete(`/api/v1/tasks/${later.id}`, { token: alpha.token })).status, 200);

    await waitForLog(app, ok.id, /^Successfully sent callback/);
    assert.equal((await waitForStatus(app, beta.token, failing.id, ['success', 'failed'], 10_000)).status, 'failed');

    const okTrail = await trailOf({ user: alpha, taskId: ok.id });
    const failTrail = await trailOf({ user: beta, taskId: failing.id });
    const cancelTrail = await trailOf({ user: alpha, taskId: later.id });

    const expected: [string, string[]][] = [
      ['Task execution started', okTrail],
      [`Attempting to post message to Slack channel ${okChannel}`, okTrail],
      ['Successfully posted to Slack with status 200', okTrail],
      ['Task failed with error: Slack returned status 500', failTrail],
      ['Scheduling retry 1/1', failTrail],
      [`Attempting to send callback to ${callbackUrl}`, okTrail],
      ['Successfully sent callback with status 200', okTrail],
      ['Task canceled by user request', cancelTrail],
      ['Task permanently failed after all retries', failTrail],
    ];
    for (const [message, trail] of expected) {
      assert.ok(trail.includes(message), `"${message}" in ${JSON.stringify(trail)}`);
    }
    assert.deepEqual(okTrail.slice(1), [
      'Task execution started',
      `Attempting to post message to Slack channel ${okChannel}`,
      'Successfully posted to Slack with status 200',
      `Attempting to send callback to ${callbackUrl}`,
      'Successfully sent callback with status 200',
    ]);
    assert.equal(okTrail[0], `Task created by user ${alpha.userId} in tenant ${alpha.tenantId}`);
    assert.equal(failTrail.at(-1), 'Task permanently failed after all retries');
    assert.equal(cancelTrail.at(-1), 'Task canceled by user request');
    assert.ok(!cancelTrail.includes('Task execution started'));

    // The API serves the same trail to the owner and nothing to the other tenant.
    const served = await app.get(`/api/v1/tasks/${failing.id}/logs`, { token: beta.token });
    assert.equal(served.status, 200);
    assert.deepEqual(
      served.body.map((entry: any) => entry.message),
      failTrail,
    );
    assert.ok(served.body.every((entry: any) => entry.tenant_id === beta.tenantId && entry.task_id === failing.id));
    const foreign = await app.get(`/api/v1/tasks/${failing.id}/logs`, { token: alpha.token });
    assert.equal(foreign.status, 404);
    assert.deepEqual(foreign.body, { detail: 'Task not found' });

    // And across the whole database, no audit row carries a tenant other than its task's.
    const mismatched = await app.db
      .selectFrom('task_logs')
      .innerJoin('tasks', 'tasks.id', 'task_logs.task_id')
      .select(sql<string>`count(*)`.as('n'))
      .whereRef('task_logs.tenant_id', '<>', 'tasks.tenant_id')
      .executeTakeFirstOrThrow();
    assert.equal(Number(mismatched.n), 0);
  });

  test('chaining events are logged on the parent, with its tenant', async () => {
    const user = await registerAndLogin(app, 'audit-chain');
    const task = await createTask(app, user.token, {
      payload: slackPayload(newChannel('audit-chain-1')),
      on_success_next_task: { payload: slackPayload(newChannel('audit-chain-2')) },
    });
    const done = await waitForStatus(app, user.token, task.id, ['success', 'failed']);
    assert.equal(done.status, 'success');
    const trail = await trailOf({ user, taskId: task.id });
    assert.deepEqual(trail.slice(-2), ['Task succeeded, creating chained task', `Created and enqueued chained task ${done.next_task_id}`]);
    const childTrail = await trailOf({ user, taskId: done.next_task_id });
    assert.equal(childTrail[0], `Task created by the success of task ${task.id}`);
  });
});
