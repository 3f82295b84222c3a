import type { LookupFunction } from 'node:net';
import { createFetch } from 'ofetch';
import { Agent, fetch as undiciFetch, Headers as UndiciHeaders, type Dispatcher } from 'undici';
import { publicOnlyLookup } from './public-address.js';

// Every outside call goes through the one client below and one of its two agents. The agents'
// limits are pinned here rather than left to undici's defaults, which a new version may change;
// the whole exchange is further bounded by the deadline each call gives (OutboundRequest.timeoutMs).

/** The longest a connection (TCP and TLS) may take to open: a host that takes longer is unreachable, whatever the call's deadline. */
export const CONNECT_TIMEOUT_MS = 10_000;
/**
 * The longest wait for an answer's headers, and the longest pause between two pieces of its body.
 * No shorter than the longest per-call deadline the configuration allows (300 s), so that deadline
 * is what ends a slow exchange, with its own error.
 */
export const HEADERS_TIMEOUT_MS = 300_000;
export const BODY_TIMEOUT_MS = 300_000;

function outboundAgent(lookup?: LookupFunction): Agent {
  return new Agent({
    connect: { timeout: CONNECT_TIMEOUT_MS, ...(lookup ? { lookup } : {}) },
    headersTimeout: HEADERS_TIMEOUT_MS,
    bodyTimeout: BODY_TIMEOUT_MS,
  });
}

/** For the hosts the operator configured (Slack, the Legacy DCL), wherever they resolve. */
export const anyAddressAgent = outboundAgent();

/** For targets a tenant chose (callbacks, http_request tasks): its connections only ever reach public addresses. */
export const publicOnlyAgent = outboundAgent(publicOnlyLookup);

/**
 * ofetch over the undici package's own fetch, so the agents above and the fetch that uses them come
 * from the same pinned undici: Node's built-in fetch bundles an undici of its own, whose version
 * follows Node's, and is not made to be given another copy's agents.
 */
const client = createFetch({
  // The cast bridges two declarations of the same fetch API: undici's own types, and the
  // undici-types that @types/node (and so ofetch's Fetch) uses; they disagree on iterator helpers.
  fetch: undiciFetch as unknown as typeof globalThis.fetch,
  Headers: UndiciHeaders,
});

export interface OutboundRequest {
  method: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  url: string;
  headers?: Record<string, string>;
  /** Sent as a JSON body. */
  json?: unknown;
  /** Sent as it is, e.g. JSON already serialised because its exact bytes are signed; give its Content-Type in `headers`. */
  body?: string;
  /**
   * One deadline for the whole exchange: connecting, the answer's headers and as much of its body
   * as is read. A server that answers slowly, or trickles its body, cannot stretch it.
   */
  timeoutMs: number;
  /** Read at most this much of the answer's body; 0 leaves the body unread. */
  maxBodyBytes: number;
  /** The caller refuses a body past maxBodyBytes anyway: one announced that long is not read at all. */
  refuseOversizedBody?: boolean;
  /** The caller's own abort (a canceled or timed-out task): its reason is thrown as it is. */
  signal?: AbortSignal;
  /** anyAddressAgent or publicOnlyAgent: who may choose the target decides. */
  agent: Dispatcher;
}

export interface OutboundResponse {
  status: number;
  headers: Headers;
  /** The body as text, at most maxBodyBytes of it. */
  text: string;
  /** The body went on past maxBodyBytes; the rest was never read. */
  truncated: boolean;
}

/** No complete answer within the request's deadline. */
export class OutboundTimeoutError extends Error {
  override name = 'OutboundTimeoutError';
  constructor(timeoutMs: number) {
    super(`no answer within ${timeoutMs / 1000} s`);
  }
}

/** The server could not be reached, or the connection failed before the answer was read. */
export class OutboundUnreachableError extends Error {
  override name = 'OutboundUnreachableError';
}

/** The innermost message of a failed fetch ("connect ECONNREFUSED ...", "other side closed"). */
function rootMessage(error: unknown): string {
  let message = error instanceof Error ? error.message : String(error);
  for (let current = error, depth = 0; current instanceof Error && depth < 8; current = current.cause, depth++) {
    if (current.message) message = current.message;
  }
  return message;
}

async function readCapped(body: ReadableStream<Uint8Array> | null | undefined, maxBytes: number) {
  if (!body) return { text: '', truncated: false };
  if (maxBytes === 0) {
    body.cancel().catch(() => {});
    return { text: '', truncated: false };
  }
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let length = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return { text: Buffer.concat(chunks).toString('utf8'), truncated: false };
    chunks.push(value);
    length += value.byteLength;
    if (length > maxBytes) {
      // Not awaited: tearing down a body the server keeps pushing can take a while, and nothing
      // here depends on it; waiting could run the call past its deadline.
      reader.cancel().catch(() => {});
      return { text: Buffer.concat(chunks).subarray(0, maxBytes).toString('utf8'), truncated: true };
    }
  }
}

/**
 * Every call AutonomOS makes to the outside world (Slack, the Legacy DCL, callback receivers,
 * http_request tasks): one total deadline, redirects never followed (a 3xx is returned as the
 * answer), no retries, and a body read only as far as the caller needs, so memory stays bounded
 * whatever the server sends. Any HTTP status is an answer; only a timeout, a failed connection or the caller's abort throw.
 */
export async function sendOutbound(request: OutboundRequest): Promise<OutboundResponse> {
  const deadline = AbortSignal.timeout(request.timeoutMs);
  const signal = request.signal ? AbortSignal.any([request.signal, deadline]) : deadline;
  try {
    const response = await client.raw<ReadableStream<Uint8Array>, 'stream'>(request.url, {
      method: request.method,
      ...(request.headers ? { headers: request.headers } : {}),
      ...(request.json !== undefined ? { body: request.json as Record<string, unknown> } : {}),
      ...(request.body !== undefined ? { body: request.body } : {}),
      dispatcher: request.agent,
      signal,
      redirect: 'manual',
      retry: 0,
      ignoreResponseError: true,
      responseType: 'stream',
    });
    // The deadline still governs the body: aborting the signal errors the stream mid-read.
    const announced = Number(response.headers.get('content-length') ?? Number.NaN);
    if (request.refuseOversizedBody && announced > request.maxBodyBytes) {
      response._data?.cancel().catch(() => {});
      return { status: response.status, headers: response.headers, text: '', truncated: true };
    }
    const { text, truncated } = await readCapped(response._data, request.maxBodyBytes);
    return { status: response.status, headers: response.headers, text, truncated };
  } catch (error) {
    if (request.signal?.aborted) throw request.signal.reason;
    if (deadline.aborted) throw new OutboundTimeoutError(request.timeoutMs);
    throw new OutboundUnreachableError(rootMessage(error), { cause: error });
  }
}
