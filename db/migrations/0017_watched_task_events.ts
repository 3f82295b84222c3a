import { sql, type Kysely } from 'kysely';
import { createEventTriggerFunctions, eventText, STATUS_EVENT_TYPE } from './0006_task_events.js';

// Frozen in time: this file never imports application code.

/**
 * The advisory lock (two-key form: this, and the tenant's bucket) by which a tenant's first watch
 * waits for the transactions that changed its tasks unwatched (see up()).
 */
const WATCH_LOCK_CLASS = 1_414_743_380;
/**
 * A tenant's lock bucket, of 1,024: a statement changing the tasks of thousands of tenants (an
 * operator's bulk fix) holds at most that many locks, well within PostgreSQL's lock table. Two
 * tenants sharing one only make a first watch wait for the other's transactions too.
 */
const lockBucket = (tenant: string) => `hashtext(${tenant}::text) & 1023`;
/** How long a first watch waits for a tenant's transactions in flight before it gives up (and the stream is refused with a 503). */
const WATCH_LOCK_TIMEOUT = '1s';

/**
 * A trigger function that makes the events of the rows `changed` selects (aliased `changed`, whose
 * own row is the task unless `task` is 'null'), for the tenants watched, after taking the shared
 * watch lock of each of their tenants' buckets, in one order everywhere. Outside READ COMMITTED
 * the look would use the transaction's first snapshot, taken before the lock, and could miss a
 * watch begun since: such a transaction (none of the service's own) makes every tenant's events.
 */
function watchedEventsFunction(name: string, changed: string, type: string, task: 'task' | 'null'): string {
  return `
    create or replace function ${name}() returns trigger language plpgsql as $$
    begin
      perform pg_advisory_xact_lock_shared(${WATCH_LOCK_CLASS}, bucket)
      from (select distinct ${lockBucket('tenant_id')} as bucket from (${changed}) changed order by bucket) ordered;
      perform autonomos_notify_task_events(array(
        select ${eventText(type, 'changed', task)}
        from (${changed}) changed
        ${task === 'task' ? 'cross join row_to_json(changed) task' : ''}
        where exists (select from task_event_watches watch where watch.tenant_id = changed.tenant_id)
           or current_setting('transaction_isolation') <> 'read committed'
      ));
      return null;
    end
    $$`;
}

export async function up(db: Kysely<any>): Promise<void> {
  // Task events are made only for the tenants someone watches. Building every changed row's JSON
  // in the triggers, and notifying it, cost creation and the worker more than anything else left
  // (docs/performance.md), for streams that are mostly not open. An API process holds a watch on
  // each tenant it streams to, renewed while a stream is open and kept a while after the last
  // one closes, so that a client that reconnects can resume. `watched_from` is an event id taken
  // when the watch began: every event of the watch has a greater one, and a client resuming from
  // an older id may have missed events while nobody watched (the stream starts with a reset).
  await sql`
    create table task_event_watches (
      tenant_id uuid primary key references tenants (id) on delete cascade,
      watched_from bigint not null,
      expires_at timestamptz not null
    )`.execute(db);

  // Renews the watches of `tenants` (those that exist) and ends the others' that have expired.
  await sql.raw(`
    create function autonomos_renew_task_event_watches(tenants uuid[], seconds double precision)
    returns table (tenant_id uuid, watched_from bigint) language sql as $$
      with ended as (delete from task_event_watches ended where ended.expires_at < now() and ended.tenant_id <> all(tenants))
      update task_event_watches watch set expires_at = greatest(watch.expires_at, now() + make_interval(secs => seconds))
      where watch.tenant_id = any(tenants)
      returning watch.tenant_id, watch.watched_from
    $$`).execute(db);

  // Starting a watch must not let a change slip between the triggers' check and the stream's
  // start: a transaction that found no watch, then committed after a stream had opened, would be
  // a change that stream never hears of. So the triggers take a shared lock per changed tenant
  // (its bucket's, held to commit) before they look, and a watch begins under the exclusive one:
  // it waits for the transactions that looked without finding it, and those that look later find
  // it. Renewing a watch that exists takes no lock.
  //
  // Renews the tenant's watch, or begins one under the exclusive lock; returns its first event id.
  // A new watch is announced on the events' channel, so that every API process tells the streams
  // of an earlier watch of this tenant to start over before any event of this one reaches them.
  await sql.raw(`
    create function autonomos_watch_task_events(tenant uuid, seconds double precision) returns bigint language plpgsql as $$
    declare
      since bigint;
    begin
      select renewed.watched_from into since from autonomos_renew_task_event_watches(array[tenant], seconds) renewed;
      if found then
        return since;
      end if;
      perform set_config('lock_timeout', '${WATCH_LOCK_TIMEOUT}', true);
      perform pg_advisory_xact_lock(${WATCH_LOCK_CLASS}, ${lockBucket('tenant')});
      insert into task_event_watches as watch (tenant_id, watched_from, expires_at)
      values (tenant, nextval('task_event_ids'), now() + make_interval(secs => seconds))
      on conflict (tenant_id) do update set expires_at = excluded.expires_at
      returning watch.watched_from into since;
      perform pg_notify('autonomos_task_events', json_build_array(json_build_object('watch_began', since::text, 'tenant_id', tenant))::text);
      return since;
    end
    $$`).execute(db);

  await sql.raw(watchedEventsFunction('autonomos_task_events_inserted', 'select * from created_tasks', "'task.created'", 'task')).execute(db);
  await sql.raw(
    watchedEventsFunction(
      'autonomos_task_events_updated',
      `select changed.* from updated_tasks changed
       join previous_tasks previous on previous.tenant_id = changed.tenant_id and previous.id = changed.id
       where changed.status <> previous.status`,
      STATUS_EVENT_TYPE,
      'task',
    ),
  ).execute(db);
  await sql.raw(
    watchedEventsFunction(
      'autonomos_task_events_deleted',
      "select * from deleted_tasks where status in ('queued', 'in_progress')",
      "'task.deleted'",
      'null',
    ),
  ).execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await createEventTriggerFunctions(db);
  await sql`drop function autonomos_watch_task_events(uuid, double precision)`.execute(db);
  await sql`drop function autonomos_renew_task_event_watches(uuid[], double precision)`.execute(db);
  await sql`drop table task_event_watches`.execute(db);
}
