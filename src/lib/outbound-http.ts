import { ofetch } from 'ofetch';
import type { Dispatcher } from 'undici';

export interface OutboundRequest {
  method: 'GET' | 'POST';
  url: string;
  headers?: Record<string, string>;
  /** Sent as a JSON body. */
  json?: unknown;
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
  dispatcher?: Dispatcher;
}

export interface OutboundResponse {
  status: number;
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
 * Every call AutonomOS makes to the outside world (Slack, the Legacy DCL, callback receivers):
 * one total deadline, redirects never followed (a 3xx is returned as the answer), no retries,
 * and a body read only as far as the caller needs, so memory stays bounded whatever the server
 * sends. Any HTTP status is an answer; only a timeout, a failed connection or the caller's abort throw.
 */
export async function sendOutbound(request: OutboundRequest): Promise<OutboundResponse> {
  const deadline = AbortSignal.timeout(request.timeoutMs);
  const signal = request.signal ? AbortSignal.any([request.signal, deadline]) : deadline;
  try {
    const response = await ofetch.raw<ReadableStream<Uint8Array>, 'stream'>(request.url, {
      method: request.method,
      ...(request.headers ? { headers: request.headers } : {}),
      ...(request.json !== undefined ? { body: request.json as Record<string, unknown> } : {}),
      ...(request.dispatcher ? { dispatcher: request.dispatcher } : {}),
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
      return { status: response.status, text: '', truncated: true };
    }
    const { text, truncated } = await readCapped(response._data, request.maxBodyBytes);
    return { status: response.status, text, truncated };
  } catch (error) {
    if (request.signal?.aborted) throw request.signal.reason;
    if (deadline.aborted) throw new OutboundTimeoutError(request.timeoutMs);
    throw new OutboundUnreachableError(rootMessage(error), { cause: error });
  }
}
