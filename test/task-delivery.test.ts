import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Job } from 'pg-boss';
import { actionFor } from '../src/actions/registry.js';
import type { Config } from '../src/config.js';
import { silentLogger } from '../src/logger.js';
import { createTaskQueue, type TaskJobData } from '../src/queue/task-queue.js';
import { createTaskExecution, type Delivery } from '../src/tasks/task-execution.js';
import { startCancelWatch, type CancelWatch } from '../src/worker/cancel-watch.js';
import { createTaskRunner } from '../src/worker/task-runner.js';
import { startTestApp, type TestApp } from './helpers/app.js';
import {
  count,
  createTask,
  getTask,
  logMessages,
  newChannel,
  slackPayload,
  startFakeSlack,
  tenantTasks,
  waitForStatus,
  type FakeSlack,
} from './helpers/engine.js';
import { eventually } from './helpers/poll.js';
import { registerAndLogin } from './helpers/users.js';

// Deliveries driven by hand: the app runs WITHOUT a worker, and each test fetches its task's job
// from pg-boss and hands it to the real runner (src/worker/task-runner.ts) itself, once, twice in
// a row, or twice at once. Also: /health/worker without any worker.

let slack: FakeSlack;
let app: TestApp;
let cancelWatch: CancelWatch;

before(async () => {
  slack = await startFakeSlack();
  app = await startTestApp({ env: { SLACK_WEBHOOK_URL: slack.url, RETRY_DELAYS_SECONDS: '1' } });
  cancelWatch = startCancelWatch(app.db, app.watch);
});

after(async () => {
  cancelWatch?.stop();
  await app?.close();
  await slack?.close();
});

const neverCanceled: CancelWatch = { watch: () => () => {}, stop: () => {} };

function runner(watch: CancelWatch = cancelWatch, config: Config = app.config) {
  const execution = createTaskExecution({ db: app.db, queue: createTaskQueue(app.boss), config, metrics: app.metrics });
  const run = createTaskRunner({
    db: app.db,
    config,
    logger: silentLogger,
    watch: app.watch,
    execution,
    cancelWatch: watch,
    resolveAction: (task) => actionFor(task.kind, task.payload),
    // No tenant here has a Slack integration of its own: posts go to the shared webhook.
    slackFor: async () => undefined,
  });
  return { run, execution };
}

/**
 * Fetches the job of `taskId` as a worker would (other tests' leftover jobs may come first).
 * `fetch()` hands out no AbortSignal (only `work()` does), so the job gets one that never aborts.
 */
async function fetchJob(taskId: string): Promise<Job<TaskJobData>> {
  const jobs = await app.boss.fetch<TaskJobData>('tasks', { batchSize: 100 });
  const job = jobs.find((candidate) => candidate.id === taskId);
  assert.ok(job, `the job of task ${taskId} was fetchable`);
  return { ...job, signal: new AbortController().signal };
}

/** Fetches the jobs of `taskIds`, in their order, as fetchJob does. */
async function fetchJobs(taskIds: readonly string[]): Promise<Job<TaskJobData>[]> {
  const jobs = await app.boss.fetch<TaskJobData>('tasks', { batchSize: 100 });
  return taskIds.map((taskId) => {
    const job = jobs.find((candidate) => candidate.id === taskId);
    assert.ok(job, `the job of task ${taskId} was fetchable`);
    return { ...job, signal: new AbortController().signal };
  });
}

const deliveryOf = (job: Job<TaskJobData>, tenantId: string): Delivery => ({ taskId: job.id, tenantId, attempt: { id: job.id, retryCount: job.retryCount } });

async function jobsOf(taskId: string) {
  return app.boss.findJobs('tasks', { id: taskId });
}

async function chainFixture(label: string) {
  const user = await registerAndLogin(app, label);
  const [one, two] = [newChannel(`${label}-1`), newChannel(`${label}-2`)];
  const first = await createTask(app, user.token, { payload: slackPayload(one), on_success_next_task: { payload: slackPayload(two) } });
  return { user, one, two, first };
}

/** The chain was followed exactly once: one chained task, linked once, one Slack call. */
async function assertChainedOnce(fixture: Awaited<ReturnType<typeof chainFixture>>) {
  const { user, one, two, first } = fixture;
  const parent = await getTask(app, user.token, first.id);
  assert.equal(parent.status, 'success');
  assert.ok(parent.next_task_id);
  const rows = await tenantTasks(app, user.tenantId);
  assert.equal(rows.length, 2, `one chained task, got ${rows.length} tasks`);
  assert.deepEqual(rows.map((row) => row.id).sort(), [first.id, parent.next_task_id].sort());
  const child = rows.find((row) => row.id === parent.next_task_id)!;
  assert.equal(child.status, 'queued');
  assert.equal((await jobsOf(child.id)).length, 1, 'the chained task has one job');

  const messages = await logMessages(app, first.id);
  assert.equal(count(messages, (message) => message === 'Task execution started'), 1, JSON.stringify(messages));
  assert.equal(count(messages, (message) => message === 'Task succeeded, creating chained task'), 1);
  assert.equal(count(messages, (message) => message.startsWith('Created and enqueued chained task')), 1);
  assert.ok(messages.includes(`Created and enqueued chained task ${child.id}`));
  assert.equal(count(messages, (message) => message === 'Successfully posted to Slack with status 200'), 1);
  assert.equal(slack.requestsFor(one).length, 1, 'Slack called once');
  assert.equal(slack.requestsFor(two).length, 0, 'nobody ran the chained task');
  return parent;
}

describe('duplicate delivery', () => {
  test('the same job delivered twice in a row chains exactly once', async () => {
    const fixture = await chainFixture('dup-seq');
    const { run } = runner();
    const job = await fetchJob(fixture.first.id);

    await run([job]);
    const afterFirst = await getTask(app, fixture.user.token, fixture.first.id);
    const logsAfterFirst = await logMessages(app, fixture.first.id);
    await run([job]);

    const parent = await assertChainedOnce(fixture);
    assert.deepEqual(parent, afterFirst, 'the second delivery changed nothing (updated_at, next_task_id)');
    assert.deepEqual(await logMessages(app, fixture.first.id), logsAfterFirst);
  });

  test('the same job delivered twice at once chains exactly once', async () => {
    const fixture = await chainFixture('dup-conc');
    // Slack answers a little late, so both deliveries overlap for the whole attempt.
    slack.route(fixture.one, () => ({ status: 200, body: 'ok', delayMs: 200 }));
    const job = await fetchJob(fixture.first.id);
    const { run } = runner();

    await Promise.all([run([job]), run([job])]);
    await assertChainedOnce(fixture);
  });

  test('two runners with their own executions, given the same job at once, chain exactly once', async () => {
    const fixture = await chainFixture('dup-two-workers');
    const job = await fetchJob(fixture.first.id);
    const [a, b] = [runner(), runner()];

    await Promise.all([a.run([job]), b.run([{ ...job }])]);
    await assertChainedOnce(fixture);
  });

  test('two concurrent completions of the same attempt create the chained task once', async () => {
    const fixture = await chainFixture('dup-succeed');
    const job = await fetchJob(fixture.first.id);
    const { execution } = runner();
    const delivery: Delivery = { taskId: fixture.first.id, tenantId: fixture.user.tenantId, attempt: { id: job.id, retryCount: job.retryCount } };
    const [begun] = await execution.beginMany([delivery]);
    if (!begun?.run) assert.fail('the first delivery claims its task');
    const task = begun.task;
    // No action runs here: both completions get the outcome a successful Slack post would give.
    const outcome = {
      result: { message: 'Successfully posted to Slack', channel: fixture.one, slack_response_status: 200 },
      audit: ['Successfully posted to Slack with status 200'],
    };
    await Promise.all([execution.succeedMany([{ delivery, task, outcome }]), execution.succeedMany([{ delivery, task, outcome }])]);

    const parent = await getTask(app, fixture.user.token, fixture.first.id);
    assert.equal(parent.status, 'success');
    const rows = await tenantTasks(app, fixture.user.tenantId);
    assert.equal(rows.length, 2);
    const messages = await logMessages(app, fixture.first.id);
    assert.equal(count(messages, (message) => message.startsWith('Created and enqueued chained task')), 1);
    assert.equal(count(messages, (message) => message === 'Successfully posted to Slack with status 200'), 1);
  });

  test('a failed attempt delivered twice schedules one retry and does not run again early', async () => {
    const user = await registerAndLogin(app, 'dup-fail');
    const channel = newChannel('dup-fail');
    slack.route(channel, () => ({ status: 500, body: 'down' }));
    const task = await createTask(app, user.token, { payload: slackPayload(channel), max_retries: 2 });
    const job = await fetchJob(task.id);
    const { run } = runner();

    await run([job]);
    const afterFirst = await getTask(app, user.token, task.id);
    assert.equal(afterFirst.status, 'queued');
    assert.equal(afterFirst.retry_count, 1);
    await run([job]);

    assert.deepEqual(await getTask(app, user.token, task.id), afterFirst, 'the second delivery changed nothing');
    assert.equal(slack.requestsFor(channel).length, 1, 'the retry did not run before its time');
    const messages = await logMessages(app, task.id);
    assert.equal(count(messages, (message) => message === 'Scheduling retry 1/2'), 1, JSON.stringify(messages));
    assert.equal(count(messages, (message) => message === 'Task execution started'), 1);
  });
});

describe('a claim retried after its reply was lost', () => {
  test('recognises its own committed claim and runs the task once', async () => {
    const user = await registerAndLogin(app, 'retried-claim');
    const task = await createTask(app, user.token, { payload: slackPayload(newChannel('retried-claim')) });
    const job = await fetchJob(task.id);
    const { execution } = runner();
    const delivery: Delivery = { taskId: task.id, tenantId: user.tenantId, attempt: { id: job.id, retryCount: job.retryCount } };
    assert.equal((await execution.beginMany([delivery]))[0]!.run, true);
    // The first claim committed; the retry sees it as its own, and claims nothing more.
    const [again] = await execution.beginMany([delivery], { retrying: true });
    assert.equal(again!.run, true);
    assert.equal(count(await logMessages(app, task.id), (message) => message === 'Task execution started'), 1);
  });

  test('after recording a lost attempt, does not claim the retry it scheduled', async () => {
    const user = await registerAndLogin(app, 'retried-lost');
    const task = await createTask(app, user.token, { payload: slackPayload(newChannel('retried-lost')), max_retries: 2 });
    const job = await fetchJob(task.id);
    const { execution } = runner();
    const lost: Delivery = { taskId: task.id, tenantId: user.tenantId, attempt: { id: job.id, retryCount: job.retryCount } };
    assert.equal((await execution.beginMany([lost]))[0]!.run, true);
    // The next delivery finds the attempt lost and schedules a retry; its begin() is then tried
    // again, as after a commit whose reply the connection lost.
    const next: Delivery = { ...lost, attempt: { id: job.id, retryCount: job.retryCount + 1 } };
    assert.deepEqual(await execution.beginMany([next]), [{ run: false, reason: 'lost attempt recorded' }]);
    const [again] = await execution.beginMany([next], { retrying: true });
    assert.equal(again!.run, false, 'the retry waits for its own delivery');
    const waiting = await getTask(app, user.token, task.id);
    assert.equal(waiting.status, 'queued');
    assert.equal(waiting.retry_count, 1);
    assert.equal(count(await logMessages(app, task.id), (message) => message === 'Task execution started'), 1);
  });
});

describe("a tenant's cap of running tasks, counted as deliveries claim", () => {
  test('two batches claimed at the same instant together claim no more than the cap', async () => {
    const user = await registerAndLogin(app, 'cap-race');
    const channel = newChannel('cap-race');
    const ids: string[] = [];
    for (let index = 0; index < 6; index += 1) ids.push((await createTask(app, user.token, { payload: slackPayload(channel) })).id);
    const jobs = await fetchJobs(ids);
    // Two fetches that each took three of the tenant's jobs, as two loops or workers can at one instant.
    const { execution } = runner(cancelWatch, { ...app.config, tenantMaxActiveTasks: 2 });
    const begun = (
      await Promise.all(
        [jobs.slice(0, 3), jobs.slice(3)].map((batch) => execution.beginMany(batch.map((job) => deliveryOf(job, user.tenantId)), { withinCap: true })),
      )
    ).flat();

    assert.equal(begun.filter((begin) => begin.run).length, 2, JSON.stringify(begun.map((begin) => (begin.run ? 'run' : begin.reason))));
    assert.equal(begun.filter((begin) => !begin.run && begin.reason === 'tenant at its cap').length, 4);
    const rows = await tenantTasks(app, user.tenantId);
    assert.equal(rows.filter((row) => row.status === 'in_progress').length, 2);
    assert.equal(rows.filter((row) => row.status === 'queued').length, 4);
    let started = 0;
    for (const id of ids) started += count(await logMessages(app, id), (message) => message === 'Task execution started');
    assert.equal(started, 2, 'only the claimed tasks have a start in their audit trail');
  });

  test('with room for fewer than a batch holds, the higher priority is claimed, whatever the batch order', async () => {
    const user = await registerAndLogin(app, 'cap-priority');
    const channel = newChannel('cap-priority');
    const low = await createTask(app, user.token, { payload: slackPayload(channel), priority: -5 });
    const urgent = await createTask(app, user.token, { payload: slackPayload(channel), priority: 10 });
    const jobs = await fetchJobs([low.id, urgent.id]);
    const { execution } = runner(cancelWatch, { ...app.config, tenantMaxActiveTasks: 1 });

    const [lowBegin, urgentBegin] = await execution.beginMany(
      jobs.map((job) => deliveryOf(job, user.tenantId)),
      { withinCap: true },
    );
    assert.equal(urgentBegin!.run, true, 'the urgent task is claimed');
    assert.deepEqual(lowBegin, { run: false, reason: 'tenant at its cap' });
  });

  test('a delivery put back at the cap starts its task once the tenant has room, and never before', async () => {
    const user = await registerAndLogin(app, 'cap-deferred');
    const [slowChannel, waitingChannel] = [newChannel('cap-slow'), newChannel('cap-waiting')];
    slack.route(slowChannel, () => ({ status: 200, body: 'ok', delayMs: 300 }));
    const slow = await createTask(app, user.token, { payload: slackPayload(slowChannel) });
    const waiting = await createTask(app, user.token, { payload: slackPayload(waitingChannel) });
    const [slowJob, waitingJob] = await fetchJobs([slow.id, waiting.id]);
    const { run } = runner(cancelWatch, { ...app.config, tenantMaxActiveTasks: 1 });

    const running = run([slowJob!]);
    await waitForStatus(app, user.token, slow.id, 'in_progress', 5_000);
    assert.deepEqual(await run([waitingJob!]), [{ id: waitingJob!.id, status: 'completed' }], 'the put-back delivery settles');
    const [putBack] = await jobsOf(waiting.id);
    assert.equal(putBack!.state, 'retry', 'its job waits in the queue again');
    assert.equal((await getTask(app, user.token, waiting.id)).status, 'queued');
    assert.equal(slack.requestsFor(waitingChannel).length, 0, 'it did not run beside the task holding the cap');
    assert.equal(count(await logMessages(app, waiting.id), (message) => message === 'Task execution started'), 0, 'nor was it recorded as started');
    await running;

    // Due again once put back (its tenant has room now).
    const nextDelivery = await eventually(
      async () => {
        const job = (await app.boss.fetch<TaskJobData>('tasks', { batchSize: 100 })).find((candidate) => candidate.id === waiting.id);
        return job && { ...job, signal: new AbortController().signal };
      },
      { timeoutMs: 5_000, message: 'the put-back job fetchable again' },
    );
    assert.equal(nextDelivery!.retryCount, waitingJob!.retryCount + 1, 'the next delivery is a new one, so the first cannot settle it');
    await run([nextDelivery!]);
    const done = await getTask(app, user.token, waiting.id);
    assert.equal(done.status, 'success');
    assert.equal(done.retry_count, 0, 'being put back spent none of its retries');
    assert.equal(slack.requestsFor(waitingChannel).length, 1);
    assert.equal(count(await logMessages(app, waiting.id), (message) => message === 'Task execution started'), 1);
  });
});

describe("a batch's deliveries", () => {
  // The worker counts a tenant's running tasks down as each delivery settles (worker.ts), so the
  // room a batch's quick tasks leave is fetched for while its slowest still runs.
  test("each settles once its own outcome is recorded, not when the batch's slowest does", async () => {
    const user = await registerAndLogin(app, 'settle-each');
    const [slow, quick] = [newChannel('settle-slow'), newChannel('settle-quick')];
    let answerSlow!: () => void;
    const slowAnswered = new Promise<void>((resolve) => (answerSlow = resolve));
    slack.route(slow, () => ({ status: 200, body: 'ok', after: slowAnswered }));
    const slowTask = await createTask(app, user.token, { payload: slackPayload(slow) });
    const quickTask = await createTask(app, user.token, { payload: slackPayload(quick) });
    const { run } = runner();
    const settled: string[] = [];
    const batch = run(await fetchJobs([slowTask.id, quickTask.id]), (job) => settled.push(job.id));

    await eventually(() => (settled.length > 0 ? true : undefined));
    assert.deepEqual(settled, [quickTask.id]);
    assert.equal((await getTask(app, user.token, quickTask.id)).status, 'success', 'settled after its success was recorded');
    assert.equal((await getTask(app, user.token, slowTask.id)).status, 'in_progress');
    assert.equal(slack.requestsFor(slow).length, 1, "the slow task's post is still waiting for Slack");

    answerSlow();
    assert.deepEqual(
      (await batch).map((result) => result.status),
      ['completed', 'completed'],
    );
    assert.deepEqual(settled, [quickTask.id, slowTask.id], 'each settled once');
    assert.equal((await getTask(app, user.token, slowTask.id)).status, 'success');
  });
});

describe('a run that finishes after a cancel', () => {
  test('never overwrites canceled, even when the action completes and nothing aborted it', async () => {
    const fixture = await chainFixture('late-finish');
    slack.route(fixture.one, () => ({ status: 200, body: 'ok', delayMs: 500 }));
    const job = await fetchJob(fixture.first.id);
    // A watch that never notices the cancel: the action runs to completion and reports success.
    const { run } = runner(neverCanceled);

    const running = run([job]);
    await waitForStatus(app, fixture.user.token, fixture.first.id, 'in_progress', 5_000);
    const request = await eventually(() => slack.requestsFor(fixture.one)[0], { timeoutMs: 5_000, message: 'the Slack call' });
    const canceled = await app.delete(`/api/v1/tasks/${fixture.first.id}`, { token: fixture.user.token });
    assert.equal(canceled.status, 200);
    await running;

    assert.ok(request.answeredAt && !request.aborted, 'the action did complete');
    assert.deepEqual(await getTask(app, fixture.user.token, fixture.first.id), canceled.body);
    assert.equal((await tenantTasks(app, fixture.user.tenantId)).length, 1, 'no chained task');
    const messages = await logMessages(app, fixture.first.id);
    assert.equal(messages.at(-1), 'Task canceled by user request');
    assert.ok(!messages.some((message) => message.startsWith('Successfully posted')));
  });

  test('with the real cancel watch, the running action is aborted and the delivery returns quietly', async (t) => {
    const user = await registerAndLogin(app, 'watch-abort');
    const channel = newChannel('watch-abort');
    slack.route(channel, () => ({ hang: true }));
    const task = await createTask(app, user.token, { payload: slackPayload(channel) });
    const job = await fetchJob(task.id);
    const { run } = runner();

    const running = run([job]);
    const request = await eventually(() => slack.requestsFor(channel)[0], { timeoutMs: 5_000, message: 'the Slack call' });
    const canceled = await app.delete(`/api/v1/tasks/${task.id}`, { token: user.token });
    const canceledAt = Date.now();
    assert.equal(canceled.status, 200);
    await running;
    const returnedAfter = Date.now() - canceledAt;
    t.diagnostic(`runner returned ${returnedAfter} ms after the cancel`);
    assert.ok(returnedAfter < 1_000, `the delivery ended ${returnedAfter} ms after the cancel`);
    await eventually(() => (request.aborted ? true : undefined), { timeoutMs: 1_000, message: 'the Slack call aborted' });
    assert.deepEqual(await getTask(app, user.token, task.id), canceled.body);
  });
});

describe('worker health without a worker', () => {
  test('GET /health/worker is 503 unavailable when no worker ever ran', async () => {
    const response = await app.get('/health/worker');
    assert.equal(response.status, 503, JSON.stringify(response.body));
    assert.deepEqual(response.body, {
      status: 'unavailable',
      queue: 'connected',
      workers: 0,
      last_seen: null,
      detail: 'No worker heartbeat in the last 30 s',
    });
  });
});
