import { sql, type Kysely } from 'kysely';
import { compiledOnce, prepared } from '../db/prepared-statements.js';
import { completeTaskJobs } from '../queue/task-queue.js';
import type { Database, TaskKind, TaskRow, TaskStatus } from '../db/schema.js';
import type { TaskPosition } from './task-cursor.js';
import { TASK_STATUSES } from './task-listing.schemas.js';

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

    async find(id: string): Promise<TaskRow | undefined> {
      return tasks().selectAll().where('id', '=', id).executeTakeFirst();
    },

    /** Those of the given tasks that exist, in no particular order. */
    async findMany(ids: readonly string[]): Promise<TaskRow[]> {
      if (ids.length === 0) return [];
      return tasks().selectAll().where('id', 'in', ids).execute();
    },

    /** Locks the row until the transaction ends, so concurrent state changes queue up behind it. */
    async findForUpdate(id: string): Promise<TaskRow | undefined> {
      return tasks().selectAll().where('id', '=', id).forUpdate().executeTakeFirst();
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

    /**
     * in_progress, held by no worker until `seconds` from now (scheduled_for and wait_until), only
     * for the delivery that holds the attempt, and once: its action asked to wait. The job's next
     * delivery claims the task again (see claimTasks).
     */
    async waitFor(id: string, delivery: number, seconds: number) {
      const until = sql<Date>`date_trunc('milliseconds', now() + make_interval(secs => ${seconds}))`;
      return heldAttempt(id, delivery)
        .where('scheduled_for', 'is', null)
        .set({ scheduled_for: until, wait_until: until })
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

    /** The tenant's oldest AOA job that is queued or running, if any. */
    async findActiveAoa(): Promise<TaskRow | undefined> {
      return tasks()
        .selectAll()
        .where('kind', '=', 'aoa')
        .where('status', 'in', ['queued', 'in_progress'])
        .orderBy('created_at')
        .limit(1)
        .executeTakeFirst();
    },

    /**
     * The chain `id` belongs to, first to last: the tasks before it (each the one whose
     * next_task_id names the next) and after it (following next_task_id). Every link is found by a
     * unique index; at most CHAIN_LINKS_FOLLOWED in each direction, though chains are far shorter.
     */
    async chainOf(id: string): Promise<TaskRow[]> {
      const { rows } = await sql<TaskRow>`
        with recursive
          earlier(id, depth) as (
            select parent.id, -1 from tasks parent where parent.tenant_id = ${tenantId} and parent.next_task_id = ${id}
            union all
            select parent.id, earlier.depth - 1 from earlier
            join tasks parent on parent.tenant_id = ${tenantId} and parent.next_task_id = earlier.id
            where earlier.depth > ${-CHAIN_LINKS_FOLLOWED}
          ),
          later(id, next_id, depth) as (
            select id, next_task_id, 0 from tasks where tenant_id = ${tenantId} and id = ${id}
            union all
            select task.id, task.next_task_id, later.depth + 1 from later
            join tasks task on task.tenant_id = ${tenantId} and task.id = later.next_id
            where later.depth < ${CHAIN_LINKS_FOLLOWED}
          ),
          linked(id, depth) as (select id, depth from earlier union all select id, depth from later)
        select tasks.* from linked join tasks on tasks.tenant_id = ${tenantId} and tasks.id = linked.id
        order by linked.depth
      `.execute(db);
      return rows;
    },

    /** The tasks created as retries of `id` (retry_of), oldest first. */
    async retriesOf(id: string): Promise<TaskRow[]> {
      return tasks().selectAll().where('retry_of', '=', id).orderBy('created_at').orderBy('id').execute();
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
      await writeAuditEntriesOnce(db, [{ id: entryId, tenantId, taskId, message }]);
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

    /**
     * Up to `limit` tasks matching `filter`, newest first (created_at, then id, descending),
     * strictly after `after`, among the next `examine` tasks of the wanted statuses. Each status
     * is read from its run of the (tenant_id, status, created_at desc, id desc) index in order, at
     * most `examine` entries, and the runs are merged: the cost is bounded by `examine` whatever
     * the filters. Conditions the index cannot check (kind, action, q) only narrow the tasks
     * examined; `examined` and `lastExamined` tell where the examination stopped.
     */
    async list(filter: TaskListFilter, after: TaskPosition | undefined, bounds: { limit: number; examine: number }): Promise<ListedPage> {
      const examinedConditions = [
        sql`tasks.tenant_id = ${tenantId}`,
        sql`tasks.status = wanted.status`,
        ...(after ? [sql`(tasks.created_at, tasks.id) < (${after.createdAt}::timestamptz, ${after.id}::uuid)`] : []),
        ...(filter.createdAfter ? [sql`tasks.created_at >= ${filter.createdAfter}`] : []),
        ...(filter.createdBefore ? [sql`tasks.created_at < ${filter.createdBefore}`] : []),
        // At most one task: found by its primary key, not by examining the tenant's tasks.
        ...(filter.parentId
          ? [sql`tasks.id = (select parent.next_task_id from tasks parent where parent.tenant_id = ${tenantId} and parent.id = ${filter.parentId})`]
          : []),
      ];
      const matchConditions = [
        ...(filter.kind ? [sql`kind = ${filter.kind}`] : []),
        ...(filter.action ? [sql`payload ->> 'action' = ${filter.action}`] : []),
        // Every string in the payload, however deep; the pattern matches the text literally.
        ...(filter.search
          ? [
              sql`exists (select from jsonb_path_query(payload, 'strict $.**') as item(value)
                          where jsonb_typeof(item.value) = 'string' and item.value #>> '{}' ilike ${`%${filter.search.replace(/[\\%_]/g, '\\$&')}%`})`,
            ]
          : []),
      ];
      const position = (table: string) => sql`to_char(${sql.ref(`${table}.created_at`)} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;
      const { rows } = await sql<Partial<ListedTask> & { examined: number; last_examined_at: string | null; last_examined_id: string | null }>`
        with examined as (
          select candidate.*
          from unnest(${filter.statuses}::text[]) as wanted(status)
          cross join lateral (
            select * from tasks
            where ${sql.join(examinedConditions, sql` and `)}
            order by tasks.created_at desc, tasks.id desc
            limit ${bounds.examine}
          ) as candidate
          order by candidate.created_at desc, candidate.id desc
          limit ${bounds.examine}
        ),
        matched as (
          select * from examined
          where ${matchConditions.length > 0 ? sql.join(matchConditions, sql` and `) : sql`true`}
          order by created_at desc, id desc
          limit ${bounds.limit}
        ),
        last_examined as (
          select * from examined order by created_at, id limit 1
        ),
        edge as (
          select (select count(*) from examined)::int as examined, ${position('last_examined')} as last_examined_at, last_examined.id as last_examined_id
          from (select) as one left join last_examined on true
        )
        select edge.*, matched.*, ${position('matched')} as position
        from edge left join matched on true
        order by matched.created_at desc, matched.id desc
      `.execute(db);
      const edge = rows[0]!;
      return {
        tasks: rows.filter((row): row is ListedTask & typeof row => row.id != null),
        examined: edge.examined,
        lastExamined: edge.last_examined_id ? { createdAt: edge.last_examined_at!, id: edge.last_examined_id } : undefined,
      };
    },

    /**
     * How many of the tenant's tasks (created at `since` or later) have each status and action.
     * Every counted task is read: all of the tenant's in one pass, or, since a time, each status's
     * run of the listing index from that time on.
     */
    async countByStatusAndAction(since: Date | undefined): Promise<{ status: TaskStatus; action: string; count: number }[]> {
      if (!since) {
        return tasks()
          .select(['status', sql<string>`payload ->> 'action'`.as('action'), sql<number>`count(*)::int`.as('count')])
          .groupBy(['status', sql`payload ->> 'action'`])
          .execute();
      }
      const { rows } = await sql<{ status: TaskStatus; action: string; count: number }>`
        select wanted.status, counted.action, counted.count
        from unnest(${TASK_STATUSES}::text[]) as wanted(status)
        cross join lateral (
          select payload ->> 'action' as action, count(*)::int as count from tasks
          where tenant_id = ${tenantId} and status = wanted.status and created_at >= ${since}
          group by 1
        ) as counted
      `.execute(db);
      return rows;
    },

    /**
     * Deletes up to `limit` tasks that finished (success, failed, canceled) more than `days` days
     * ago, with their audit trails, in one statement. Rows another transaction holds are skipped,
     * never waited for. A chained task's parent loses its link (the foreign key sets it to null).
     */
    async deleteFinished(days: number, limit: number): Promise<{ tasks: number; logs: number }> {
      // Oldest first from the old end of each finished status's run of the listing index: a task
      // finishes after it is created, so the created_at bound leaves out everything newer. (Given
      // all three statuses at once, the planner may scan the table from its start instead.)
      const { rows } = await sql<{ tasks: number; logs: number }>`
        with doomed as (
          select old.id
          from unnest(array['success', 'failed', 'canceled']) as finished(status)
          cross join lateral (
            select id from tasks
            where tenant_id = ${tenantId} and status = finished.status
              and created_at < now() - make_interval(days => ${days}) and finished_at < now() - make_interval(days => ${days})
            order by created_at, id
            limit ${limit}
            for update skip locked
          ) as old
          limit ${limit}
        ),
        removed_logs as (
          delete from task_logs using doomed where task_logs.tenant_id = ${tenantId} and task_logs.task_id = doomed.id returning 1
        ),
        removed as (
          delete from tasks using doomed where tasks.tenant_id = ${tenantId} and tasks.id = doomed.id returning 1
        )
        select (select count(*) from removed)::int as tasks, (select count(*) from removed_logs)::int as logs
      `.execute(db);
      return rows[0]!;
    },
  };
}

export type TaskStore = ReturnType<typeof taskStore>;

/** How many links chainOf follows each way: beyond any chain a task body can describe (MAX_CHAIN_DEPTH). */
const CHAIN_LINKS_FOLLOWED = 64;

/** What a page of the task list is narrowed to. */
export interface TaskListFilter {
  /** At least one. */
  statuses: readonly TaskStatus[];
  kind?: TaskKind | undefined;
  /** `payload.action` */
  action?: string | undefined;
  /** Inclusive. */
  createdAfter?: Date | undefined;
  /** Exclusive. */
  createdBefore?: Date | undefined;
  /** Only the task this one chained to (its `next_task_id`). */
  parentId?: string | undefined;
  /** A case-insensitive substring of any string in the payload. */
  search?: string | undefined;
}

/** A listed task, with its place in the list to the microsecond (see TaskPosition). */
export type ListedTask = TaskRow & { position: string };

export interface ListedPage {
  tasks: ListedTask[];
  /** How many tasks the page looked at: those after the cursor, in order, of the wanted statuses and creation times. */
  examined: number;
  /** The oldest task looked at, matching or not; undefined when there was none. */
  lastExamined: TaskPosition | undefined;
}

/**
 * The first tenant after `after` (in id order) that has tasks, found in one probe of the tasks'
 * primary key: retention visits tenants one by one, each through its own taskStore.
 */
export async function nextTenantWithTasks(db: Kysely<Database>, after: string | undefined): Promise<string | undefined> {
  const row = await db
    .selectFrom('tasks')
    .select('tenant_id')
    .$if(after !== undefined, (query) => query.where('tenant_id', '>', after!))
    .orderBy('tenant_id')
    .limit(1)
    .executeTakeFirst();
  return row?.tenant_id;
}

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

/*
 * The worker's batch writes. Each item names its tenant and is matched on it as well as on the
 * task id, so a batch mixing tenants is scoped row by row exactly as a taskStore would scope it.
 */

/** One task of a fetched batch, and the delivery (pg-boss retryCount) that carries it. */
export interface DeliveredTask {
  tenantId: string;
  taskId: string;
  delivery: number;
}

/**
 * queued → in_progress with its audit entry, in one statement for a whole batch: only from
 * queued and only by a later delivery than the last claim (pg-boss counts up on every re-claim),
 * so a second delivery of the same job claims nothing, even after its failed attempt put the task
 * back to queued for a retry. A task in_progress whose action waits (scheduled_for set, see
 * waitFor) is claimed the same way, as resumed: its attempt goes on, started_at stays, and its
 * audit entry is `messages.resumed`.
 *
 * Plain tasks are claimed within their tenant's cap of running tasks (`runningCap`), counted
 * under a per-tenant lock (the claim_tasks function, db/migrations/0014): a delivery past it
 * claims nothing, and its task's id comes back in `atCap`.
 */
export async function claimTasks(
  db: Kysely<Database>,
  tasks: readonly DeliveredTask[],
  options: { started: string; resumed: string; runningCap: number | null },
): Promise<{ claimed: ClaimedTask[]; atCap: string[] }> {
  if (tasks.length === 0) return { claimed: [], atCap: [] };
  const rows = await claimStatement(
    db,
    tasks.map((task) => task.taskId),
    tasks.map((task) => task.tenantId),
    tasks.map((task) => task.delivery),
    options.runningCap,
    options.started,
    options.resumed,
  );
  return { claimed: rows.filter((row) => !row.at_cap), atCap: rows.filter((row) => row.at_cap).map((row) => row.id) };
}

const claimStatement = compiledOnce(
  (taskIds, tenantIds, deliveries, runningCap, started, resumed) => sql<ClaimedTask & { at_cap: boolean }>`${prepared}
    select (claim.task).*, claim.due_at, claim.resumed, claim.at_cap
    from claim_tasks(${taskIds}::uuid[], ${tenantIds}::uuid[], ${deliveries}::int[], ${runningCap}::int, ${started}::text, ${resumed}::text) as claim
  `,
);

/**
 * A task just claimed, when it had become due (created, or its schedule's, retry's or wait's
 * time), and whether it resumes an attempt whose action waited.
 */
export type ClaimedTask = TaskRow & { due_at: Date; resumed: boolean };

/** A successful attempt to record: its result and the audit entries its action produced. */
export interface SucceededTask extends DeliveredTask {
  result: unknown;
  messages: readonly string[];
}

/**
 * in_progress → success with the actions' audit entries (and `chainingMessage` for a task that
 * chains) and the completion of their jobs, in one statement for a batch; only for the deliveries
 * that still hold their attempts. Returns the tasks it finished.
 */
export async function recordSuccesses(db: Kysely<Database>, tasks: readonly SucceededTask[], chainingMessage: string): Promise<TaskRow[]> {
  if (tasks.length === 0) return [];
  const input = tasks.map((task) => ({
    id: task.taskId,
    tenant_id: task.tenantId,
    delivery: task.delivery,
    result: task.result ?? null,
    messages: task.messages,
  }));
  return successStatement(db, JSON.stringify(input), chainingMessage);
}

const successStatement = compiledOnce(
  (inputJson, chainingMessage) => sql<TaskRow>`${prepared}
    with input as (
      select x.*, row_number() over () as ordinal
      from jsonb_to_recordset(${inputJson}::jsonb) as x(id uuid, tenant_id uuid, delivery int, result jsonb, messages text[])
    ),
    finished as (
      update tasks set status = 'success', result = input.result, finished_at = now(), updated_at = now()
      from input
      where tasks.id = input.id and tasks.tenant_id = input.tenant_id and tasks.status = 'in_progress'
        and tasks.claimed_delivery = input.delivery
      returning tasks.*
    ),
    audited as (
      insert into task_logs (task_id, tenant_id, message)
      select finished.id, finished.tenant_id, entry.message
      from finished
      join input using (id)
      cross join lateral unnest(
        input.messages || case when finished.on_success_next_task is null then '{}'::text[] else array[${chainingMessage}::text] end
      ) with ordinality as entry(message, position)
      order by input.ordinal, entry.position
    ),
    completed as (${completeTaskJobs('finished')})
    select * from finished
  `,
);

/** Records each parent's chained task, with the audit entry that names it. Returns the parents. */
export async function linkNextTasks(
  db: Kysely<Database>,
  links: readonly { tenantId: string; taskId: string; nextTaskId: string; message: string }[],
): Promise<TaskRow[]> {
  if (links.length === 0) return [];
  const { rows } = await sql<TaskRow>`
    with input as (
      select * from unnest(${links.map((link) => link.taskId)}::uuid[], ${links.map((link) => link.tenantId)}::uuid[],
                           ${links.map((link) => link.nextTaskId)}::uuid[], ${links.map((link) => link.message)}::text[])
        as x(id, tenant_id, next_task_id, message)
    ),
    linked as (
      update tasks set next_task_id = input.next_task_id, updated_at = now()
      from input
      where tasks.id = input.id and tasks.tenant_id = input.tenant_id
      returning tasks.*
    ),
    audited as (
      insert into task_logs (task_id, tenant_id, message)
      select linked.id, linked.tenant_id, input.message from linked join input using (id)
    )
    select * from linked
  `.execute(db);
  return rows;
}

/** An audit entry under an id chosen before the first try to write it. */
export interface AuditEntry {
  id: string;
  tenantId: string;
  taskId: string;
  message: string;
}

/**
 * Writes audit entries in one statement, each once (see taskStore's auditOnce). The entries come
 * as arrays, so the text is the same for any number of them and runs prepared: a worker writes
 * one before each Slack post or HTTP request, and a VALUES list per count was parsed and planned
 * every time (0.15-0.25 ms of PostgreSQL's time for one entry).
 */
export async function writeAuditEntriesOnce(db: Kysely<Database>, entries: readonly AuditEntry[]): Promise<void> {
  if (entries.length === 0) return;
  await auditEntriesStatement(
    db,
    entries.map((entry) => entry.id),
    entries.map((entry) => entry.taskId),
    entries.map((entry) => entry.tenantId),
    entries.map((entry) => entry.message),
  );
}

const auditEntriesStatement = compiledOnce(
  (ids, taskIds, tenantIds, messages) => sql`${prepared} insert into task_logs (id, task_id, tenant_id, message)
    select * from unnest(${ids}::uuid[], ${taskIds}::uuid[], ${tenantIds}::uuid[], ${messages}::text[])
    on conflict (id) do nothing`,
);
