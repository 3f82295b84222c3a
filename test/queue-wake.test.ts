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

/** pg-boss's fetch loops as the wake sees them: which queue, how many jobs in hand, when the last fetch ended; and who was woken. */
type Loop = { id: string; name: string; count: number; lastFetchedOn?: number; lastErrorOn?: number; options?: { batchSize: number } };

/** The loops' fetches, started by their wakes, end now (with nothing to run): each loop's last end moves on. */
const fetchesEnd = (loops: Loop[]) => {
  for (const loop of loops) loop.lastFetchedOn = Math.max(Date.now(), (loop.lastFetchedOn ?? 0) + 1);
};

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
  /** The tenants the wake asked about, in order: whether each could run more. */
  const askedCanRun: string[] = [];
  const tasksQueued = (...tenantIds: string[]) => sql`select pg_notify('tasks_queued_test', ${tenantIds.join(',')})`.execute(db);
  const insertNotification = (queue: string) =>
    // What pg-boss's job insert sends for a queue created with `notify`.
    sql`select pg_notify('pgboss_' || left(encode(sha224('pgboss'::bytea), 'hex'), 24), ${queue})`.execute(db);

  async function withWake(loops: Loop[], work: (fake: ReturnType<typeof fakeBoss>, wake: QueueWake) => Promise<void>) {
    const fake = fakeBoss(loops);
    const wake = startQueueWake(
      fake.boss,
      notifications,
      ['aoa', 'task-callbacks'],
      {
        queue: 'tasks',
        channel: 'tasks_queued_test',
        canRun: (tenantId) => {
          askedCanRun.push(tenantId);
          return !tenantsAtCap.has(tenantId);
        },
        someAtCap: () => tenantsAtCap.size > 0,
      },
      // A fake loop's fetch ends only when a test says so: none is given up on as stalled meanwhile.
      { fetchStallMs: 60_000 },
    );
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
      // Notifications arrive in order: once this one has woken its loop, the others were handled.
      await insertNotification('task-callbacks');
      await eventually(() => (woken.includes('x') ? true : undefined), { message: 'the last notification handled' });
      assert.deepEqual(woken.splice(0), ['t', 'x'], 'a wake for the notification naming a tenant with room');
      fetchesEnd(loops);
      await tasksQueued('tenant-b');
      await eventually(() => (woken.length > 0 ? true : undefined), { message: 'the loop woken again' });
      assert.deepEqual(woken, ['t']);
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
      fetchesEnd(loops);
      await tasksQueued('tenant-b');
      await insertNotification('task-callbacks');
      await eventually(() => (woken.includes('x') ? true : undefined), { message: 'the notifications handled' });
      assert.deepEqual(woken.splice(0), ['batch-1', 'batch-2', 'x'], 'with no tenant at its cap: the loops that fetch a batch');
      fetchesEnd(loops);

      tenantsAtCap.add('tenant-a');
      wake.wakeOne('tasks');
      fetchesEnd(loops);
      await tasksQueued('tenant-b');
      await insertNotification('task-callbacks');
      await eventually(() => (woken.includes('x') ? true : undefined), { message: 'the notifications handled' });
      assert.deepEqual(woken.splice(0), ['one-1', 'one-2', 'x'], "with tenant A at its cap, tenant B's task is fetched by itself");
      fetchesEnd(loops);

      loops[2]!.count = 1;
      loops[3]!.count = 1;
      wake.wakeOne('tasks');
      assert.deepEqual(woken.splice(0), ['batch-1'], 'with the one-job loops busy: an idle batch loop');
      loops[0]!.count = 16;
      loops[1]!.count = 16;
      // batch-1's fetch ended with a batch in hand.
      wake.wakeOne('tasks');
      wake.wakeOne('tasks');
      assert.deepEqual(woken, ['one-1', 'one-2'], 'with every loop busy: a one-job loop, to fetch again after its job');
    });
    tenantsAtCap.clear();
  });

  it("wakes no second plain-task loop while a woken one's fetch is in flight; the wake held back follows it if still wanted", async () => {
    const loops = [
      { id: 't1', name: 'tasks', count: 0 },
      { id: 't2', name: 'tasks', count: 0 },
      { id: 'x', name: 'task-callbacks', count: 0 },
    ];
    await withWake(loops, async ({ woken }, wake) => {
      await tasksQueued('tenant-b');
      await tasksQueued('tenant-c');
      wake.wakeOne('tasks');
      await insertNotification('task-callbacks');
      await eventually(() => (woken.includes('x') ? true : undefined), { message: 'the notifications handled' });
      // Two fetches at once would each count a tenant's running tasks without the other's.
      assert.deepEqual(woken.splice(0), ['t1', 'x'], "t1's fetch is in flight: the other wakes wait for it");
      fetchesEnd(loops);
      await eventually(() => (woken.length > 0 ? true : undefined), { message: 'the held wake made once the fetch ended' });
      assert.deepEqual(woken.splice(0), ['t2'], 'one wake for all that were held');
      fetchesEnd(loops);

      // Held back for tenant D alone, which reaches its cap before the fetch in flight ends.
      await tasksQueued('tenant-b');
      await eventually(() => (woken.length > 0 ? true : undefined), { message: 'a loop woken' });
      askedCanRun.splice(0);
      await tasksQueued('tenant-d');
      await eventually(() => (askedCanRun.includes('tenant-d') ? true : undefined), { message: "tenant D's notification held back" });
      tenantsAtCap.add('tenant-d');
      askedCanRun.splice(0);
      fetchesEnd(loops);
      await eventually(() => (askedCanRun.includes('tenant-d') ? true : undefined), { message: 'the held wake looked at its tenant again' });
      assert.deepEqual(woken, ['t1'], 'no wake for a tenant at its cap by then');
    });
    tenantsAtCap.clear();
  });

  it("while a tenant is at its cap, a newcomer's task wakes one loop that fetches one job even while a batch fetch is in flight", async () => {
    const loops = [
      { id: 'batch-1', name: 'tasks', count: 0, options: { batchSize: 16 } },
      { id: 'one-1', name: 'tasks', count: 1, options: { batchSize: 1 } },
      { id: 'one-2', name: 'tasks', count: 1, options: { batchSize: 1 } },
      { id: 'x', name: 'task-callbacks', count: 0 },
    ];
    tenantsAtCap.add('tenant-a');
    await withWake(loops, async ({ woken }, wake) => {
      wake.wakeOne('tasks');
      assert.deepEqual(woken, ['batch-1'], 'the one-job loops busy: the batch loop fetches');
      loops[1]!.count = 0;
      loops[2]!.count = 0;
      await tasksQueued('tenant-b');
      // A one-job fetch is in flight too now: this one waits, though one-2 is idle.
      await tasksQueued('tenant-c');
      await insertNotification('task-callbacks');
      await eventually(() => (woken.includes('x') ? true : undefined), { message: 'the notifications handled' });
      assert.deepEqual(woken.splice(0), ['batch-1', 'one-1', 'x']);
      // The one-job fetch ends; the batch fetch is still in flight (a slow one, past A's backlog).
      fetchesEnd([loops[1]!]);
      await eventually(() => (woken.length > 0 ? true : undefined), { message: 'the held wake made once the one-job fetch ended' });
      assert.deepEqual(woken, ['one-2']);
    });
    tenantsAtCap.clear();
  });

  it('a loop whose last fetch failed holds no wake back', async () => {
    const loops = [
      { id: 't1', name: 'tasks', count: 0, lastFetchedOn: Date.now() - 5_000, lastErrorOn: Date.now() - 1_000 },
      { id: 't2', name: 'tasks', count: 0 },
    ];
    await withWake(loops, async ({ woken }, wake) => {
      wake.wakeOne('tasks');
      wake.wakeOne('tasks');
      assert.deepEqual(woken, ['t1', 't2'], 'with fetches failing, the second loop fetches beside the first');
    });
  });

  it('once stopped, wakes nothing, not even a wake held back', async () => {
    const loops = [
      { id: 't1', name: 'tasks', count: 0 },
      { id: 't2', name: 'tasks', count: 0 },
    ];
    await withWake(loops, async ({ woken }, wake) => {
      wake.wakeOne('tasks');
      wake.wakeOne('tasks');
      assert.deepEqual(woken, ['t1'], "the second wake held back behind t1's fetch");
      wake.stop();
      fetchesEnd(loops);
      wake.wakeOne('tasks');
      assert.deepEqual(woken, ['t1']);
    });
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
