/**
 * Coalesces concurrent writes into batches, so N requests in flight cost one transaction instead
 * of N: on this kind of machine a database round trip, not the SQL, is what a write costs.
 *
 * A batch is flushed when it holds `maxItems`, or at once when no flush is running (a lone
 * request waits for nobody), or else `maxWaitMs` after its first item (while flushes run, the
 * items arriving meanwhile gather into the next batch).
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
  /** Writes the batch; a rejection fails every item of it, a per-item failure fails only that item. */
  flush(items: Item[]): Promise<Settled<Result>[]>;
}): WriteBuffer<Item, Result> {
  let batch: Pending<Item, Result>[] = [];
  let timer: NodeJS.Timeout | undefined;
  let scheduled = false;
  let flushing = 0;

  const flushNow = () => {
    clearTimeout(timer);
    timer = undefined;
    scheduled = false;
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
      });
  };

  return {
    write(item) {
      return new Promise<Result>((resolve, reject) => {
        batch.push({ item, resolve, reject });
        if (batch.length >= options.maxItems) return flushNow();
        if (scheduled) return;
        scheduled = true;
        // Idle: flush after this turn of the event loop, gathering whatever arrived in it.
        if (flushing === 0) setImmediate(flushNow);
        else timer = setTimeout(flushNow, options.maxWaitMs);
      });
    },
  };
}
