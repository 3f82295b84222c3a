import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import * as v from 'valibot';
import type { TaskKind, TaskStatus } from '../src/db/schema.js';
import { encodeCursor } from '../src/tasks/task-cursor.js';
import { createTaskListing, EXAMINED_PER_PAGE } from '../src/tasks/task-listing.js';
import { TaskListQuery } from '../src/tasks/task-listing.schemas.js';
import { startTestApp, type TestApp } from './helpers/app.js';
import { explainingDb, planNodes, type PlanNode } from './helpers/plans.js';
import { registerAndLogin, type RegisteredUser } from './helpers/users.js';

// GET /api/v1/tasks and /api/v1/tasks/stats. No worker: every task's state is the one the test
// gives it. Most tasks are written straight into the table, with the creation times and states a
// case needs; the listing reads the table, however its rows came to be.

const STATUSES: TaskStatus[] = ['queued', 'in_progress', 'success', 'failed', 'canceled'];
const LISTING_INDEX = 'tasks_tenant_status_created_idx';

let app: TestApp;
let alice: RegisteredUser;
let bob: RegisteredUser;

before(async () => {
  app = await startTestApp();
  [alice, bob] = await Promise.all([registerAndLogin(app, 'list-a'), registerAndLogin(app, 'list-b')]);
});

after(async () => {
  await app.close();
});

interface Seed {
  status?: TaskStatus;
  kind?: TaskKind;
  payload?: Record<string, unknown>;
  /** UTC to the microsecond, e.g. 2030-01-01T00:00:00.000001Z: compared as text, so always in this form. */
  createdAt: string;
}

interface Seeded {
  id: string;
  status: TaskStatus;
  kind: TaskKind;
  payload: Record<string, unknown>;
  createdAt: string;
}

const at = (minute: number, micros = 0) =>
  `2030-01-01T${String(Math.floor(minute / 60)).padStart(2, '0')}:${String(minute % 60).padStart(2, '0')}:00.${String(micros).padStart(6, '0')}Z`;

async function seed(user: RegisteredUser, seeds: Seed[]): Promise<Seeded[]> {
  const rows = seeds.map((item) => ({
    id: randomUUID(),
    tenant_id: user.tenantId,
    status: item.status ?? 'queued',
    kind: item.kind ?? 'task',
    payload: item.payload ?? { action: 'post_to_slack', channel: '#general', message: 'hello' },
    createdAt: item.createdAt,
  }));
  await app.db
    .insertInto('tasks')
    .values(
      rows.map((row) => ({
        id: row.id,
        tenant_id: row.tenant_id,
        status: row.status,
        kind: row.kind,
        payload: JSON.stringify(row.payload),
        created_at: row.createdAt,
        created_by: user.userId,
        finished_at: ['success', 'failed', 'canceled'].includes(row.status) ? row.createdAt : null,
      })),
    )
    .execute();
  return rows.map(({ id, status, kind, payload, createdAt }) => ({ id, status, kind, payload, createdAt }));
}

/** Newest first, as the list orders: creation time, then id (PostgreSQL orders uuids as their hex text). */
function newestFirst(tasks: Seeded[]): string[] {
  return [...tasks]
    .sort((a, b) => (a.createdAt === b.createdAt ? (a.id < b.id ? 1 : -1) : a.createdAt < b.createdAt ? 1 : -1))
    .map((task) => task.id);
}

function list(user: RegisteredUser, query = '') {
  return app.get(`/api/v1/tasks${query ? `?${query}` : ''}`, { token: user.token });
}

/** Follows next_cursor to the end; returns the ids in order and how many pages it took. */
async function listAll(user: RegisteredUser, query = '', limit = 3): Promise<{ ids: string[]; pages: number }> {
  const ids: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const params = new URLSearchParams(query);
    params.set('limit', String(limit));
    if (cursor) params.set('cursor', cursor);
    const response = await list(user, params.toString());
    assert.equal(response.status, 200, JSON.stringify(response.body));
    assert.ok(response.body.items.length <= limit);
    ids.push(...response.body.items.map((item: { id: string }) => item.id));
    cursor = response.body.next_cursor;
    pages += 1;
    assert.ok(pages < 1_000, 'paging ends');
  } while (cursor);
  return { ids, pages };
}

function assertInvalid(response: { status: number; body: any }, parameter: string) {
  assert.equal(response.status, 422, JSON.stringify(response.body));
  assert.ok(
    response.body.detail.some((issue: { loc: unknown[] }) => issue.loc[0] === 'query' && issue.loc[1] === parameter),
    `${parameter} is named: ${JSON.stringify(response.body.detail)}`,
  );
}

describe('listing', () => {
  test('pages of tasks, newest first, each shown as GET /tasks/{id} shows it', async () => {
    const user = await registerAndLogin(app, 'list-pages');
    const created = [];
    for (let index = 0; index < 7; index += 1) {
      const response = await app.post('/api/v1/tasks', { payload: { action: 'post_to_slack', channel: '#general', message: `task ${index}` } }, { token: user.token });
      assert.equal(response.status, 201);
      created.push(response.body);
    }
    const stored = await app.db.selectFrom('tasks').select(['id']).where('tenant_id', '=', user.tenantId).orderBy('created_at', 'desc').orderBy('id', 'desc').execute();

    const first = await list(user, 'limit=3');
    assert.equal(first.status, 200);
    assert.deepEqual(Object.keys(first.body).sort(), ['items', 'next_cursor']);
    assert.equal(first.body.items.length, 3);
    assert.equal(typeof first.body.next_cursor, 'string');
    const single = await app.get(`/api/v1/tasks/${first.body.items[0].id}`, { token: user.token });
    assert.deepEqual(first.body.items[0], single.body);

    const { ids, pages } = await listAll(user, '', 3);
    assert.equal(pages, 3);
    assert.deepEqual(ids, stored.map((row) => row.id));
    assert.deepEqual(new Set(ids), new Set(created.map((task) => task.id)));
  });

  test('the default page holds 50 tasks; limit goes from 1 to 200', async () => {
    const user = await registerAndLogin(app, 'list-limits');
    await seed(user, Array.from({ length: 205 }, (_, index) => ({ createdAt: at(index) })));
    const page = await list(user);
    assert.equal(page.body.items.length, 50);
    assert.notEqual(page.body.next_cursor, null);
    assert.equal((await list(user, 'limit=1')).body.items.length, 1);
    const largest = await list(user, 'limit=200');
    assert.equal(largest.body.items.length, 200);
    const rest = await list(user, `limit=200&cursor=${largest.body.next_cursor}`);
    assert.equal(rest.body.items.length, 5);
    assert.equal(rest.body.next_cursor, null, 'no cursor after the last page');
    // A page that ends exactly with the last task has no next page either.
    const exact = await list(user, `limit=5&cursor=${largest.body.next_cursor}`);
    assert.equal(exact.body.items.length, 5);
    assert.equal(exact.body.next_cursor, null);
    for (const limit of ['0', '201', '-1', '1.5', 'abc', '', '1e2']) assertInvalid(await list(user, `limit=${limit}`), 'limit');
    assertInvalid(await list(user, 'limit=5&limit=6'), 'limit');
  });

  test('tasks created at the same instant, or microseconds apart, are each listed exactly once', async () => {
    const user = await registerAndLogin(app, 'list-ties');
    const tasks = await seed(user, [
      ...Array.from({ length: 5 }, () => ({ createdAt: at(10) })),
      { createdAt: at(10, 1) },
      { createdAt: at(10, 2) },
      { createdAt: at(10, 999_999) },
      { createdAt: at(9, 999_999) },
    ]);
    for (const limit of [1, 2, 4]) {
      const { ids } = await listAll(user, '', limit);
      assert.deepEqual(ids, newestFirst(tasks), `limit ${limit}`);
    }
  });

  test('filters combine: status (repeatable), kind, action, creation time, q', async () => {
    const user = await registerAndLogin(app, 'list-filters');
    const words = ['Deploy finished', 'deployment started', 'disk almost full', 'backup done'];
    const seeds: Seed[] = Array.from({ length: 60 }, (_, index) => {
      const kind: TaskKind = index % 6 === 5 ? 'aoa' : 'task';
      const action = kind === 'aoa' ? (index % 4 === 1 ? 'aoa_reset' : 'aoa_connect') : 'post_to_slack';
      return {
        status: STATUSES[index % STATUSES.length],
        kind,
        payload:
          kind === 'aoa'
            ? { action, request_id: `req-${index}` }
            : { action, channel: index % 7 === 0 ? '#ops-DEPLOY' : '#general', message: `${words[index % words.length]} #${index}` },
        createdAt: at(index * 7, index),
      };
    });
    const tasks = await seed(user, seeds);
    // Another tenant's tasks match the same filters and must never show.
    await seed(bob, seeds);

    const after = at(100);
    const before = at(300);
    const text = (task: Seeded) => Object.values(task.payload).filter((value): value is string => typeof value === 'string').join(' ').toLowerCase();
    const cases: [string, (task: Seeded) => boolean][] = [
      ['', () => true],
      ['status=failed', (task) => task.status === 'failed'],
      ['status=failed&status=canceled', (task) => task.status === 'failed' || task.status === 'canceled'],
      ['status=queued&status=queued', (task) => task.status === 'queued'],
      ['kind=aoa', (task) => task.kind === 'aoa'],
      ['action=aoa_reset', (task) => task.payload.action === 'aoa_reset'],
      ['action=post_to_slack&status=success', (task) => task.payload.action === 'post_to_slack' && task.status === 'success'],
      [`created_after=${after}&created_before=${before}`, (task) => task.createdAt >= after && task.createdAt < before],
      ['q=deploy', (task) => text(task).includes('deploy')],
      [
        `status=queued&status=success&kind=task&created_after=${after}&q=DEPLOY`,
        (task) => ['queued', 'success'].includes(task.status) && task.kind === 'task' && task.createdAt >= after && text(task).includes('deploy'),
      ],
      ['action=send_fax', () => false],
    ];
    for (const [query, matches] of cases) {
      const expected = newestFirst(tasks.filter(matches));
      assert.deepEqual((await listAll(user, query, 4)).ids, expected, query || '(no filter)');
    }
    // A time with its offset, "+" sent unencoded (it arrives as a space) or encoded.
    const offset = (await listAll(user, 'created_after=2030-01-01T04:00:00+02:00', 50)).ids;
    assert.deepEqual(offset, newestFirst(tasks.filter((task) => task.createdAt >= at(120))));
    assert.deepEqual((await listAll(user, 'created_after=2030-01-01T04:00:00%2B02:00', 50)).ids, offset);
  });

  test('q finds text in any string of the payload, literally and ignoring case, never in keys or numbers', async () => {
    const user = await registerAndLogin(app, 'list-search');
    const slack = (channel: string, message: string, extra: Record<string, unknown> = {}) => ({
      payload: { action: 'post_to_slack', channel, message, ...extra },
    });
    const [sale, plain, snake, , nested] = await seed(user, [
      { ...slack('#shop', 'Everything 50% off'), createdAt: at(1) },
      { ...slack('#shop', '500 items in stock'), createdAt: at(2) },
      { ...slack('#dev', 'renamed to snake_case'), createdAt: at(3) },
      { ...slack('#dev', 'renamed to snakeXcase'), createdAt: at(4) },
      { ...slack('#dev', 'hi', { meta: { tags: ['Urgent', 'ops'] } }), createdAt: at(5) },
      { ...slack('#dev', 'hi', { count: 42 }), createdAt: at(6) },
    ]);
    const search = async (q: string) => (await listAll(user, `q=${encodeURIComponent(q)}`, 10)).ids;
    assert.deepEqual(await search('50%'), [sale!.id]);
    assert.deepEqual(await search('snake_case'), [snake!.id]);
    assert.deepEqual(await search('URGENT'), [nested!.id], 'strings nested in objects and arrays count');
    assert.deepEqual(await search('42'), [], 'numbers are not text');
    assert.deepEqual(await search('message'), [], 'keys are not text');
    assert.deepEqual(await search('#SHOP'), [plain!.id, sale!.id]);
    assert.deepEqual(await search('\\'), []);
    assertInvalid(await list(user, 'q='), 'q');
    assertInvalid(await list(user, `q=${'x'.repeat(201)}`), 'q');
    assertInvalid(await list(user, 'q=%00'), 'q');
    assertInvalid(await list(user, 'q=a&q=b'), 'q');
  });

  test('parent_id lists the task a task chained to', async () => {
    const [parent, child, lonely] = await seed(alice, [
      { status: 'success', createdAt: at(500) },
      { status: 'queued', createdAt: at(501) },
      { status: 'success', createdAt: at(502) },
    ]);
    await app.db.updateTable('tasks').set({ next_task_id: child!.id }).where('tenant_id', '=', alice.tenantId).where('id', '=', parent!.id).execute();
    assert.deepEqual((await listAll(alice, `parent_id=${parent!.id}`)).ids, [child!.id]);
    assert.deepEqual((await listAll(alice, `parent_id=${parent!.id}&status=queued`)).ids, [child!.id]);
    assert.deepEqual((await listAll(alice, `parent_id=${parent!.id}&status=success`)).ids, []);
    assert.deepEqual((await listAll(alice, `parent_id=${lonely!.id}`)).ids, [], 'a task that chained nothing');
    assert.deepEqual((await listAll(alice, `parent_id=${randomUUID()}`)).ids, [], 'no such task');
    assert.deepEqual((await listAll(bob, `parent_id=${parent!.id}`)).ids, [], "another tenant's task is no parent");
    assertInvalid(await list(alice, 'parent_id=not-a-uuid'), 'parent_id');
  });

  test('invalid, repeated and unknown parameters are 422s naming the parameter', async () => {
    const cases: [string, string][] = [
      ['status=bogus', 'status'],
      ['status=queued&status=done', 'status'],
      ['kind=robot', 'kind'],
      ['kind=task&kind=aoa', 'kind'],
      ['action=', 'action'],
      ['created_after=yesterday', 'created_after'],
      ['created_after=2030-02-30T00:00:00Z', 'created_after'],
      ['created_after=2030-01-01', 'created_after'],
      ['created_before=2030-01-01T25:00:00Z', 'created_before'],
      ['created_before=2030-01-01T12:00:00%2B02', 'created_before'],
      ['created_before=2030-01-01T12:00:00%20%2B02:00', 'created_before'],
      ['created_after=2030-01-02T00:00:00Z&created_before=2030-01-01T00:00:00Z', 'created_before'],
      ['created_after=2030-01-01T00:00:00Z&created_before=2030-01-01T00:00:00Z', 'created_before'],
      ['sort=asc', 'sort'],
      ['Status=queued', 'Status'],
    ];
    for (const [query, parameter] of cases) assertInvalid(await list(alice, query), parameter);
  });

  test('a cursor altered in any way, malformed or impossible is a 422, never a 500', async () => {
    const user = await registerAndLogin(app, 'list-cursor');
    await seed(user, Array.from({ length: 5 }, (_, index) => ({ createdAt: at(index) })));
    const cursor: string = (await list(user, 'limit=2')).body.next_cursor;
    assert.equal((await list(user, `limit=2&cursor=${cursor}`)).status, 200);
    for (let index = 0; index < cursor.length; index += 1) {
      const altered = `${cursor.slice(0, index)}${cursor[index] === 'A' ? 'B' : 'A'}${cursor.slice(index + 1)}`;
      assertInvalid(await list(user, `limit=2&cursor=${encodeURIComponent(altered)}`), 'cursor');
    }
    const impossible = encodeCursor({ createdAt: '2030-02-30T00:00:00.000000Z', id: randomUUID() });
    for (const bad of ['', 'abc', 'a.b', '.', cursor.slice(0, -1), `${cursor}A`, `${cursor}.x`, cursor.replace('.', ''), '%E2%82%AC', impossible, 'x'.repeat(5000)]) {
      assertInvalid(await list(user, `cursor=${bad.startsWith('%') ? bad : encodeURIComponent(bad)}`), 'cursor');
    }
    assertInvalid(await list(user, `cursor=${cursor}&cursor=${cursor}`), 'cursor');
  });
});

describe('tenants', () => {
  test("a tenant lists and counts only its own tasks, whatever cursor it sends", async () => {
    const mine = await seed(alice, [{ createdAt: at(900) }, { createdAt: at(901) }]);
    const theirs = await seed(bob, [{ createdAt: at(902) }]);
    const aliceIds = new Set((await listAll(alice, '', 200)).ids);
    const bobIds = new Set((await listAll(bob, '', 200)).ids);
    for (const task of mine) assert.ok(aliceIds.has(task.id) && !bobIds.has(task.id));
    for (const task of theirs) assert.ok(bobIds.has(task.id) && !aliceIds.has(task.id));

    // Alice's cursor is a position, not a key to her tasks: Bob gets his own tasks after it.
    const aliceCursor: string = (await list(alice, 'limit=1')).body.next_cursor;
    const fromAliceCursor = await list(bob, `limit=200&cursor=${aliceCursor}`);
    assert.equal(fromAliceCursor.status, 200);
    for (const item of fromAliceCursor.body.items) assert.ok(bobIds.has(item.id));

    const aliceCount = (await app.db.selectFrom('tasks').select(sql<number>`count(*)::int`.as('n')).where('tenant_id', '=', alice.tenantId).executeTakeFirstOrThrow()).n;
    assert.equal((await app.get('/api/v1/tasks/stats', { token: alice.token })).body.total, aliceCount);
    assert.equal((await app.get('/api/v1/tasks')).status, 401);
    assert.equal((await app.get('/api/v1/tasks/stats')).status, 401);
  });
});

describe('paging while tasks are created', () => {
  test('every task that existed when paging began is listed exactly once, and none twice', async () => {
    const user = await registerAndLogin(app, 'list-concurrent');
    const create = async (message: string) => {
      const response = await app.post('/api/v1/tasks', { payload: { action: 'post_to_slack', channel: '#general', message } }, { token: user.token });
      assert.equal(response.status, 201, JSON.stringify(response.body));
      return response.body.id as string;
    };
    const existing = new Set<string>();
    for (let index = 0; index < 60; index += 1) existing.add(await create(`before ${index}`));

    let paging = true;
    let createdMeanwhile = 0;
    const writer = (async () => {
      while (paging) {
        await Promise.all([create('during'), create('during')]);
        createdMeanwhile += 2;
      }
    })();
    const seen: { id: string; created_at: string }[] = [];
    let cursor: string | null = null;
    try {
      do {
        const response = await list(user, `limit=7${cursor ? `&cursor=${cursor}` : ''}`);
        assert.equal(response.status, 200);
        seen.push(...response.body.items);
        cursor = response.body.next_cursor;
      } while (cursor);
    } finally {
      paging = false;
      await writer;
    }
    assert.ok(createdMeanwhile > 0, 'tasks were created while paging');
    const ids = seen.map((task) => task.id);
    assert.equal(new Set(ids).size, ids.length, 'no task twice');
    for (const id of existing) assert.equal(ids.filter((seenId) => seenId === id).length, 1, `task ${id} listed once`);
    for (let index = 1; index < seen.length; index += 1) assert.ok(seen[index - 1]!.created_at >= seen[index]!.created_at, 'newest first');
  });
});

describe('stats', () => {
  test('counts by status and by action, every status present, optionally since a time', async () => {
    const user = await registerAndLogin(app, 'list-stats');
    const empty = await app.get('/api/v1/tasks/stats', { token: user.token });
    assert.equal(empty.status, 200, 'not taken for a task id');
    assert.deepEqual(empty.body, {
      since: null,
      by_status: { queued: 0, in_progress: 0, success: 0, failed: 0, canceled: 0 },
      by_action: {},
      total: 0,
    });

    await seed(user, [
      { status: 'queued', createdAt: at(1) },
      { status: 'success', createdAt: at(2) },
      { status: 'success', createdAt: at(3) },
      { status: 'failed', createdAt: at(4) },
      { status: 'in_progress', kind: 'aoa', payload: { action: 'aoa_connect', request_id: 'r1' }, createdAt: at(5) },
      { status: 'success', kind: 'aoa', payload: { action: 'aoa_connect', request_id: 'r2' }, createdAt: at(6) },
      { status: 'canceled', kind: 'aoa', payload: { action: 'aoa_reset', request_id: 'r3' }, createdAt: at(7) },
    ]);
    const zero = { queued: 0, in_progress: 0, success: 0, failed: 0, canceled: 0 };
    const all = await app.get('/api/v1/tasks/stats', { token: user.token });
    assert.deepEqual(all.body, {
      since: null,
      by_status: { queued: 1, in_progress: 1, success: 3, failed: 1, canceled: 1 },
      by_action: {
        post_to_slack: { ...zero, queued: 1, success: 2, failed: 1 },
        aoa_connect: { ...zero, in_progress: 1, success: 1 },
        aoa_reset: { ...zero, canceled: 1 },
      },
      total: 7,
    });

    const since = await app.get(`/api/v1/tasks/stats?since=${encodeURIComponent(at(4))}`, { token: user.token });
    assert.deepEqual(since.body, {
      since: '2030-01-01T00:04:00.000Z',
      by_status: { ...zero, in_progress: 1, success: 1, failed: 1, canceled: 1 },
      by_action: {
        post_to_slack: { ...zero, failed: 1 },
        aoa_connect: { ...zero, in_progress: 1, success: 1 },
        aoa_reset: { ...zero, canceled: 1 },
      },
      total: 4,
    });
    assertInvalid(await app.get('/api/v1/tasks/stats?since=last-week', { token: user.token }), 'since');
    assertInvalid(await app.get('/api/v1/tasks/stats?until=2030-01-01T00:00:00Z', { token: user.token }), 'until');
  });
});

describe('a tenant with 50,000 tasks', () => {
  const TENANT_TASKS = 50_000;
  let user: RegisteredUser;

  before(async () => {
    user = await registerAndLogin(app, 'list-bulk');
    // 1% failed, 2% queued, 0.2% running, the rest finished, one a second; another tenant's tasks among them.
    await sql`
      insert into tasks (tenant_id, status, payload, created_at, finished_at)
      select ${user.tenantId}::uuid, status, jsonb_build_object('action', 'post_to_slack', 'channel', '#bulk', 'message', 'bulk ' || i),
             created_at, case when status in ('success', 'failed', 'canceled') then created_at end
      from generate_series(1, ${TENANT_TASKS}) as i,
           lateral (select case when i % 100 = 0 then 'failed' when i % 50 = 1 then 'queued' when i % 500 = 2 then 'in_progress'
                                when i % 10 = 3 then 'canceled' else 'success' end as status,
                           timestamptz '2029-01-01' + i * interval '1 second' as created_at) as row
    `.execute(app.db);
    await sql`
      insert into tasks (tenant_id, status, payload, created_at)
      select ${bob.tenantId}::uuid, 'queued', '{"action": "post_to_slack", "channel": "#bulk", "message": "other"}', timestamptz '2029-01-01' + i * interval '1 second'
      from generate_series(1, 5000) as i
    `.execute(app.db);
    await sql`analyze tasks`.execute(app.db);
  });

  /**
   * The page reads the tasks table through the listing index only, and no node of its plan (no
   * sort in particular) handles more rows than `examined` tasks of each of the five statuses:
   * nothing in it grows with the tenant's tasks.
   */
  function assertBoundedPlan(plan: PlanNode, examined: number) {
    const all = planNodes(plan);
    const taskScans = all.filter((node) => node['Relation Name'] === 'tasks');
    assert.ok(taskScans.length > 0, 'the plan reads tasks');
    for (const scan of taskScans) {
      assert.equal(scan['Node Type'], 'Index Scan', JSON.stringify(plan));
      assert.equal(scan['Index Name'], LISTING_INDEX);
    }
    for (const node of all) {
      const rows = node['Actual Rows'] * node['Actual Loops'];
      assert.ok(rows <= 5 * examined, `${node['Node Type']} handled ${rows} rows: ${JSON.stringify(plan)}`);
    }
  }

  test('a page reads about a page of the listing index, with or without filters', async (t) => {
    // The listing's own SQL, as the service runs it, captured to be explained with its parameters.
    const logged = explainingDb(app.database.url);
    const listing = createTaskListing(logged.db);
    const auth = { tenantId: user.tenantId, userId: user.userId, role: 'viewer' as const };
    const explain = async (query: Record<string, string | string[]>) => {
      const page = await listing.list(auth, v.parse(TaskListQuery, query));
      return { page, ...(await logged.explainLast()) };
    };
    try {
      const first = await explain({});
      assert.equal(first.page.items.length, 50);
      assertBoundedPlan(first.plan, 51);
      const second = await explain({ cursor: first.page.next_cursor! });
      assert.equal(second.page.items.length, 50);
      assertBoundedPlan(second.plan, 51);
      const failed = await explain({ status: 'failed', limit: '100' });
      assert.equal(failed.page.items.length, 100);
      assert.ok(failed.page.items.every((item) => item.status === 'failed'));
      assertBoundedPlan(failed.plan, 101);
      const unfinished = await explain({ status: ['queued', 'in_progress'] });
      assertBoundedPlan(unfinished.plan, 51);
      const window = await explain({ created_after: '2029-01-01T05:00:00Z', created_before: '2029-01-01T06:00:00Z', status: 'success' });
      assert.equal(window.page.items.length, 50);
      assertBoundedPlan(window.plan, 51);
      const search = await explain({ q: 'no such text' });
      assertBoundedPlan(search.plan, EXAMINED_PER_PAGE);
      t.diagnostic(
        `execution ms: default ${first.milliseconds}, next page ${second.milliseconds}, failed ${failed.milliseconds}, ` +
          `queued+in_progress ${unfinished.milliseconds}, time window ${window.milliseconds}, search ${search.milliseconds}`,
      );
    } finally {
      await logged.destroy();
    }
  });

  test('a search for something rare answers page by page, each looking at a bounded number of tasks', async () => {
    // "bulk 123", "bulk 1230" to "bulk 1239" and "bulk 12300" to "bulk 12399", all far from the newest tasks.
    const first = await list(user, 'q=bulk%20123');
    assert.equal(first.status, 200);
    assert.deepEqual(first.body.items, [], `none among the newest ${EXAMINED_PER_PAGE}`);
    assert.notEqual(first.body.next_cursor, null);
    const { ids, pages } = await listAll(user, 'q=bulk%20123', 200);
    const matching = [123, ...Array.from({ length: 10 }, (_, i) => 1230 + i), ...Array.from({ length: 100 }, (_, i) => 12300 + i)];
    assert.equal(ids.length, matching.length);
    assert.equal(new Set(ids).size, matching.length);
    // Each page looked at no more than its share of the tenant's tasks.
    assert.ok(pages >= TENANT_TASKS / EXAMINED_PER_PAGE && pages <= TENANT_TASKS / EXAMINED_PER_PAGE + 1, `${pages} pages`);
    // Only failed tasks are examined for a failed-only search: its 500 fit in one page's look.
    const failed = await listAll(user, 'q=bulk%20123&status=failed', 200);
    assert.equal(failed.ids.length, matching.filter((i) => i % 100 === 0).length);
    assert.equal(failed.pages, 1);
  });
});
