import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { httpJson } from '../../scripts/lib/http-json.js';
import { spawnService, type ServiceProcess } from '../../scripts/lib/service-process.js';
import { freePort } from '../../src/main/embedded-postgres.js';
import { WORKER_FAULT_POINTS, type FaultPoint } from '../../src/lib/fault-injection.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import {
  count,
  createTask,
  logMessages,
  newChannel,
  slackPayload,
  startFakeSlack,
  tenantTasks,
  waitForLog,
  waitForStatus,
  type FakeSlack,
} from '../helpers/engine.js';
import { startFakeServer, underLocalhostName, type FakeServer } from '../helpers/fake-server.js';
import { eventually } from '../helpers/poll.js';
import { registerAndLogin } from '../helpers/users.js';

/**
 * A worker killed with SIGKILL at each point of a task's life (FAULT_INJECTION_POINT makes it
 * kill itself exactly there), then a healthy worker takes over. Every scenario runs a chained
 * task with callbacks on both steps and one retry, on a database of its own. Two run at once: each
 * holds two processes' connection pools on the shared PostgreSQL (max_connections 100 by default),
 * which the other test files use too.
 */
describe('a worker killed at each point of a task', { concurrency: 2 }, () => {
  let slack: FakeSlack;
  let receiver: FakeServer;
  const apps: TestApp[] = [];
  const doomed: ServiceProcess[] = [];

  before(async () => {
    slack = await startFakeSlack();
    receiver = await startFakeServer(() => ({ status: 200, body: 'ok' }));
  });

  after(async () => {
    for (const worker of doomed) worker.child.kill('SIGKILL');
    await Promise.all(doomed.map((worker) => worker.exited));
    await Promise.all(apps.map((app) => app.close()));
    await slack.close();
    await receiver.close();
  });

  const callbacksFor = (taskId: string) => receiver.requests.filter((request) => request.body?.id === taskId);

  for (const point of WORKER_FAULT_POINTS) {
    test(`killed ${point}: the task ends right, chains once, and its audit trail has no duplicated outcome`, async (t) => {
      const env = { SLACK_WEBHOOK_URL: underLocalhostName(slack.url), RETRY_DELAYS_SECONDS: '1', CALLBACK_ALLOW_PRIVATE_NETWORKS: 'true' };
      const app = await startTestApp({ env });
      apps.push(app);
      const user = await registerAndLogin(app, `crash-${point}`);
      const worker = spawnService('worker', { ...env, DATABASE_URL: app.database.url, NODE_ENV: 'test', FAULT_INJECTION_POINT: point satisfies FaultPoint });
      doomed.push(worker);

      const [first, second] = [newChannel(`${point}-1`), newChannel(`${point}-2`)];
      const callback = `${receiver.url}/${point}`;
      const parent = await createTask(app, user.token, {
        payload: slackPayload(first),
        max_retries: 1,
        callback_url: callback,
        on_success_next_task: { payload: slackPayload(second), max_retries: 1, callback_url: callback },
      });

      assert.equal(await worker.exited, 'SIGKILL', `the worker died at ${point}:\n${worker.output().slice(-3000)}`);
      const killedAt = Date.now();
      await app.startWorker();

      const done = await waitForStatus(app, user.token, parent.id, 'success', 45_000);
      const child = await waitForStatus(app, user.token, done.next_task_id, 'success', 45_000);
      await eventually(() => (callbacksFor(parent.id).length > 0 && callbacksFor(child.id).length > 0 ? true : undefined), {
        timeoutMs: 45_000,
        message: 'both callbacks',
      });
      // Each callback's outcome is recorded just after its receiver answered.
      await waitForLog(app, parent.id, 'Successfully sent callback with status 200', 45_000);
      await waitForLog(app, child.id, 'Successfully sent callback with status 200', 45_000);
      t.diagnostic(`recovered ${Date.now() - killedAt} ms after the kill`);
      const [parentCallbacks, childCallbacks] = [callbacksFor(parent.id), callbacksFor(child.id)];

      // Exactly one chained task, linked once.
      const tasks = await tenantTasks(app, user.tenantId);
      assert.deepEqual(tasks.map((task) => task.id).sort(), [parent.id, child.id].sort());
      const parentLogs = await logMessages(app, parent.id);
      const childLogs = await logMessages(app, child.id);
      const trail = `\nparent: ${JSON.stringify(parentLogs, null, 1)}\nchild: ${JSON.stringify(childLogs, null, 1)}`;
      assert.equal(count(childLogs, (message) => message === `Task created by the success of task ${parent.id}`), 1, trail);
      for (const logs of [parentLogs, childLogs]) {
        assert.equal(count(logs, (message) => message === 'Successfully posted to Slack with status 200'), 1, trail);
        assert.equal(count(logs, (message) => message === 'Task permanently failed after all retries'), 0, trail);
        assert.equal(count(logs, (message) => message === 'Successfully sent callback with status 200'), 1, trail);
      }
      assert.equal(count(parentLogs, (message) => message === 'Task succeeded, creating chained task'), 1, trail);
      assert.equal(count(parentLogs, (message) => message.startsWith('Created and enqueued chained task')), 1, trail);

      // At-least-once: an attempt or a callback cut short by the kill is repeated, never dropped.
      const lostAttempt = ['after-claim', 'during-action', 'after-action', 'during-chaining'].includes(point);
      assert.equal(done.retry_count, lostAttempt ? 1 : 0, trail);
      if (lostAttempt) assert.ok(parentLogs.includes('Task failed with error: The worker running this attempt stopped before it finished'), trail);
      if (point === 'during-callback') {
        // The kill lands after a receiver answered: that callback is sent again. The other one
        // may have been in flight at the same moment (callbacks run in parallel) and is then
        // sent again too; none is sent more than twice, and each outcome is recorded once (above).
        assert.ok(parentCallbacks.length + childCallbacks.length >= 3, 'the callback cut short was sent again');
        assert.ok(parentCallbacks.length <= 2 && childCallbacks.length <= 2, `sent ${parentCallbacks.length} and ${childCallbacks.length} times`);
      } else {
        assert.equal(parentCallbacks.length, 1);
        assert.equal(childCallbacks.length, 1);
      }
    });
  }
});

describe('an API killed between a batch of creations and its answers', () => {
  test('the committed tasks exist with their audit entries and jobs, and run; the clients saw the connection drop', async () => {
    const slack = await startFakeSlack();
    const app = await startTestApp({ env: { SLACK_WEBHOOK_URL: slack.url } });
    const port = await freePort();
    const api = spawnService('api', {
      DATABASE_URL: app.database.url,
      HOST: '127.0.0.1',
      PORT: String(port),
      NODE_ENV: 'test',
      JWT_SECRET_KEY: app.config.jwtSecret,
      FAULT_INJECTION_POINT: 'after-create-commit' satisfies FaultPoint,
    });
    try {
      const base = `http://127.0.0.1:${port}`;
      await eventually(async () => ((await httpJson(base, 'GET', '/health/api').catch(() => undefined))?.status === 200 ? true : undefined), {
        timeoutMs: 20_000,
        message: 'the API answering',
      });
      const user = await registerAndLogin(app, 'crash-api');
      const channel = newChannel('crash-api');
      const answers = await Promise.allSettled(
        [0, 1, 2, 3, 4].map((index) =>
          httpJson(base, 'POST', '/api/v1/tasks', { token: user.token, json: { payload: slackPayload(channel, `m${index}`) } }),
        ),
      );
      assert.equal(await api.exited, 'SIGKILL', `the API died after the commit:\n${api.output().slice(-3000)}`);
      assert.deepEqual(
        answers.map((answer) => answer.status),
        ['rejected', 'rejected', 'rejected', 'rejected', 'rejected'],
        'no request was answered',
      );

      // A second batch's COMMIT may have left the API just before the kill: PostgreSQL runs it
      // when it reads it, so what committed is known only once the dead API's sessions are gone.
      await eventually(
        async () => {
          const { rows } = await sql<{ sessions: number }>`
            select count(*)::int as sessions from pg_stat_activity
             where datname = current_database() and application_name like 'autonomos-api%'`.execute(app.db);
          return rows[0]!.sessions === 0 ? true : undefined;
        },
        { timeoutMs: 20_000, message: 'the killed API gone from the database' },
      );
      const stored = await tenantTasks(app, user.tenantId);
      assert.ok(stored.length >= 1, 'the first batch committed before the kill');
      for (const task of stored) {
        assert.deepEqual(await logMessages(app, task.id), [`Task created by user ${user.userId} in tenant ${user.tenantId}`]);
      }
      await app.startWorker();
      for (const task of stored) await waitForStatus(app, user.token, task.id, 'success', 30_000);
      assert.equal(slack.requestsFor(channel).length, stored.length, 'each stored task posted once');
    } finally {
      api.child.kill('SIGKILL');
      await api.exited;
      await app.close();
      await slack.close();
    }
  });
});
