import pg from 'pg';
import type { TaskRow } from '../db/schema.js';

/** The task columns that are timestamps: listed in full, or this does not compile. */
type TimestampColumn = { [K in keyof TaskRow]-?: [TaskRow[K]] extends [Date | null] ? K : never }[keyof TaskRow];
const TIMESTAMP_COLUMNS: Record<TimestampColumn, true> = {
  scheduled_for: true,
  wait_until: true,
  started_at: true,
  finished_at: true,
  created_at: true,
  updated_at: true,
};

/**
 * The parser pg applies to timestamptz columns when the API reads a task: the same one, so an
 * event shows the very timestamps GET /api/v1/tasks/{id} shows (microseconds cut the same way).
 */
const parseTimestamp = pg.types.getTypeParser(pg.types.builtins.TIMESTAMPTZ, 'text') as (text: string) => Date;

/**
 * A tasks row as the database's row_to_json wrote it, as the row a query would have returned.
 * JSON spells timestamps with a `T` where PostgreSQL's text output has a space, the one
 * difference the parser cares about. queue_rank is a bigint, which pg reads as a string.
 */
export function taskRowFromJson(json: Record<string, unknown>): TaskRow {
  const row: Record<string, unknown> = { ...json };
  for (const column of Object.keys(TIMESTAMP_COLUMNS)) {
    const value = json[column];
    if (typeof value === 'string') row[column] = parseTimestamp(value.replace('T', ' '));
  }
  if (typeof json.queue_rank === 'number') row.queue_rank = String(json.queue_rank);
  return row as unknown as TaskRow;
}
