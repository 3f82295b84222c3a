import type { Db } from '../db/client.js';
import type { Principal } from '../http/types.js';
import { encodeCursor, type TaskPosition } from './task-cursor.js';
import { toTaskOut } from './task-json.js';
import {
  DEFAULT_PAGE_SIZE,
  TASK_STATUSES,
  type StatusCounts,
  type TaskListQuery,
  type TaskPageOut,
  type TaskStatsOut,
  type TaskStatsQuery,
} from './task-listing.schemas.js';
import { taskStore } from './tasks.repository.js';

/** Reading a tenant's tasks in bulk: the paged list and the counts. */
export interface TaskListing {
  list(auth: Principal, query: TaskListQuery): Promise<TaskPageOut>;
  stats(auth: Principal, query: TaskStatsQuery): Promise<TaskStatsOut>;
}

/**
 * How many tasks a filtered page may look at (after the cursor, of the wanted statuses and
 * creation times) to find matches for kind, action or q, which the index cannot check. A search
 * for something rare therefore answers in bounded time with fewer tasks than `limit`, even none,
 * and a next_cursor to go on from: clients follow next_cursor until it is null.
 */
export const EXAMINED_PER_PAGE = 2_000;

const noTasks = (): StatusCounts => ({ queued: 0, in_progress: 0, success: 0, failed: 0, canceled: 0 });

export function createTaskListing(db: Db): TaskListing {
  return {
    async list(auth, query) {
      const limit = query.limit ?? DEFAULT_PAGE_SIZE;
      const filtered = query.kind !== undefined || query.action !== undefined || query.q !== undefined;
      // One more than the page: whether it exists says whether there is a next page. Filters the
      // index cannot check (kind, action, q) pass over tasks to fill a page, up to the budget.
      const examine = filtered ? Math.max(EXAMINED_PER_PAGE, limit + 1) : limit + 1;
      const found = await taskStore(db, auth.tenantId).list(
        {
          statuses: query.status ?? TASK_STATUSES,
          kind: query.kind,
          action: query.action,
          createdAfter: query.created_after,
          createdBefore: query.created_before,
          parentId: query.parent_id,
          search: query.q,
        },
        query.cursor,
        { limit: limit + 1, examine },
      );
      const page = found.tasks.slice(0, limit);
      const last = page.at(-1);
      let next: TaskPosition | undefined;
      if (found.tasks.length > limit && last) next = { createdAt: last.position, id: last.id };
      // The budget ran out before the page filled: the next page goes on from the last task examined.
      else if (found.examined >= examine) next = found.lastExamined;
      return { items: page.map(toTaskOut), next_cursor: next ? encodeCursor(next) : null };
    },

    async stats(auth, query) {
      const counts = await taskStore(db, auth.tenantId).countByStatusAndAction(query.since);
      const byStatus = noTasks();
      // A Map, not an object: an action name is tenant data and must not reach a prototype.
      const byAction = new Map<string, StatusCounts>();
      let total = 0;
      for (const { status, action, count } of counts) {
        byStatus[status] += count;
        if (!byAction.has(action)) byAction.set(action, noTasks());
        byAction.get(action)![status] += count;
        total += count;
      }
      return { since: query.since?.toISOString() ?? null, by_status: byStatus, by_action: Object.fromEntries(byAction), total };
    },
  };
}
