import * as v from 'valibot';
import { FAULT_POINTS, type FaultPoint } from './lib/fault-injection.js';

/** Secrets shorter than this are refused outside development: HS256 keys need real entropy. */
export const MIN_SECRET_LENGTH = 32;

const MIB = 1024 * 1024;
/** A metrics token anyone could guess would make the metrics public. */
const MIN_METRICS_TOKEN_LENGTH = 16;

function booleanFlag(defaultValue: boolean) {
  return v.pipe(
    v.optional(v.string(), String(defaultValue)),
    v.trim(),
    v.toLowerCase(),
    v.picklist(['true', 'false', '1', '0', 'yes', 'no'], 'must be true or false'),
    v.transform((value) => value === 'true' || value === '1' || value === 'yes'),
  );
}

function positiveInteger(defaultValue: number, max = Number.MAX_SAFE_INTEGER) {
  return v.pipe(
    v.optional(v.string(), String(defaultValue)),
    v.trim(),
    v.regex(/^\d+$/, 'must be a whole number'),
    v.transform(Number),
    v.minValue(1, 'must be at least 1'),
    v.maxValue(max, `must be at most ${max}`),
  );
}

/** A limit where 0 turns it off. */
function limit(defaultValue: number, max = Number.MAX_SAFE_INTEGER) {
  return v.pipe(
    v.optional(v.string(), String(defaultValue)),
    v.trim(),
    v.regex(/^\d+$/, 'must be a whole number (0 turns the limit off)'),
    v.transform(Number),
    v.maxValue(max, `must be at most ${max}`),
  );
}

/** Seconds, fractions allowed (tests use short intervals). */
function positiveSeconds(defaultValue: number, max: number, min = 0.01) {
  return v.pipe(
    v.optional(v.string(), String(defaultValue)),
    v.trim(),
    v.regex(/^\d+(\.\d+)?$/, 'must be a number of seconds'),
    v.transform(Number),
    v.minValue(min, `must be at least ${min}`),
    v.maxValue(max, `must be at most ${max}`),
  );
}

function optionalUrl() {
  return v.pipe(
    v.optional(v.string(), ''),
    v.trim(),
    v.transform((value) => (value === '' ? undefined : value)),
    v.optional(v.pipe(v.string(), v.url('must be an absolute URL'))),
  );
}

/** The bytes of an AES-256 key, written as 64 hex digits or as base64 (either alphabet, padding optional). */
export function decodeEncryptionKey(text: string): Buffer | undefined {
  if (/^[0-9a-f]{64}$/i.test(text)) return Buffer.from(text, 'hex');
  if (!/^[A-Za-z0-9+/_-]{43}=?$/.test(text)) return undefined;
  const bytes = Buffer.from(text.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  return bytes.length === 32 ? bytes : undefined;
}

function encryptionKey() {
  return v.pipe(
    v.optional(v.string(), ''),
    v.trim(),
    v.check((text) => text === '' || decodeEncryptionKey(text) !== undefined, 'must be 32 bytes written as 64 hex digits or as base64 (openssl rand -base64 32)'),
    v.transform((text) => (text === '' ? undefined : decodeEncryptionKey(text))),
  );
}

/** Comma-separated whole seconds, e.g. a retry schedule. */
function secondsList(defaultValue: string, max: number) {
  return v.pipe(
    v.optional(v.string(), defaultValue),
    v.regex(/^\s*\d+(\s*,\s*\d+)*\s*$/, 'must be a comma-separated list of whole seconds'),
    v.transform((value) => value.split(',').map((part) => Number(part.trim()))),
    v.check((seconds) => seconds.every((second) => second <= max), `each value must be at most ${max}`),
  );
}

const EnvSchema = v.object({
  NODE_ENV: v.optional(v.picklist(['development', 'production', 'test']), 'development'),
  HOST: v.optional(v.pipe(v.string(), v.trim(), v.nonEmpty()), '0.0.0.0'),
  PORT: positiveInteger(5000, 65535),
  DATABASE_URL: v.pipe(v.optional(v.string(), ''), v.trim()),
  DATABASE_PREPARED_STATEMENTS: booleanFlag(true),
  SECRET_KEY: v.optional(v.string(), ''),
  JWT_SECRET_KEY: v.optional(v.string(), ''),
  JWT_EXPIRE_MINUTES: positiveInteger(30, 60 * 24),
  SLACK_WEBHOOK_URL: optionalUrl(),
  SLACK_SHARED_WEBHOOK: booleanFlag(true),
  LEGACY_DCL_BASE_URL: optionalUrl(),
  ALLOWED_WEB_ORIGIN: v.pipe(
    v.optional(v.string(), ''),
    v.transform((value) =>
      value
        .split(',')
        .map((origin) => origin.trim().replace(/\/+$/, ''))
        .filter((origin) => origin !== ''),
    ),
  ),
  RETRY_DELAYS_SECONDS: v.pipe(
    v.optional(v.string(), '10,30,60'),
    v.regex(/^\s*\d+(\s*,\s*\d+)*\s*$/, 'must be a comma-separated list of whole seconds'),
    v.transform((value) => value.split(',').map((part) => Number(part.trim()))),
  ),
  DATABASE_STARTUP_TIMEOUT_SECONDS: positiveInteger(60, 3600),
  SLACK_TIMEOUT_SECONDS: positiveInteger(30, 300),
  LEGACY_DCL_TIMEOUT_SECONDS: positiveInteger(10, 300),
  CALLBACK_TIMEOUT_SECONDS: positiveInteger(10, 300),
  HTTP_REQUEST_TIMEOUT_SECONDS: positiveInteger(30, 300),
  CALLBACK_ALLOW_PRIVATE_NETWORKS: booleanFlag(false),
  CALLBACK_MAX_RETRIES: limit(0, 25),
  CALLBACK_RETRY_DELAYS_SECONDS: secondsList('5,300,1800,7200,18000,36000', 86_400),
  ENCRYPTION_KEY: encryptionKey(),
  ENCRYPTION_KEY_PREVIOUS: encryptionKey(),
  API_DOCS: booleanFlag(true),
  MAX_BODY_BYTES: positiveInteger(MIB, 100 * MIB),
  WORKER_CONCURRENCY: positiveInteger(8, 256),
  TENANT_MAX_ACTIVE_TASKS: positiveInteger(32, 10_000),
  LOGIN_FAILURE_LIMIT: limit(10, 1_000_000),
  REGISTRATION_LIMIT_PER_HOUR: limit(20, 1_000_000),
  TENANT_RATE_LIMIT_PER_SECOND: limit(100, 1_000_000),
  TENANT_MAX_QUEUED_TASKS: limit(100_000, 1_000_000_000),
  MAX_TASK_PAYLOAD_BYTES: limit(64 * 1024, 100 * MIB),
  TASK_RETENTION_DAYS: limit(30, 100 * 365),
  EVENTS_HEARTBEAT_SECONDS: positiveSeconds(15, 3600),
  EVENTS_REPLAY_WINDOW: positiveInteger(10_000, 1_000_000),
  // Watches are renewed every quarter of this: shorter would be a statement every few milliseconds.
  EVENTS_RESUME_SECONDS: positiveSeconds(120, 86_400, 1),
  EVENTS_MAX_STREAMS_PER_TENANT: limit(100, 1_000_000),
  TRUST_PROXY: v.pipe(
    v.optional(v.string(), 'false'),
    v.trim(),
    v.toLowerCase(),
    v.regex(/^(true|false|\d{1,2})$/, 'must be false, true (one proxy) or the number of proxies in front of the service'),
    v.transform((value) => (value === 'true' ? 1 : value === 'false' ? 0 : Number(value))),
  ),
  METRICS_TOKEN: v.pipe(
    v.optional(v.string(), ''),
    v.trim(),
    v.check((token) => token === '' || token.length >= MIN_METRICS_TOKEN_LENGTH, `must be at least ${MIN_METRICS_TOKEN_LENGTH} characters (or empty: no /metrics)`),
    v.transform((token) => (token === '' ? undefined : token)),
  ),
  WORKER_HTTP_PORT: v.pipe(
    v.optional(v.string(), ''),
    v.trim(),
    v.transform((value) => (value === '' ? undefined : value)),
    v.optional(v.pipe(v.string(), v.regex(/^\d+$/, 'must be a port number'), v.transform(Number), v.minValue(1, 'must be a port number'), v.maxValue(65535, 'must be a port number'))),
  ),
  LOG_LEVEL: v.optional(v.picklist(['debug', 'info', 'warn', 'error']), 'info'),
  FAULT_INJECTION_POINT: v.optional(v.picklist(['', ...FAULT_POINTS], `must be one of ${FAULT_POINTS.join(', ')}`), ''),
});

export type Env = v.InferOutput<typeof EnvSchema>;

export interface Config {
  readonly env: Env['NODE_ENV'];
  readonly host: string;
  readonly port: number;
  /** Empty when unset: the entrypoint then decides (issue 5 starts an embedded PostgreSQL). */
  readonly databaseUrl: string;
  /** Whether the hot statements (ours marked, and pg-boss's) run prepared (off behind a transaction-pooling proxy); see db/prepared-statements.ts. */
  readonly databasePreparedStatements: boolean;
  readonly jwtSecret: string;
  readonly jwtExpireMinutes: number;
  readonly slackWebhookUrl: string | undefined;
  /** Whether a tenant without a Slack integration of its own posts through SLACK_WEBHOOK_URL. */
  readonly slackSharedWebhook: boolean;
  readonly legacyDclBaseUrl: string | undefined;
  readonly allowedWebOrigins: readonly string[];
  readonly retryDelaysSeconds: readonly number[];
  /** How long a starting process waits for its database to accept connections before it gives up. */
  readonly databaseStartupTimeoutSeconds: number;
  /** One deadline for a whole Slack call: connecting, the answer's headers and its body. */
  readonly slackTimeoutSeconds: number;
  /** One deadline for a whole Legacy DCL call. */
  readonly legacyDclTimeoutSeconds: number;
  /** One deadline for a whole callback delivery. */
  readonly callbackTimeoutSeconds: number;
  /** One deadline for a whole http_request task's request (the task's timeout_seconds may end it sooner). */
  readonly httpRequestTimeoutSeconds: number;
  readonly callbackAllowPrivateNetworks: boolean;
  /** How often a callback the receiver failed (non-2xx, no answer, unreachable) is sent again; 0: never. */
  readonly callbackMaxRetries: number;
  /** Seconds before callback retry 1, 2, ...; the last value repeats. */
  readonly callbackRetryDelaysSeconds: readonly number[];
  /**
   * ENCRYPTION_KEY: the AES-256 key that encrypts tenants' integration secrets (the Slack webhook
   * URL). Unset, no integration can be stored. Named "secret" so the logger redacts it wherever it goes.
   */
  readonly encryptionSecret: Buffer | undefined;
  /** ENCRYPTION_KEY_PREVIOUS: still decrypts what the key before ENCRYPTION_KEY encrypted, during a key rotation. */
  readonly previousEncryptionSecret: Buffer | undefined;
  /** Whether /docs, /redoc and /openapi.json are served. */
  readonly apiDocs: boolean;
  readonly maxBodyBytes: number;
  /** Parallel fetch loops per task queue (plain and AOA) in a worker process; each runs a batch of up to 16 tasks at once. */
  readonly workerConcurrency: number;
  /** How many of one tenant's plain tasks may run at once, across all workers. */
  readonly tenantMaxActiveTasks: number;
  /** Sign-in attempts that may fail per account and per client address in 15 minutes; 0: no limit. */
  readonly loginFailureLimit: number;
  /** Registrations per client address per hour; 0: no limit. */
  readonly registrationLimitPerHour: number;
  /** Task and AOA creations per tenant per second (bursts of twice that); 0: no limit. */
  readonly tenantRateLimitPerSecond: number;
  /** A tenant's tasks not yet finished (queued, scheduled or running); 0: no limit. */
  readonly tenantMaxQueuedTasks: number;
  /** Largest task creation body; 0: only MAX_BODY_BYTES applies. */
  readonly maxTaskPayloadBytes: number;
  /** Finished tasks (and their audit trails) are deleted this many days after they finished; 0 keeps them all. */
  readonly taskRetentionDays: number;
  /** How often an idle event stream (GET /api/v1/events) sends a comment, so proxies keep it open. */
  readonly eventsHeartbeatSeconds: number;
  /** How many of the latest task events each API process keeps for streams resuming with Last-Event-ID. */
  readonly eventsReplayWindow: number;
  /**
   * How long after a tenant's last event stream closed its events are still made, so that a
   * client reconnecting within it can resume; later, it starts with a reset.
   */
  readonly eventsResumeSeconds: number;
  /** Event streams one tenant may hold open on one API process; 0: no limit. */
  readonly eventsMaxStreamsPerTenant: number;
  /**
   * How many reverse proxies stand in front of the service: the client address is read that many
   * entries from the right of X-Forwarded-For. 0 (the default) ignores the header, which anyone can send.
   */
  readonly trustedProxies: number;
  /** Bearer token that GET /metrics requires; unset, /metrics is not served. */
  readonly metricsToken: string | undefined;
  /** A worker-only process serves /metrics and /health/worker on this port when set. */
  readonly workerHttpPort: number | undefined;
  readonly logLevel: Env['LOG_LEVEL'];
  /** Tests only: the point at which a worker kills itself (SIGKILL) to prove crash recovery. */
  readonly faultInjectionPoint: FaultPoint | undefined;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export interface LoadConfigOptions {
  /** Supplies a secret when none is configured in development (a persisted random one). */
  developmentSecret?: () => string;
}

/**
 * Parses the environment once into a frozen Config. Throws ConfigError naming the offending
 * variable; outside development a missing or short secret is fatal.
 */
export function loadConfig(
  environment: NodeJS.ProcessEnv = process.env,
  options: LoadConfigOptions = {},
): Config {
  const parsed = v.safeParse(EnvSchema, environment);
  if (!parsed.success) {
    const problems = parsed.issues.map((issue) => {
      const key = issue.path?.map((item) => String(item.key)).join('.') ?? 'environment';
      return `${key} ${issue.message}`;
    });
    throw new ConfigError(`Invalid configuration: ${problems.join('; ')}`);
  }
  const env = parsed.output;
  if (env.ENCRYPTION_KEY_PREVIOUS && !env.ENCRYPTION_KEY) {
    throw new ConfigError('ENCRYPTION_KEY_PREVIOUS is set without ENCRYPTION_KEY: a key rotation needs the new key in ENCRYPTION_KEY');
  }
  if (env.FAULT_INJECTION_POINT !== '' && env.NODE_ENV === 'production') {
    throw new ConfigError('FAULT_INJECTION_POINT is for tests only and is refused when NODE_ENV=production');
  }
  return Object.freeze({
    env: env.NODE_ENV,
    host: env.HOST,
    port: env.PORT,
    databaseUrl: env.DATABASE_URL,
    databasePreparedStatements: env.DATABASE_PREPARED_STATEMENTS,
    jwtSecret: resolveJwtSecret(env, options),
    jwtExpireMinutes: env.JWT_EXPIRE_MINUTES,
    slackWebhookUrl: env.SLACK_WEBHOOK_URL,
    slackSharedWebhook: env.SLACK_SHARED_WEBHOOK,
    legacyDclBaseUrl: env.LEGACY_DCL_BASE_URL?.replace(/\/+$/, ''),
    allowedWebOrigins: Object.freeze(env.ALLOWED_WEB_ORIGIN),
    retryDelaysSeconds: Object.freeze(env.RETRY_DELAYS_SECONDS),
    databaseStartupTimeoutSeconds: env.DATABASE_STARTUP_TIMEOUT_SECONDS,
    slackTimeoutSeconds: env.SLACK_TIMEOUT_SECONDS,
    legacyDclTimeoutSeconds: env.LEGACY_DCL_TIMEOUT_SECONDS,
    callbackTimeoutSeconds: env.CALLBACK_TIMEOUT_SECONDS,
    httpRequestTimeoutSeconds: env.HTTP_REQUEST_TIMEOUT_SECONDS,
    callbackAllowPrivateNetworks: env.CALLBACK_ALLOW_PRIVATE_NETWORKS,
    callbackMaxRetries: env.CALLBACK_MAX_RETRIES,
    callbackRetryDelaysSeconds: Object.freeze(env.CALLBACK_RETRY_DELAYS_SECONDS),
    encryptionSecret: env.ENCRYPTION_KEY,
    previousEncryptionSecret: env.ENCRYPTION_KEY_PREVIOUS,
    apiDocs: env.API_DOCS,
    maxBodyBytes: env.MAX_BODY_BYTES,
    workerConcurrency: env.WORKER_CONCURRENCY,
    tenantMaxActiveTasks: env.TENANT_MAX_ACTIVE_TASKS,
    loginFailureLimit: env.LOGIN_FAILURE_LIMIT,
    registrationLimitPerHour: env.REGISTRATION_LIMIT_PER_HOUR,
    tenantRateLimitPerSecond: env.TENANT_RATE_LIMIT_PER_SECOND,
    tenantMaxQueuedTasks: env.TENANT_MAX_QUEUED_TASKS,
    maxTaskPayloadBytes: env.MAX_TASK_PAYLOAD_BYTES,
    taskRetentionDays: env.TASK_RETENTION_DAYS,
    eventsHeartbeatSeconds: env.EVENTS_HEARTBEAT_SECONDS,
    eventsReplayWindow: env.EVENTS_REPLAY_WINDOW,
    eventsResumeSeconds: env.EVENTS_RESUME_SECONDS,
    eventsMaxStreamsPerTenant: env.EVENTS_MAX_STREAMS_PER_TENANT,
    trustedProxies: env.TRUST_PROXY,
    metricsToken: env.METRICS_TOKEN,
    workerHttpPort: env.WORKER_HTTP_PORT,
    logLevel: env.LOG_LEVEL,
    faultInjectionPoint: env.FAULT_INJECTION_POINT === '' ? undefined : env.FAULT_INJECTION_POINT,
  });
}

function resolveJwtSecret(env: Env, options: LoadConfigOptions): string {
  const variable = env.JWT_SECRET_KEY !== '' ? 'JWT_SECRET_KEY' : 'SECRET_KEY';
  const secret = env.JWT_SECRET_KEY !== '' ? env.JWT_SECRET_KEY : env.SECRET_KEY;
  if (secret.length >= MIN_SECRET_LENGTH) return secret;
  // Only a missing secret is made up, and only in development. A short one is refused in every
  // mode: a forgotten NODE_ENV must not let `changeme` sign production tokens.
  if (env.NODE_ENV === 'development' && secret === '' && options.developmentSecret) return options.developmentSecret();
  if (secret === '') {
    throw new ConfigError(
      `SECRET_KEY is not set: set SECRET_KEY (or JWT_SECRET_KEY) to a random string of at least ${MIN_SECRET_LENGTH} characters`,
    );
  }
  throw new ConfigError(
    `${variable} is too weak: it must be at least ${MIN_SECRET_LENGTH} characters long (it has ${secret.length})`,
  );
}
