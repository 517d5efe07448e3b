// A short chaos run inside npm test: the hub, two spokes and the database killed with SIGKILL at
// seeded moments (at least once each) under payments, webhooks, creates and deletes; then 0 lost,
// 0 phantom, 0 duplicates, projections equal to a replay, every capsul converged. The harness runs its
// own PostgreSQL cluster whatever DATABASE_URL says (test/chaos/postgres.ts). Longer runs: npm run chaos.
// CHAOS_SEED picks the seed (printed with the figures, to reproduce a failure).
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { formatReport, processKinds, runChaos } from './harness.ts';

const seedText = process.env.CHAOS_SEED?.trim();
if (seedText && !/^\d{1,10}$/.test(seedText)) throw new Error(`CHAOS_SEED must be a whole number, not "${seedText}"`);
const seed = seedText ? Number(seedText) : Math.floor(Math.random() * 1_000_000);

it('nothing acknowledged is lost, nothing is recorded twice or from nowhere, and everything converges after kill -9s of each process', async () => {
  const report = await runChaos({ seed, loadMs: 60_000, faultEveryMs: [3000, 6000] });
  const figures = formatReport(report);
  console.log(figures);
  assert.deepEqual(report.problems, [], figures);
  for (const kind of processKinds) assert.ok(report.kills[kind] >= 1, `${kind} killed at least once\n${figures}`);
  assert.ok(report.operations.create.acknowledged > 0 && report.operations.webhook.acknowledged > 0, `load acknowledged\n${figures}`);
  assert.equal(report.projectionsMatch, true);
  assert.notEqual(report.convergeMs, null);
});
