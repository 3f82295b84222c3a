import { sql } from 'kysely';
import type { Db } from '../db/client.js';
import { AppError } from '../errors.js';
import { MAX_BATCH_TASKS } from './tasks.schemas.js';

export interface CreationLimits {
  /** Creations per tenant per second, in bursts of up to twice that; 0: no limit. */
  ratePerSecond: number;
  /** Unfinished tasks per tenant; 0: no limit. */
  maxUnfinished: number;
}

/** Per creation of a batch, in order: undefined if it may go ahead, else why not (a 429). */
export type Admission = AppError | undefined;

/** How long a tenant over its unfinished-task quota is told to wait: tasks finish at their own pace. */
const QUOTA_RETRY_AFTER_SECONDS = 10;
/** Tenants whose last count this process remembers. */
const COUNTS_KEPT = 10_000;

/**
 * The per-tenant creation limits, checked for a whole batch of the API's creations at once, so a
 * batch of any size costs at most one statement for the rate and, rarely, one for the quota.
 *
 * The rate is a token bucket per tenant in PostgreSQL (shared by every API process), refilled on
 * use: one statement takes what the batch's creations need, and those beyond what the bucket
 * holds are refused, later ones first.
 *
 * The unfinished-task quota is counted by index, but seldom: a count taken at time t also bounds
 * the count later, since with a rate limit a tenant can add at most a burst (or one batch) plus
 * rate × elapsed tasks (its tasks can finish, never multiply: a chained task replaces its
 * parent). Only when that bound could pass the quota is the tenant counted again. Creations racing the count may pass
 * the quota by the size of the batches in flight.
 */
export function createTaskQuotas(db: Db, limits: CreationLimits) {
  const burst = 2 * limits.ratePerSecond;
  const counts = new Map<string, { unfinished: number; countedAt: number }>();

  /** Refuses a creation that needed `needed` tokens when the bucket holds `tokens`: back once it will hold them. */
  const rateRefusal = (tokens: number, needed = 1) => {
    const retryAfter = Math.max(1, Math.ceil((needed - tokens) / limits.ratePerSecond));
    return new AppError(
      'too_many_requests',
      `Rate limit exceeded: a tenant may create at most ${limits.ratePerSecond} tasks per second (TENANT_RATE_LIMIT_PER_SECOND)`,
      { headers: { 'Retry-After': String(retryAfter) } },
    );
  };
  const quotaRefusal = (unfinished: number) =>
    new AppError(
      'too_many_requests',
      `Quota exceeded: the tenant has ${unfinished} unfinished tasks, and may have at most ${limits.maxUnfinished} (TENANT_MAX_QUEUED_TASKS)`,
      { headers: { 'Retry-After': String(QUOTA_RETRY_AFTER_SECONDS) } },
    );

  const refilled = sql`least(${burst}::float8, bucket.tokens + ${limits.ratePerSecond}::float8 * greatest(0, extract(epoch from now() - bucket.refilled_at)))`;

  /** How many of each tenant's requests the bucket grants, and what it holds after. */
  async function takeTokens(demand: Map<string, number>) {
    const tenants = [...demand.keys()];
    // Each request is capped at the burst: more could never be granted at once anyway, and the
    // capped count is what a first request (the inserted row) takes.
    const wanted = tenants.map((tenant) => Math.min(demand.get(tenant)!, burst));
    const { rows } = await sql<{ tenant_id: string; granted: number; tokens: number }>`
      insert into tenant_rate_buckets as bucket (tenant_id, tokens, refilled_at, granted)
      select tenant_id, ${burst}::float8 - wanted, now(), wanted
      from unnest(${tenants}::uuid[], ${wanted}::int[]) as x(tenant_id, wanted)
      -- Rows locked in one order by every statement: two batches cannot deadlock on them.
      order by tenant_id
      on conflict (tenant_id) do update set
        -- A bucket in debt (after a batch) grants nothing, and stays in debt.
        tokens = ${refilled} - greatest(0, least(excluded.granted, floor(${refilled}))),
        granted = greatest(0, least(excluded.granted, floor(${refilled}))),
        refilled_at = greatest(bucket.refilled_at, now())
      returning tenant_id, granted, tokens
    `.execute(db);
    return new Map(rows.map((row) => [row.tenant_id, row]));
  }

  /**
   * Takes `count` tokens at once, or none. A batch larger than the burst could otherwise never
   * pass: it goes through when the bucket is full enough for the burst, and leaves it in debt, so
   * the tenant's rate over time still holds.
   */
  async function takeTokensAtOnce(tenantId: string, count: number) {
    const { rows } = await sql<{ granted: number; tokens: number }>`
      insert into tenant_rate_buckets as bucket (tenant_id, tokens, refilled_at, granted)
      values (${tenantId}, ${burst}::float8 - ${count}, now(), ${count})
      on conflict (tenant_id) do update set
        tokens = case when floor(${refilled}) >= least(excluded.granted, ${burst}) then ${refilled} - excluded.granted else ${refilled} end,
        granted = case when floor(${refilled}) >= least(excluded.granted, ${burst}) then excluded.granted else 0 end,
        refilled_at = greatest(bucket.refilled_at, now())
      returning granted, tokens
    `.execute(db);
    return rows[0]!;
  }

  /** Tenants' unfinished tasks, counted by index: queued plain tasks, running tasks, unfinished AOA jobs. */
  async function countUnfinished(tenants: string[]): Promise<Map<string, number>> {
    const { rows } = await sql<{ tenant_id: string; unfinished: number }>`
      select tenant_id,
        (select count(*) from tasks where tasks.tenant_id = x.tenant_id and status = 'queued' and kind = 'task')
        + (select count(*) from tasks where tasks.tenant_id = x.tenant_id and status = 'in_progress')
        + (select count(*) from tasks where tasks.tenant_id = x.tenant_id and status = 'queued' and kind = 'aoa') as unfinished
      from unnest(${tenants}::uuid[]) as x(tenant_id)
    `.execute(db);
    return new Map(rows.map((row) => [row.tenant_id, Number(row.unfinished)]));
  }

  /**
   * Whether the tenant could have reached its quota (adding `more`) since it was last counted. The
   * bucket held at most the burst then, and a batch may take it into debt by up to a whole batch,
   * so at most the larger of the two plus what the rate refilled since can have been created.
   */
  function mayBeOver(tenantId: string, more: number, now: number): boolean {
    const last = counts.get(tenantId);
    if (!last || limits.ratePerSecond === 0) return true;
    const addedSince = Math.max(burst, MAX_BATCH_TASKS) + (limits.ratePerSecond * (now - last.countedAt)) / 1000;
    return last.unfinished + addedSince + more > limits.maxUnfinished;
  }

  /**
   * Room left under the quota of each tenant that adds `more` tasks, counted again where it could
   * be short; a tenant missing from the answer certainly has room.
   */
  async function roomFor(adding: Map<string, number>): Promise<Map<string, { room: number; unfinished: number }>> {
    const now = Date.now();
    const recount = [...adding].filter(([tenant, more]) => mayBeOver(tenant, more, now)).map(([tenant]) => tenant);
    const rooms = new Map<string, { room: number; unfinished: number }>();
    if (recount.length === 0) return rooms;
    for (const [tenant, unfinished] of await countUnfinished(recount)) {
      counts.delete(tenant);
      if (counts.size >= COUNTS_KEPT) counts.delete(counts.keys().next().value!);
      counts.set(tenant, { unfinished, countedAt: now });
      rooms.set(tenant, { room: limits.maxUnfinished - unfinished, unfinished });
    }
    return rooms;
  }

  return {
    /** Decides, for each of a batch's creations (the tenant of each), whether it may go ahead. */
    async admit(tenantIds: readonly string[]): Promise<Admission[]> {
      const admissions: Admission[] = tenantIds.map(() => undefined);
      const demand = new Map<string, number>();
      for (const tenant of tenantIds) demand.set(tenant, (demand.get(tenant) ?? 0) + 1);

      if (limits.ratePerSecond > 0) {
        const buckets = await takeTokens(demand);
        const seen = new Map<string, number>();
        tenantIds.forEach((tenant, index) => {
          const nth = (seen.get(tenant) ?? 0) + 1;
          seen.set(tenant, nth);
          const bucket = buckets.get(tenant)!;
          if (nth > bucket.granted) admissions[index] = rateRefusal(bucket.tokens);
        });
      }

      if (limits.maxUnfinished > 0) {
        const admitted = new Map<string, number>();
        tenantIds.forEach((tenant, index) => {
          if (!admissions[index]) admitted.set(tenant, (admitted.get(tenant) ?? 0) + 1);
        });
        for (const [tenant, { room, unfinished }] of await roomFor(admitted)) {
          let left = room;
          tenantIds.forEach((candidate, index) => {
            if (candidate !== tenant || admissions[index]) return;
            if (left > 0) left -= 1;
            else admissions[index] = quotaRefusal(unfinished);
          });
        }
      }
      return admissions;
    },

    /** Decides whether one tenant may create `count` tasks together, all or none. */
    async admitAll(tenantId: string, count: number): Promise<Admission> {
      if (limits.ratePerSecond > 0) {
        const bucket = await takeTokensAtOnce(tenantId, count);
        if (bucket.granted === 0) return rateRefusal(bucket.tokens, Math.min(count, burst));
      }
      if (limits.maxUnfinished > 0) {
        const quota = (await roomFor(new Map([[tenantId, count]]))).get(tenantId);
        if (quota && quota.room < count) return quotaRefusal(quota.unfinished);
      }
      return undefined;
    },
  };
}
