import assert from 'node:assert/strict';
import { createApp } from '../../src/http/app.js';
import { silentLogger } from '../../src/logger.js';
import { freePort } from '../../src/main/embedded-postgres.js';
import { testConfig, type TestApp } from './app.js';
import { startFakeServer, type FakeServer, type RecordedRequest, type Reply } from './fake-server.js';
import { eventually } from './poll.js';

// Helpers for the AOA tests: a fake Legacy DCL backend that answers per tenant (so tests sharing
// one app and one backend stay apart), AOA task polling, and the audit trail read from the database.

export type DclRoute = (request: RecordedRequest, index: number) => Reply;

export interface FakeDcl extends FakeServer {
  /** Decides the replies to one tenant's calls (by X-Tenant-ID); the default answers 200 `{"ok":true}`. */
  route(tenantId: string, reply: DclRoute): void;
  /** The calls that carried `X-Tenant-ID: tenantId`, in arrival order. */
  callsFor(tenantId: string): RecordedRequest[];
}

export async function startFakeDcl(): Promise<FakeDcl> {
  const routes = new Map<string, DclRoute>();
  const dcl = (await startFakeServer()) as FakeDcl;
  dcl.callsFor = (tenantId) => dcl.requests.filter((request) => request.headers['x-tenant-id'] === tenantId);
  dcl.route = (tenantId, reply) => void routes.set(tenantId, reply);
  dcl.reply = (request) => {
    const tenantId = request.headers['x-tenant-id'];
    const route = typeof tenantId === 'string' ? routes.get(tenantId) : undefined;
    // The request is already recorded, so its index among its tenant's calls is length - 1.
    return route ? route(request, dcl.callsFor(tenantId as string).length - 1) : { status: 200, body: { ok: true } };
  };
  return dcl;
}

/** A URL on a port nothing listens on (it was free a moment ago). */
export async function closedPortUrl(): Promise<string> {
  return `http://127.0.0.1:${await freePort()}`;
}

/**
 * The same app (same database, queue and JWT secret, so the test's tokens are valid) built
 * in-process with another environment, e.g. without LEGACY_DCL_BASE_URL.
 */
export function appWithEnv(app: TestApp, env: Record<string, string>) {
  const config = testConfig(app.database.url, { SECRET_KEY: app.config.jwtSecret, ...env });
  const inProcess = createApp({ db: app.db, boss: app.boss, config, logger: silentLogger, notifications: app.notifications, metrics: app.metrics });
  const call = async (method: string, path: string, token: string) => {
    const response = await inProcess.request(path, { method, headers: { Authorization: `Bearer ${token}` } });
    const text = await response.text();
    const body = (response.headers.get('content-type') ?? '').includes('application/json') ? JSON.parse(text) : text;
    return { status: response.status, headers: response.headers, body };
  };
  return {
    get: (path: string, token: string) => call('GET', path, token),
    post: (path: string, token: string) => call('POST', path, token),
  };
}

// Task polling and the audit trail are the engine helpers'; re-exported for the AOA tests.
export { getTask, taskLogs as auditRows, waitForStatus, waitForTask } from './engine.js';

/** The tenant's AOA task rows, whatever their status. */
export async function aoaTasks(app: TestApp, tenantId: string) {
  return app.db.selectFrom('tasks').select(['id', 'status']).where('tenant_id', '=', tenantId).where('kind', '=', 'aoa').execute();
}

export const CONFLICT_DETAIL = 'An AOA job is already active for this tenant';

/** Asserts the 409 of an AOA POST that names the tenant's active task. */
export function assertConflict(response: { status: number; body: any }, activeTaskId: string): void {
  assert.equal(response.status, 409, JSON.stringify(response.body));
  assert.deepEqual(response.body, { detail: CONFLICT_DETAIL, task_id: activeTaskId });
}
