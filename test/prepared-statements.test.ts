import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { createDb, type Db } from '../src/db/client.js';
import { compiledOnce, prepared } from '../src/db/prepared-statements.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';

describe('prepared statements', () => {
  let database: TestDatabase;
  let db: Db;
  before(async () => {
    database = await createTestDatabase();
    // One connection, so every run of the statement meets the same prepared statement.
    db = createDb(database.url, { max: 1 });
    await sql`create table probe (id int primary key, label text)`.execute(db);
    await sql`insert into probe values (1, 'one'), (2, 'two')`.execute(db);
  });
  after(async () => {
    await db.destroy();
    await database.drop();
  });

  const preparedCount = async () => Number((await sql<{ n: string }>`select count(*) as n from pg_prepared_statements`.execute(db)).rows[0]!.n);
  const probe = (id: number) => sql<Record<string, unknown>>`${prepared} select * from probe where id = ${id}`.execute(db);

  it('runs a marked statement prepared once per connection, with its own values each time', async () => {
    const before = await preparedCount();
    assert.deepEqual((await probe(1)).rows, [{ id: 1, label: 'one' }]);
    assert.deepEqual((await probe(2)).rows, [{ id: 2, label: 'two' }]);
    assert.equal(await preparedCount(), before + 1);
    // Unmarked statements are not prepared.
    await sql`select * from probe where id = ${1}`.execute(db);
    assert.equal(await preparedCount(), before + 1);
  });

  it('runs a statement compiled once with each call\'s own values, in a transaction as well', async () => {
    const labelled = compiledOnce((ids, suffix) => sql<{ id: number; label: string }>`${prepared}
      select id, label || ${suffix}::text as label from probe where id = any(${ids}::int[]) and id < ${3}::int order by id`);
    assert.deepEqual(await labelled(db, [1, 2], '!'), [
      { id: 1, label: 'one!' },
      { id: 2, label: 'two!' },
    ]);
    assert.deepEqual(await labelled(db, [2], '?'), [{ id: 2, label: 'two?' }]);
    assert.deepEqual(await db.transaction().execute((trx) => labelled(trx, [1], '.')), [{ id: 1, label: 'one.' }]);
    await assert.rejects(labelled(db, [1]), /takes 2 values, not 1/);
  });

  it('refuses a statement compiled once that uses a value as anything but a parameter', async () => {
    const byColumn = compiledOnce((column) => sql`select ${sql.ref(String(column))} from probe`);
    await assert.rejects(byColumn(db, 'label'), /must be one of its parameters/);
  });

  it('prepares nothing when turned off (DATABASE_PREPARED_STATEMENTS=false, for a transaction-pooling proxy)', async () => {
    const unprepared = createDb(database.url, { max: 1, preparedStatements: false });
    try {
      const probeUnprepared = (id: number) => sql`${prepared} select * from probe where id = ${id}`.execute(unprepared);
      await probeUnprepared(1);
      await probeUnprepared(2);
      const { rows } = await sql<{ n: string }>`select count(*) as n from pg_prepared_statements`.execute(unprepared);
      assert.equal(Number(rows[0]!.n), 0);
    } finally {
      await unprepared.destroy();
    }
  });

  it('prepares a statement again when the server no longer has it', async () => {
    await probe(1);
    await sql`deallocate all`.execute(db);
    assert.deepEqual((await probe(2)).rows, [{ id: 2, label: 'two' }]);
    assert.equal(await preparedCount(), 1);
  });

  it('prepares a statement afresh once a migration changed what it returns: at once outside a transaction, on the next try inside one', async () => {
    await probe(1);
    await sql`alter table probe add column note text`.execute(db);
    // PostgreSQL refuses the old statement before running it: outside a transaction it is run
    // again at once, prepared anew, with the new column.
    assert.deepEqual((await probe(1)).rows, [{ id: 1, label: 'one', note: null }]);
    await sql`alter table probe add column extra text`.execute(db);
    // Inside one the refusal has ended the transaction, which fails; the next try works.
    await assert.rejects(
      db.transaction().execute((trx) => sql`${prepared} select * from probe where id = ${1}`.execute(trx)),
      /cached plan must not change result type/,
    );
    assert.deepEqual((await probe(1)).rows, [{ id: 1, label: 'one', note: null, extra: null }]);
  });
});
