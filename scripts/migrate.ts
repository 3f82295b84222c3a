import { createDb } from '../src/db/client.js';
import { migrateToLatest } from '../src/db/migrate.js';

const databaseUrl = process.env.DATABASE_URL ?? '';
if (databaseUrl === '') {
  console.error('DATABASE_URL is not set');
  process.exit(1);
}
const db = createDb(databaseUrl, { applicationName: 'autonomos-migrate', max: 1 });
try {
  const applied = await migrateToLatest(db);
  console.log(JSON.stringify({ msg: 'migrations applied', migrations: applied }));
} finally {
  await db.destroy();
}
