import type { Config } from '../config.js';
import { anyAddressAgent, OutboundTimeoutError, sendOutbound } from '../lib/outbound-http.js';

/** Response bodies kept in audit entries are cut to this many bytes. */
export const AUDITED_BODY_BYTES = 2048;
/** The most of an answer that is read; a bigger one is refused rather than buffered and passed on. */
export const DCL_MAX_ANSWER_BYTES = 1024 * 1024;

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
  constructor(path: string, seconds: number) {
    super(`The Legacy DCL backend did not answer ${path} within ${seconds} s`);
  }
}

/** An answer that cannot be used: a redirect (never followed) or a body over the size cap. */
export class DclBadAnswerError extends Error {
  override name = 'DclBadAnswerError';
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
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
 * Calls the Legacy DCL backend for a tenant, within one deadline for the whole exchange. Any
 * usable HTTP answer is returned as it is (the caller decides what a status means); "not
 * configured", "unreachable", "too slow", a redirect and an oversized answer throw.
 */
export async function callDcl(config: Config, request: DclRequest): Promise<DclResponse> {
  if (!config.legacyDclBaseUrl) throw new DclNotConfiguredError();
  let response;
  try {
    response = await sendOutbound({
      method: request.method,
      url: `${config.legacyDclBaseUrl}${request.path}`,
      headers: { 'X-Tenant-ID': request.tenantId, 'X-Request-ID': request.requestId, Accept: 'application/json' },
      ...(request.body !== undefined ? { json: request.body } : {}),
      timeoutMs: config.legacyDclTimeoutSeconds * 1000,
      maxBodyBytes: DCL_MAX_ANSWER_BYTES,
      refuseOversizedBody: true,
      // The operator chose this URL, so it may be on a private network.
      agent: anyAddressAgent,
      ...(request.signal ? { signal: request.signal } : {}),
    });
  } catch (error) {
    if (request.signal?.aborted) throw request.signal.reason;
    if (error instanceof OutboundTimeoutError) throw new DclTimeoutError(request.path, config.legacyDclTimeoutSeconds);
    throw new DclUnreachableError(`The Legacy DCL backend is unreachable: ${(error as Error).message}`, { cause: error });
  }
  const target = `${request.method} ${request.path}`;
  if (response.status >= 300 && response.status < 400) {
    throw new DclBadAnswerError(`The Legacy DCL backend answered ${target} with a redirect (status ${response.status}), which is not followed`, response.status);
  }
  if (response.truncated) {
    throw new DclBadAnswerError(`The Legacy DCL backend's answer to ${target} exceeds ${DCL_MAX_ANSWER_BYTES} bytes`, response.status);
  }
  let json: unknown;
  try {
    json = response.text === '' ? undefined : JSON.parse(response.text);
  } catch {
    json = undefined;
  }
  return { status: response.status, json, text: response.text };
}
