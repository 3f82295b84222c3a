import type { Config } from '../config.js';
import type { Db } from '../db/client.js';
import { AppError } from '../errors.js';
import type { Principal } from '../http/types.js';
import { toTaskOut } from '../tasks/task-json.js';
import { taskStore } from '../tasks/tasks.repository.js';
import type { TaskOut } from '../tasks/tasks.schemas.js';
import { AoaSlotTakenError, type TaskCreator } from '../tasks/task-creation.js';
import { callDcl, DclBadAnswerError, DclNotConfiguredError, DclTimeoutError, DclUnreachableError } from './dcl-client.js';

/** AOA jobs always get three retries, on the configured retry schedule. */
export const AOA_MAX_RETRIES = 3;

export type AoaJob =
  | { action: 'aoa_connect' }
  | { action: 'aoa_reset' }
  | { action: 'aoa_toggle_dev_mode'; enabled: boolean };

export interface AoaService {
  /** The Legacy DCL state, as the backend answered it. */
  state(auth: Principal, requestId: string): Promise<{ status: number; body: unknown }>;
  /** Creates and enqueues an AOA job; 409 while the tenant has one queued or running. */
  enqueue(auth: Principal, requestId: string, job: AoaJob): Promise<TaskOut>;
  /** The tenant's AOA job that is queued or running, if any. */
  active(auth: Principal): Promise<TaskOut | undefined>;
}

export function createAoaService(deps: { db: Db; creator: TaskCreator; config: Config }): AoaService {
  const { db, creator, config } = deps;

  const conflict = async (tenantId: string) => {
    const active = await taskStore(db, tenantId).findActiveAoa();
    return new AppError('conflict', 'An AOA job is already active for this tenant', { extra: { task_id: active?.id ?? null } });
  };

  return {
    async state(auth, requestId) {
      try {
        const response = await callDcl(config, { method: 'GET', path: '/state', tenantId: auth.tenantId, requestId });
        if (response.status >= 500) {
          throw new AppError('bad_gateway', `The Legacy DCL backend answered with status ${response.status}`, {
            extra: { downstream_status: response.status },
          });
        }
        if (response.json === undefined) {
          throw new AppError('bad_gateway', `The Legacy DCL backend answered status ${response.status} without a JSON body`, {
            extra: { downstream_status: response.status },
          });
        }
        return { status: response.status, body: response.json };
      } catch (error) {
        if (error instanceof DclNotConfiguredError) throw new AppError('unavailable', error.message, { cause: error });
        if (error instanceof DclTimeoutError) throw new AppError('gateway_timeout', error.message, { cause: error });
        if (error instanceof DclUnreachableError) throw new AppError('bad_gateway', error.message, { cause: error });
        if (error instanceof DclBadAnswerError) {
          throw new AppError('bad_gateway', error.message, { cause: error, extra: { downstream_status: error.status } });
        }
        throw error;
      }
    },

    async active(auth) {
      const job = await taskStore(db, auth.tenantId).findActiveAoa();
      return job && toTaskOut(job);
    },

    async enqueue(auth, requestId, job) {
      // A job that can only fail four times is refused up front.
      if (!config.legacyDclBaseUrl) throw new AppError('unavailable', new DclNotConfiguredError().message);
      if (await taskStore(db, auth.tenantId).findActiveAoa()) throw await conflict(auth.tenantId);
      const { action, ...parameters } = job;
      try {
        const task = await creator.create({
          tenantId: auth.tenantId,
          body: { payload: { ...job, request_id: requestId }, max_retries: AOA_MAX_RETRIES },
          kind: 'aoa',
          createdBy: auth.userId,
          auditDetails: [
            `AOA job ${action} requested by user ${auth.userId} of tenant ${auth.tenantId} (request ${requestId}) with parameters ${JSON.stringify(parameters)}`,
          ],
        });
        return toTaskOut(task);
      } catch (error) {
        // The per-tenant exclusive slot in pg-boss is the arbiter: of concurrent requests, the
        // later ones wait for the first to commit and are then refused.
        if (error instanceof AoaSlotTakenError) throw await conflict(auth.tenantId);
        throw error;
      }
    },
  };
}
