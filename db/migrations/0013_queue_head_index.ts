import { sql, type Kysely } from 'kysely';

// Frozen in time: this file never imports application code.

export async function up(db: Kysely<any>): Promise<void> {
  // A task's turn looks up its tenant's last (or first) queued task of each priority level, with
  // ORDER BY queue_rank LIMIT 1 (see createTasks). The head index, ordered by queue_rank alone,
  // could serve that too by walking it and filtering on the tenant and priority, and the planner
  // took it when one tenant held the whole queue: for a level with no tasks the walk read every
  // queued task (about 100 ms a creation at 47,000 queued, against 0.2 ms on the turn index). A
  // predicate that only the head-of-queue query states keeps this index to that query.
  await sql`drop index tasks_queue_head_idx`.execute(db);
  await sql`create index tasks_queue_head_idx on tasks (queue_rank) include (scheduled_for)
            where status = 'queued' and kind = 'task' and queue_rank is not null`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index tasks_queue_head_idx`.execute(db);
  await sql`create index tasks_queue_head_idx on tasks (queue_rank) include (scheduled_for)
            where status = 'queued' and kind = 'task'`.execute(db);
}
