import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { startTestApp, type TestApp } from './helpers/app.js';
import { createTask, slackPayload } from './helpers/engine.js';
import { registerAndLogin, type RegisteredUser } from './helpers/users.js';

// The schema itself refuses a row that points across tenants, whatever a query gets wrong.

let app: TestApp;
let alpha: RegisteredUser;
let beta: RegisteredUser;
let alphaTask: string;
let betaTask: string;

before(async () => {
  app = await startTestApp();
  [alpha, beta] = await Promise.all([registerAndLogin(app, 'alpha'), registerAndLogin(app, 'beta')]);
  alphaTask = (await createTask(app, alpha.token, { payload: slackPayload('#alpha') })).id;
  betaTask = (await createTask(app, beta.token, { payload: slackPayload('#beta') })).id;
});

after(async () => {
  await app?.close();
});

async function refusedByForeignKey(statement: Promise<unknown>, constraint: string) {
  await assert.rejects(statement, (error: { code?: string; constraint?: string }) => {
    assert.equal(error.code, '23503');
    assert.equal(error.constraint, constraint);
    return true;
  });
}

describe('composite tenant foreign keys', () => {
  test("an audit entry of one tenant cannot name another tenant's task", async () => {
    await refusedByForeignKey(
      sql`insert into task_logs (task_id, tenant_id, message) values (${betaTask}, ${alpha.tenantId}, 'forged')`.execute(app.db),
      'task_logs_task_fkey',
    );
    await sql`insert into task_logs (task_id, tenant_id, message) values (${alphaTask}, ${alpha.tenantId}, 'own')`.execute(app.db);
  });

  test('an audit entry names a tenant that exists: its key to its task holds it there', async () => {
    await refusedByForeignKey(
      sql`insert into task_logs (task_id, tenant_id, message) values (${alphaTask}, ${randomUUID()}, 'orphaned')`.execute(app.db),
      'task_logs_task_fkey',
    );
    // Nor can the tenant go from under its audit trail: its tasks still name it.
    await assert.rejects(sql`delete from tenants where id = ${alpha.tenantId}`.execute(app.db), { code: '23503' });
    const { rows } = await sql<{ n: string }>`select count(*) as n from task_logs where tenant_id = ${alpha.tenantId}`.execute(app.db);
    assert.ok(Number(rows[0]!.n) > 0);
  });

  test("a task cannot chain to another tenant's task", async () => {
    await refusedByForeignKey(
      sql`update tasks set next_task_id = ${betaTask} where tenant_id = ${alpha.tenantId} and id = ${alphaTask}`.execute(app.db),
      'tasks_next_task_fkey',
    );
  });

  test("a task cannot be created by another tenant's user", async () => {
    await refusedByForeignKey(
      sql`update tasks set created_by = ${beta.userId} where tenant_id = ${alpha.tenantId} and id = ${alphaTask}`.execute(app.db),
      'tasks_created_by_fkey',
    );
  });

  test('a task id is unique within its tenant, and that pair is what references name', async () => {
    const { rows } = await sql<{ definition: string }>`
      select pg_get_constraintdef(oid) as definition from pg_constraint where conname = 'tasks_pkey'
    `.execute(app.db);
    assert.deepEqual(rows, [{ definition: 'PRIMARY KEY (tenant_id, id)' }]);
  });
});
