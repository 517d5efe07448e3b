// Small bounded caches for a long-running process (the hub). Correctness never rests on them: a stale
// stream state fails the append's version check and is reloaded.

/** Least-recently-used map with a fixed capacity. */
export class LruMap<K, V> {
  private readonly entries = new Map<K, V>();

  constructor(private readonly capacity: number) {}

  get(key: K): V | undefined {
    const value = this.entries.get(key);
    if (value !== undefined) {
      this.entries.delete(key);
      this.entries.set(key, value);
    }
    return value;
  }

  set(key: K, value: V): void {
    this.entries.delete(key);
    this.entries.set(key, value);
    if (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value as K);
  }

  delete(key: K): void {
    this.entries.delete(key);
  }
}

/** The folded state and version of recently used streams. */
export type StreamCache = LruMap<string, { version: bigint; state: unknown }>;
export const createStreamCache = (capacity = 10_000): StreamCache => new LruMap(capacity);
