import { sql, type Kysely } from 'kysely';

// Frozen in time: this file never imports application code.

export async function up(db: Kysely<any>): Promise<void> {
  // Workers remember each tenant's Slack integration (a lookup per Slack post was a round trip per
  // task) and forget it when told it changed.
  await sql`
    create function autonomos_slack_integration_changed() returns trigger language plpgsql as $$
    begin
      perform pg_notify('autonomos_slack_integrations', coalesce(new.tenant_id, old.tenant_id)::text);
      return null;
    end
    $$`.execute(db);
  await sql`create trigger tenant_slack_integrations_changed after insert or update or delete on tenant_slack_integrations
            for each row execute function autonomos_slack_integration_changed()`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop trigger tenant_slack_integrations_changed on tenant_slack_integrations`.execute(db);
  await sql`drop function autonomos_slack_integration_changed()`.execute(db);
}
