// Billing math: a capsul accrues its monthly price prorated by the millisecond, from its creation until
// its deletion is requested or, sooner, its host saw it vanish; an account's total is kept exact and
// rounded once, half up.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { accrualEndMs, chargeCents, creditRunsOutAtMs, monthMs, totalChargesCents, type Accrual } from '../../src/domain/shared/billing.ts';

const dayMs = 86_400_000;
const f1xsCentsPerMonth = 533;
const createdAtMs = Date.parse('2026-01-01T00:00:00.000Z');
const f1xs: Accrual = { priceCentsPerMonth: f1xsCentsPerMonth, createdAtMs, deletionRequestedAtMs: null, vanishedAtMs: null };

describe('billing', () => {
  it('counts a month as 30.44 days', () => {
    assert.equal(monthMs, 30.44 * dayMs);
  });

  it('charges an f1-xs its price for exactly one month', () => {
    assert.equal(totalChargesCents([f1xs], createdAtMs + monthMs), 533);
  });

  it('rounds half a month of an f1-xs (266.5 cents) half up', () => {
    assert.equal(totalChargesCents([f1xs], createdAtMs + monthMs / 2), 267);
  });

  it('rounds just under half a cent down', () => {
    // 100 cents a month for a two-hundredth of a month is half a cent; a millisecond less is under it.
    const cheap: Accrual = { priceCentsPerMonth: 100, createdAtMs, deletionRequestedAtMs: null, vanishedAtMs: null };
    assert.equal(totalChargesCents([cheap], createdAtMs + monthMs / 200), 1);
    assert.equal(totalChargesCents([cheap], createdAtMs + monthMs / 200 - 1), 0);
  });

  it('rounds once, on the total, not capsul by capsul', () => {
    // Three capsuls at 0.4 cents each: 1.2 cents in all rounds to 1, though each on its own rounds to 0.
    const atMs = createdAtMs + (monthMs * 4) / 1000; // 0.4 cents of a 100-cent capsul
    const capsuls: Accrual[] = [1, 2, 3].map(() => ({
      priceCentsPerMonth: 100,
      createdAtMs,
      deletionRequestedAtMs: null,
      vanishedAtMs: null,
    }));
    const roundedOneByOne = capsuls.reduce((sum, capsul) => sum + chargeCents(capsul, atMs), 0);
    assert.equal(roundedOneByOne, 0);
    assert.equal(totalChargesCents(capsuls, atMs), 1);
  });

  it('charges nothing before the capsul was created', () => {
    assert.equal(totalChargesCents([f1xs], createdAtMs - dayMs), 0);
  });

  it('charges nothing at the instant the capsul is created', () => {
    assert.equal(totalChargesCents([f1xs], createdAtMs), 0);
  });

  it('charges nothing after the deletion was requested', () => {
    const deleted: Accrual = { ...f1xs, deletionRequestedAtMs: createdAtMs + monthMs / 2 };
    assert.equal(totalChargesCents([deleted], createdAtMs + monthMs / 2), 267);
    assert.equal(totalChargesCents([deleted], createdAtMs + 12 * monthMs), 267);
  });

  it('charges nothing for a capsul whose deletion was requested as it was created', () => {
    assert.equal(totalChargesCents([{ ...f1xs, deletionRequestedAtMs: createdAtMs }], createdAtMs + monthMs), 0);
  });

  it('charges nothing after its host saw it vanish', () => {
    const vanished: Accrual = { ...f1xs, vanishedAtMs: createdAtMs + monthMs / 2 };
    assert.equal(totalChargesCents([vanished], createdAtMs + monthMs / 2), 267);
    assert.equal(totalChargesCents([vanished], createdAtMs + 12 * monthMs), 267);
  });

  it('ends the charges at the deletion request or the vanishing, whichever came first', () => {
    const both = (requestedMs: number, vanishedMs: number): Accrual => ({
      ...f1xs,
      deletionRequestedAtMs: requestedMs,
      vanishedAtMs: vanishedMs,
    });
    const half = createdAtMs + monthMs / 2;
    assert.equal(totalChargesCents([both(half, createdAtMs + monthMs)], createdAtMs + 12 * monthMs), 267, 'requested first');
    assert.equal(totalChargesCents([both(createdAtMs + monthMs, half)], createdAtMs + 12 * monthMs), 267, 'vanished first');
    assert.equal(accrualEndMs(both(half, createdAtMs + monthMs)), half);
    assert.equal(accrualEndMs(both(createdAtMs + monthMs, half)), half);
    assert.equal(accrualEndMs(f1xs), null);
  });

  it('charges nothing for a capsul seen gone before it was created', () => {
    assert.equal(totalChargesCents([{ ...f1xs, vanishedAtMs: createdAtMs - dayMs }], createdAtMs + monthMs), 0);
  });

  it('charges nothing without capsuls', () => {
    assert.equal(totalChargesCents([], createdAtMs + monthMs), 0);
  });
});

describe('billing properties', () => {
  const yearsMs = 10 * 12 * monthMs;
  const accrual: fc.Arbitrary<Accrual> = fc
    .record({
      priceCentsPerMonth: fc.integer({ min: 1, max: 1_000_000 }),
      createdAtMs: fc.integer({ min: createdAtMs, max: createdAtMs + yearsMs }),
      runMs: fc.option(fc.integer({ min: 0, max: yearsMs }), { nil: null }),
      lifeMs: fc.option(fc.integer({ min: 0, max: yearsMs }), { nil: null }),
    })
    .map(({ priceCentsPerMonth, createdAtMs: start, runMs, lifeMs }) => ({
      priceCentsPerMonth,
      createdAtMs: start,
      deletionRequestedAtMs: runMs === null ? null : start + runMs,
      vanishedAtMs: lifeMs === null ? null : start + lifeMs,
    }));
  const instant = fc.integer({ min: createdAtMs - monthMs, max: createdAtMs + 2 * yearsMs });

  /** The exact charge, as an independent oracle: Σ price × billed ms, in cent·ms (1/monthMs of a cent). */
  const exactCentMs = (accruals: Accrual[], atMs: number): bigint =>
    accruals.reduce((sum, a) => {
      const endMs = Math.min(atMs, a.deletionRequestedAtMs ?? Infinity, a.vanishedAtMs ?? Infinity);
      return endMs > a.createdAtMs ? sum + BigInt(a.priceCentsPerMonth) * BigInt(endMs - a.createdAtMs) : sum;
    }, 0n);

  it('never decreases as time goes on', () => {
    fc.assert(
      fc.property(fc.array(accrual, { maxLength: 20 }), instant, instant, (accruals, a, b) => {
        const [earlier, later] = a <= b ? [a, b] : [b, a];
        return totalChargesCents(accruals, earlier) <= totalChargesCents(accruals, later);
      }),
    );
  });

  it('is never more than half a cent from the exact charge', () => {
    fc.assert(
      fc.property(fc.array(accrual, { maxLength: 20 }), instant, (accruals, atMs) => {
        const total = BigInt(totalChargesCents(accruals, atMs));
        const exact = exactCentMs(accruals, atMs);
        // |total − exact / monthMs| ≤ ½  ⇔  |2·total·monthMs − 2·exact| ≤ monthMs
        const difference = 2n * total * BigInt(monthMs) - 2n * exact;
        return (difference < 0n ? -difference : difference) <= BigInt(monthMs);
      }),
    );
  });

  it('rounds exactly half a cent up', () => {
    // An odd number of cents for half a month: the exact charge ends in .5, and the total rounds it up.
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1_000_000 }), (halfPrice) => {
        const priceCentsPerMonth = 2 * halfPrice + 1;
        const capsul: Accrual = { priceCentsPerMonth, createdAtMs, deletionRequestedAtMs: null, vanishedAtMs: null };
        return totalChargesCents([capsul], createdAtMs + monthMs / 2) === halfPrice + 1;
      }),
    );
  });
});

describe('runway: when the credit runs out', () => {
  const nowMs = createdAtMs + 10 * dayMs;
  const running = (priceCentsPerMonth: number, fromMs = createdAtMs): Accrual => ({
    priceCentsPerMonth,
    createdAtMs: fromMs,
    deletionRequestedAtMs: null,
    vanishedAtMs: null,
  });
  /** The balance at `atMs` of an account with `balanceCents` now: the fold the page shows. */
  const balanceAt = (balanceCents: number, accruals: Accrual[], atMs: number) =>
    balanceCents + totalChargesCents(accruals, nowMs) - totalChargesCents(accruals, atMs);

  it('given a balance of zero, when asked, then it has run out now', () => {
    assert.equal(creditRunsOutAtMs(0, [running(533)], nowMs), nowMs);
  });

  it('given a negative balance and nothing running, when asked, then it has run out now', () => {
    assert.equal(creditRunsOutAtMs(-51, [], nowMs), nowMs);
  });

  it('given credit and no capsuls, when asked, then it never runs out', () => {
    assert.equal(creditRunsOutAtMs(2000, [], nowMs), null);
  });

  it('given credit and only deleted capsuls, when asked, then it never runs out', () => {
    assert.equal(creditRunsOutAtMs(2000, [{ ...f1xs, deletionRequestedAtMs: createdAtMs + dayMs }], nowMs), null);
  });

  it('given credit and only a capsul that vanished, when asked, then it never runs out', () => {
    assert.equal(creditRunsOutAtMs(2000, [{ ...f1xs, vanishedAtMs: createdAtMs + dayMs }], nowMs), null);
  });

  it('given one month of an f1-xs created now, when asked, then it runs out as the charge rounds to 533 cents', () => {
    // 533 cents are charged once 532.5 are accrued: 532.5/533 of a month, to the next millisecond.
    const expectedMs = nowMs + Math.ceil((532.5 / 533) * monthMs);
    const outMs = creditRunsOutAtMs(533, [running(533, nowMs)], nowMs)!;
    assert.equal(outMs, expectedMs);
    assert.equal(balanceAt(533, [running(533, nowMs)], outMs), 0);
    assert.equal(balanceAt(533, [running(533, nowMs)], outMs - 1), 1);
  });

  it("given a deleted capsul's fraction of a cent, when asked, then the rounding it settles moves the answer", () => {
    // 0.4 cents accrued by a deleted capsul make the running one's 0.1 cents round the total up a cent.
    const deleted: Accrual = {
      priceCentsPerMonth: 100,
      createdAtMs,
      deletionRequestedAtMs: createdAtMs + (monthMs * 4) / 1000,
      vanishedAtMs: null,
    };
    const cheap = running(100, nowMs);
    const withDeleted = creditRunsOutAtMs(1, [deleted, cheap], nowMs);
    const alone = creditRunsOutAtMs(1, [cheap], nowMs);
    assert.equal(withDeleted, nowMs + (monthMs * 1) / 1000);
    assert.equal(alone, nowMs + (monthMs * 5) / 1000);
  });

  it('given credit for longer than dates go, when asked, then it lasts until the last date', () => {
    assert.equal(creditRunsOutAtMs(Number.MAX_SAFE_INTEGER, [running(1)], nowMs), 8.64e15);
  });

  it('given credit that runs out past the last date but within doubling reach, when asked, then it lasts until the last date', () => {
    // The doubling probe overshoots to where milliseconds are no longer exact (past 2^53): the search
    // there once never ended. Probes now stop at the last date.
    const balanceCents = Number((BigInt(9.5e15 - nowMs) * 100_000n) / BigInt(monthMs));
    assert.equal(creditRunsOutAtMs(balanceCents, [running(100_000)], nowMs), 8.64e15, 'solved');
    assert.equal(creditRunsOutAtMs(balanceCents, [running(100_000, nowMs + 1)], nowMs), 8.64e15, 'searched');
  });
});

describe('runway properties', () => {
  /** Credit that outlasts JavaScript's dates is reported as lasting until the last one. */
  const lastDateMs = 8.64e15;
  const nowMs = createdAtMs + 5 * 12 * monthMs;
  // Capsuls as a page sees them: created by now, deleted or vanished by now, or still running.
  const pastAccrual: fc.Arbitrary<Accrual> = fc
    .record({
      priceCentsPerMonth: fc.integer({ min: 1, max: 100_000 }),
      createdAtMs: fc.integer({ min: createdAtMs, max: nowMs }),
      deleted: fc.boolean(),
      deletedFraction: fc.double({ min: 0, max: 1, noNaN: true }),
      vanished: fc.boolean(),
      vanishedFraction: fc.double({ min: 0, max: 1, noNaN: true }),
    })
    .map(({ priceCentsPerMonth, createdAtMs: start, deleted, deletedFraction, vanished, vanishedFraction }) => ({
      priceCentsPerMonth,
      createdAtMs: start,
      deletionRequestedAtMs: deleted ? start + Math.floor((nowMs - start) * deletedFraction) : null,
      vanishedAtMs: vanished ? start + Math.floor((nowMs - start) * vanishedFraction) : null,
    }));
  const balance = fc.integer({ min: -100_000, max: 10_000_000 });

  it('is the first millisecond at which the balance the page shows is zero or less', () => {
    fc.assert(
      fc.property(fc.array(pastAccrual, { maxLength: 10 }), balance, (accruals, balanceCents) => {
        const outMs = creditRunsOutAtMs(balanceCents, accruals, nowMs);
        const paidCents = balanceCents + totalChargesCents(accruals, nowMs);
        const balanceAt = (atMs: number) => paidCents - totalChargesCents(accruals, atMs);
        if (balanceCents <= 0) return outMs === nowMs;
        if (!accruals.some((a) => accrualEndMs(a) === null)) return outMs === null;
        if (outMs === lastDateMs) return balanceAt(lastDateMs - 1) > 0; // lasts until the last date, at least
        return outMs !== null && balanceAt(outMs) <= 0 && balanceAt(outMs - 1) > 0;
      }),
    );
  });

  it('with capsuls that start later (searched, not solved), is still the first millisecond at which the balance is zero or less', () => {
    const laterAccrual = fc.record({
      priceCentsPerMonth: fc.integer({ min: 1, max: 100_000 }),
      createdAtMs: fc.integer({ min: createdAtMs, max: nowMs + 3 * monthMs }),
      deletionRequestedAtMs: fc.constant(null),
      vanishedAtMs: fc.constant(null),
    });
    fc.assert(
      fc.property(
        fc.array(laterAccrual, { minLength: 1, maxLength: 10 }),
        fc.integer({ min: 1, max: 10_000_000 }),
        (accruals, balanceCents) => {
          const outMs = creditRunsOutAtMs(balanceCents, accruals, nowMs);
          const paidCents = balanceCents + totalChargesCents(accruals, nowMs);
          const balanceAt = (atMs: number) => paidCents - totalChargesCents(accruals, atMs);
          if (outMs === lastDateMs) return balanceAt(lastDateMs - 1) > 0; // lasts until the last date, at least
          return outMs !== null && balanceAt(outMs) <= 0 && balanceAt(outMs - 1) > 0;
        },
      ),
    );
  });

  it('agrees with the closed form: charges reach what was paid less half a cent', () => {
    fc.assert(
      fc.property(
        fc.array(pastAccrual, { minLength: 1, maxLength: 10 }),
        fc.integer({ min: 1, max: 10_000_000 }),
        (accruals, balanceCents) => {
          const rate = accruals.reduce((sum, a) => sum + (accrualEndMs(a) === null ? BigInt(a.priceCentsPerMonth) : 0n), 0n);
          fc.pre(rate > 0n);
          const exactNow = accruals.reduce((sum, a) => {
            const endMs = accrualEndMs(a) ?? nowMs;
            return sum + BigInt(a.priceCentsPerMonth) * BigInt(endMs - a.createdAtMs);
          }, 0n);
          const paidCents = BigInt(balanceCents + totalChargesCents(accruals, nowMs));
          // Rounded half up, the charge reaches paid cents once the exact charge reaches paid − ½ cent.
          const neededCentMs = (2n * paidCents - 1n) * BigInt(monthMs) - 2n * exactNow;
          const waitMs = (neededCentMs + 2n * rate - 1n) / (2n * rate);
          return creditRunsOutAtMs(balanceCents, accruals, nowMs) === Math.min(nowMs + Number(waitMs), lastDateMs);
        },
      ),
    );
  });
});
