import { FetchError, ofetch } from 'ofetch';
import type { Config } from '../config.js';

/** Every call to the Legacy DCL backend gives up after this long. */
export const DCL_TIMEOUT_MS = 10_000;
/** Response bodies kept in audit entries are cut to this many bytes. */
export const AUDITED_BODY_BYTES = 2048;

export class DclNotConfiguredError extends Error {
  override name = 'DclNotConfiguredError';
  constructor() {
    super('The Legacy DCL backend is not configured: set LEGACY_DCL_BASE_URL');
  }
}

export class DclUnreachableError extends Error {
  override name = 'DclUnreachableError';
}

export class DclTimeoutError extends Error {
  override name = 'DclTimeoutError';
  constructor(path: string) {
    super(`The Legacy DCL backend did not answer ${path} within ${DCL_TIMEOUT_MS / 1000} s`);
  }
}

export interface DclResponse {
  status: number;
  /** The parsed JSON body, or undefined when the body was not JSON. */
  json: unknown;
  text: string;
}

export interface DclRequest {
  method: 'GET' | 'POST';
  path: string;
  tenantId: string;
  requestId: string;
  body?: unknown;
  signal?: AbortSignal;
}

/** The body as it goes into an audit entry: at most 2 KB. */
export function auditedBody(text: string): string {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= AUDITED_BODY_BYTES) return text;
  return `${bytes.subarray(0, AUDITED_BODY_BYTES).toString('utf8')}… [truncated, ${bytes.length} bytes]`;
}

/**
 * Calls the Legacy DCL backend for a tenant. Any HTTP answer is returned as it is (the caller
 * decides what a status means); only "not configured", "unreachable" and "too slow" throw.
 */
export async function callDcl(config: Config, request: DclRequest): Promise<DclResponse> {
  if (!config.legacyDclBaseUrl) throw new DclNotConfiguredError();
  const timeout = AbortSignal.timeout(DCL_TIMEOUT_MS);
  try {
    const response = await ofetch.raw<string, 'text'>(`${config.legacyDclBaseUrl}${request.path}`, {
      method: request.method,
      headers: { 'X-Tenant-ID': request.tenantId, 'X-Request-ID': request.requestId, Accept: 'application/json' },
      ...(request.body !== undefined ? { body: request.body as Record<string, unknown> } : {}),
      signal: request.signal ? AbortSignal.any([request.signal, timeout]) : timeout,
      retry: 0,
      responseType: 'text',
      ignoreResponseError: true,
    });
    const text = response._data ?? '';
    let json: unknown;
    try {
      json = text === '' ? undefined : JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: response.status, json, text };
  } catch (error) {
    if (request.signal?.aborted) throw request.signal.reason;
    if (timeout.aborted) throw new DclTimeoutError(request.path);
    const reason = error instanceof FetchError ? (error.cause as Error | undefined)?.message ?? error.message : (error as Error).message;
    throw new DclUnreachableError(`The Legacy DCL backend is unreachable: ${reason}`, { cause: error });
  }
}
