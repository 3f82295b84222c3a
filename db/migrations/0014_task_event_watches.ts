import { sql, type Kysely } from 'kysely';
import { createEventTriggerFunctions } from './0006_task_events.js';

// Frozen in time: this file never imports application code.

/** As in 0006_task_events: a row whose JSON is larger than this travels without it. */
const MAX_ROW_BYTES = 6000;

/**
 * One event as JSON text (as in 0006_task_events), now with the generation of its tenant's watch:
 * a stream resuming after an event of an earlier generation may have missed events.
 */
function eventText(type: string, alias: string, task: string): string {
  return `'{"id":' || nextval('task_event_ids') || ',"type":"' || ${type} || '","tenant_id":"' || ${alias}.tenant_id
          || '","task_id":"' || ${alias}.id || '","generation":' || watch.generation || ',"task":'
          || case when octet_length(${task}::text) <= ${MAX_ROW_BYTES} then ${task}::text else 'null' end || '}'`;
}

/** The tenants whose events someone may want, joined to the changed rows `alias`. */
const watched = (alias: string) => `join task_event_watches watch on watch.tenant_id = ${alias}.tenant_id`;

/**
 * The trigger function `name` (0006_task_events' triggers call it), sending the events that
 * `events` selects. Whether any tenant is watched at all decides most statements alone.
 */
function eventTrigger(name: string, events: string): string {
  return `
    create or replace function ${name}() returns trigger language plpgsql as $$
    begin
      if exists (select from task_event_watches) then
        perform autonomos_notify_task_events(array(${events}));
      end if;
      return null;
    end
    $$`;
}

export async function up(db: Kysely<any>): Promise<void> {
  // Events are sent only for tenants that an event stream watches (or watched lately, so that a
  // client reconnecting in time resumes where it was). Every transaction that notifies takes
  // PostgreSQL's cluster-wide notification lock from before its commit until its commit is
  // flushed, so notifying commits cannot be grouped: under load, the worker's claims and successes
  // waited on it for about 40% of their time, for events nobody listened to.
  //
  // A tenant is watched while it has a row here. Each API process moves watched_until on for the
  // tenants it has streams of, and deletes the rows whose watched_until has passed. A watch that starts again gets a new
  // generation, which its events carry: no stream resumes across a time its tenant went unwatched.
  await sql`create sequence task_event_watch_generations as bigint`.execute(db);
  await sql`
    create table task_event_watches (
      tenant_id uuid primary key references tenants (id) on delete cascade,
      generation bigint not null default nextval('task_event_watch_generations'),
      watched_until timestamptz not null
    )`.execute(db);

  await sql.raw(
    eventTrigger(
      'autonomos_task_events_inserted',
      `select ${eventText("'task.created'", 'created', 'task')}
       from created_tasks created ${watched('created')}
       cross join row_to_json(created) task`,
    ),
  ).execute(db);
  await sql.raw(
    eventTrigger(
      'autonomos_task_events_updated',
      `select ${eventText(
        `case changed.status when 'in_progress' then 'task.started' when 'success' then 'task.succeeded'
                             when 'failed' then 'task.failed' when 'canceled' then 'task.canceled'
                             when 'queued' then 'task.retry_scheduled' end`,
        'changed',
        'task',
      )}
       from updated_tasks changed ${watched('changed')}
       join previous_tasks previous on previous.tenant_id = changed.tenant_id and previous.id = changed.id
       cross join row_to_json(changed) task
       where changed.status <> previous.status`,
    ),
  ).execute(db);
  await sql.raw(
    eventTrigger(
      'autonomos_task_events_deleted',
      `select ${eventText("'task.deleted'", 'deleted', 'null')}
       from deleted_tasks deleted ${watched('deleted')}
       where deleted.status in ('queued', 'in_progress')`,
    ),
  ).execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await createEventTriggerFunctions(db);
  await sql`drop table task_event_watches`.execute(db);
  await sql`drop sequence task_event_watch_generations`.execute(db);
}
