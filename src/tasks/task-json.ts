import type { TaskRow } from '../db/schema.js';
import type { TaskLogOut, TaskOut } from './tasks.schemas.js';

const iso = (value: Date | null) => (value ? value.toISOString() : null);

/** The task as the API and callbacks show it. */
export function toTaskOut(task: TaskRow): TaskOut {
  return {
    id: task.id,
    kind: task.kind,
    status: task.status,
    payload: task.payload as TaskOut['payload'],
    result: (task.result ?? null) as TaskOut['result'],
    callback_url: task.callback_url,
    retry_count: task.retry_count,
    max_retries: task.max_retries,
    priority: task.priority,
    timeout_seconds: task.timeout_seconds,
    on_success_next_task: (task.on_success_next_task ?? null) as TaskOut['on_success_next_task'],
    next_task_id: task.next_task_id,
    retry_of: task.retry_of,
    scheduled_for: iso(task.scheduled_for),
    started_at: iso(task.started_at),
    finished_at: iso(task.finished_at),
    created_at: task.created_at.toISOString(),
    updated_at: task.updated_at.toISOString(),
  };
}

export function toTaskLogOut(log: { id: string; task_id: string; tenant_id: string; timestamp: Date; message: string }): TaskLogOut {
  return { id: log.id, task_id: log.task_id, tenant_id: log.tenant_id, timestamp: log.timestamp.toISOString(), message: log.message };
}
