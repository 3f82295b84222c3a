import { Hono } from 'hono';
import * as v from 'valibot';
import { describeRoute } from '../http/openapi.js';
import type { AppEnv } from '../http/types.js';
import { withTimeout } from '../lib/timeout.js';
import { pingDatabase, type Db } from '../db/client.js';
import { workerPresence } from './health.repository.js';

/** A worker counts as alive while its heartbeat is younger than this. */
export const WORKER_FRESH_SECONDS = 30;
/** Health answers come within 2 s even when the database hangs rather than refuses. */
const CHECK_TIMEOUT_MS = 1_500;

const ApiHealth = v.object({
  status: v.picklist(['ok', 'unavailable']),
  database: v.optional(v.string()),
  detail: v.optional(v.string()),
});
const WorkerHealth = v.object({
  status: v.picklist(['ok', 'unavailable']),
  queue: v.picklist(['connected', 'unreachable']),
  workers: v.number(),
  last_seen: v.nullable(v.string()),
  detail: v.optional(v.string()),
});

/** The reason a health check gives; what exactly failed (addresses and the like) goes to the log only. */
const DATABASE_UNAVAILABLE = 'Database unavailable';

export function healthRoutes(db: Db) {
  return new Hono<AppEnv>()
    .get(
      '/health/api',
      describeRoute({
        summary: 'Is the API up and its database reachable?',
        tags: ['health'],
        responses: {
          200: { description: 'Healthy', schema: ApiHealth },
          503: { description: 'Database unreachable', schema: ApiHealth },
        },
      }),
      async (c) => {
        try {
          await withTimeout(pingDatabase(db), CHECK_TIMEOUT_MS, 'database ping timed out');
          return c.json({ status: 'ok' });
        } catch (error) {
          c.get('logger').warn('health check failed', { error });
          return c.json({ status: 'unavailable', database: 'unreachable', detail: DATABASE_UNAVAILABLE }, 503);
        }
      },
    )
    .get(
      '/health/worker',
      describeRoute({
        summary: 'Has a worker been seen recently?',
        tags: ['health'],
        responses: {
          200: { description: 'A worker heartbeat is younger than 30 s', schema: WorkerHealth },
          503: { description: 'No recent worker heartbeat, or the queue database is unreachable', schema: WorkerHealth },
        },
      }),
      async (c) => {
        try {
          const presence = await withTimeout(workerPresence(db, WORKER_FRESH_SECONDS), CHECK_TIMEOUT_MS, 'worker check timed out');
          const workers = Number(presence.fresh);
          const lastSeen = presence.last_seen ? new Date(presence.last_seen).toISOString() : null;
          if (workers > 0) return c.json({ status: 'ok', queue: 'connected', workers, last_seen: lastSeen } as const);
          const detail = `No worker heartbeat in the last ${WORKER_FRESH_SECONDS} s`;
          return c.json({ status: 'unavailable', queue: 'connected', workers, last_seen: lastSeen, detail } as const, 503);
        } catch (error) {
          c.get('logger').warn('worker health check failed', { error });
          return c.json({ status: 'unavailable', queue: 'unreachable', workers: 0, last_seen: null, detail: DATABASE_UNAVAILABLE }, 503);
        }
      },
    );
}
