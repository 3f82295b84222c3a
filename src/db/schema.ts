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
  /**
   * When a waiting task runs: a queued task's schedule or retry; for an in_progress task, the end
   * of the wait its action asked for (it is in_progress without a worker until then).
   */
  scheduled_for: Timestamp | null;
  /** When the wait the task's action asked for ends or ended (see ActionContext.waitedUntil). */
  wait_until: Timestamp | null;
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

export interface InvitationsTable {
  id: Generated<string>;
  tenant_id: string;
  /** Normalised as registration normalises emails: only this address may accept. */
  email: string;
  role: Role;
  /** sha256 (hex) of the token; the token itself is shown once and never stored. */
  token_hash: string;
  /** Null once its user has been removed. */
  created_by: string | null;
  created_at: GeneratedTimestamp;
  expires_at: Timestamp;
  accepted_at: Timestamp | null;
}

export interface ApiKeysTable {
  id: Generated<string>;
  tenant_id: string;
  name: string;
  /** The most the key may do; its user's current role caps it further. */
  role: Role;
  /** sha256 (hex) of the key; the key itself is shown once and never stored. */
  key_hash: string;
  /** The key's first characters, for people to recognise it by. */
  prefix: string;
  /** The user whose key it is; the key goes with the user. */
  created_by: string;
  created_at: GeneratedTimestamp;
  last_used_at: Timestamp | null;
}

export interface TenantSlackIntegrationsTable {
  tenant_id: string;
  /** AES-256-GCM ciphertext of the webhook URL (see integrations/encryption.ts); never the URL itself. */
  encrypted_webhook_url: string;
  default_channel: string | null;
  /** Null: any channel. */
  allowed_channels: string[] | null;
  created_at: GeneratedTimestamp;
  updated_at: GeneratedTimestamp;
}

export interface TenantWebhookSecretsTable {
  tenant_id: string;
  /** `whsec_` and the base64 of the random key that signs the tenant's callbacks. */
  secret: string;
  /** The secret before the last rotation, still signing until previous_expires_at. */
  previous_secret: string | null;
  previous_expires_at: Timestamp | null;
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
  invitations: InvitationsTable;
  api_keys: ApiKeysTable;
  tenant_slack_integrations: TenantSlackIntegrationsTable;
  tenant_webhook_secrets: TenantWebhookSecretsTable;
}

export type TaskRow = Selectable<TasksTable>;
