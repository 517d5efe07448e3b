// The timers the simulated driver runs on, and a manual clock that makes them deterministic in tests:
// nothing happens until the test calls `advance(ms)`.

export type TimerClock = {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
};

export const systemTimerClock: TimerClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

type Timer = { id: number; dueMs: number; fn: () => void };

export class ManualClock implements TimerClock {
  private nowMs: number;
  private nextId = 1;
  private timers: Timer[] = [];

  constructor(startMs = 0) {
    this.nowMs = startMs;
  }

  now(): number {
    return this.nowMs;
  }

  setTimeout(fn: () => void, ms: number): number {
    const id = this.nextId++;
    this.timers.push({ id, dueMs: this.nowMs + Math.max(0, ms), fn });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.timers = this.timers.filter((timer) => timer.id !== handle);
  }

  /** Timers scheduled and not yet fired or cleared. */
  get pendingTimers(): number {
    return this.timers.length;
  }

  /** Moves time forward, firing every timer that falls due on the way in due order (ties: first set, first fired). */
  advance(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) throw new Error(`cannot advance a clock by ${ms} ms`);
    const untilMs = this.nowMs + ms;
    for (;;) {
      const next = this.nextDue(untilMs);
      if (!next) break;
      this.timers = this.timers.filter((timer) => timer !== next);
      this.nowMs = next.dueMs;
      next.fn();
    }
    this.nowMs = untilMs;
  }

  private nextDue(untilMs: number): Timer | undefined {
    let next: Timer | undefined;
    for (const timer of this.timers) {
      if (timer.dueMs <= untilMs && (!next || timer.dueMs < next.dueMs || (timer.dueMs === next.dueMs && timer.id < next.id))) {
        next = timer;
      }
    }
    return next;
  }
}
