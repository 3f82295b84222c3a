import { bodyLimit } from 'hono/body-limit';
import type { MiddlewareHandler } from 'hono';
import { AppError } from '../errors.js';

/** Refuses a body over `maxBytes` with 413, whether it announces its length or not. */
export function limitBody(maxBytes: number, what = 'Request body'): MiddlewareHandler {
  const refuse = () => {
    throw new AppError('payload_too_large', `${what} exceeds ${maxBytes} bytes`);
  };
  const counted = bodyLimit({ maxSize: maxBytes, onError: refuse });
  return async function limitBody(c, next) {
    // A GET or HEAD has no body a route reads (and building one's web request costs as much).
    if (c.req.method === 'GET' || c.req.method === 'HEAD') return next();
    // An announced length is the body's length (Node's parser reads exactly that many bytes), so
    // the header decides without touching the body: hono's bodyLimit would build a web stream
    // for it, where @hono/node-server reads it directly. Only a chunked body is counted as it comes.
    const length = c.req.header('Content-Length');
    if (length === undefined || c.req.header('Transfer-Encoding') !== undefined) return counted(c, next);
    if (Number(length) > maxBytes) refuse();
    return next();
  };
}
