import type { Notifications } from './notifications.js';

/** Answers looked up in the database and remembered until a notification says they changed. */
export interface NotifiedCache<V> {
  /** The answer for `key`: remembered, or looked up (once, however many ask at the same time). */
  get(key: string): Promise<V>;
  /** Forgets `key` at once (this process has just changed it). */
  forget(key: string): void;
}

/**
 * A per-process memory of database answers that every process keeps true: a trigger NOTIFYs
 * `channel` with the key of whatever changed, and the key is forgotten. While notifications do not
 * arrive (their connection is being re-made), nothing remembered is trusted; an answer looked up
 * while a change was heard of may be the old one, and is not remembered. `maxAgeMs` is a safety
 * net beneath the notifications; beyond `maxEntries`, the least recently asked for go first.
 */
export function createNotifiedCache<V>(
  notifications: Notifications,
  options: { channel: string; lookUp: (key: string) => Promise<V>; maxEntries: number; maxAgeMs: number },
): NotifiedCache<V> {
  const { lookUp, maxEntries, maxAgeMs } = options;
  const known = new Map<string, { value: V; at: number }>();
  const lookups = new Map<string, Promise<V>>();
  // Raised by every change heard of: a lookup that began before it may have read the old state.
  let changes = 0;
  // A lookup in flight when a change is heard may read the state from before it: later askers
  // must not share it, so it is dropped with what is remembered.
  const changed = (key: string) => {
    changes += 1;
    known.delete(key);
    lookups.delete(key);
  };
  notifications.subscribe(options.channel, changed);
  notifications.onListening(() => {
    changes += 1;
    known.clear();
    lookups.clear();
  });

  async function lookUpAndKeep(key: string): Promise<V> {
    const changesBefore = changes;
    const value = await lookUp(key);
    if (changes === changesBefore && notifications.listening) {
      if (known.size >= maxEntries) known.delete(known.keys().next().value!);
      known.set(key, { value, at: Date.now() });
    }
    return value;
  }

  return {
    async get(key) {
      const remembered = known.get(key);
      if (remembered && notifications.listening && Date.now() - remembered.at < maxAgeMs) {
        // Re-inserted so that the keys asked for most recently are the last to be dropped.
        known.delete(key);
        known.set(key, remembered);
        return remembered.value;
      }
      let lookup = lookups.get(key);
      if (!lookup) {
        const started: Promise<V> = lookUpAndKeep(key).finally(() => {
          if (lookups.get(key) === started) lookups.delete(key);
        });
        lookups.set(key, (lookup = started));
      }
      return lookup;
    },
    forget: changed,
  };
}
