import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export interface ServiceProcess {
  child: ChildProcess;
  output: () => string;
  /** Resolves with the exit code (or signal name) once the process has exited. */
  exited: Promise<number | string>;
}

const ROOT = new URL('../../', import.meta.url).pathname;

/** Runs a TypeScript file of this project with Node (through tsx), its stdout and stderr kept together. */
export function spawnScript(entry: string, env: Record<string, string>, options: { cwd?: string } = {}): ServiceProcess {
  // The loader by absolute path, so the script also starts from a directory outside the checkout.
  const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), `${ROOT}${entry}`], {
    cwd: options.cwd ?? ROOT,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | string>((resolve) =>
    child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')),
  );
  return { child, output: () => output, exited };
}

/**
 * Runs one of the service's entrypoints (src/main/<mode>.ts) as a child process, as production
 * would, with a random secret unless `env` gives one.
 */
export function spawnService(mode: 'api' | 'worker' | 'all', env: Record<string, string>, options: { cwd?: string } = {}): ServiceProcess {
  return spawnScript(
    `src/main/${mode}.ts`,
    { NODE_ENV: 'production', SECRET_KEY: randomBytes(32).toString('hex'), LOG_LEVEL: 'debug', ...env },
    options,
  );
}
