import { sql, type Kysely } from 'kysely';

// Frozen in time: this file never imports application code.

/** The first key of the per-tenant claim locks (pg_advisory_xact_lock's two-key form, apart from pg-boss's one-key locks). */
const CLAIM_LOCK_CLASS = 727_002;

export async function up(db: Kysely<any>): Promise<void> {
  // Claims a fetched batch of deliveries (see claimTasks) within each tenant's cap of running plain
  // tasks. pg-boss's group concurrency counts a tenant's active jobs as a fetch starts, so two
  // fetches at the same instant each saw room and together ran up to twice the cap. Here a
  // tenant's claims take turns on a lock, and each counts the running tasks after the one before
  // it committed: a PL/pgSQL statement takes a fresh snapshot, where one SQL statement's count
  // would be as old as its start. A function keeps the claim one round trip.
  //
  // Deliveries past the cap come back with at_cap set and nothing written; the others are
  // claimed (queued → in_progress, or a waiting attempt resumed) with their audit entries.
  await sql`
    create function claim_tasks(task_ids uuid[], tenant_ids uuid[], deliveries int[], running_cap int, started_message text, resumed_message text)
    returns table (task tasks, due_at timestamptz, resumed boolean, at_cap boolean)
    language plpgsql volatile as $$
    #variable_conflict use_column
    begin
      if running_cap is not null then
        -- In the order of the keys, so that two batches of the same tenants cannot wait on each other.
        perform pg_advisory_xact_lock(${sql.lit(CLAIM_LOCK_CLASS)}, key)
        from (select distinct hashtext(tenant_id::text) as key from unnest(tenant_ids) as t(tenant_id) order by key) as keys;
      end if;
      return query
      with input as (
        select * from unnest(task_ids, tenant_ids, deliveries) with ordinality as x(id, tenant_id, delivery, position)
      ),
      candidates as (
        select input.id, input.tenant_id, input.delivery, queued as queued_row,
               -- queued is the row as it was before this claim: when it was due, its retry's, schedule's or wait's end.
               coalesce(queued.scheduled_for, queued.created_at) as due_at, queued.status = 'in_progress' as resumed,
               -- Within the room under the cap, in the queue's order: turn, then priority (a retried or
               -- waiting task, already begun, first).
               row_number() over (partition by input.tenant_id, queued.kind
                                  order by queued.queue_rank nulls first, queued.priority desc, queued.created_at, input.position) as turn
        from input join tasks as queued on queued.tenant_id = input.tenant_id and queued.id = input.id
        where (queued.status = 'queued' or (queued.status = 'in_progress' and queued.scheduled_for is not null))
          and (queued.claimed_delivery is null or queued.claimed_delivery < input.delivery)
      ),
      running as (
        select tenant_id, count(*)::int as tasks_running from tasks
        where running_cap is not null and tenant_id in (select tenant_id from input)
          and status = 'in_progress' and scheduled_for is null and kind = 'task'
        group by tenant_id
      ),
      admitted as (
        select candidates.*, running_cap is null or (candidates.queued_row).kind <> 'task'
                             or candidates.turn <= running_cap - coalesce(running.tasks_running, 0) as admitted
        from candidates left join running on running.tenant_id = candidates.tenant_id
      ),
      -- The tasks start at the claim's own moment, one for its whole batch: not its transaction's
      -- start (now()), which comes before finishes this claim counted that committed while it
      -- waited for the lock.
      claim_time as materialized (select clock_timestamp() as at),
      claimed as (
        update tasks set status = 'in_progress', claimed_delivery = admitted.delivery, scheduled_for = null, updated_at = now(),
                         started_at = case when tasks.status = 'queued' then (select at from claim_time) else tasks.started_at end
        from admitted
        where admitted.admitted and tasks.id = admitted.id and tasks.tenant_id = admitted.tenant_id
          and (tasks.status = 'queued' or (tasks.status = 'in_progress' and tasks.scheduled_for is not null))
          and (tasks.claimed_delivery is null or tasks.claimed_delivery < admitted.delivery)
        returning tasks, admitted.due_at, admitted.resumed
      ),
      audited as (
        insert into task_logs (task_id, tenant_id, message)
        select (claimed.tasks).id, (claimed.tasks).tenant_id, case when claimed.resumed then resumed_message else started_message end from claimed
      )
      select claimed.tasks, claimed.due_at, claimed.resumed, false from claimed
      union all
      select admitted.queued_row, admitted.due_at, admitted.resumed, true from admitted where not admitted.admitted;
    end
    $$
  `.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop function claim_tasks(uuid[], uuid[], int[], int, text, text)`.execute(db);
}
