// Time for the spoke, injected so tests decide what "now" is and how long a wait really lasts.

export type Clock = {
  nowMs(): number;
  /** Resolves after `ms`, or as soon as `signal` aborts (never rejects). */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
};

export const systemClock: Clock = {
  nowMs: () => Date.now(),
  sleep: (ms, signal) => abortableDelay(ms, signal),
};

export function abortableDelay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, ms));
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** Exponential backoff with jitter: attempt 0 waits about `baseMs`, doubling up to `capMs`; half of it random. */
export function backoffMs(attempt: number, random: () => number, baseMs = 1_000, capMs = 60_000): number {
  const ceilingMs = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.round(ceilingMs / 2 + (ceilingMs / 2) * random());
}
