// The last step of an ENCRYPTION_KEY rotation (docs/configuration.md): re-encrypts every tenant
// integration secret still under ENCRYPTION_KEY_PREVIOUS with ENCRYPTION_KEY. Run it with the
// service's environment; it is safe while the service runs, and safe to run again.
import { ConfigError, loadConfig, type Config } from '../src/config.js';
import { createDb } from '../src/db/client.js';
import { createSecretBox } from '../src/integrations/encryption.js';
import { reencryptSlackIntegrations } from '../src/integrations/slack-integration.js';

let config: Config;
try {
  // This script signs no tokens: a development environment without SECRET_KEY may run it too.
  config = loadConfig(process.env, { developmentSecret: () => 'unused by reencrypt-integrations'.padEnd(32, '.') });
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  console.error(error.message);
  process.exit(1);
}
if (config.databaseUrl === '') {
  console.error('DATABASE_URL is not set');
  process.exit(1);
}
if (!config.encryptionSecret) {
  console.error('ENCRYPTION_KEY is not set: it is the key to re-encrypt with');
  process.exit(1);
}
const db = createDb(config.databaseUrl, { applicationName: 'autonomos-reencrypt', max: 1 });
try {
  const report = await reencryptSlackIntegrations(db, createSecretBox(config));
  console.log(JSON.stringify({ msg: 'integrations re-encrypted', ...report }));
  if (report.unreadable.length > 0) {
    console.error(`${report.unreadable.length} tenant(s) hold a webhook encrypted with neither key; their admins must store it again`);
    process.exitCode = 2;
  }
} finally {
  await db.destroy();
}
