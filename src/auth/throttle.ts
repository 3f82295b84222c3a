import { sql } from 'kysely';
import type { Db } from '../db/client.js';
import { AppError } from '../errors.js';

/** One thing counted in a fixed window: e.g. sign-ins to one account. */
export interface AttemptLimit {
  key: string;
  /** Attempts allowed per window; 0 turns this limit off. */
  max: number;
  windowSeconds: number;
  /** What the 429 says, followed by when to try again. */
  refusal: string;
}

const tooMany = (limit: AttemptLimit, secondsLeft: number) => {
  const retryAfter = Math.max(1, Math.ceil(secondsLeft));
  return new AppError('too_many_requests', `${limit.refusal}; try again in ${retryAfter} s`, { headers: { 'Retry-After': String(retryAfter) } });
};

/**
 * Counts an attempt against each limit before the attempt is made, in one statement, and throws
 * 429 (with Retry-After) when any is over. Counting first makes the limits race-proof: of 50
 * simultaneous attempts exactly `max` go ahead, the rest are refused without the work they would
 * cost (an Argon2 hash). Stored in PostgreSQL, so every API process shares the counts.
 */
export async function countAttempt(db: Db, limits: readonly AttemptLimit[]): Promise<void> {
  const active = limits.filter((limit) => limit.max > 0);
  if (active.length === 0) return;
  const { rows } = await sql<{ key: string; attempts: number; seconds_left: number }>`
    insert into auth_throttle as counted (key, attempts, window_ends_at)
    select key, 1, now() + make_interval(secs => window_seconds)
    from unnest(${active.map((limit) => limit.key)}::text[], ${active.map((limit) => limit.windowSeconds)}::int[]) as x(key, window_seconds)
    on conflict (key) do update set
      attempts = case when counted.window_ends_at <= now() then 1 else counted.attempts + 1 end,
      window_ends_at = case when counted.window_ends_at <= now() then excluded.window_ends_at else counted.window_ends_at end
    returning key, attempts, extract(epoch from window_ends_at - now())::float8 as seconds_left
  `.execute(db);
  for (const row of rows) {
    const limit = active.find((candidate) => candidate.key === row.key)!;
    if (row.attempts > limit.max) throw tooMany(limit, row.seconds_left);
  }
}

/**
 * Takes back an attempt that turned out well: `reset` keys start again from nothing (a user who
 * signed in), `refund` keys lose this one attempt (the client address that sent it).
 */
export async function forgiveAttempt(db: Db, keys: { reset: readonly string[]; refund: readonly string[] }): Promise<void> {
  if (keys.reset.length === 0 && keys.refund.length === 0) return;
  await sql`
    with reset as (delete from auth_throttle where key = any(${keys.reset}::text[]))
    update auth_throttle set attempts = greatest(attempts - 1, 0) where key = any(${keys.refund}::text[])
  `.execute(db);
}

/** Drops counts whose window has ended, a batch at a time (housekeeping; nothing reads them). */
export async function deleteEndedWindows(db: Db, batch = 1_000): Promise<number> {
  const { numAffectedRows } = await sql`
    delete from auth_throttle where key in (
      select key from auth_throttle where window_ends_at < now() order by window_ends_at limit ${batch}
    )
  `.execute(db);
  return Number(numAffectedRows ?? 0);
}
