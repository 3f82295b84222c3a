import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import type { PgBoss, WipData } from 'pg-boss';
import { createDatabaseWatch } from '../src/db/availability.js';
import { createDb, pingDatabase, type Db } from '../src/db/client.js';
import { createNotifications, type Notifications } from '../src/db/notifications.js';
import { silentLogger } from '../src/logger.js';
import { startQueueWake, type QueueWake } from '../src/worker/queue-wake.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import { eventually } from './helpers/poll.js';

/** pg-boss's fetch loops as the wake sees them: which queue, how many jobs in hand; and who was woken. */
type Loop = { id: string; name: string; count: number; options?: { batchSize: number } };

function fakeBoss(loops: Loop[]) {
  const woken: string[] = [];
  const boss = {
    getWipData: () => loops.map((loop) => ({ ...loop }) as unknown as WipData),
    notifyWorker: (id: string) => void woken.push(id),
  } as unknown as PgBoss;
  return { boss, woken, loops };
}

describe('waking fetch loops', () => {
  let database: TestDatabase;
  let db: Db;
  let notifications: Notifications & { ready: Promise<void> };
  before(async () => {
    database = await createTestDatabase();
    db = createDb(database.url, { max: 2 });
    notifications = createNotifications(database.url, { watch: createDatabaseWatch(() => pingDatabase(db), silentLogger) });
    await notifications.ready;
  });
  after(async () => {
    await notifications.close();
    await db.destroy();
    await database.drop();
  });

  const tenantsAtCap = new Set<string>();
  const tasksQueued = (...tenantIds: string[]) => sql`select pg_notify('tasks_queued_test', ${tenantIds.join(',')})`.execute(db);
  const insertNotification = (queue: string) =>
    // What pg-boss's job insert sends for a queue created with `notify`.
    sql`select pg_notify('pgboss_' || left(encode(sha224('pgboss'::bytea), 'hex'), 24), ${queue})`.execute(db);

  async function withWake(loops: Loop[], work: (fake: ReturnType<typeof fakeBoss>, wake: QueueWake) => Promise<void>) {
    const fake = fakeBoss(loops);
    const wake = startQueueWake(fake.boss, notifications, ['aoa', 'task-callbacks'], {
      queue: 'tasks',
      channel: 'tasks_queued_test',
      canRun: (tenantId) => !tenantsAtCap.has(tenantId),
      someAtCap: () => tenantsAtCap.size > 0,
    });
    try {
      await work(fake, wake);
    } finally {
      wake.stop();
    }
  }

  it("wakes one idle loop of the job's queue per insert, a different one each time", async () => {
    const loops = [
      { id: 'a', name: 'aoa', count: 0 },
      { id: 'b', name: 'aoa', count: 3 },
      { id: 'c', name: 'aoa', count: 0 },
      { id: 'x', name: 'task-callbacks', count: 0 },
    ];
    await withWake(loops, async ({ woken }) => {
      await insertNotification('aoa');
      await eventually(() => (woken.length >= 1 ? true : undefined), { message: 'a loop woken' });
      await insertNotification('aoa');
      await eventually(() => (woken.length >= 2 ? true : undefined), { message: 'a loop woken' });
      await insertNotification('unrelated-queue');
      await insertNotification('task-callbacks');
      await eventually(() => (woken.length >= 3 ? true : undefined), { message: 'a loop woken' });
      assert.deepEqual(woken, ['a', 'c', 'x']);
    });
  });

  it('wakes a plain-task loop only for tenants below their cap of running tasks', async () => {
    const loops = [
      { id: 't', name: 'tasks', count: 0 },
      { id: 'x', name: 'task-callbacks', count: 0 },
    ];
    tenantsAtCap.add('tenant-a');
    await withWake(loops, async ({ woken }) => {
      await tasksQueued('tenant-a');
      // pg-boss's own notification for the plain tasks' queue wakes nothing either.
      await insertNotification('tasks');
      await tasksQueued('tenant-a', 'tenant-b');
      await tasksQueued('tenant-b');
      // Notifications arrive in order: once this one has woken its loop, the others were handled.
      await insertNotification('task-callbacks');
      await eventually(() => (woken.includes('x') ? true : undefined), { message: 'the last notification handled' });
      assert.deepEqual(woken, ['t', 't', 'x'], 'one wake per notification naming a tenant with room');
    });
  });

  it('while a tenant is at its cap, wakes the plain-task loops that fetch one job at a time', async () => {
    const loops = [
      { id: 'batch-1', name: 'tasks', count: 0, options: { batchSize: 16 } },
      { id: 'batch-2', name: 'tasks', count: 0, options: { batchSize: 16 } },
      { id: 'one-1', name: 'tasks', count: 0, options: { batchSize: 1 } },
      { id: 'one-2', name: 'tasks', count: 0, options: { batchSize: 1 } },
      { id: 'x', name: 'task-callbacks', count: 0 },
    ];
    tenantsAtCap.clear();
    await withWake(loops, async ({ woken }, wake) => {
      wake.wakeOne('tasks');
      await tasksQueued('tenant-b');
      await insertNotification('task-callbacks');
      await eventually(() => (woken.includes('x') ? true : undefined), { message: 'the notifications handled' });
      assert.deepEqual(woken.splice(0), ['batch-1', 'batch-2', 'x'], 'with no tenant at its cap: the loops that fetch a batch');

      tenantsAtCap.add('tenant-a');
      wake.wakeOne('tasks');
      await tasksQueued('tenant-b');
      await insertNotification('task-callbacks');
      await eventually(() => (woken.includes('x') ? true : undefined), { message: 'the notifications handled' });
      assert.deepEqual(woken.splice(0), ['one-1', 'one-2', 'x'], "with tenant A at its cap, tenant B's task is fetched by itself");

      loops[2]!.count = 1;
      loops[3]!.count = 1;
      wake.wakeOne('tasks');
      assert.deepEqual(woken.splice(0), ['batch-1'], 'with the one-job loops busy: an idle batch loop');
      loops[0]!.count = 16;
      loops[1]!.count = 16;
      wake.wakeOne('tasks');
      wake.wakeOne('tasks');
      assert.deepEqual(woken, ['one-1', 'one-2'], 'with every loop busy: a one-job loop, to fetch again after its job');
    });
    tenantsAtCap.clear();
  });

  it('with every loop busy, tells one to fetch again as soon as its batch is done; otherwise wakes an idle one', async () => {
    const loops = [
      { id: 'a', name: 'aoa', count: 16 },
      { id: 'b', name: 'aoa', count: 2 },
    ];
    await withWake(loops, async ({ woken }, wake) => {
      wake.wakeOne('aoa');
      wake.wakeOne('aoa');
      assert.deepEqual(woken, ['a', 'b'], 'busy loops, in turn');
      loops[1]!.count = 0;
      wake.wakeOne('aoa');
      wake.wakeOne('aoa');
      assert.deepEqual(woken, ['a', 'b', 'b', 'b'], 'the idle loop whenever there is one');
    });
  });
});
