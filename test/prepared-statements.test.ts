import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { createDb, type Db } from '../src/db/client.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';

// Long enough to be prepared (db/prepared-statements.ts prepares the long statements only).
const padding = `/* ${'a statement long enough to be worth preparing '.repeat(10)} */`;

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
  const probe = (id: number) => sql<Record<string, unknown>>`select * from probe where id = ${id} ${sql.raw(padding)}`.execute(db);

  it('runs a long statement prepared once per connection, with its own values each time', async () => {
    const before = await preparedCount();
    assert.deepEqual((await probe(1)).rows, [{ id: 1, label: 'one' }]);
    assert.deepEqual((await probe(2)).rows, [{ id: 2, label: 'two' }]);
    assert.equal(await preparedCount(), before + 1);
    // Short statements are not prepared.
    await sql`select ${1}::int as one`.execute(db);
    assert.equal(await preparedCount(), before + 1);
  });

  it('prepares nothing when turned off (DATABASE_PREPARED_STATEMENTS=false, for a transaction-pooling proxy)', async () => {
    const unprepared = createDb(database.url, { max: 1, preparedStatements: false });
    try {
      const probeUnprepared = (id: number) => sql`select * from probe where id = ${id} ${sql.raw(padding)}`.execute(unprepared);
      await probeUnprepared(1);
      await probeUnprepared(2);
      const { rows } = await sql<{ n: string }>`select count(*) as n from pg_prepared_statements`.execute(unprepared);
      assert.equal(Number(rows[0]!.n), 0);
    } finally {
      await unprepared.destroy();
    }
  });

  it('prepares a statement afresh once a migration changed what it returns', async () => {
    await probe(1);
    await sql`alter table probe add column note text`.execute(db);
    // The statement prepared before the change fails once (PostgreSQL refuses a new result type
    // for it); the same statement then runs prepared anew, with the new column.
    await assert.rejects(probe(1), /cached plan must not change result type/);
    assert.deepEqual((await probe(1)).rows, [{ id: 1, label: 'one', note: null }]);
  });
});
