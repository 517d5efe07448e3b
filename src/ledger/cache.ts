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

type CachedStream = { version: bigint; state: unknown };

/** The folded state and version of recently used streams. */
export type StreamCache = Pick<LruMap<string, CachedStream>, 'get' | 'set' | 'delete'>;
export const createStreamCache = (capacity = 10_000): StreamCache => new LruMap(capacity);

/**
 * A cache's view from inside a transaction: what the transaction's commands learn is kept aside and
 * reaches the cache only if it commits (`commit`), so a rolled-back append never looks current.
 */
export class StagedStreamCache implements StreamCache {
  /** undefined: deleted in this transaction */
  private readonly staged = new Map<string, CachedStream | undefined>();

  constructor(private readonly cache: StreamCache | undefined) {}

  get(streamId: string): CachedStream | undefined {
    return this.staged.has(streamId) ? this.staged.get(streamId) : this.cache?.get(streamId);
  }

  set(streamId: string, value: CachedStream): void {
    this.staged.set(streamId, value);
  }

  delete(streamId: string): void {
    this.staged.set(streamId, undefined);
  }

  commit(): void {
    for (const [streamId, value] of this.staged) {
      if (value === undefined) this.cache?.delete(streamId);
      else this.cache?.set(streamId, value);
    }
    this.staged.clear();
  }
}
