import { createHash } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { sql } from 'kysely';
import type { Db } from '../db/client.js';
import { AppError } from '../errors.js';
import type { AuthenticatedEnv } from '../http/types.js';

/** How long an answer is kept for its key. */
export const IDEMPOTENCY_WINDOW_HOURS = 24;
/** Printable ASCII: what clients send as keys (UUIDs, hashes) and what is safe to store and log. */
const KEY_FORMAT = /^[\x21-\x7e]{1,255}$/;
/** How long a request waits for the first request with its key to be answered. */
const WAIT_FOR_FIRST_MS = 30_000;
const POLL_MS = 25;
/** A key claimed this long ago and still unanswered was abandoned: twice what a duplicate waits. */
const ABANDONED_AFTER_SECONDS = (2 * WAIT_FOR_FIRST_MS) / 1000;

/** The header, as the routes that honour it document it. */
export const idempotencyKeyParameter = {
  name: 'Idempotency-Key',
  in: 'header' as const,
  description:
    'Optional, per tenant: the same key with the same request within 24 h returns the first answer again and creates nothing; with another request it is 422.',
  required: false,
  schema: { type: 'string' as const, maxLength: 255 },
};

const reusedKey = () => new AppError('validation', 'Idempotency-Key reused with a different request');

interface StoredAnswer {
  request_hash: string;
  status: number | null;
  content_type: string | null;
  body: string | null;
}

/**
 * `Idempotency-Key` for a creating route: the first request with a key (per tenant) is answered
 * as usual and its answer kept for 24 hours; a later request with the same key and the same
 * method, path and body gets that answer again (status and body) and creates nothing; one with
 * another request is 422. Claiming the key is one atomic insert, so of simultaneous duplicates
 * exactly one runs and the others wait for its answer. Answers that say "try again" (429, 5xx)
 * are not kept: the key is released, so the client can retry with it. Mounted after
 * authentication: the tenant comes from the token.
 */
export function idempotent(db: Db): MiddlewareHandler<AuthenticatedEnv> {
  // Requests of this process answering a key now: duplicates here wait without asking the database.
  const inFlight = new Map<string, Promise<void>>();

  async function claim(tenantId: string, key: string, requestHash: string): Promise<boolean> {
    // Inserts the key, or takes over one whose window has passed, or one still unanswered long
    // after any request could have been (its process died, or its release failed with the
    // database): no row back means someone holds it.
    const { rows } = await sql<{ key: string }>`
      insert into idempotency_keys (tenant_id, key, request_hash) values (${tenantId}, ${key}, ${requestHash})
      on conflict (tenant_id, key) do update set request_hash = excluded.request_hash, status = null, content_type = null,
        body = null, created_at = now()
      where idempotency_keys.created_at < now() - make_interval(hours => ${IDEMPOTENCY_WINDOW_HOURS})
         or (idempotency_keys.status is null and idempotency_keys.created_at < now() - make_interval(secs => ${ABANDONED_AFTER_SECONDS}))
      returning key
    `.execute(db);
    return rows.length > 0;
  }

  const stored = (tenantId: string, key: string) =>
    db
      .selectFrom('idempotency_keys')
      .select(['request_hash', 'status', 'content_type', 'body'])
      .where('tenant_id', '=', tenantId)
      .where('key', '=', key)
      .executeTakeFirst() as Promise<StoredAnswer | undefined>;

  return async function idempotent(c, next) {
    const key = c.req.header('Idempotency-Key');
    if (key === undefined) return next();
    if (!KEY_FORMAT.test(key)) {
      throw new AppError('validation', [
        { loc: ['header', 'Idempotency-Key'], msg: 'Idempotency-Key must be 1 to 255 printable ASCII characters', type: 'idempotency_key' },
      ]);
    }
    const { tenantId } = c.get('auth');
    const requestHash = createHash('sha256').update(`${c.req.method} ${c.req.path}\n`).update(await c.req.text()).digest('hex');
    const local = `${tenantId}:${key}`;

    for (const deadline = Date.now() + WAIT_FOR_FIRST_MS; ; ) {
      await inFlight.get(local);
      if (await claim(tenantId, key, requestHash)) break;
      const answer = await stored(tenantId, key);
      if (answer && answer.request_hash !== requestHash) throw reusedKey();
      if (answer?.status != null) {
        return c.body(answer.body ?? '', answer.status as ContentfulStatusCode, {
          ...(answer.content_type ? { 'Content-Type': answer.content_type } : {}),
          'Idempotent-Replayed': 'true',
        });
      }
      // The first request with this key is still being answered, by another process.
      if (Date.now() > deadline) {
        throw new AppError('conflict', 'A request with this Idempotency-Key is still being answered; try again shortly', {
          headers: { 'Retry-After': '1' },
        });
      }
      if (answer) await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }

    let done!: () => void;
    inFlight.set(local, new Promise<void>((resolve) => (done = resolve)));
    let kept = false;
    try {
      await next();
      const { status } = c.res;
      if (status < 500 && status !== 429) {
        const body = await c.res.clone().text();
        await db
          .updateTable('idempotency_keys')
          .set({ status, content_type: c.res.headers.get('Content-Type'), body })
          .where('tenant_id', '=', tenantId)
          .where('key', '=', key)
          .execute();
        kept = true;
      }
    } finally {
      // An answer that was not kept (an error thrown, a 429 or 5xx) gives the key back.
      if (!kept) {
        await db
          .deleteFrom('idempotency_keys')
          .where('tenant_id', '=', tenantId)
          .where('key', '=', key)
          .where('status', 'is', null)
          .execute()
          .catch(() => {});
      }
      inFlight.delete(local);
      done();
    }
  };
}

/** Drops answers older than the window, a batch at a time (housekeeping). */
export async function deleteExpiredIdempotencyKeys(db: Db, batch = 1_000): Promise<number> {
  const { numAffectedRows } = await sql`
    delete from idempotency_keys where (tenant_id, key) in (
      select tenant_id, key from idempotency_keys
      where created_at < now() - make_interval(hours => ${IDEMPOTENCY_WINDOW_HOURS})
      order by created_at limit ${batch}
    )
  `.execute(db);
  return Number(numAffectedRows ?? 0);
}
