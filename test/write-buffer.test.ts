import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createWriteBuffer, writeEachAloneOnFailure, type Settled } from '../src/lib/write-buffer.js';

// The coalescing rules every batched write (task creation, the worker's outcomes) relies on.

/** A writer whose flushes stay open until the test releases them, recording each batch. */
function heldWriter() {
  const batches: number[][] = [];
  const releases: (() => void)[] = [];
  const buffer = createWriteBuffer<number, number>({
    maxItems: 5,
    maxWaitMs: 2,
    maxConcurrentFlushes: 1,
    async flush(items) {
      batches.push(items);
      await new Promise<void>((resolve) => releases.push(resolve));
      return items.map((item): Settled<number> => (item < 0 ? { ok: false, error: new Error(`bad ${item}`) } : { ok: true, value: item * 10 }));
    },
  });
  const releaseAll = async () => {
    while (releases.length > 0) {
      releases.shift()!();
      await new Promise((resolve) => setImmediate(resolve));
    }
  };
  return { buffer, batches, releases, releaseAll };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('createWriteBuffer', () => {
  test('writes arriving in one turn of the event loop share one flush, each answered with its own result', async () => {
    const { buffer, batches, releaseAll } = heldWriter();
    const results = Promise.all([1, 2, 3].map((item) => buffer.write(item)));
    await tick();
    assert.deepEqual(batches, [[1, 2, 3]]);
    await releaseAll();
    assert.deepEqual(await results, [10, 20, 30]);
  });

  test('while a flush runs, later writes gather into the next batch; a full batch does not wait', async () => {
    const { buffer, batches, releaseAll } = heldWriter();
    const first = buffer.write(1);
    await tick();
    const later = [2, 3, 4, 5, 6, 7, 8].map((item) => buffer.write(item));
    await tick();
    // Items 2-6 filled a batch (maxItems 5) and went at once; 7 and 8 waited at most maxWaitMs.
    assert.deepEqual(batches.slice(0, 2), [[1], [2, 3, 4, 5, 6]]);
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.deepEqual(batches[2], [7, 8]);
    await releaseAll();
    assert.deepEqual(await Promise.all([first, ...later]), [10, 20, 30, 40, 50, 60, 70, 80]);
  });

  test("one item's failure rejects only that item; a failed flush rejects exactly its batch", async () => {
    const { buffer, releaseAll } = heldWriter();
    const results = Promise.allSettled([1, -2, 3].map((item) => buffer.write(item)));
    await tick();
    await releaseAll();
    assert.deepEqual(
      (await results).map((result) => result.status),
      ['fulfilled', 'rejected', 'fulfilled'],
    );

    let calls = 0;
    const failingOnce = createWriteBuffer<number, number>({
      maxItems: 10,
      maxWaitMs: 2,
      maxConcurrentFlushes: 1,
      async flush(items) {
        if (calls++ === 0) throw new Error('database gone');
        return items.map((item) => ({ ok: true as const, value: item }));
      },
    });
    const lost = Promise.allSettled([1, 2].map((item) => failingOnce.write(item)));
    assert.deepEqual(
      (await lost).map((result) => result.status),
      ['rejected', 'rejected'],
    );
    assert.equal(await failingOnce.write(3), 3, 'the next batch is written');
  });
});

describe('writeEachAloneOnFailure', () => {
  const writeUnlessBad = async (items: number[]): Promise<Settled<number>[]> => {
    if (items.includes(-1)) throw new Error('constraint violated by -1');
    return items.map((item) => ({ ok: true, value: item }));
  };

  test('a batch refused as a whole is written again item by item, so only the culprit fails', async () => {
    const settled = await writeEachAloneOnFailure([1, -1, 2], writeUnlessBad, () => false);
    assert.deepEqual(
      settled.map((item) => item.ok),
      [true, false, true],
    );
  });

  test('an error that fails everyone (the database is gone) is not retried item by item', async () => {
    let writes = 0;
    await assert.rejects(
      writeEachAloneOnFailure(
        [1, 2],
        async () => {
          writes += 1;
          throw new Error('gone');
        },
        () => true,
      ),
      /gone/,
    );
    assert.equal(writes, 1);
  });
});
