import type { Kysely } from 'kysely';

// Frozen in time: this file never imports application code.

export async function up(db: Kysely<any>): Promise<void> {
  // When the wait an action asked for (the delay action) ends. While the task waits it is
  // in_progress with scheduled_for set to the same time, and no worker holds it; the value stays
  // afterwards, so a later attempt of the task does not wait again.
  await db.schema.alterTable('tasks').addColumn('wait_until', 'timestamptz').execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('tasks').dropColumn('wait_until').execute();
}
