// Property tests where money moves: random command sequences (out-of-order receipt times, duplicate
// references, corrections) keep projections and replay in agreement at every instant, and concurrent
// creations never spend the same balance twice.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { DomainError } from '../../src/domain/shared/errors.ts';
import { Ledger } from '../../src/ledger/ledger.ts';
import { balanceAt } from '../../src/read/accounts.ts';
import { verifyProjections } from '../../src/projections/rebuild.ts';
import { shadowProjectionsAt } from '../../src/projections/as-of.ts';
import { operator, sshKey, testDatabase, type TestDatabase } from '../support/db.ts';

let db: TestDatabase;
before(async () => {
  db = await testDatabase({ poolSize: 12 });
});
after(() => db.close());

const hourMs = 3_600_000;
const sizes = ['f1-xs', 'f1-s', 'f1-m', 'f1-l'] as const;
const prices: Record<string, number> = { 'f1-xs': 533, 'f1-s': 716, 'f1-m': 1250, 'f1-l': 2050 };

type Step =
  | { kind: 'pay'; cents: number; receivedHoursAgo: number; reference: number | null }
  | { kind: 'invalidate' | 'reinstate' | 'delete'; index: number }
  | { kind: 'create'; size: (typeof sizes)[number] }
  | { kind: 'wait'; hours: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('pay' as const),
      cents: fc.integer({ min: 1, max: 6000 }),
      receivedHoursAgo: fc.integer({ min: 0, max: 96 }),
      reference: fc.option(fc.integer({ min: 1, max: 3 })),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constantFrom('invalidate' as const, 'reinstate' as const, 'delete' as const), index: fc.nat(20) }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('create' as const), size: fc.constantFrom(...sizes) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('wait' as const), hours: fc.integer({ min: 1, max: 400 }) }) },
);

let run = 0;

describe('money invariants (property tests)', () => {
  it('balance from projections equals balance from replay at any instant, past or future', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(step, { minLength: 1, maxLength: 20 }),
        fc.array(fc.double({ min: -0.2, max: 1.5, noNaN: true }), { minLength: 2, maxLength: 4 }),
        async (steps, probes) => {
          run++;
          const email = `prop${run}-${process.pid}@example.org`;
          const startMs = Date.parse('2026-03-01T00:00:00Z') + run * 1000 * hourMs;
          let clockMs = startMs;
          const ledger = new Ledger({ pool: db.pool, now: () => new Date(clockMs) });
          const payments: number[] = [];
          const vms: string[] = [];
          for (const s of steps) {
            clockMs += 60_000;
            try {
              switch (s.kind) {
                case 'pay': {
                  const reference = s.reference === null ? null : `run${run}-${process.pid}-ref${s.reference}`;
                  const receivedAt = new Date(clockMs - s.receivedHoursAgo * hourMs);
                  const { paymentId } = await ledger.recordPayment({ email, amountCents: s.cents, reference, receivedAt, cause: operator });
                  payments.push(paymentId);
                  break;
                }
                case 'invalidate':
                case 'reinstate':
                  if (payments.length === 0) break;
                  if (s.kind === 'invalidate')
                    await ledger.invalidatePayment(payments[s.index % payments.length]!, { ...operator, reason: 'chargeback' });
                  else await ledger.reinstatePayment(payments[s.index % payments.length]!, { ...operator, reason: 'dispute won' });
                  break;
                case 'delete':
                  if (vms.length > 0) await ledger.deleteVm(vms[s.index % vms.length]!, { ...operator, reason: 'done' });
                  break;
                case 'create':
                  if (payments.length === 0) break;
                  vms.push((await ledger.createVm({ email, size: s.size, os: 'debian12', sshPublicKeys: [sshKey], cause: operator })).vmId);
                  break;
                case 'wait':
                  clockMs += s.hours * hourMs;
                  break;
              }
            } catch (error) {
              if (!(error instanceof DomainError)) throw error; // refusals (funds, references) are fine
            }
          }
          const accountId = await ledger.accountIdFor(email);
          if (!accountId) return;
          const spanMs = clockMs - startMs + 96 * hourMs;
          for (const probe of probes) {
            const at = new Date(Math.round(clockMs - 96 * hourMs + probe * spanMs));
            const replayed = await ledger.balanceCents(email, at);
            assert.equal(await balanceAt(db.pool, accountId, at), replayed, `row history at ${at.toISOString()}`);
            const client = await db.pool.connect();
            try {
              await shadowProjectionsAt(client, { asOf: at });
              assert.equal(await balanceAt(client, accountId, at), replayed, `tables as of ${at.toISOString()}`);
            } finally {
              client.release(true);
            }
          }
        },
      ),
      { numRuns: 40 },
    );
    assert.equal((await verifyProjections(db.pool)).matches, true);
  });

  it('concurrent creations never spend the same balance twice', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...sizes),
        fc.integer({ min: 0, max: 4 }),
        fc.integer({ min: 2, max: 7 }),
        fc.integer({ min: 0, max: 532 }),
        async (size, covered, concurrency, spareCents) => {
          run++;
          const email = `spend${run}-${process.pid}@example.org`;
          const nowMs = Date.parse('2026-06-01T00:00:00Z');
          const ledger = new Ledger({ pool: db.pool, now: () => new Date(nowMs) });
          // Enough for `covered` months and less than one more; at least a cent (a payment is never 0).
          const spare = Math.min(spareCents, prices[size]! - 2) + (covered === 0 ? 1 : 0);
          await ledger.recordPayment({ email, amountCents: covered * prices[size]! + spare, cause: operator });
          const results = await Promise.allSettled(
            Array.from({ length: concurrency }, () =>
              ledger.createVm({ email, size, os: 'debian12', sshPublicKeys: [sshKey], cause: operator }),
            ),
          );
          const created = results.filter((r) => r.status === 'fulfilled').length;
          for (const r of results) {
            if (r.status === 'rejected') assert.equal((r.reason as DomainError).code, 'insufficient_funds', String(r.reason));
          }
          assert.equal(created, Math.min(concurrency, covered));
          const { rows } = await db.pool.query('SELECT count(*)::int AS n FROM vms WHERE email = $1', [email]);
          assert.equal(rows[0].n, created);
        },
      ),
      // The first: the largest spare with nothing covered, which once paid exactly a month by mistake.
      { numRuns: 20, examples: [['f1-xs', 0, 2, 532]] },
    );
  });
});
