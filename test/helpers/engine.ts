import assert from 'node:assert/strict';
import type { TestApp } from './app.js';
import { startFakeServer, type FakeServer, type RecordedRequest, type Reply } from './fake-server.js';
import { eventually } from './poll.js';
import { uniqueSuffix } from './users.js';

// Helpers for the task engine tests: a fake Slack that answers per channel (so tests sharing one
// app and one webhook stay apart), task creation and polling, and the audit trail read straight
// from the database.

export interface FakeSlack extends FakeServer {
  /** Decides the replies to one channel's requests (the default answers 200). */
  route(channel: string, reply: (request: RecordedRequest, index: number) => Reply): void;
  /** The requests that posted to `channel`, in arrival order. */
  requestsFor(channel: string): RecordedRequest[];
}

export async function startFakeSlack(): Promise<FakeSlack> {
  const routes = new Map<string, (request: RecordedRequest, index: number) => Reply>();
  const server = await startFakeServer();
  const slack = server as FakeSlack;
  slack.requestsFor = (channel) => server.requests.filter((request) => request.body?.channel === channel);
  slack.route = (channel, reply) => void routes.set(channel, reply);
  slack.reply = (request) => {
    const channel = request.body?.channel;
    const route = typeof channel === 'string' ? routes.get(channel) : undefined;
    // The request is already recorded, so its index among its channel's requests is length - 1.
    return route ? route(request, slack.requestsFor(channel).length - 1) : { status: 200, body: 'ok' };
  };
  return slack;
}

/** A channel name no other test uses. */
export function newChannel(label: string): string {
  return `#${label}-${uniqueSuffix()}`;
}

export function slackPayload(channel: string, message = `hello ${channel}`) {
  return { action: 'post_to_slack', channel, message };
}

export async function createTask(app: TestApp, token: string, body: Record<string, unknown>): Promise<any> {
  const response = await app.post('/api/v1/tasks', body, { token });
  assert.equal(response.status, 201, JSON.stringify(response.body));
  assert.equal(response.body.status, 'queued');
  return response.body;
}

export async function getTask(app: TestApp, token: string, id: string): Promise<any> {
  const response = await app.get(`/api/v1/tasks/${id}`, { token });
  assert.equal(response.status, 200, JSON.stringify(response.body));
  return response.body;
}

/** Polls the task until `done(task)` holds; returns it (the last one seen is in the error). */
export async function waitForTask(
  app: TestApp,
  token: string,
  id: string,
  done: (task: any) => boolean,
  options: { timeoutMs?: number; message?: string } = {},
): Promise<any> {
  let last: any;
  try {
    return await eventually(
      async () => {
        last = await getTask(app, token, id);
        return done(last) ? last : undefined;
      },
      { timeoutMs: options.timeoutMs ?? 10_000, intervalMs: 20, message: options.message ?? `task ${id}` },
    );
  } catch (error) {
    throw new Error(`${(error as Error).message}; last seen: ${JSON.stringify(last)}`, { cause: error });
  }
}

/** Polls GET /api/v1/tasks/{id} until the task has one of `statuses`; returns it. */
export function waitForStatus(app: TestApp, token: string, id: string, statuses: string | string[], timeoutMs = 10_000): Promise<any> {
  const wanted = Array.isArray(statuses) ? statuses : [statuses];
  return waitForTask(app, token, id, (task) => wanted.includes(task.status), { timeoutMs, message: `task ${id} reaching ${wanted.join('/')}` });
}

/** Polls until the task waits as queued for retry number `retry`; returns it. */
export function waitForRetryWait(app: TestApp, token: string, id: string, retry: number, timeoutMs = 5_000): Promise<any> {
  return waitForTask(app, token, id, (task) => task.status === 'queued' && task.retry_count === retry, {
    timeoutMs,
    message: `task ${id} waiting for retry ${retry}`,
  });
}

export interface LogRow {
  message: string;
  tenant_id: string;
  task_id: string;
  timestamp: Date;
}

/** A task's audit trail in order, straight from task_logs (no tenant filter: the tests check tenant_id). */
export async function taskLogs(app: TestApp, taskId: string): Promise<LogRow[]> {
  return app.db
    .selectFrom('task_logs')
    .select(['message', 'tenant_id', 'task_id', 'timestamp'])
    .where('task_id', '=', taskId)
    .orderBy('seq')
    .execute();
}

export async function logMessages(app: TestApp, taskId: string): Promise<string[]> {
  return (await taskLogs(app, taskId)).map((row) => row.message);
}

/** Polls the audit trail until a message matches; returns all messages at that point. */
export async function waitForLog(app: TestApp, taskId: string, match: string | RegExp, timeoutMs = 10_000): Promise<string[]> {
  let last: string[] = [];
  try {
    return await eventually(
      async () => {
        last = await logMessages(app, taskId);
        return last.some((message) => (typeof match === 'string' ? message === match : match.test(message))) ? last : undefined;
      },
      { timeoutMs, intervalMs: 20, message: `log ${String(match)} for task ${taskId}` },
    );
  } catch (error) {
    throw new Error(`${(error as Error).message}; logs: ${JSON.stringify(last)}`, { cause: error });
  }
}

export function count<T>(items: readonly T[], predicate: (item: T) => boolean): number {
  return items.filter(predicate).length;
}

/** All task rows of a tenant, oldest first. */
export async function tenantTasks(app: TestApp, tenantId: string) {
  return app.db.selectFrom('tasks').selectAll().where('tenant_id', '=', tenantId).orderBy('created_at').orderBy('id').execute();
}
