/**
 * Coalesces concurrent writes into batches, so N requests in flight cost one transaction instead
 * of N: on this kind of machine a database round trip, not the SQL, is what a write costs.
 *
 * Group commit: while `maxConcurrentFlushes` batches are being written, new items gather into
 * the next batch, which is written as soon as a flush ends, when it holds `maxItems`, or at the
 * latest `maxWaitMs` after its first item. With nothing being written, an item is written right
 * after the current turn of the event loop (with whatever else arrived in it): a lone request
 * waits for nobody.
 */
export interface WriteBuffer<Item, Result> {
  /** Resolves with this item's own result, or rejects with its own error. */
  write(item: Item): Promise<Result>;
}

/** Per item of a flushed batch, in order: its result or its error. */
export type Settled<Result> = { ok: true; value: Result } | { ok: false; error: unknown };

interface Pending<Item, Result> {
  item: Item;
  resolve(value: Result): void;
  reject(error: unknown): void;
}

export function createWriteBuffer<Item, Result>(options: {
  maxItems: number;
  maxWaitMs: number;
  maxConcurrentFlushes: number;
  /** Writes the batch; a rejection fails every item of it, a per-item failure fails only that item. */
  flush(items: Item[]): Promise<Settled<Result>[]>;
}): WriteBuffer<Item, Result> {
  let batch: Pending<Item, Result>[] = [];
  let deadline: NodeJS.Timeout | undefined;
  let immediate: NodeJS.Immediate | undefined;
  let flushing = 0;

  const flushNow = () => {
    clearTimeout(deadline);
    clearImmediate(immediate);
    deadline = undefined;
    immediate = undefined;
    const taken = batch;
    batch = [];
    if (taken.length === 0) return;
    flushing += 1;
    options
      .flush(taken.map((pending) => pending.item))
      .then(
        (outcomes) =>
          taken.forEach((pending, index) => {
            const outcome = outcomes[index];
            if (!outcome) pending.reject(new Error('A batched write returned no outcome for an item'));
            else if (outcome.ok) pending.resolve(outcome.value);
            else pending.reject(outcome.error);
          }),
        (error: unknown) => taken.forEach((pending) => pending.reject(error)),
      )
      .finally(() => {
        flushing -= 1;
        if (batch.length > 0 && immediate === undefined) immediate = setImmediate(flushNow);
      });
  };

  return {
    write(item) {
      return new Promise<Result>((resolve, reject) => {
        batch.push({ item, resolve, reject });
        if (batch.length >= options.maxItems) return flushNow();
        if (flushing < options.maxConcurrentFlushes) {
          immediate ??= setImmediate(flushNow);
        } else {
          deadline ??= setTimeout(flushNow, options.maxWaitMs);
        }
      });
    },
  };
}

/**
 * Writes a batch; when the batch fails as a whole, writes each item alone, so one item's failure
 * fails only that item. An error `failsEveryone` recognises (the database is gone) is not any
 * one item's doing: it fails the whole batch at once.
 */
export async function writeEachAloneOnFailure<Item, Result>(
  items: Item[],
  write: (items: Item[]) => Promise<Settled<Result>[]>,
  failsEveryone: (error: unknown) => boolean,
): Promise<Settled<Result>[]> {
  try {
    return await write(items);
  } catch (error) {
    if (items.length === 1 || failsEveryone(error)) throw error;
    return Promise.all(
      items.map((item) => write([item]).then(([settled]) => settled!, (alone: unknown): Settled<Result> => ({ ok: false, error: alone }))),
    );
  }
}
