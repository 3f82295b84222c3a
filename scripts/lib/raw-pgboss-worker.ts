/**
 * The benchmark's end-to-end floor: raw pg-boss, no AutonomOS. A process of its own (as the
 * AutonomOS worker is) that works one queue in batches of 50, each job making the same
 * HTTP POST to SLACK_WEBHOOK_URL that a post_to_slack task makes, and prints `done <n>` lines.
 * Run by scripts/bench.ts with DATABASE_URL, SLACK_WEBHOOK_URL, and the schema and queue the bench
 * sends its jobs to (RAW_SCHEMA, RAW_QUEUE).
 */
import { PgBoss } from 'pg-boss';

const BATCH_SIZE = 50;
const RAW_QUEUE = process.env.RAW_QUEUE!;

const boss = new PgBoss({ connectionString: process.env.DATABASE_URL!, schema: process.env.RAW_SCHEMA!, useListenNotify: true, supervise: false, schedule: false });
boss.on('error', (error) => console.error(error));
await boss.start();
await boss.createQueue(RAW_QUEUE, { policy: 'standard', notify: true, partition: true });
let done = 0;
await boss.work<{ index: number }>(
  RAW_QUEUE,
  { batchSize: BATCH_SIZE, burstWhenBatchFull: true, pollingIntervalSeconds: 0.5, notifyPollingIntervalSeconds: 0.5 },
  async (jobs) => {
    await Promise.all(
      jobs.map(async (job) => {
        const response = await fetch(process.env.SLACK_WEBHOOK_URL!, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ text: `task ${job.data.index}`, channel: '#bench' }),
        });
        await response.text();
      }),
    );
    done += jobs.length;
    console.log(`done ${done}`);
  },
);
console.log('raw worker ready');
process.on('SIGTERM', () => void boss.stop({ graceful: true, timeout: 5_000 }).then(() => process.exit(0)));
