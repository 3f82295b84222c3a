import { sql, type Kysely } from 'kysely';
import type { Database, TaskKind, TaskRow, TaskStatus } from '../db/schema.js';

export interface NewTask {
  kind: TaskKind;
  payload: unknown;
  callbackUrl: string | null;
  maxRetries: number;
  timeoutSeconds: number | null;
  onSuccessNextTask: unknown;
  /** When to run: an absolute time, or a delay counted on the database's clock (the queue's clock). */
  runAt: Date | null;
  delaySeconds: number | null;
  createdBy: string | null;
}

const json = (value: unknown) => (value === null || value === undefined ? null : JSON.stringify(value));

/**
 * Every task and audit query, bound to one tenant. This is the only way to reach those tables,
 * so no query can forget the tenant: another tenant's row simply does not exist here.
 */
export function taskStore(db: Kysely<Database>, tenantId: string) {
  const tasks = () => db.selectFrom('tasks').where('tasks.tenant_id', '=', tenantId);
  const updateTasks = () =>
    db.updateTable('tasks').where('tasks.tenant_id', '=', tenantId).set({ updated_at: sql`now()` });
  /** The attempt a delivery claimed and still holds. */
  const heldAttempt = (id: string, delivery: number) =>
    updateTasks().where('id', '=', id).where('status', '=', 'in_progress').where('claimed_delivery', '=', delivery);

  return {
    tenantId,

    async insert(task: NewTask): Promise<TaskRow> {
      return db
        .insertInto('tasks')
        .values({
          tenant_id: tenantId,
          kind: task.kind,
          payload: JSON.stringify(task.payload),
          callback_url: task.callbackUrl,
          max_retries: task.maxRetries,
          timeout_seconds: task.timeoutSeconds,
          on_success_next_task: json(task.onSuccessNextTask),
          scheduled_for: task.runAt ?? (task.delaySeconds ? sql<Date>`now() + make_interval(secs => ${task.delaySeconds})` : null),
          created_by: task.createdBy,
        })
        .returningAll()
        .executeTakeFirstOrThrow();
    },

    async find(id: string): Promise<TaskRow | undefined> {
      return tasks().selectAll().where('id', '=', id).executeTakeFirst();
    },

    /** Locks the row until the transaction ends, so concurrent state changes queue up behind it. */
    async findForUpdate(id: string): Promise<TaskRow | undefined> {
      return tasks().selectAll().where('id', '=', id).forUpdate().executeTakeFirst();
    },

    /**
     * queued → in_progress, only from queued and only by a later delivery than the last claim
     * (pg-boss counts up on every re-claim): a second delivery of the same job claims nothing, even
     * after its failed attempt put the task back to queued for a retry.
     */
    async claim(id: string, delivery: number, message: string): Promise<TaskRow | undefined> {
      // One statement claims and audits: the hottest path of the worker, in one round trip.
      return db
        .with('claimed', () =>
          updateTasks()
            .set({ status: 'in_progress', started_at: sql`now()`, claimed_delivery: delivery, scheduled_for: null })
            .where('id', '=', id)
            .where('status', '=', 'queued')
            .where((eb) => eb.or([eb('claimed_delivery', 'is', null), eb('claimed_delivery', '<', delivery)]))
            .returningAll(),
        )
        .with('audited', (qb) =>
          qb
            .insertInto('task_logs')
            .columns(['task_id', 'tenant_id', 'message'])
            .expression((eb) => eb.selectFrom('claimed').select(['claimed.id', 'claimed.tenant_id', sql<string>`${message}::text`.as('message')])),
        )
        .selectFrom('claimed')
        .selectAll()
        .executeTakeFirst();
    },

    /** in_progress → success/failed, only for the delivery that holds the attempt. */
    async finish(id: string, delivery: number, outcome: { status: Extract<TaskStatus, 'success' | 'failed'>; result: unknown }) {
      return heldAttempt(id, delivery)
        .set({ status: outcome.status, result: json(outcome.result), finished_at: sql`now()` })
        .returningAll()
        .executeTakeFirst();
    },

    /**
     * in_progress → queued for a later attempt, only for the delivery that holds the attempt.
     * `recordedBy` is the delivery recording it (a later one when the holder was lost): neither
     * it nor an earlier one can claim the retry, only the job's next delivery.
     */
    async requeueForRetry(id: string, delivery: number, retry: { retryCount: number; delaySeconds: number; result: unknown; recordedBy: number }) {
      return heldAttempt(id, delivery)
        .set({
          status: 'queued',
          claimed_delivery: retry.recordedBy,
          retry_count: retry.retryCount,
          scheduled_for: sql<Date>`now() + make_interval(secs => ${retry.delaySeconds})`,
          result: json(retry.result),
        })
        .returningAll()
        .executeTakeFirst();
    },

    /** queued/in_progress → canceled (or failed, when its job is gone); anything else is left alone. */
    async end(id: string, outcome: { status: Extract<TaskStatus, 'canceled' | 'failed'>; result: unknown }): Promise<TaskRow | undefined> {
      return updateTasks()
        .set({ status: outcome.status, result: json(outcome.result), finished_at: sql`now()`, scheduled_for: null })
        .where('id', '=', id)
        .where('status', 'in', ['queued', 'in_progress'])
        .returningAll()
        .executeTakeFirst();
    },

    async setNextTask(id: string, nextTaskId: string): Promise<TaskRow> {
      return updateTasks().set({ next_task_id: nextTaskId }).where('id', '=', id).returningAll().executeTakeFirstOrThrow();
    },

    /** The tenant's oldest task of this kind that is queued or running, if any. */
    async findActive(kind: TaskKind): Promise<TaskRow | undefined> {
      return tasks()
        .selectAll()
        .where('kind', '=', kind)
        .where('status', 'in', ['queued', 'in_progress'])
        .orderBy('created_at')
        .limit(1)
        .executeTakeFirst();
    },

    async audit(taskId: string, ...messages: string[]): Promise<void> {
      if (messages.length === 0) return;
      await db
        .insertInto('task_logs')
        .values(messages.map((message) => ({ task_id: taskId, tenant_id: tenantId, message })))
        .execute();
    },

    /**
     * Writes one audit entry under an id chosen by the caller, once: written again with the same
     * id (a retry after a lost reply from a commit that went through) it changes nothing.
     */
    async auditOnce(entryId: string, taskId: string, message: string): Promise<void> {
      await db
        .insertInto('task_logs')
        .values({ id: entryId, task_id: taskId, tenant_id: tenantId, message })
        .onConflict((oc) => oc.column('id').doNothing())
        .execute();
    },

    async logs(taskId: string) {
      return db
        .selectFrom('task_logs')
        .select(['id', 'task_id', 'tenant_id', 'timestamp', 'message'])
        .where('tenant_id', '=', tenantId)
        .where('task_id', '=', taskId)
        .orderBy('seq')
        .execute();
    },
  };
}

export type TaskStore = ReturnType<typeof taskStore>;

/** Of the given running tasks, those that have been canceled since (for the worker's abort watch). */
export async function canceledAmong(db: Kysely<Database>, tasks: readonly { tenantId: string; taskId: string }[]): Promise<string[]> {
  if (tasks.length === 0) return [];
  const rows = await db
    .selectFrom('tasks')
    .select('id')
    .where('status', '=', 'canceled')
    .where((eb) => eb.or(tasks.map((task) => eb.and([eb('tenant_id', '=', task.tenantId), eb('id', '=', task.taskId)]))))
    .execute();
  return rows.map((row) => row.id);
}
