import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Kysely, PostgresDialect, sql, type CompiledQuery } from 'kysely';
import pg from 'pg';
import type { Database } from '../src/db/schema.js';
import { createTasks, type NewTask } from '../src/tasks/task-creation.js';
import { startTestApp, type TestApp } from './helpers/app.js';
import { slackPayload } from './helpers/engine.js';
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

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  'Actual Rows': number;
  'Actual Loops': number;
  'Rows Removed by Filter'?: number;
  Plans?: PlanNode[];
}

const nodes = (plan: PlanNode): PlanNode[] => [plan, ...(plan.Plans ?? []).flatMap(nodes)];

test("creating a task reads a bounded number of its tenant's queued tasks, however long the backlog", async () => {
  // The creation statement as the service runs it, captured to be explained with its parameters.
  const pool = new pg.Pool({ connectionString: app.database.url, max: 1 });
  const captured: CompiledQuery[] = [];
  const logged = new Kysely<Database>({
    dialect: new PostgresDialect({ pool }),
    log: (event) => void (event.level === 'query' && captured.push(event.query)),
  });
  try {
    const task = (priority: number): NewTask => ({
      tenantId: user.tenantId,
      kind: 'task',
      createdBy: user.userId,
      body: { payload: slackPayload('#turns') as NewTask['body']['payload'], priority },
    });
    for (const priority of [0, 5, -5]) {
      await createTasks(logged, [task(priority)]);
      const { sql: text, parameters } = captured.at(-1)!;
      const { rows } = await pool.query(`explain (analyze, format json) ${text}`, [...parameters]);
      const plan = rows[0]['QUERY PLAN'][0].Plan as PlanNode;
      for (const node of nodes(plan).filter((candidate) => candidate['Relation Name'] === 'tasks')) {
        const read = (node['Actual Rows'] + (node['Rows Removed by Filter'] ?? 0)) * node['Actual Loops'];
        assert.ok(read <= 100, `priority ${priority}: ${node['Node Type']} on ${node['Index Name']} read ${read} rows of ${BACKLOG}`);
      }
    }
  } finally {
    await logged.destroy();
  }
});
