import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

export interface ServiceProcess {
  child: ChildProcess;
  output: () => string;
  /** Resolves with the exit code (or signal name) once the process has exited. */
  exited: Promise<number | string>;
}

const ROOT = new URL('../../', import.meta.url).pathname;

/**
 * The heap the service runs with, in package.json's start/api/worker scripts and the Dockerfile
 * (test/deploy-config.test.ts checks they agree). Without a limit V8 sizes its heap for this
 * machine's 24 GiB and lets it grow to ~300 MB of mostly garbage under load; with these the same
 * load runs in ~150-170 MB (README, "Performance"), and 512 MB leaves the live heap (40-70 MB)
 * plenty of room. The young generation's semi-spaces of 16 MB, not 8: a scavenge costs what
 * survives it (about the requests in flight), not what was allocated, so half as many of them
 * took a sixth less of the API's CPU per created task, for 2 MB more RSS; at 32 the API passed
 * 200 MB (docs/performance.md).
 */
export const SERVICE_NODE_FLAGS = ['--max-old-space-size=512', '--max-semi-space-size=16'];

/** Runs Node with `args`, its stdout and stderr kept together. */
function spawnNode(args: string[], env: Record<string, string>, options: { cwd?: string }): ServiceProcess {
  const child = spawn(process.execPath, args, {
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

/** Runs a TypeScript file of this project with Node (through tsx), its stdout and stderr kept together. */
export function spawnScript(entry: string, env: Record<string, string>, options: { cwd?: string } = {}): ServiceProcess {
  // The loader by absolute path, so the script also starts from a directory outside the checkout.
  return spawnNode(['--import', import.meta.resolve('tsx'), `${ROOT}${entry}`], env, options);
}

/** Compiles the service into dist/, as `npm run build` does, for spawnCompiledService. */
export async function buildService(): Promise<void> {
  await promisify(execFile)('npm', ['run', 'build', '--silent'], { cwd: ROOT });
}

/** Runs a compiled entrypoint (buildService first) as the npm scripts and the image do. */
export function spawnCompiledService(mode: 'api' | 'worker' | 'all', env: Record<string, string>): ServiceProcess {
  return spawnNode([...SERVICE_NODE_FLAGS, `${ROOT}dist/src/main/${mode}.js`], { NODE_ENV: 'production', ...env }, {});
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
