import { createHash } from 'node:crypto';

/**
 * Where a page of the task list ends: the last task's creation time, to the microsecond as the
 * database keeps it (a JavaScript Date would round it to the millisecond and lose or repeat tasks
 * at a page boundary), and its id, which orders tasks created at the same instant.
 */
export interface TaskPosition {
  /** UTC, e.g. 2030-01-01T12:00:00.123456Z */
  createdAt: string;
  id: string;
}

const CREATED_AT = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.\d{6}Z$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const CHECK_BYTES = 6;

/**
 * A check over the position, so a cursor altered on its way back (by hand, or cut short) is
 * refused instead of silently continuing somewhere else. It is not a secret: any position a
 * cursor can name lies in the caller's own tenant, which every page is filtered by anyway.
 */
function checkOf(position: string): Buffer {
  return createHash('sha256').update(`autonomos task list cursor ${position}`).digest().subarray(0, CHECK_BYTES);
}

/** The opaque `next_cursor` of a page. */
export function encodeCursor(position: TaskPosition): string {
  const text = `${position.createdAt} ${position.id}`;
  return `${Buffer.from(text, 'latin1').toString('base64url')}.${checkOf(text).toString('base64url')}`;
}

/** Whether the UTC date and time exist (no February 30th, no hour 24): PostgreSQL would refuse them. */
function isRealTime(match: RegExpExecArray): boolean {
  const [year, month, day, hour, minute, second] = match.slice(1).map(Number) as [number, number, number, number, number, number];
  const date = new Date(Date.UTC(year, month - 1, day, hour, minute, second));
  return (
    date.getUTCFullYear() === year &&
    date.getUTCMonth() === month - 1 &&
    date.getUTCDate() === day &&
    date.getUTCHours() === hour &&
    date.getUTCMinutes() === minute &&
    date.getUTCSeconds() === second
  );
}

/** The position a cursor names, or undefined for anything `encodeCursor` did not produce. */
export function decodeCursor(cursor: string): TaskPosition | undefined {
  const [encoded, check, ...rest] = cursor.split('.');
  if (encoded === undefined || check === undefined || rest.length > 0) return undefined;
  const text = Buffer.from(encoded, 'base64url').toString('latin1');
  // Node's base64url decoding skips characters it does not know: only the canonical form counts.
  if (Buffer.from(text, 'latin1').toString('base64url') !== encoded) return undefined;
  if (checkOf(text).toString('base64url') !== check) return undefined;
  const [createdAt, id, ...extra] = text.split(' ');
  if (createdAt === undefined || id === undefined || extra.length > 0 || !UUID.test(id)) return undefined;
  const time = CREATED_AT.exec(createdAt);
  if (!time || !isRealTime(time)) return undefined;
  return { createdAt, id };
}
