import { sql, type Kysely } from 'kysely';

// Frozen in time: this file never imports application code.
// Its exports are frozen with it: 0017_watched_task_events builds on them, and undoes to them.

/** Where every task event is sent; each API process listens here for its /api/v1/events streams. */
const CHANNEL = 'autonomos_task_events';
/**
 * A notification's payload stays below this many bytes (PostgreSQL refuses 8000 or more); the
 * events of a statement are split over as many notifications as it takes.
 */
const MAX_NOTIFICATION_BYTES = 7500;
/**
 * A row whose JSON is larger than this travels without it (`task` null): the listener reads the
 * row itself, and only if a client of that tenant wants it. Leaves room for the envelope.
 */
const MAX_ROW_BYTES = 6000;

/**
 * One event as JSON text, for a row `alias` and its JSON `task` (json, or null), built by
 * concatenation inline in the trigger's query: its parts need no escaping (uuids, our own type
 * names, a number and the row's JSON), and the row is serialised once. Serialising the rows is
 * most of the triggers' cost, and row_to_json costs about half of what to_jsonb does.
 */
export function eventText(type: string, alias: string, task: string): string {
  return `'{"id":' || nextval('task_event_ids') || ',"type":"' || ${type} || '","tenant_id":"' || ${alias}.tenant_id
          || '","task_id":"' || ${alias}.id || '","task":'
          || case when octet_length(${task}::text) <= ${MAX_ROW_BYTES} then ${task}::text else 'null' end || '}'`;
}

/** The event of a row `changed` whose status changed. Back to queued happens only for a retry. */
export const STATUS_EVENT_TYPE = `case changed.status when 'in_progress' then 'task.started' when 'success' then 'task.succeeded'
                                   when 'failed' then 'task.failed' when 'canceled' then 'task.canceled'
                                   when 'queued' then 'task.retry_scheduled' end`;

/**
 * The functions of the three triggers, which make every tenant's events (0017_watched_task_events
 * puts them back so when it is undone).
 */
export async function createEventTriggerFunctions(db: Kysely<any>): Promise<void> {
  // One trigger call per statement, not per row: the API and the worker write tasks in batches
  // (of up to 64), and each call costs a few pg_notify at most whatever the batch size.
  await sql.raw(`
    create or replace function autonomos_task_events_inserted() returns trigger language plpgsql as $$
    begin
      perform autonomos_notify_task_events(array(
        select ${eventText("'task.created'", 'created', 'task')} from created_tasks created, row_to_json(created) task
      ));
      return null;
    end
    $$`).execute(db);

  // Transition tables cannot be combined with "update of status", so this fires for every update
  // and keeps only the rows whose status changed.
  await sql.raw(`
    create or replace function autonomos_task_events_updated() returns trigger language plpgsql as $$
    begin
      perform autonomos_notify_task_events(array(
        select ${eventText(STATUS_EVENT_TYPE, 'changed', 'task')}
        from updated_tasks changed
        join previous_tasks previous on previous.tenant_id = changed.tenant_id and previous.id = changed.id
        cross join row_to_json(changed) task
        where changed.status <> previous.status
      ));
      return null;
    end
    $$`).execute(db);

  // A task deleted before it finished was taken back in the transaction that created it (an AOA
  // job refused by its tenant's exclusive slot): its task.created must not be left standing.
  // Finished tasks deleted by retention are no news.
  await sql.raw(`
    create or replace function autonomos_task_events_deleted() returns trigger language plpgsql as $$
    begin
      perform autonomos_notify_task_events(array(
        select ${eventText("'task.deleted'", 'deleted', 'null')}
        from deleted_tasks deleted
        where deleted.status in ('queued', 'in_progress')
      ));
      return null;
    end
    $$`).execute(db);
}

export async function up(db: Kysely<any>): Promise<void> {
  // Event ids are taken when the statement runs, but notifications arrive in commit order: ids
  // are unique, not ascending. Listeners order events by arrival, which is the same everywhere.
  await sql`create sequence task_event_ids as bigint`.execute(db);

  // Greedy packing: as many whole events per notification as fit. Notifications of one
  // transaction are delivered together and in the order sent.
  await sql.raw(`
    create function autonomos_notify_task_events(events text[]) returns void language plpgsql as $$
    declare
      item text;
      chunk text := '';
    begin
      foreach item in array events loop
        if chunk <> '' and octet_length(chunk) + octet_length(item) + 3 > ${MAX_NOTIFICATION_BYTES} then
          perform pg_notify('${CHANNEL}', '[' || chunk || ']');
          chunk := '';
        end if;
        chunk := case when chunk = '' then item else chunk || ',' || item end;
      end loop;
      if chunk <> '' then
        perform pg_notify('${CHANNEL}', '[' || chunk || ']');
      end if;
    end
    $$`).execute(db);

  await createEventTriggerFunctions(db);

  await sql`create trigger tasks_events_inserted after insert on tasks referencing new table as created_tasks
            for each statement execute function autonomos_task_events_inserted()`.execute(db);
  await sql`create trigger tasks_events_updated after update on tasks referencing old table as previous_tasks new table as updated_tasks
            for each statement execute function autonomos_task_events_updated()`.execute(db);
  await sql`create trigger tasks_events_deleted after delete on tasks referencing old table as deleted_tasks
            for each statement execute function autonomos_task_events_deleted()`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop trigger tasks_events_deleted on tasks`.execute(db);
  await sql`drop trigger tasks_events_updated on tasks`.execute(db);
  await sql`drop trigger tasks_events_inserted on tasks`.execute(db);
  await sql`drop function autonomos_task_events_deleted()`.execute(db);
  await sql`drop function autonomos_task_events_updated()`.execute(db);
  await sql`drop function autonomos_task_events_inserted()`.execute(db);
  await sql`drop function autonomos_notify_task_events(text[])`.execute(db);
  await sql`drop sequence task_event_ids`.execute(db);
}
