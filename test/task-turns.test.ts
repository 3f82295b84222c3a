import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sql } from 'kysely';
import { createTasks, type NewTask } from '../src/tasks/task-creation.js';
import { startTestApp, type TestApp } from './helpers/app.js';
import { slackPayload } from './helpers/engine.js';
import { explainingDb, planNodes } from './helpers/plans.js';
import { registerAndLogin, type RegisteredUser } from './helpers/users.js';

// A task's turn comes from its tenant's queued tasks, one index probe per priority level: what
// creating a task costs must not grow with the backlog, also when one tenant holds the whole
// queue at one priority (where the planner once walked the head-of-queue index instead, reading
// every queued task for each empty level).

const BACKLOG = 5_000;

let app: TestApp;
let user: RegisteredUser;

before(async () => {
  app = await startTestApp();
  user = await registerAndLogin(app, 'turns');
  await sql`
    insert into tasks (tenant_id, payload, queue_rank)
    select ${user.tenantId}::uuid, '{"action": "post_to_slack", "channel": "#backlog", "message": "queued"}'::jsonb, i
    from generate_series(0, ${BACKLOG - 1}) as i
  `.execute(app.db);
  await sql`analyze tasks`.execute(app.db);
});

after(async () => {
  await app?.close();
});

test("creating a task reads a bounded number of its tenant's queued tasks, however long the backlog", async () => {
  // The creation statement as the service runs it, captured to be explained with its parameters.
  const logged = explainingDb(app.database.url);
  try {
    const task = (priority: number): NewTask => ({
      tenantId: user.tenantId,
      kind: 'task',
      createdBy: user.userId,
      body: { payload: slackPayload('#turns') as NewTask['body']['payload'], priority },
    });
    for (const priority of [0, 5, -5]) {
      await createTasks(logged.db, [task(priority)]);
      const { plan } = await logged.explainLast();
      for (const node of planNodes(plan).filter((candidate) => candidate['Relation Name'] === 'tasks')) {
        const read = (node['Actual Rows'] + (node['Rows Removed by Filter'] ?? 0)) * node['Actual Loops'];
        assert.ok(read <= 100, `priority ${priority}: ${node['Node Type']} on ${node['Index Name']} read ${read} rows of ${BACKLOG}`);
      }
    }
  } finally {
    await logged.destroy();
  }
});
