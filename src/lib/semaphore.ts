/** Every slot is taken and the waiting line is full: the caller should come back later. */
export class SemaphoreFullError extends Error {
  override name = 'SemaphoreFullError';
}

export interface Semaphore {
  /** Runs `work` in a free slot, waiting in line for one; throws SemaphoreFullError when the line is full. */
  run<T>(work: () => Promise<T>): Promise<T>;
}

/**
 * At most `slots` works at once and at most `waiting` more in line; anything beyond is refused at
 * once rather than queued without bound, so a flood costs a refusal, not memory and latency.
 */
export function createSemaphore(options: { slots: number; waiting: number }): Semaphore {
  let running = 0;
  const line: (() => void)[] = [];
  return {
    async run(work) {
      if (running >= options.slots) {
        if (line.length >= options.waiting) throw new SemaphoreFullError('every slot is taken and the line is full');
        await new Promise<void>((resolve) => line.push(resolve));
      } else {
        running += 1;
      }
      try {
        return await work();
      } finally {
        // The slot passes straight to the next in line, if any, so the count never drops and rises again.
        const next = line.shift();
        if (next) next();
        else running -= 1;
      }
    },
  };
}
