import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { SERVICE_NODE_FLAGS } from '../scripts/lib/service-process.js';

// The service's heap settings live in three places that must agree: the npm scripts, the image,
// and the benchmark that measures them.

const root = new URL('../', import.meta.url);

test('npm start, api and worker run the compiled service with the benchmarked heap flags', () => {
  const { scripts } = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as { scripts: Record<string, string> };
  for (const mode of ['start', 'api', 'worker']) {
    const entry = mode === 'start' ? 'all' : mode;
    assert.ok(scripts[mode]!.endsWith(`node ${SERVICE_NODE_FLAGS.join(' ')} dist/src/main/${entry}.js`), `${mode}: ${scripts[mode]}`);
  }
});

test('the image runs with the same heap flags', () => {
  const dockerfile = readFileSync(new URL('Dockerfile', root), 'utf8');
  assert.match(dockerfile, new RegExp(`NODE_OPTIONS="${SERVICE_NODE_FLAGS.join(' ')}"`));
});
