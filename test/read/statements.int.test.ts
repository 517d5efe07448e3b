// Statements read from a real database after random histories through the Ledger (the commands the
// hub and the CLI send): each month opens at the balance the projection tables give as of its first
// instant (balancesAt: SQL, not the fold the statement uses) and at `capsul balance --as-of`'s, closes
// at the next month's opening, and adds up — with payments recorded late in closed months,
// corrections, refunds, and capsuls created and deleted.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { monthOf, monthStartMs, nextMonth } from '../../src/domain/account/statement.ts';
import { DomainError } from '../../src/domain/shared/errors.ts';
import { Ledger } from '../../src/ledger/ledger.ts';
import { balanceAt } from '../../src/read/accounts.ts';
import { accountStatement } from '../../src/read/statements.ts';
import { operator, sshKey, testDatabase, type TestDatabase } from '../support/db.ts';

let db: TestDatabase;
before(async () => {
  db = await testDatabase();
});
after(() => db.close());

const dayMs = 86_400_000;
type Step =
  | { kind: 'pay'; cents: number; lateDays: number }
  | { kind: 'invalidate' | 'reinstate' | 'delete'; index: number }
  | { kind: 'refund'; index: number; cents: number }
  | { kind: 'create'; size: 'f1-xs' | 'f1-s' | 'f1-m' }
  | { kind: 'wait'; days: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({ kind: fc.constant('pay' as const), cents: fc.integer({ min: 100, max: 6000 }), lateDays: fc.nat(60) }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constantFrom('invalidate' as const, 'reinstate' as const, 'delete' as const), index: fc.nat(20) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('refund' as const), index: fc.nat(20), cents: fc.integer({ min: 1, max: 3000 }) }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('create' as const),
      size: fc.constantFrom('f1-xs' as const, 'f1-s' as const, 'f1-m' as const),
    }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('wait' as const), days: fc.integer({ min: 1, max: 25 }) }) },
);

let run = 0;

describe('statements from the ledger (property)', () => {
  it('open at balance --as-of the first instant, close at the next opening, add up, and end at the projections’ balance', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 25 }), async (steps) => {
        run++;
        const email = `statement${run}-${process.pid}@example.org`;
        const startMs = Date.parse('2026-01-03T00:00:00Z');
        let clockMs = startMs;
        const ledger = new Ledger({ pool: db.pool, now: () => new Date(clockMs) });
        const payments: { id: number; refundedCents: number }[] = [];
        const vms: string[] = [];
        for (const s of steps) {
          clockMs += 3_600_000;
          try {
            switch (s.kind) {
              case 'pay': {
                const receivedAt = new Date(Math.max(startMs, clockMs - s.lateDays * dayMs));
                const { paymentId } = await ledger.recordPayment({
                  email,
                  amountCents: s.cents,
                  reference: null,
                  receivedAt,
                  cause: operator,
                });
                payments.push({ id: paymentId, refundedCents: 0 });
                break;
              }
              case 'invalidate':
              case 'reinstate': {
                const payment = payments[s.index % Math.max(1, payments.length)];
                if (!payment) break;
                const cause = { ...operator, reason: s.kind === 'invalidate' ? 'chargeback' : 'dispute won' };
                if (s.kind === 'invalidate') await ledger.invalidatePayment(payment.id, cause);
                else await ledger.reinstatePayment(payment.id, cause);
                break;
              }
              case 'refund': {
                const payment = payments[s.index % Math.max(1, payments.length)];
                if (!payment) break;
                const totalRefundedCents = payment.refundedCents + s.cents;
                await ledger.recordRefund({ paymentId: payment.id, totalRefundedCents, reference: null, cause: operator });
                payment.refundedCents = totalRefundedCents;
                break;
              }
              case 'create':
                vms.push((await ledger.createVm({ email, size: s.size, os: 'debian12', sshPublicKeys: [sshKey], cause: operator })).vmId);
                break;
              case 'delete':
                if (vms.length > 0) await ledger.deleteVm(vms[s.index % vms.length]!, { ...operator, reason: 'done' });
                break;
              case 'wait':
                clockMs += s.days * dayMs;
                break;
            }
          } catch (error) {
            if (!(error instanceof DomainError)) throw error; // refusals (funds, too large a refund) are fine
          }
        }
        const accountId = await ledger.accountIdFor(email);
        if (!accountId) return;
        const now = new Date(clockMs + 62 * dayMs);
        assert.equal(await balanceAt(db.pool, accountId, now), await ledger.balanceCents(email, now), "the projections' balance now");
        let previousClosing: number | null = null;
        for (let month = monthOf(startMs); monthStartMs(nextMonth(month)) <= now.getTime(); month = nextMonth(month)) {
          const statement = await accountStatement(db.pool, accountId, month, now);
          const first = new Date(monthStartMs(month));
          assert.equal(statement.openingCents, await ledger.balanceCents(email, first), `${month}: balance --as-of`);
          assert.equal(statement.openingCents, await balanceAt(db.pool, accountId, first), `${month}: the row history's balance`);
          if (previousClosing !== null) assert.equal(statement.openingCents, previousClosing, `${month} opens at the last closing`);
          const sum = statement.lines.reduce((total, line) => total + line.amountCents, 0);
          assert.equal(statement.openingCents + sum, statement.closingCents, `${month} adds up`);
          previousClosing = statement.closingCents;
        }
      }),
      { numRuns: 25 },
    );
  });
});
