// Work that must not overlap per key (one look at an invoice at a time), while other keys go on.
import pLimit, { type LimitFunction } from 'p-limit';

/** One at a time per key, in arrival order; a key's queue is dropped once nothing runs or waits on it. */
export class TurnsPerKey {
  private readonly lanes = new Map<string, { limit: LimitFunction; calls: number }>();

  async take<T>(key: string, work: () => Promise<T>): Promise<T> {
    const lane = this.lanes.get(key) ?? { limit: pLimit(1), calls: 0 };
    this.lanes.set(key, lane);
    lane.calls++;
    try {
      return await lane.limit(work);
    } finally {
      if (--lane.calls === 0) this.lanes.delete(key);
    }
  }

  /** How many keys have work running or waiting. */
  get busyKeys(): number {
    return this.lanes.size;
  }
}
