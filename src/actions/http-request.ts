import * as v from 'valibot';
import type { Config } from '../config.js';
import { isOperatorHost, OPERATOR_HOST_REFUSAL, operatorHosts } from '../lib/operator-hosts.js';
import { anyAddressAgent, OutboundTimeoutError, publicOnlyAgent, sendOutbound, type OutboundResponse } from '../lib/outbound-http.js';
import { assertPublicHost, nonPublicCause, NonPublicDestinationError } from '../lib/public-address.js';
import { escapeUnprintable } from '../lib/text.js';
import { ActionError, type Action } from './action.js';

const HTTP_REQUEST_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;
/** undici refuses a body on these. */
const BODYLESS_METHODS = new Set<string>(['GET', 'HEAD']);

/** How much of the answer's body the result keeps; the rest is never read. */
const RESULT_BODY_BYTES = 4096;
/** The answer's headers the result keeps: what the body is, where to go next, when to come back. Never cookies. */
const RESULT_HEADERS = ['content-type', 'content-length', 'location', 'etag', 'last-modified', 'retry-after'] as const;

const MAX_REQUEST_HEADERS = 32;
const MAX_HEADER_VALUE_LENGTH = 4096;
/**
 * Headers the HTTP client derives from the URL and the body, and the hop-by-hop ones, which
 * concern the connection (the service's own): a tenant's value would describe a message other
 * than the one sent (request smuggling) or a host other than the one checked.
 */
const REFUSED_HEADERS = new Set([
  'host',
  'content-length',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'upgrade',
  'te',
  'trailer',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'expect',
]);
/** An RFC 9110 token, what a header name is. */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Printable ASCII and tab: no CR or LF that would start another header, no other control character. */
const HEADER_VALUE = /^[\t\x20-\x7e]*$/;
/** Keys valibot's records skip without a word: refused, so that every header stored is a header sent. */
const SKIPPED_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

const NOT_PUBLIC_REFUSAL = 'the target is not a public address (set CALLBACK_ALLOW_PRIVATE_NETWORKS=true to allow private targets)';

const isJsonObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

const RequestUrl = v.pipe(
  v.string('url must be a string'),
  v.trim(),
  v.maxLength(2048, 'url must be at most 2048 characters'),
  v.url('url must be an absolute URL'),
  v.check((value) => /^https?:$/.test(new URL(value).protocol), 'url must use http or https'),
  v.check((value) => {
    const url = new URL(value);
    return url.username === '' && url.password === '';
  }, 'url must not hold a user name or password (send credentials in headers)'),
  // Stored as the URL parser reads it, so what the audit trail shows is where the request goes.
  v.transform((value) => new URL(value).href),
);

const RequestHeaders = v.pipe(
  v.custom<Record<string, unknown>>(isJsonObject, 'headers must be a JSON object of header names and values'),
  v.check((headers) => Object.keys(headers).length <= MAX_REQUEST_HEADERS, `headers may hold at most ${MAX_REQUEST_HEADERS} headers`),
  v.check((headers) => !Object.keys(headers).some((name) => SKIPPED_KEYS.has(name)), 'headers must not be named __proto__, constructor or prototype'),
  v.check(
    (headers) => new Set(Object.keys(headers).map((name) => name.toLowerCase())).size === Object.keys(headers).length,
    'headers must not name a header twice (header names ignore case)',
  ),
  v.record(
    v.pipe(
      v.string(),
      v.regex(HEADER_NAME, "header names must be HTTP tokens: letters, digits and !#$%&'*+.^_`|~-"),
      v.check((name) => !REFUSED_HEADERS.has(name.toLowerCase()), (issue) => `header ${String(issue.input)} is set by the service itself`),
    ),
    v.pipe(
      v.string('header values must be strings'),
      v.maxLength(MAX_HEADER_VALUE_LENGTH, `header values must be at most ${MAX_HEADER_VALUE_LENGTH} characters`),
      v.regex(HEADER_VALUE, 'header values must be printable ASCII: no CR, LF or other control characters'),
    ),
  ),
);

const HttpRequestPayload = v.pipe(
  v.looseObject({
    action: v.literal('http_request'),
    method: v.picklist(HTTP_REQUEST_METHODS, `method must be one of ${HTTP_REQUEST_METHODS.join(', ')}`),
    url: RequestUrl,
    headers: v.optional(RequestHeaders),
    // Objects and arrays only: a bare string is not what the description promises, a JSON document.
    json: v.optional(
      v.pipe(
        v.custom<object>((value) => typeof value === 'object' && value !== null, 'json must be a JSON object or array'),
        v.description('A JSON object or array, sent as the body with Content-Type: application/json (not with GET or HEAD)'),
      ),
    ),
    expect_status: v.optional(
      v.pipe(
        v.number('expect_status must be an integer'),
        v.description('The one status that succeeds; without it, any 2xx'),
        v.integer('expect_status must be an integer'),
        v.minValue(100, 'expect_status must be between 100 and 599'),
        v.maxValue(599, 'expect_status must be between 100 and 599'),
      ),
    ),
  }),
  v.forward(
    v.check((payload) => payload.json === undefined || !BODYLESS_METHODS.has(payload.method), 'json cannot be sent with GET or HEAD'),
    ['json'],
  ),
);

type HttpRequestPayload = v.InferOutput<typeof HttpRequestPayload>;

/**
 * Why the service will not send to `url` (checked again at send: the operator may have moved
 * Slack or the DCL since the task was created). A host name's addresses are checked by the
 * connection's own lookup (publicOnlyAgent); an IP literal has none, so it is checked here.
 */
function refusal(url: string, config: Config): string | undefined {
  if (isOperatorHost(url, operatorHosts(config))) return OPERATOR_HOST_REFUSAL;
  if (config.callbackAllowPrivateNetworks) return undefined;
  try {
    assertPublicHost(url);
    return undefined;
  } catch (error) {
    if (error instanceof NonPublicDestinationError) return NOT_PUBLIC_REFUSAL;
    throw error;
  }
}

/**
 * One HTTP request to a URL the tenant chose, with the same guard as callbacks: public addresses
 * only (unless CALLBACK_ALLOW_PRIVATE_NETWORKS), never the operator's Slack or DCL hosts, no
 * redirects followed. One HTTP_REQUEST_TIMEOUT_SECONDS deadline for the whole exchange, within
 * the attempt's own timeout. A status other than 2xx (or than expect_status) fails the attempt.
 * The audit trail names the method and URL, never the headers: their values may be secrets.
 */
export const httpRequest: Action<HttpRequestPayload> = {
  name: 'http_request',
  payloadSchema: HttpRequestPayload,
  targets: (payload) => [{ field: 'url', url: payload.url }],
  async run(payload, { config, signal, audit }) {
    const target = `${payload.method} ${escapeUnprintable(payload.url)}`;
    await audit(`Sending HTTP request ${target}`);
    const refused = refusal(payload.url, config);
    if (refused) throw new ActionError(`Request refused: ${refused}`);
    const timeoutSeconds = config.httpRequestTimeoutSeconds;
    let response: OutboundResponse;
    try {
      response = await sendOutbound({
        method: payload.method,
        url: payload.url,
        ...(payload.headers ? { headers: payload.headers } : {}),
        ...(payload.json !== undefined ? { json: payload.json } : {}),
        timeoutMs: timeoutSeconds * 1000,
        maxBodyBytes: RESULT_BODY_BYTES,
        signal,
        agent: config.callbackAllowPrivateNetworks ? anyAddressAgent : publicOnlyAgent,
      });
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      // What the name resolved to stays out of the result: the tenant must not learn how internal names resolve.
      if (nonPublicCause(error)) throw new ActionError(`Request refused: ${NOT_PUBLIC_REFUSAL}`, { cause: error });
      if (error instanceof OutboundTimeoutError) throw new ActionError(`No answer within ${timeoutSeconds} s`, { cause: error });
      throw new ActionError(`Could not reach the server: ${(error as Error).message}`, { cause: error });
    }
    const { status } = response;
    const expected = payload.expect_status;
    if (expected === undefined ? status < 200 || status >= 300 : status !== expected) {
      throw new ActionError(`HTTP request answered with status ${status}, expected ${expected ?? '2xx'}`);
    }
    const headers = Object.fromEntries(
      RESULT_HEADERS.flatMap((name) => {
        const value = response.headers[name];
        return value === undefined ? [] : [[name, value]];
      }),
    );
    return {
      result: {
        status,
        headers,
        // PostgreSQL cannot store NUL in a result; a binary body reads as text with it replaced.
        body: response.text.replaceAll('\u0000', '\ufffd'),
        body_truncated: response.truncated,
      },
      audit: [`HTTP request answered with status ${status}`],
    };
  },
};
