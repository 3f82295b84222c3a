import type { ColumnType, Generated, Selectable } from 'kysely';
import type { Role } from '../http/types.js';

/** Timestamps come back as Date and are written as Date or ISO strings. */
type Timestamp = ColumnType<Date, Date | string, Date | string>;
type GeneratedTimestamp = ColumnType<Date, Date | string | undefined, Date | string>;
/** JSON columns: objects in, objects out (pg parses jsonb). */
type Json = ColumnType<unknown, string, string>;

export type TaskStatus = 'queued' | 'in_progress' | 'success' | 'failed' | 'canceled';
export type TaskKind = 'task' | 'aoa';

export interface TenantsTable {
  id: Generated<string>;
  name: string;
  created_at: GeneratedTimestamp;
}

export interface UsersTable {
  id: Generated<string>;
  tenant_id: string;
  email: string;
  hashed_password: string;
  /** Raised to revoke every token issued to the user so far; tokens carry the version they were issued at. */
  token_version: Generated<number>;
  role: ColumnType<Role, Role | undefined, Role>;
  created_at: GeneratedTimestamp;
}

export interface TasksTable {
  id: Generated<string>;
  tenant_id: string;
  kind: ColumnType<TaskKind, TaskKind | undefined, TaskKind>;
  status: ColumnType<TaskStatus, TaskStatus | undefined, TaskStatus>;
  payload: Json;
  result: ColumnType<unknown, string | null | undefined, string | null>;
  callback_url: string | null;
  retry_count: Generated<number>;
  max_retries: Generated<number>;
  /** -10..10; a higher one of the same tenant runs first. */
  priority: Generated<number>;
  /** A plain task's place in its tenant's turn order (bigint, read as a string); null for AOA jobs. */
  queue_rank: string | null;
  timeout_seconds: number | null;
  on_success_next_task: ColumnType<unknown, string | null | undefined, string | null>;
  next_task_id: string | null;
  /** The failed or canceled task this one re-runs. */
  retry_of: string | null;
  created_by: string | null;
  claimed_delivery: number | null;
  scheduled_for: Timestamp | null;
  started_at: Timestamp | null;
  finished_at: Timestamp | null;
  created_at: GeneratedTimestamp;
  updated_at: GeneratedTimestamp;
}

export interface TaskLogsTable {
  id: Generated<string>;
  seq: Generated<string>;
  task_id: string;
  tenant_id: string;
  timestamp: GeneratedTimestamp;
  message: string;
}

export interface WorkerHeartbeatsTable {
  id: string;
  hostname: string;
  pid: number;
  started_at: GeneratedTimestamp;
  last_seen_at: GeneratedTimestamp;
}

export interface AuthThrottleTable {
  /** What is counted: e.g. `login:account:<email>`, `login:ip:<address>`, `register:ip:<address>`. */
  key: string;
  attempts: number;
  window_ends_at: Timestamp;
}

export interface TenantRateBucketsTable {
  tenant_id: string;
  tokens: number;
  refilled_at: Timestamp;
  granted: number;
}

export interface IdempotencyKeysTable {
  tenant_id: string;
  key: string;
  /** Fingerprint of the first request that used the key: method, path and body. */
  request_hash: string;
  /** Null while that request is still being answered. */
  status: number | null;
  content_type: string | null;
  body: string | null;
  created_at: GeneratedTimestamp;
}

export interface Database {
  tenants: TenantsTable;
  users: UsersTable;
  tasks: TasksTable;
  task_logs: TaskLogsTable;
  worker_heartbeats: WorkerHeartbeatsTable;
  auth_throttle: AuthThrottleTable;
  tenant_rate_buckets: TenantRateBucketsTable;
  idempotency_keys: IdempotencyKeysTable;
}

export type TaskRow = Selectable<TasksTable>;
