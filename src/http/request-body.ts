import type { HttpBindings } from '@hono/node-server';
import type { Context, MiddlewareHandler } from 'hono';

/**
 * Why the request body never arrived whole (the client hung up mid-body, or sent chunked framing
 * Node's parser refused), or undefined when it did or there is no Node request under `c`. Node
 * answers a parser error itself (400, then closes); what reaches the app is the body read failing.
 */
export function brokenRequestBody(c: Context): string | undefined {
  const incoming = (c.env as Partial<HttpBindings> | undefined)?.incoming;
  if (!incoming || incoming.complete || !(incoming.errored || incoming.destroyed)) return undefined;
  return incoming.errored?.message ?? 'connection closed';
}

/**
 * Reads and discards a request body the route did not read (AOA run, a 401, a 404...), at most
 * `maxBytes`, before the answer goes out. Otherwise @hono/node-server closes the connection half a
 * second after answering while the client is still uploading, and a client that reads only once it
 * has sent everything gets a reset instead of its answer. The wait is bounded like any body read,
 * by Node's request timeout. A client that hangs up here has nothing left to answer.
 *
 * A body announced over the limit is left unread, and @hono/node-server destroys its connection
 * half a second later: that answer says `Connection: close`, or a keep-alive client would send its
 * next request on the doomed connection and see it drop instead of an answer.
 */
export function drainUnreadBody(maxBytes: number): MiddlewareHandler {
  return async function drainUnreadBody(c, next) {
    await next();
    // A body that has arrived whole (no body at all, or one the route read) leaves nothing to
    // wait for. Checked on Node's request, not `raw.body`: that would build the web stream
    // @hono/node-server's direct body read spares every request.
    if ((c.env as Partial<HttpBindings> | undefined)?.incoming?.complete) return;
    const body = c.req.raw.body;
    if (!body || c.req.raw.bodyUsed || body.locked) return;
    // A body announced over the limit was refused (413) unread: draining it is the upload refused.
    if (Number(c.req.header('Content-Length')) > maxBytes) {
      c.res.headers.set('Connection', 'close');
      return;
    }
    const reader = body.getReader();
    try {
      for (let read = 0; read <= maxBytes; ) {
        const { done, value } = await reader.read();
        if (done) return;
        read += value.byteLength;
      }
      await reader.cancel();
    } catch {
      // The client went away mid-body: the answer has no one to go to.
    }
  };
}
