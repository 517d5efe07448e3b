// Timed loops and their tallies. The two sides of a comparison run in alternating slices, so a change
// in background load on the machine (other processes, autovacuum, checkpoints) hits both alike.
import { performance } from 'node:perf_hooks';
import type pg from 'pg';
import { backendCpu, backendCpuSince } from './pgcpu.ts';

/** What one side of a comparison did: operations, time, and the CPU it cost on both sides. */
export class Tally {
  operations = 0;
  seconds = 0;
  nodeCpuMs = 0;
  /** undefined when the server's processes are not visible in /proc */
  pgCpuMs: number | undefined = 0;
  rounds = 0;

  constructor(readonly label: string) {}

  get perSecond(): number {
    return this.operations / this.seconds;
  }

  get nodeCpuMsPerOp(): number {
    return this.nodeCpuMs / this.operations;
  }

  get pgCpuMsPerOp(): number | undefined {
    return this.pgCpuMs === undefined ? undefined : this.pgCpuMs / this.operations;
  }

  /** Runs `work` (which returns how many operations it did), adding its time and CPU to this tally. */
  async measure(pool: pg.Pool, work: () => Promise<number>): Promise<number> {
    const pgBefore = await backendCpu(pool);
    const cpuBefore = process.cpuUsage();
    const started = performance.now();
    const operations = await work();
    const seconds = (performance.now() - started) / 1000;
    const cpu = process.cpuUsage(cpuBefore);
    const pgMs = backendCpuSince(pgBefore, await backendCpu(pool));
    this.operations += operations;
    this.seconds += seconds;
    this.nodeCpuMs += (cpu.user + cpu.system) / 1000;
    this.pgCpuMs = pgMs === undefined || this.pgCpuMs === undefined ? undefined : this.pgCpuMs + pgMs;
    this.rounds++;
    return operations;
  }
}

export type Op = (worker: number, iteration: number) => Promise<unknown>;

/**
 * Runs `op` on `workers` concurrent loops for `seconds` and returns how many finished (an operation in
 * flight at the deadline is finished and counted; the caller's clock stops when the last one is done).
 * `iterations` carries each worker's iteration count across calls, so slices continue where they left.
 * `itemsPerOp` (default 1): what one operation counts for, e.g. the reports of one request.
 */
export async function timedLoop(options: {
  seconds: number;
  workers: number;
  op: Op;
  iterations: number[];
  itemsPerOp?: number;
  onProgress?: (done: number) => void;
}): Promise<number> {
  const items = options.itemsPerOp ?? 1;
  const deadline = performance.now() + options.seconds * 1000;
  let done = 0;
  const loop = async (worker: number) => {
    while (performance.now() < deadline) {
      const iteration = options.iterations[worker] ?? 0;
      options.iterations[worker] = iteration + 1;
      await options.op(worker, iteration);
      done += items;
      options.onProgress?.(done);
    }
  };
  await Promise.all(Array.from({ length: options.workers }, (_, w) => loop(w)));
  return done;
}

/**
 * Compares two operations at the same concurrency: a warm-up of each, then alternating slices of
 * about one second until each side has run `seconds`. A side on another database names its pool
 * (whose backends' CPU it is charged); otherwise `pool`'s.
 */
export async function comparePair(options: {
  pool: pg.Pool;
  workers: number;
  seconds: number;
  warmupSeconds: number;
  a: { label: string; op: Op; itemsPerOp?: number; pool?: pg.Pool };
  b: { label: string; op: Op; itemsPerOp?: number; pool?: pg.Pool };
  onProgress?: (text: string) => void;
}): Promise<[Tally, Tally]> {
  const sides = [options.a, options.b].map((side) => ({ ...side, tally: new Tally(side.label), iterations: [] as number[] }));
  for (const side of sides) {
    await timedLoop({
      seconds: options.warmupSeconds,
      workers: options.workers,
      op: side.op,
      iterations: side.iterations,
      itemsPerOp: side.itemsPerOp,
      onProgress: (done) => options.onProgress?.(`${side.label} (warm-up): ${done} ops`),
    });
  }
  const slices = Math.max(1, Math.round(options.seconds));
  const sliceSeconds = options.seconds / slices;
  for (let slice = 1; slice <= slices; slice++) {
    for (const side of sides) {
      await side.tally.measure(side.pool ?? options.pool, () =>
        timedLoop({
          seconds: sliceSeconds,
          workers: options.workers,
          op: side.op,
          iterations: side.iterations,
          itemsPerOp: side.itemsPerOp,
          onProgress: (done) =>
            options.onProgress?.(
              `${side.label}: slice ${slice}/${slices}, ${done} ops` +
                (side.tally.operations ? `, ${Math.round(side.tally.perSecond).toLocaleString('en-US')}/s so far` : ''),
            ),
        }),
      );
    }
  }
  return [sides[0]!.tally, sides[1]!.tally];
}

/** Alternates whole passes of two runs (each returning how many items it handled) until each has run `seconds`. */
export async function alternatePasses(options: {
  pool: pg.Pool;
  seconds: number;
  a: { label: string; run: () => Promise<number> };
  b: { label: string; run: () => Promise<number> };
  onPass?: (tally: Tally, items: number, seconds: number) => void;
}): Promise<[Tally, Tally]> {
  const sides = [options.a, options.b].map((side) => ({ ...side, tally: new Tally(side.label) }));
  while (sides.some((side) => side.tally.seconds < options.seconds)) {
    for (const side of sides) {
      if (side.tally.seconds >= options.seconds) continue;
      const before = side.tally.seconds;
      const items = await side.tally.measure(options.pool, side.run);
      options.onPass?.(side.tally, items, side.tally.seconds - before);
    }
  }
  return [sides[0]!.tally, sides[1]!.tally];
}
