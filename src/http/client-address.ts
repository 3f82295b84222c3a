import { getConnInfo } from '@hono/node-server/conninfo';
import type { Context } from 'hono';
import { isIP } from 'node:net';

/**
 * The address of the client, for per-client limits. With `trustedProxies` > 0 the service sits
 * behind that many reverse proxies, each appending the address it received from to
 * X-Forwarded-For: the client is that many entries from the right. Entries further left are
 * whatever the client chose to send and are never read. Without proxies the header is ignored.
 */
export function clientAddress(c: Context, trustedProxies: number): string {
  let peer: string | undefined;
  try {
    peer = getConnInfo(c).remote.address;
  } catch {
    // A request handed to the app in-process (tests) has no socket.
  }
  if (trustedProxies > 0) {
    const forwarded = (c.req.header('X-Forwarded-For') ?? '').split(',').map((entry) => entry.trim());
    const client = forwarded[Math.max(0, forwarded.length - trustedProxies)];
    if (client && isIP(client)) return client;
  }
  return peer ?? 'unknown';
}
