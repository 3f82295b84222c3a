/** The closed set of failures the service reports; each maps to one HTTP status. */
export const ERROR_STATUS = {
  bad_request: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  conflict: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  validation: 422,
  too_many_requests: 429,
  bad_gateway: 502,
  unavailable: 503,
  gateway_timeout: 504,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

export interface ValidationIssue {
  loc: (string | number)[];
  msg: string;
  type: string;
}

export type ErrorDetail = string | ValidationIssue[];

export class AppError extends Error {
  override name = 'AppError';
  readonly code: ErrorCode;
  readonly detail: ErrorDetail;
  /** Extra top-level fields for the JSON body (e.g. the blocking task id of a conflict). */
  readonly extra: Readonly<Record<string, unknown>>;
  readonly headers: Readonly<Record<string, string>>;

  constructor(
    code: ErrorCode,
    detail: ErrorDetail,
    options: { cause?: unknown; extra?: Record<string, unknown>; headers?: Record<string, string> } = {},
  ) {
    super(typeof detail === 'string' ? detail : 'Validation failed', { cause: options.cause });
    this.code = code;
    this.detail = detail;
    this.extra = options.extra ?? {};
    this.headers = options.headers ?? {};
  }

  get status(): (typeof ERROR_STATUS)[ErrorCode] {
    return ERROR_STATUS[this.code];
  }
}

export const notAuthenticated = (detail = 'Could not validate credentials') =>
  new AppError('unauthorized', detail, { headers: { 'WWW-Authenticate': 'Bearer' } });

/** How long a client should wait before retrying while the database is unavailable. */
const DATABASE_RETRY_AFTER_SECONDS = '2';

export const databaseUnavailable = () =>
  new AppError('unavailable', 'Database unavailable', { headers: { 'Retry-After': DATABASE_RETRY_AFTER_SECONDS } });
