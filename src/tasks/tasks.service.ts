import { actionFor } from '../actions/registry.js';
import type { Config } from '../config.js';
import type { Db } from '../db/client.js';
import type { TaskRow } from '../db/schema.js';
import type { Metrics } from '../metrics/metrics.js';
import { AppError, type ValidationIssue } from '../errors.js';
import type { Principal } from '../http/types.js';
import { isOperatorHost, OPERATOR_HOST_REFUSAL, operatorHosts } from '../lib/operator-hosts.js';
import { assertPublicHost, NonPublicDestinationError } from '../lib/public-address.js';
import { isUuid } from '../lib/uuid.js';
import type { TaskQueue } from '../queue/task-queue.js';
import { audit } from './audit-messages.js';
import { toTaskLogOut, toTaskOut } from './task-json.js';
import { AoaSlotTakenError, type TaskCreator } from './task-creation.js';
import { taskStore } from './tasks.repository.js';
import type { TaskBody, TaskLogOut, TaskOut } from './tasks.schemas.js';

const CANCELABLE = new Set(['queued', 'in_progress']);

export const taskNotFound = () => new AppError('not_found', 'Task not found');

/** A non-UUID id cannot name a task: the same 404 as a missing one, without asking the database. */
export function assertTaskId(id: string): void {
  if (!isUuid(id)) throw taskNotFound();
}

export interface TaskService {
  create(auth: Principal, body: TaskBody): Promise<TaskOut>;
  get(auth: Principal, id: string): Promise<TaskOut>;
  cancel(auth: Principal, id: string): Promise<TaskOut>;
  logs(auth: Principal, id: string): Promise<TaskLogOut[]>;
  /** Creates a new task with the body of a failed or canceled one, linked to it (`retry_of`). */
  retry(auth: Principal, id: string): Promise<TaskOut>;
  /** Creates every task of the list, or none. */
  createBatch(auth: Principal, bodies: readonly TaskBody[]): Promise<TaskOut[]>;
  /** What a task is linked to: its success chain, first to last (itself included), and the tasks that retried it. */
  links(auth: Principal, id: string): Promise<{ chain: TaskOut[]; retriedAs: TaskOut[] }>;
}

const RETRYABLE = new Set(['failed', 'canceled']);

/** What a stored task was created with, as a body to create it again. */
function bodyOf(task: TaskRow): TaskBody {
  return {
    payload: task.payload as TaskBody['payload'],
    callback_url: task.callback_url,
    max_retries: task.max_retries,
    priority: task.priority,
    timeout_seconds: task.timeout_seconds,
    on_success_next_task: task.on_success_next_task as TaskBody | null,
  };
}

/**
 * The URLs of a task and its chain that are refused now, with the request, rather than when the
 * service comes to call them: the callback URLs and those of the payloads (an http_request's url).
 * Refused are those on a host of the operator's Slack or Legacy DCL, and, unless private targets
 * are allowed, those whose host is an IP literal outside the public internet. (Whether a host name
 * is public can only be judged when it is resolved, at send time.)
 */
function refusedTargets(body: TaskBody, policy: { allowPrivate: boolean; operatorHosts: ReadonlySet<string> }): ValidationIssue[] {
  const issues: ValidationIssue[] = [];
  const path: string[] = ['body'];
  for (let task: TaskBody | null | undefined = body; task; task = task.on_success_next_task) {
    const targets = [
      ...(task.callback_url ? [{ loc: [...path, 'callback_url'], field: 'callback_url', url: task.callback_url }] : []),
      ...(actionFor('task', task.payload)?.targets?.(task.payload) ?? []).map(({ field, url }) => ({ loc: [...path, 'payload', field], field, url })),
    ];
    for (const { loc, field, url } of targets) {
      try {
        if (!policy.allowPrivate) assertPublicHost(url);
        if (isOperatorHost(url, policy.operatorHosts)) {
          issues.push({ loc, msg: `${field} is refused: ${OPERATOR_HOST_REFUSAL}`, type: 'operator_host' });
        }
      } catch (error) {
        if (!(error instanceof NonPublicDestinationError)) throw error;
        issues.push({
          loc,
          msg: `${field} must reach a public address: ${error.message} (set CALLBACK_ALLOW_PRIVATE_NETWORKS=true to allow private targets)`,
          type: 'public_address',
        });
      }
    }
    path.push('on_success_next_task');
  }
  return issues;
}

export function createTaskService(deps: {
  db: Db;
  queue: TaskQueue;
  creator: TaskCreator;
  config: Pick<Config, 'callbackAllowPrivateNetworks' | 'slackWebhookUrl' | 'legacyDclBaseUrl'>;
  metrics: Metrics;
}): TaskService {
  const { db, queue, creator, config, metrics } = deps;
  const targetPolicy = { allowPrivate: config.callbackAllowPrivateNetworks, operatorHosts: operatorHosts(config) };

  return {
    async create(auth, body) {
      const refused = refusedTargets(body, targetPolicy);
      if (refused.length > 0) throw new AppError('validation', refused);
      return toTaskOut(await creator.create({ tenantId: auth.tenantId, body, kind: 'task', createdBy: auth.userId }));
    },

    async createBatch(auth, bodies) {
      const refused = bodies.flatMap((body, index) =>
        refusedTargets(body, targetPolicy).map((issue) => ({ ...issue, loc: ['body', 'tasks', index, ...issue.loc.slice(1)] })),
      );
      if (refused.length > 0) throw new AppError('validation', refused);
      const created = await creator.createAll(
        auth.tenantId,
        bodies.map((body) => ({ tenantId: auth.tenantId, body, kind: 'task' as const, createdBy: auth.userId })),
      );
      return created.map(toTaskOut);
    },

    async retry(auth, id) {
      assertTaskId(id);
      const original = await taskStore(db, auth.tenantId).find(id);
      if (!original) throw taskNotFound();
      if (!RETRYABLE.has(original.status)) {
        throw new AppError('conflict', `Only a failed or canceled task can be retried; this one is ${original.status}`);
      }
      const body = bodyOf(original);
      const refused = refusedTargets(body, targetPolicy);
      if (refused.length > 0) throw new AppError('conflict', `The task cannot run again as it is: ${refused[0]!.msg}`);
      try {
        const retry = await creator.create({ tenantId: auth.tenantId, body, kind: original.kind, createdBy: auth.userId, retryOf: original.id });
        return toTaskOut(retry);
      } catch (error) {
        if (error instanceof AoaSlotTakenError) throw new AppError('conflict', error.message, { cause: error });
        throw error;
      }
    },

    async get(auth, id) {
      assertTaskId(id);
      const task = await taskStore(db, auth.tenantId).find(id);
      if (!task) throw taskNotFound();
      return toTaskOut(task);
    },

    async cancel(auth, id) {
      assertTaskId(id);
      const canceled = await db.transaction().execute(async (trx) => {
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
        await queue.enqueueCallbacks(trx, [canceled]);
        return canceled;
      });
      metrics.tasksCanceled([canceled]);
      return toTaskOut(canceled);
    },

    async links(auth, id) {
      assertTaskId(id);
      const store = taskStore(db, auth.tenantId);
      const [chain, retriedAs] = await Promise.all([store.chainOf(id), store.retriesOf(id)]);
      if (chain.length === 0) throw taskNotFound();
      return { chain: chain.map(toTaskOut), retriedAs: retriedAs.map(toTaskOut) };
    },

    async logs(auth, id) {
      assertTaskId(id);
      const store = taskStore(db, auth.tenantId);
      if (!(await store.find(id))) throw taskNotFound();
      return (await store.logs(id)).map(toTaskLogOut);
    },
  };
}
