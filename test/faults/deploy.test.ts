import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { freePort } from '../../src/main/embedded-postgres.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { eventually } from '../helpers/poll.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const PRODUCTION_ONLY = new URL('../helpers/production-dependencies.mjs', import.meta.url).pathname;
const run = promisify(execFile);

/**
 * The deploy path as the Docker image takes it: `npm run build`, then the compiled entrypoints
 * (dist/src/main/<mode>.js) with NODE_ENV=production and without any development dependency,
 * each until the image's HEALTHCHECK (dist/scripts/healthcheck.js) passes, then SIGTERM.
 */
describe('the compiled service (the Docker image entrypoints)', () => {
  const databases: TestDatabase[] = [];

  before(async () => {
    await run('npm', ['run', 'build'], { cwd: ROOT });
  });

  after(async () => {
    await Promise.all(databases.map((database) => database.drop()));
  });

  for (const mode of ['api', 'worker', 'all'] as const) {
    test(`MODE=${mode} starts and passes the HEALTHCHECK`, async () => {
      const database = await createTestDatabase();
      databases.push(database);
      const env = {
        PATH: process.env.PATH ?? '',
        NODE_ENV: 'production',
        MODE: mode,
        PORT: String(await freePort()),
        DATABASE_URL: database.url,
        SECRET_KEY: randomBytes(32).toString('hex'),
        LOG_LEVEL: 'warn',
      };
      const service = spawn(process.execPath, ['--import', PRODUCTION_ONLY, `dist/src/main/${mode}.js`], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      service.stdout.on('data', (chunk: Buffer) => (output += chunk));
      service.stderr.on('data', (chunk: Buffer) => (output += chunk));
      const exited = new Promise<number | null>((resolve) => service.once('exit', (code) => resolve(code)));
      try {
        const healthy = await eventually(
          async () => {
            if (service.exitCode !== null) throw new Error(`exited ${service.exitCode}: ${output}`);
            const check = await run(process.execPath, ['--import', PRODUCTION_ONLY, 'dist/scripts/healthcheck.js'], { cwd: ROOT, env }).catch(() => undefined);
            return check?.stdout;
          },
          { timeoutMs: 30_000, intervalMs: 500, message: `the ${mode} HEALTHCHECK` },
        );
        assert.equal(healthy.trim(), mode === 'worker' ? 'worker ok' : 'api ok');
      } finally {
        service.kill('SIGTERM');
      }
      assert.equal(await exited, 0, output);
    });
  }
});
