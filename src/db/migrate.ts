import { sql, type Kysely } from 'kysely';
import { Migrator, type MigrationResultSet } from 'kysely/migration';
import { migrations } from '../../db/migrations/index.js';

/** Arbitrary but fixed: every AutonomOS process agrees on it. */
const MIGRATION_LOCK_KEY = 727_001;

/**
 * Applies every pending migration. A session advisory lock serialises processes that start
 * together, so the second one finds the work done instead of racing it.
 */
export async function migrateToLatest(db: Kysely<any>): Promise<string[]> {
  return db.connection().execute(async (connection) => {
    await sql`select pg_advisory_lock(${MIGRATION_LOCK_KEY})`.execute(connection);
    try {
      const migrator = new Migrator({
        db: connection,
        provider: { getMigrations: async () => migrations },
      });
      const outcome: MigrationResultSet = await migrator.migrateToLatest();
      if (outcome.error) {
        const failed = outcome.results?.find((result) => result.status === 'Error');
        throw new Error(`Migration ${failed?.migrationName ?? '(unknown)'} failed`, { cause: outcome.error });
      }
      return (outcome.results ?? []).map((result) => result.migrationName);
    } finally {
      await sql`select pg_advisory_unlock(${MIGRATION_LOCK_KEY})`.execute(connection);
    }
  });
}
