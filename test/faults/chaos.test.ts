import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runChaos, summarize } from '../../scripts/lib/chaos.js';

// A short `npm run chaos`: the API and the worker as processes on a private PostgreSQL under
// steady load, two database restarts and two worker SIGKILLs. Nothing accepted may be lost,
// stuck, chained twice or in the wrong state, and no process may die on its own.
test('a short chaos run: 2 database restarts and 2 worker kills under load lose nothing', async (t) => {
  const progress: string[] = [];
  const report = await runChaos({
    durationSeconds: 20,
    databaseRestarts: 2,
    workerKills: 2,
    rate: 20,
    downSeconds: 3,
    drainSeconds: 90,
    progress: (line) => progress.push(line),
  });
  // Each fault and each recovery's steps, for a slow recovery to be read from CI's log.
  for (const line of progress) t.diagnostic(line);
  t.diagnostic(summarize(report));
  assert.deepEqual(report.problems, [], report.samples.join('\n'));
  assert.ok(report.accepted > 0 && report.refused > 0, 'tasks were accepted, and refused while the database was down');
});
