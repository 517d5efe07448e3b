// `npm run chaos -- --minutes 10 --seed 42 [--hubs 1] [--workers 3]`: a long chaos run (see harness.ts
// and docs/operations.md, "Chaos"). Prints progress while it runs and the figures at the end; exits 1
// when it found a problem. CHAOS_SEED gives the seed when --seed does not.
import { parseArgs } from 'node:util';
import { formatReport, killEverythingNow, runChaos } from './harness.ts';

function refuse(message: string): never {
  process.stderr.write(`npm run chaos: ${message}\n`);
  process.exit(2);
}

function whole(name: string, text: string | undefined, min: number, max: number, fallback: number): number {
  if (text === undefined) return fallback;
  if (!/^\d+$/.test(text) || Number(text) < min || Number(text) > max)
    refuse(`--${name} must be a whole number from ${min} to ${max}, not "${text}"`);
  return Number(text);
}

let values: Record<string, string | undefined>;
try {
  values = parseArgs({
    options: { minutes: { type: 'string' }, seed: { type: 'string' }, hubs: { type: 'string' }, workers: { type: 'string' } },
  }).values as Record<string, string | undefined>;
} catch (error) {
  refuse(`${(error as Error).message} (usage: npm run chaos -- --minutes <1-600> [--seed <n>] [--hubs <1-2>] [--workers <1-16>])`);
}
const minutes = whole('minutes', values.minutes, 1, 600, 10);
const seed = whole('seed', values.seed ?? process.env.CHAOS_SEED, 0, 2 ** 32 - 1, Math.floor(Math.random() * 1_000_000));
const hubs = whole('hubs', values.hubs, 1, 2, 1);
const workers = whole('workers', values.workers, 1, 16, 3);

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    killEverythingNow();
    process.stderr.write(`npm run chaos: interrupted (${signal}); every process it started is killed\n`);
    process.exit(130);
  });
}

const started = Date.now();
const report = await runChaos({
  seed,
  hubs,
  workers,
  loadMs: minutes * 60_000,
  log: (line) => process.stderr.write(`[${((Date.now() - started) / 1000).toFixed(0).padStart(5)} s] ${line}\n`),
});
process.stdout.write(`${formatReport(report)}\n`);
process.stdout.write(`reproduce with: npm run chaos -- --minutes ${minutes} --seed ${seed}${hubs > 1 ? ` --hubs ${hubs}` : ''}\n`);
process.exit(report.problems.length === 0 ? 0 : 1);
