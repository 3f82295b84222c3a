import type { Transaction } from 'kysely';
import type { Db } from '../db/client.js';
import type { Database, TaskKind, TaskRow } from '../db/schema.js';
import { AppError } from '../errors.js';
import type { AuthContext } from '../http/types.js';
import { isUuid } from '../lib/uuid.js';
import type { TaskQueue } from '../queue/task-queue.js';
import { audit } from './audit-messages.js';
import { toTaskLogOut, toTaskOut } from './task-json.js';
import { taskStore, type TaskStore } from './tasks.repository.js';
import type { TaskBody, TaskLogOut, TaskOut } from './tasks.schemas.js';

const CANCELABLE = new Set(['queued', 'in_progress']);

export const taskNotFound = () => new AppError('not_found', 'Task not found');

/** A non-UUID id cannot name a task: the same 404 as a missing one, without asking the database. */
export function assertTaskId(id: string): void {
  if (!isUuid(id)) throw taskNotFound();
}

export interface TaskOrigin {
  kind: TaskKind;
  createdBy: string | null;
  /** Extra audit entries written with the creation (e.g. an AOA job's request parameters). */
  auditDetails?: string[];
  parentId?: string;
}

/**
 * Inserts a task with its audit entries and enqueues its job, all in the caller's transaction.
 * Returns undefined when the queue refused the job (an exclusive slot is taken).
 */
export async function insertTask(
  trx: Transaction<Database>,
  store: TaskStore,
  queue: TaskQueue,
  body: TaskBody,
  origin: TaskOrigin,
): Promise<TaskRow | undefined> {
  const task = await store.insert({
    kind: origin.kind,
    payload: body.payload,
    callbackUrl: body.callback_url ?? null,
    maxRetries: body.max_retries ?? 0,
    timeoutSeconds: body.timeout_seconds ?? null,
    onSuccessNextTask: body.on_success_next_task ?? null,
    runAt: body.run_at ? new Date(body.run_at) : null,
    delaySeconds: body.delay_seconds ?? null,
    createdBy: origin.createdBy,
  });
  const enqueued = await queue.enqueue(trx, task);
  if (!enqueued) return undefined;
  await store.audit(
    task.id,
    origin.parentId ? audit.createdByChain(origin.parentId) : audit.created(origin.createdBy, store.tenantId),
    ...(origin.auditDetails ?? []),
    ...(task.scheduled_for ? [audit.scheduled(task.scheduled_for)] : []),
  );
  return task;
}

export interface TaskService {
  create(auth: AuthContext, body: TaskBody): Promise<TaskOut>;
  get(auth: AuthContext, id: string): Promise<TaskOut>;
  cancel(auth: AuthContext, id: string): Promise<TaskOut>;
  logs(auth: AuthContext, id: string): Promise<TaskLogOut[]>;
}

export function createTaskService(deps: { db: Db; queue: TaskQueue }): TaskService {
  const { db, queue } = deps;

  return {
    async create(auth, body) {
      return db.transaction().execute(async (trx) => {
        const store = taskStore(trx, auth.tenantId);
        const task = await insertTask(trx, store, queue, body, { kind: 'task', createdBy: auth.userId });
        // The plain task queue has no exclusive slots, so a refusal here is a bug, not a conflict.
        if (!task) throw new Error('The task queue refused a job');
        return toTaskOut(task);
      });
    },

    async get(auth, id) {
      assertTaskId(id);
      const task = await taskStore(db, auth.tenantId).find(id);
      if (!task) throw taskNotFound();
      return toTaskOut(task);
    },

    async cancel(auth, id) {
      assertTaskId(id);
      return db.transaction().execute(async (trx) => {
        const store = taskStore(trx, auth.tenantId);
        // Locked, so a worker finishing the attempt right now waits and then finds it canceled.
        const task = await store.findForUpdate(id);
        if (!task) throw taskNotFound();
        if (!CANCELABLE.has(task.status)) {
          throw new AppError('conflict', `Task cannot be canceled in status ${task.status}`);
        }
        const canceled = (await store.end(id, { status: 'canceled', result: { message: 'Task canceled by user' } }))!;
        await store.audit(id, audit.canceled);
        await queue.cancel(trx, canceled);
        if (canceled.callback_url) await queue.enqueueCallback(trx, canceled);
        return toTaskOut(canceled);
      });
    },

    async logs(auth, id) {
      assertTaskId(id);
      const store = taskStore(db, auth.tenantId);
      if (!(await store.find(id))) throw taskNotFound();
      return (await store.logs(id)).map(toTaskLogOut);
    },
  };
}
