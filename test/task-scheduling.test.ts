import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { sql } from 'kysely';
import { startTestApp, type TestApp } from './helpers/app.js';
import { createTaskQueue } from '../src/queue/task-queue.js';
import { createTaskExecution } from '../src/tasks/task-execution.js';
import { createTask, getTask, logMessages, newChannel, slackPayload, startFakeSlack, type FakeSlack } from './helpers/engine.js';
import { eventually } from './helpers/poll.js';
import { registerAndLogin, type RegisteredUser } from './helpers/users.js';

// Which task runs next: tenants take turns and each is capped (TENANT_MAX_ACTIVE_TASKS); within a
// tenant, higher priorities first. Tasks are queued while no worker runs, then one starts.

/** An app (no worker yet) and a fake Slack for one test, closed when that test ends: each holds its own connection pools. */
async function setUp(t: TestContext, env: Record<string, string>): Promise<{ app: TestApp; slack: FakeSlack }> {
  const slack = await startFakeSlack();
  t.after(() => slack.close());
  // Every post takes a moment, so a tenant's running tasks overlap if the cap let them.
  slack.reply = () => ({ status: 200, body: 'ok', delayMs: 40 });
  const app = await startTestApp({ env: { SLACK_WEBHOOK_URL: slack.url, ...env } });
  t.after(() => app.close());
  return { app, slack };
}

interface Run {
  id: string;
  tenant_id: string;
  priority: number;
  started_at: Date;
  finished_at: Date;
}

async function runsOnceFinished(app: TestApp, ids: string[]): Promise<Run[]> {
  return eventually(
    async () => {
      const { rows } = await sql<Run & { status: string }>`
        select id, tenant_id, priority, status, started_at, finished_at from tasks where id = any(${ids}::uuid[])
        order by started_at, id
      `.execute(app.db);
      return rows.every((row) => row.status === 'success') ? rows : undefined;
    },
    { timeoutMs: 30_000, message: 'every task succeeded' },
  );
}

describe('scheduling across tenants', () => {
  test('three tenants with queued work take turns, each within its cap of running tasks', async (t) => {
    // Several fetch loops: the cap holds across them (test/task-delivery.test.ts races two claims).
    const { app } = await setUp(t, { TENANT_MAX_ACTIVE_TASKS: '1', WORKER_CONCURRENCY: '4' });
    const tenants: RegisteredUser[] = [];
    for (const label of ['fair-a', 'fair-b', 'fair-c']) tenants.push(await registerAndLogin(app, label));
    const ids: string[] = [];
    // Global FIFO would run all of A's, then all of B's, then C's.
    for (const tenant of tenants) {
      const channel = newChannel(tenant.tenantName.replace(/\s/g, '-'));
      for (let index = 0; index < 4; index += 1) ids.push((await createTask(app, tenant.token, { payload: slackPayload(channel) })).id);
    }
    await app.startWorker();
    const runs = await runsOnceFinished(app, ids);

    const tenantOrder = runs.map((run) => tenants.findIndex((tenant) => tenant.tenantId === run.tenant_id));
    assert.deepEqual(new Set(tenantOrder.slice(0, 3)), new Set([0, 1, 2]), `the first three starts are one per tenant: ${tenantOrder.join(',')}`);
    for (const tenant of tenants) {
      const own = runs.filter((run) => run.tenant_id === tenant.tenantId);
      for (let index = 1; index < own.length; index += 1) {
        assert.ok(
          own[index]!.started_at >= own[index - 1]!.finished_at,
          `${tenant.tenantName}: a task started before the previous one finished (cap 1)`,
        );
      }
    }
  });

  test("a worker puts back a task while its tenant runs its cap elsewhere, and runs it once there is room", async (t) => {
    const { app, slack } = await setUp(t, { TENANT_MAX_ACTIVE_TASKS: '1' });
    const tenant = await registerAndLogin(app, 'held-cap');
    const [heldChannel, waitingChannel] = [newChannel('held'), newChannel('waiting')];
    // A task running on another worker whose job the queue no longer counts as active (given up
    // while it ran): pg-boss's fetch sees room for the tenant, and only the claim's count does not.
    const held = await createTask(app, tenant.token, { payload: slackPayload(heldChannel) });
    const [job] = (await app.boss.fetch('tasks', { batchSize: 100 })).filter((candidate) => candidate.id === held.id);
    const execution = createTaskExecution({ db: app.db, queue: createTaskQueue(app.boss), config: app.config, metrics: app.metrics });
    const [begun] = await execution.beginMany([{ taskId: held.id, tenantId: tenant.tenantId, attempt: { id: job!.id, retryCount: job!.retryCount } }], { withinCap: true });
    assert.equal(begun!.run, true);
    await app.boss.complete('tasks', job!.id);

    const waiting = await createTask(app, tenant.token, { payload: slackPayload(waitingChannel) });
    await app.startWorker();
    await eventually(async () => ((await app.boss.findJobs('tasks', { id: waiting.id }))[0]?.retryCount ?? 0) >= 2 || undefined, {
      timeoutMs: 10_000,
      message: 'the worker fetched the waiting task and put it back, twice',
    });
    assert.equal((await getTask(app, tenant.token, waiting.id)).status, 'queued');
    assert.equal(slack.requestsFor(waitingChannel).length, 0, 'it did not run beside the task holding the cap');

    assert.equal((await app.delete(`/api/v1/tasks/${held.id}`, { token: tenant.token })).status, 200);
    const done = await eventually(async () => {
      const task = await getTask(app, tenant.token, waiting.id);
      return task.status === 'success' ? task : undefined;
    }, { timeoutMs: 10_000, message: 'the waiting task ran once the tenant had room' });
    assert.equal(done.retry_count, 0, 'being put back spent none of its retries');
    assert.equal((await logMessages(app, waiting.id)).filter((message) => message === 'Task execution started').length, 1);
  });

  test("a tenant arriving behind another's backlog is served in the very next fetch", async (t) => {
    // One fetch loop taking 16 tasks at a time, under the default cap: turns alone decide.
    const { app } = await setUp(t, { WORKER_CONCURRENCY: '1' });
    const [busy, late] = [await registerAndLogin(app, 'busy'), await registerAndLogin(app, 'late')];
    const [busyChannel, lateChannel] = [newChannel('busy'), newChannel('late')];
    const backlog: string[] = [];
    for (let index = 0; index < 40; index += 1) backlog.push((await createTask(app, busy.token, { payload: slackPayload(busyChannel) })).id);
    const lateIds: string[] = [];
    for (let index = 0; index < 5; index += 1) lateIds.push((await createTask(app, late.token, { payload: slackPayload(lateChannel) })).id);
    await app.startWorker();
    const order = (await runsOnceFinished(app, [...backlog, ...lateIds])).map((run) => run.id);
    for (const id of lateIds) assert.ok(order.indexOf(id) < 16, `a late tenant's task ran ${order.indexOf(id) + 1}th of ${order.length}, not in the first fetch`);
  });

  test("a tenant's tasks scheduled for later do not push its immediate work behind other tenants", async (t) => {
    // One fetch loop taking 16 tasks at a time, under the default cap: turns alone decide.
    const { app } = await setUp(t, { WORKER_CONCURRENCY: '1' });
    const [planner, other] = [await registerAndLogin(app, 'planner'), await registerAndLogin(app, 'other')];
    const [plannerChannel, otherChannel] = [newChannel('planner'), newChannel('other')];
    for (let index = 0; index < 30; index += 1) {
      await createTask(app, planner.token, { payload: slackPayload(plannerChannel), delay_seconds: 3600 });
    }
    const others: string[] = [];
    for (let index = 0; index < 40; index += 1) others.push((await createTask(app, other.token, { payload: slackPayload(otherChannel) })).id);
    const immediate = (await createTask(app, planner.token, { payload: slackPayload(plannerChannel) })).id as string;
    await app.startWorker();
    const runs = await runsOnceFinished(app, [...others, immediate]);
    const order = runs.map((run) => run.id);
    assert.ok(order.indexOf(immediate) < 16, `the planner's immediate task ran in the first fetch, not ${order.indexOf(immediate) + 1}th of ${order.length}`);
  });

  test('within a tenant a higher priority runs first', async (t) => {
    // One fetch loop, so fetches follow the queue's order; more tasks than one fetch takes (16).
    const { app } = await setUp(t, { WORKER_CONCURRENCY: '1' });
    const tenant = await registerAndLogin(app, 'priority');
    const channel = newChannel('priority');
    const create = async (priority?: number) =>
      (await createTask(app, tenant.token, { payload: slackPayload(channel), ...(priority === undefined ? {} : { priority }) })).id as string;
    const normal: string[] = [];
    const low: string[] = [];
    const urgent: string[] = [];
    for (let index = 0; index < 20; index += 1) normal.push(await create());
    for (let index = 0; index < 20; index += 1) low.push(await create(-5));
    for (let index = 0; index < 20; index += 1) urgent.push(await create(10));
    assert.equal((await app.get(`/api/v1/tasks/${urgent[0]}`, { token: tenant.token })).body.priority, 10, 'the task JSON shows its priority');
    await app.startWorker();
    const runs = await runsOnceFinished(app, [...normal, ...urgent, ...low]);
    const startOf = (ids: string[]) => runs.filter((run) => ids.includes(run.id)).map((run) => run.started_at.getTime());
    // A fetch claims its tasks together (one started_at), so a fetch that takes the last of one
    // priority and the first of the next starts them at the same time.
    assert.ok(Math.max(...startOf(urgent)) <= Math.min(...startOf(normal)), 'no priority 0 task started before a priority 10 one');
    assert.ok(Math.max(...startOf(normal)) <= Math.min(...startOf(low)), 'no priority -5 task started before a priority 0 one');
    assert.ok(Math.min(...startOf(urgent)) < Math.min(...startOf(normal)), 'the first fetch took only priority 10 tasks');
  });
});
