import { randomUUID } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { isDatabaseUnavailable } from '../db/availability.js';
import type { Db } from '../db/client.js';
import { compiledOnce, prepared } from '../db/prepared-statements.js';
import type { Database, TaskKind, TaskRow } from '../db/schema.js';
import { injectFault, type FaultPoint } from '../lib/fault-injection.js';
import { createWriteBuffer, writeEachAloneOnFailure, type Settled } from '../lib/write-buffer.js';
import type { Metrics } from '../metrics/metrics.js';
import { announceTaskJobs, insertTaskJobs, jobDeliverySettings } from '../queue/task-queue.js';
import { audit } from './audit-messages.js';
import { createTaskQuotas, type CreationLimits } from './task-quotas.js';
import { MAX_PRIORITY, MIN_PRIORITY, type TaskBody } from './tasks.schemas.js';

/** A task to create, for one tenant. */
export interface NewTask {
  tenantId: string;
  body: TaskBody;
  kind: TaskKind;
  createdBy: string | null;
  /** The task whose success created this one. */
  parentId?: string;
  /** The failed or canceled task this one re-runs (which gets an audit entry naming this one). */
  retryOf?: string;
  /** Extra audit entries written with the creation (e.g. an AOA job's request parameters). */
  auditDetails?: string[];
}

/** The tenant already has an AOA job queued or running: its exclusive slot in the queue is taken. */
export class AoaSlotTakenError extends Error {
  override name = 'AoaSlotTakenError';
  constructor(readonly tenantId: string) {
    super('An AOA job is already active for this tenant');
  }
}

/** Creation results, in input order: the stored task, or the refusal of an AOA job. */
export type Created = TaskRow | AoaSlotTakenError;

/**
 * The one place a task comes into being: its row, its audit entries and its job, for any number
 * of tasks of any tenants at once, in one statement, so they commit together whether or not the
 * caller holds a transaction (the API's creations need none: one round trip per batch). An AOA
 * job refused by its tenant's exclusive slot is not enqueued, and then its task is not written.
 *
 * A plain task gets its turn here (queue_rank, which with its priority makes its job's
 * priority; see insertTaskJobs): the turn after its tenant's last queued task of the same or a
 * higher priority, or, when the tenant has none, the turn at the head of the whole queue. So
 * tenants take turns: a tenant's n-th queued task comes after every other tenant's n-th, whatever
 * the order they were sent in, and a tenant arriving behind another's backlog starts at once.
 * Only tasks due now count: a tenant's tasks scheduled for later (or waiting for a retry) do not
 * push its other work back, and run first once due. Within a tenant equal priorities keep their
 * order, and a higher priority goes first: it takes
 * no later turn than the tenant's first queued task of a lower priority, and within a turn the
 * higher priority runs first. (Those tasks then share a turn, so a tenant's urgent tasks may run
 * several in a row; the cap on its running tasks still bounds what it takes from the others.)
 */
export async function createTasks(db: Kysely<Database>, tasks: readonly NewTask[]): Promise<Created[]> {
  if (tasks.length === 0) return [];
  const input = tasks.map((task, ordinal) => ({
    id: randomUUID(),
    ordinal,
    tenant_id: task.tenantId,
    kind: task.kind,
    payload: task.body.payload,
    callback_url: task.body.callback_url ?? null,
    max_retries: task.body.max_retries ?? 0,
    priority: task.body.priority ?? 0,
    timeout_seconds: task.body.timeout_seconds ?? null,
    on_success_next_task: task.body.on_success_next_task ?? null,
    run_at: task.body.run_at ?? null,
    delay_seconds: task.body.delay_seconds ?? null,
    created_by: task.createdBy,
    retry_of: task.retryOf ?? null,
    ...jobDeliverySettings({ max_retries: task.body.max_retries ?? 0, timeout_seconds: task.body.timeout_seconds ?? null }),
    messages: [
      task.parentId ? audit.createdByChain(task.parentId) : audit.created(task.createdBy, task.tenantId),
      ...(task.retryOf ? [audit.retryOf(task.retryOf)] : []),
      ...(task.auditDetails ?? []),
    ],
  }));
  const rows = await creationStatement(db, JSON.stringify(input));
  const byId = new Map(rows.map((row) => [row.id, row]));
  return input.map((task) => {
    const stored = byId.get(task.id);
    if (stored) return stored;
    // Plain tasks' queue takes every job; only an AOA job can find its slot taken.
    if (task.kind !== 'aoa') throw new Error('The task queue refused a job');
    return new AoaSlotTakenError(task.tenant_id);
  });
}

/** The statement createTasks runs, its tasks given as JSON text (`inputJson`). */
const creationStatement = compiledOnce((inputJson) =>
  // scheduled_for is cut to milliseconds, the precision of the time the API shows and the audit
  // entry names. A delay counts on the database's clock, the one the queue schedules by.
  sql<TaskRow>`${prepared}
    with input as (
      select * from jsonb_to_recordset(${inputJson}::jsonb) as x(
        id uuid, ordinal int, tenant_id uuid, kind text, payload jsonb, callback_url text, max_retries int,
        priority int, timeout_seconds int, on_success_next_task jsonb, run_at timestamptz, delay_seconds int,
        created_by uuid, retry_of uuid, job_retry_limit int, job_expire_seconds int, messages text[])
    ),
    -- Where each tenant's turns start, per priority its plain tasks of this batch have: after its
    -- last due queued task of the same or a higher priority, else at the head of the whole queue;
    -- and never later than its first due queued task of a lower priority. One index probe per
    -- priority level (tasks_queue_turn_idx), however long the tenant's backlog. (One lateral with
    -- min() and max() per level instead of these two reads the whole level: cost grows with it.)
    turns as (
      select groups.tenant_id, groups.priority,
        coalesce(
          (select max(last.queue_rank) + 1
           from generate_series(groups.priority, ${MAX_PRIORITY}::int) as level(priority)
           cross join lateral (
             select queued.queue_rank from tasks queued
             where queued.tenant_id = groups.tenant_id and queued.priority = level.priority
               and queued.status = 'queued' and queued.kind = 'task' and (queued.scheduled_for is null or queued.scheduled_for <= now())
             order by queued.queue_rank desc limit 1
           ) as last),
          -- queue_rank is not null: only this query may read tasks_queue_head_idx (migration 0013).
          (select min(queued.queue_rank) from tasks queued
           where queued.status = 'queued' and queued.kind = 'task' and queued.queue_rank is not null
             and (queued.scheduled_for is null or queued.scheduled_for <= now())),
          0
        ) as next_rank,
        (select min(first.queue_rank)
         from generate_series(${MIN_PRIORITY}::int, groups.priority - 1) as level(priority)
         cross join lateral (
           select queued.queue_rank from tasks queued
           where queued.tenant_id = groups.tenant_id and queued.priority = level.priority
             and queued.status = 'queued' and queued.kind = 'task' and (queued.scheduled_for is null or queued.scheduled_for <= now())
           order by queued.queue_rank limit 1
         ) as first) as lower_rank
      from (select distinct tenant_id, priority from input where kind = 'task') as groups
    ),
    ranked as (
      select input.*, case when input.kind = 'task' then least(
        turns.next_rank + row_number() over (partition by input.tenant_id, input.kind, input.priority order by input.ordinal) - 1,
        turns.lower_rank
      ) end as queue_rank,
      date_trunc('milliseconds', coalesce(input.run_at, case when input.delay_seconds > 0 then now() + make_interval(secs => input.delay_seconds) end)) as scheduled_for
      from input
      left join turns on turns.tenant_id = input.tenant_id and turns.priority = input.priority
    ),
    enqueued as (${insertTaskJobs('ranked')}),
    -- Only tasks whose job was enqueued: reading enqueued makes the jobs go in first.
    inserted as (
      insert into tasks (id, tenant_id, kind, payload, callback_url, max_retries, priority, queue_rank, timeout_seconds,
                         on_success_next_task, scheduled_for, created_by, retry_of)
      select id, tenant_id, kind, payload, callback_url, max_retries, priority, queue_rank, timeout_seconds, on_success_next_task,
             scheduled_for, created_by, retry_of
      from ranked where id in (select id from enqueued) order by ordinal
      returning *
    ),
    audited as (
      insert into task_logs (task_id, tenant_id, message)
      select inserted.id, inserted.tenant_id, entry.message
      from inserted
      join input using (id)
      cross join lateral unnest(
        input.messages || case when inserted.scheduled_for is null then '{}'::text[] else array[
          ${audit.scheduledPrefix}::text || to_char(inserted.scheduled_for at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
        ] end
      ) with ordinality as entry(message, position)
      order by input.ordinal, entry.position
    ),
    retried as (
      insert into task_logs (task_id, tenant_id, message)
      select retry_of, tenant_id, ${audit.retriedAsPrefix}::text || id from inserted where retry_of is not null
    ),
    announced as (${announceTaskJobs('enqueued')})
    -- Reading announced is what makes it run.
    select * from inserted where (select count(*) from announced) >= 0
  `,
);

/** Most tasks one creation statement takes from the API's requests in flight. */
const CREATION_BATCH_MAX = 64;
/** Creation statements in flight at once; more requests wait (at most CREATION_BATCH_WAIT_MS) to join the next. */
const CREATION_FLUSHES = 2;
const CREATION_BATCH_WAIT_MS = 2;

export interface TaskCreator {
  /** Creates one task, in a statement shared with the other requests in flight. Throws AoaSlotTakenError. */
  create(task: NewTask): Promise<TaskRow>;
  /** Creates one tenant's plain tasks all together in one statement, or none of them. */
  createAll(tenantId: string, tasks: readonly NewTask[]): Promise<TaskRow[]>;
}

/**
 * Creation for the API: concurrent requests are written together (see createWriteBuffer), after
 * the tenants' creation limits admit them (see createTaskQuotas); a refused request fails alone,
 * with 429. A batch the database refuses as a whole for any reason but its absence is written
 * again one task per statement, so one task's conflict fails only its own request; an
 * unavailable database fails exactly the requests of that batch.
 */
export function createTaskCreator(deps: {
  db: Db;
  limits: CreationLimits;
  metrics: Metrics;
  faultPoint?: FaultPoint | undefined;
}): TaskCreator {
  const { db, metrics } = deps;
  const quotas = createTaskQuotas(db, deps.limits);
  const write = async (tasks: NewTask[]): Promise<Created[]> => {
    const created = await createTasks(db, tasks);
    injectFault(deps.faultPoint, 'after-create-commit');
    metrics.tasksCreated(created.filter((task): task is TaskRow => !(task instanceof AoaSlotTakenError)));
    return created;
  };
  const settle = (created: Created): Settled<TaskRow> =>
    created instanceof AoaSlotTakenError ? { ok: false, error: created } : { ok: true, value: created };

  const buffer = createWriteBuffer<NewTask, TaskRow>({
    maxItems: CREATION_BATCH_MAX,
    maxWaitMs: CREATION_BATCH_WAIT_MS,
    maxConcurrentFlushes: CREATION_FLUSHES,
    async flush(tasks) {
      const admissions = await quotas.admit(tasks.map((task) => task.tenantId));
      const admitted = tasks.filter((_, index) => !admissions[index]);
      const written = admitted.length === 0 ? [] : await writeEachAloneOnFailure(admitted, async (some) => (await write(some)).map(settle), isDatabaseUnavailable);
      return admissions.map((refusal): Settled<TaskRow> => (refusal ? { ok: false, error: refusal } : written.shift()!));
    },
  });
  return {
    create: (task) => buffer.write(task),
    async createAll(tenantId, tasks) {
      const refusal = await quotas.admitAll(tenantId, tasks.length);
      if (refusal) throw refusal;
      const created = await write([...tasks]);
      // Plain tasks only: their queue takes every job, so anything else is a bug, not a refusal.
      if (created.some((task) => task instanceof AoaSlotTakenError)) throw new Error('A batch of tasks held an AOA job');
      return created as TaskRow[];
    },
  };
}
