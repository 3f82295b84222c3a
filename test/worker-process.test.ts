import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestApp, type TestApp } from './helpers/app.js';
import { startFakeServer, type FakeServer } from './helpers/fake-server.js';
import { eventually } from './helpers/poll.js';
import { spawnService, type ServiceProcess } from '../scripts/lib/service-process.js';
import { registerAndLogin, type RegisteredUser } from './helpers/users.js';

/**
 * Worker processes as operators run them: killed with SIGKILL mid-task, or stopped with SIGTERM.
 * The API runs in the test process; workers are real child processes on the same database.
 */
describe('worker processes', () => {
  let app: TestApp;
  let slack: FakeServer;
  let user: RegisteredUser;
  const children: ServiceProcess[] = [];

  const workerEnv = () => ({
    DATABASE_URL: app.database.url,
    SLACK_WEBHOOK_URL: `${slack.url}/hook`,
    RETRY_DELAYS_SECONDS: '1',
  });
  const spawnWorker = () => {
    const worker = spawnService('worker', workerEnv());
    children.push(worker);
    return worker;
  };
  const getTask = async (id: string) => (await app.get(`/api/v1/tasks/${id}`, { token: user.token })).body;
  const logsOf = async (id: string): Promise<string[]> =>
    (await app.get(`/api/v1/tasks/${id}/logs`, { token: user.token })).body.map((entry: { message: string }) => entry.message);
  const createTask = async (extra: Record<string, unknown>, channel: string) => {
    const created = await app.post(
      '/api/v1/tasks',
      { payload: { action: 'post_to_slack', channel, message: 'crash test' }, ...extra },
      { token: user.token },
    );
    assert.equal(created.status, 201, JSON.stringify(created.body));
    return created.body.id as string;
  };
  const workerStarted = (worker: ServiceProcess) =>
    eventually(() => (worker.output().includes('"worker started"') ? true : undefined), { timeoutMs: 20_000, message: 'worker start' });

  before(async () => {
    slack = await startFakeServer();
    // The API process supervises too (as every pg-boss instance with supervise on does), so a
    // job whose worker died is expired whichever process notices first.
    app = await startTestApp({ env: { SLACK_WEBHOOK_URL: `${slack.url}/hook`, RETRY_DELAYS_SECONDS: '1' } });
    user = await registerAndLogin(app, 'crash');
  });

  after(async () => {
    for (const child of children) child.child.kill('SIGKILL');
    await Promise.all(children.map((child) => child.exited));
    await app.close();
    await slack.close();
  });

  test('a worker killed with SIGKILL mid-task: the attempt is counted as failed and retried elsewhere', async () => {
    const channel = '#sigkill-retry';
    slack.reply = (request) => (request.body?.channel === channel && slack.requests.filter((r) => r.body?.channel === channel).length === 1 ? { hang: true } : { status: 200, body: 'ok' });
    const doomed = spawnWorker();
    await workerStarted(doomed);
    const taskId = await createTask({ max_retries: 1 }, channel);
    await eventually(async () => ((await getTask(taskId)).status === 'in_progress' ? true : undefined), { message: 'task running' });
    await eventually(() => (slack.requests.some((r) => r.body?.channel === channel) ? true : undefined));

    doomed.child.kill('SIGKILL');
    const killedAt = Date.now();
    assert.equal(await doomed.exited, 'SIGKILL');
    await app.startWorker();

    // No timeout_seconds: the limit is 30 s + 15 s after the kill.
    const finished = await eventually(
      async () => {
        const task = await getTask(taskId);
        return task.status === 'success' ? task : undefined;
      },
      { timeoutMs: 45_000, intervalMs: 200, message: 'task recovered after SIGKILL' },
    );
    const recoveredInMs = Date.now() - killedAt;
    assert.ok(recoveredInMs < 45_000, `recovered in ${recoveredInMs} ms`);
    assert.equal(finished.retry_count, 1);
    const logs = await logsOf(taskId);
    assert.ok(logs.includes('Task failed with error: The worker running this attempt stopped before it finished'), logs.join('\n'));
    assert.ok(logs.includes('Scheduling retry 1/1'), logs.join('\n'));
    assert.equal(logs.filter((message) => message === 'Task execution started').length, 2);
  });

  test('a worker killed mid-task with no retries left: the task fails within timeout_seconds + 15 s', async () => {
    const channel = '#sigkill-fail';
    slack.reply = (request) => (request.body?.channel === channel ? { hang: true } : { status: 200, body: 'ok' });
    // Only the doomed worker may take the task.
    await app.stopWorkers();
    const doomed = spawnWorker();
    await workerStarted(doomed);
    const taskId = await createTask({ timeout_seconds: 5 }, channel);
    await eventually(() => (slack.requests.some((r) => r.body?.channel === channel) ? true : undefined), { message: 'attempt started' });
    doomed.child.kill('SIGKILL');
    const killedAt = Date.now();
    await doomed.exited;
    await app.startWorker();

    const failed = await eventually(
      async () => {
        const task = await getTask(taskId);
        return task.status === 'failed' ? task : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 200, message: 'task failed after SIGKILL' },
    );
    assert.ok(Date.now() - killedAt < 20_000);
    assert.equal(failed.result.error, 'The worker running this attempt stopped before it finished');
    const logs = await logsOf(taskId);
    assert.ok(logs.includes('Task permanently failed after all retries'), logs.join('\n'));
  });

  test('SIGTERM: the worker stops taking tasks, lets the running one finish, and exits 0', async () => {
    const channel = '#sigterm';
    slack.reply = (request) => (request.body?.channel === channel ? { status: 200, body: 'ok', delayMs: 1_500 } : { status: 200, body: 'ok' });
    const worker = spawnWorker();
    await workerStarted(worker);
    // The in-process worker from the first test would also take tasks: stop it so only the child runs.
    await app.stopWorkers();
    const running = await createTask({}, channel);
    await eventually(async () => ((await getTask(running)).status === 'in_progress' ? true : undefined), { message: 'task running' });

    worker.child.kill('SIGTERM');
    await eventually(() => (worker.output().includes('"shutting down"') ? true : undefined), { message: 'shutdown begun' });
    const lateTask = await createTask({}, '#after-sigterm');
    assert.equal(await worker.exited, 0, worker.output());

    assert.equal((await getTask(running)).status, 'success', 'the running task finished during the grace period');
    assert.equal((await getTask(lateTask)).status, 'queued', 'no new task was taken after SIGTERM');
  });
});
