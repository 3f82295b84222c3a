import { Agent, request as httpRequest, type IncomingMessage } from 'node:http';

export interface JsonResponse {
  status: number;
  headers: Headers;
  body: any;
  /** How long the answer took, ms. */
  ms: number;
}

/** One JSON request to a running service, given up after `timeoutMs` (a hang is an error, not a wait). */
export async function httpJson(
  base: string,
  method: string,
  path: string,
  options: { json?: unknown; token?: string; timeoutMs?: number } = {},
): Promise<JsonResponse> {
  const started = performance.now();
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { 'Content-Type': 'application/json', ...(options.token ? { Authorization: `Bearer ${options.token}` } : {}) },
    body: options.json === undefined ? null : JSON.stringify(options.json),
    signal: AbortSignal.timeout(options.timeoutMs ?? 5_000),
  });
  const text = await response.text();
  let body: unknown = text;
  if ((response.headers.get('content-type') ?? '').includes('application/json')) body = JSON.parse(text);
  return { status: response.status, headers: response.headers, body, ms: performance.now() - started };
}

/** Registers a tenant with one user and logs in; returns the token and ids. */
export async function registerTenant(base: string, label: string) {
  const suffix = Math.random().toString(16).slice(2, 10);
  const email = `${label}-${suffix}@example.com`;
  const password = 'correct horse battery';
  const registered = await httpJson(base, 'POST', '/api/v1/auth/register', { json: { name: `${label} ${suffix}`, email, password } });
  if (registered.status !== 201) throw new Error(`registration answered ${registered.status}: ${JSON.stringify(registered.body)}`);
  const login = await httpJson(base, 'POST', '/api/v1/auth/login', { json: { email, password } });
  if (login.status !== 200) throw new Error(`login answered ${login.status}: ${JSON.stringify(login.body)}`);
  return { token: login.body.access_token as string, tenantId: registered.body.tenant_id as string, userId: registered.body.id as string };
}

/** A request's body as a local test server sees it: parsed JSON, else the text (undefined when empty). */
export async function readRequestBody(request: IncomingMessage): Promise<any> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  if (text === '') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/**
 * A lean JSON POST for load generation, resolving with the answer's status: node's http over
 * kept-alive connections (at most `connections`, one per request in flight; unbounded without).
 * `fetch` (undici) spent 0.4-0.5 ms of CPU per request, more than the service or the bare
 * endpoint it measured, on the same two cores: a client that heavy held both sides back and
 * brought their ratio towards 1. A connection silent for `timeoutMs` rejects its request.
 */
export function jsonPoster(base: string, connections?: number) {
  const agent = new Agent({ keepAlive: true, ...(connections === undefined ? {} : { maxSockets: connections }) });
  const { hostname, port } = new URL(base);
  return (path: string, json: unknown, options: { token?: string; timeoutMs?: number } = {}) =>
    new Promise<number>((resolve, reject) => {
      const body = JSON.stringify(json);
      const request = httpRequest(
        {
          agent,
          hostname,
          port,
          path,
          method: 'POST',
          headers: {
            'Content-Type': 'application/json',
            'Content-Length': Buffer.byteLength(body),
            ...(options.token ? { Authorization: `Bearer ${options.token}` } : {}),
          },
          timeout: options.timeoutMs ?? 5_000,
        },
        (response) => {
          response.resume();
          response.on('end', () => resolve(response.statusCode ?? 0));
          response.on('error', reject);
        },
      );
      request.on('timeout', () => request.destroy(new Error(`POST ${path} timed out`)));
      request.on('error', reject);
      request.end(body);
    });
}
