import type { LookupFunction } from 'node:net';
import { Agent, request as undiciRequest, type Dispatcher } from 'undici';
import { publicOnlyLookup } from './public-address.js';

// Every outside call goes through sendOutbound and one of its two agents. The agents' limits are
// pinned here rather than left to undici's defaults, which a new version may change; the whole
// exchange is further bounded by the deadline each call gives (OutboundRequest.timeoutMs).

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
  /** The answer's headers by lower-case name; a repeated header's values are joined with ", ". */
  headers: Readonly<Record<string, string>>;
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

type ResponseBody = Dispatcher.ResponseData['body'];

async function readCapped(body: ResponseBody, maxBytes: number) {
  if (maxBytes === 0) {
    body.destroy();
    return { text: '', truncated: false };
  }
  const read: Buffer[] = [];
  let length = 0;
  // Leaving the loop early destroys the body (the stream's iterator does) without waiting for its
  // teardown, which against a server that keeps pushing could run the call past its deadline.
  for await (const chunk of body as AsyncIterable<Buffer>) {
    read.push(chunk);
    length += chunk.byteLength;
    if (length > maxBytes) return { text: Buffer.concat(read).subarray(0, maxBytes).toString('utf8'), truncated: true };
  }
  return { text: Buffer.concat(read).toString('utf8'), truncated: false };
}

function headerRecord(headers: Dispatcher.ResponseData['headers']): Record<string, string> {
  const record: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) if (value !== undefined) record[name] = Array.isArray(value) ? value.join(', ') : value;
  return record;
}

/** Who is calling, for the servers' logs (and the APIs that refuse a request without one). */
const USER_AGENT = 'AutonomOS';

/**
 * The request's headers, with these unless the caller gave its own (as fetch and ofetch used to
 * add them): a User-Agent, and an Accept, of JSON with a JSON body (whose Content-Type is JSON too).
 */
function requestHeaders(request: OutboundRequest): Record<string, string> {
  const headers = { ...request.headers };
  const given = new Set(Object.keys(headers).map((name) => name.toLowerCase()));
  if (!given.has('user-agent')) headers['user-agent'] = USER_AGENT;
  if (!given.has('accept')) headers.accept = request.json === undefined ? '*/*' : 'application/json';
  if (request.json !== undefined && !given.has('content-type')) headers['content-type'] = 'application/json';
  return headers;
}

/**
 * Every call AutonomOS makes to the outside world (Slack, the Legacy DCL, callback receivers,
 * http_request tasks): one total deadline, redirects never followed (a 3xx is returned as the
 * answer), no retries, and a body read only as far as the caller needs, so memory stays bounded
 * whatever the server sends. Any HTTP status is an answer; only a timeout, a failed connection or the caller's abort throw.
 */
export async function sendOutbound(request: OutboundRequest): Promise<OutboundResponse> {
  // One controller for the deadline and the caller's abort, both undone when the call ends:
  // AbortSignal.timeout() and AbortSignal.any() keep their signals in weak references and a
  // finalization registry until a full garbage collection, a fifth of what a busy worker's young
  // generation promoted, and a sixth more CPU per call (docs/performance.md).
  const controller = new AbortController();
  let timedOut = false;
  const deadline = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, request.timeoutMs);
  const callerAborted = () => controller.abort();
  request.signal?.addEventListener('abort', callerAborted, { once: true });
  if (request.signal?.aborted) controller.abort();
  const signal = controller.signal;
  try {
    // undici's request(), not fetch(): the same agents and deadline for a quarter to a third of the CPU
    // per call (no WHATWG Request, Response and streams to build), and it never follows a redirect.
    const response = await undiciRequest(request.url, {
      method: request.method,
      headers: requestHeaders(request),
      body: request.json !== undefined ? JSON.stringify(request.json) : (request.body ?? null),
      dispatcher: request.agent,
      signal,
    });
    // A body destroyed before its end (left unread, or past maxBodyBytes) emits an 'error' that
    // nobody waits for; an error while it is read still reaches readCapped through its iterator.
    response.body.on('error', () => {});
    const headers = headerRecord(response.headers);
    // The deadline still governs the body: aborting the signal errors the stream mid-read.
    const announced = Number(headers['content-length'] ?? Number.NaN);
    if (request.refuseOversizedBody && announced > request.maxBodyBytes) {
      response.body.destroy();
      return { status: response.statusCode, headers, text: '', truncated: true };
    }
    const { text, truncated } = await readCapped(response.body, request.maxBodyBytes);
    return { status: response.statusCode, headers, text, truncated };
  } catch (error) {
    if (request.signal?.aborted) throw request.signal.reason;
    if (timedOut) throw new OutboundTimeoutError(request.timeoutMs);
    throw new OutboundUnreachableError(rootMessage(error), { cause: error });
  } finally {
    clearTimeout(deadline);
    request.signal?.removeEventListener('abort', callerAborted);
  }
}
