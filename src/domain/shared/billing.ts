// Billing math, exact. A capsul accrues its captured monthly price prorated by time from its creation
// until its deletion is requested or, sooner, its host saw it vanish; a month is 30.44 days
// (capsul-flask's figure).
//
// Rounding, applied once: every capsul's accrual is kept exact in units of 1/monthMs of a cent
// (price in cents × milliseconds), the account's total is summed exactly, and only that total is
// rounded to whole cents, half up. Per-capsul figures shown to people are rounded the same way on
// their own, so they may differ from the total by a cent when added up by hand.
import type { Cents } from './money.ts';

export const monthMs = 2_630_016_000; // 30.44 × 86,400,000
const monthMsBig = BigInt(monthMs);

export type Accrual = {
  priceCentsPerMonth: Cents;
  createdAtMs: number;
  deletionRequestedAtMs: number | null;
  /** when its host saw it gone without a deletion request (VmAccrualEnded): nothing accrues after */
  vanishedAtMs: number | null;
};

/** When the capsul stops accruing: its deletion request or its vanishing, whichever came first; null while it runs on. */
export function accrualEndMs(accrual: Accrual): number | null {
  const { deletionRequestedAtMs: requestedMs, vanishedAtMs } = accrual;
  if (requestedMs === null) return vanishedAtMs;
  return vanishedAtMs === null ? requestedMs : Math.min(requestedMs, vanishedAtMs);
}

/** Still accruing with no end in sight: neither deleted nor vanished (what "running" means to billing). */
export const isAccruing = (accrual: Accrual): boolean => accrualEndMs(accrual) === null;

/** The exact charge of one capsul up to `atMs`, in cent·ms (divide by monthMs for cents). */
export function accruedExact(accrual: Accrual, atMs: number): bigint {
  const endMs = Math.min(atMs, accrualEndMs(accrual) ?? Number.POSITIVE_INFINITY);
  const elapsedMs = Math.max(0, endMs - accrual.createdAtMs);
  return BigInt(accrual.priceCentsPerMonth) * BigInt(elapsedMs);
}

/** Exact cent·ms → whole cents, half up. */
export function roundCents(exact: bigint): Cents {
  return Number((exact * 2n + monthMsBig) / (2n * monthMsBig));
}

/** Total charges of several capsuls up to `atMs`, rounded once. */
export function totalChargesCents(accruals: Iterable<Accrual>, atMs: number): Cents {
  let exact = 0n;
  for (const accrual of accruals) exact += accruedExact(accrual, atMs);
  return roundCents(exact);
}

/** One capsul's charge up to `atMs`, rounded on its own (for display). */
export function chargeCents(accrual: Accrual, atMs: number): Cents {
  return roundCents(accruedExact(accrual, atMs));
}

/** Dates end here (year 275760): credit that outlasts it is reported as lasting until then. */
const maxDateMs = 8.64e15;

/**
 * The first millisecond at or after `nowMs` at which the balance is zero or less, if the capsuls
 * go on as they are: `nowMs` when it already is, null when nothing accrues any more. `accruals` are
 * all the account's capsuls: the deleted ones accrue nothing more, but their exact charges settle
 * the rounding, so the answer is exact to the same rounding as the balance itself.
 */
export function creditRunsOutAtMs(balanceCents: Cents, accruals: readonly Accrual[], nowMs: number): number | null {
  if (balanceCents <= 0) return nowMs;
  const running = accruals.filter((accrual) => isAccruing(accrual) && accrual.priceCentsPerMonth > 0);
  if (running.length === 0) return null;
  if (running.every((accrual) => accrual.createdAtMs <= nowMs)) return runsOutLinearly(balanceCents, accruals, running, nowMs);
  // A capsul starting later makes the charges bend: search the fold of the balance itself.
  const paidCents = balanceCents + totalChargesCents(accruals, nowMs);
  const isOut = (atMs: number) => paidCents - totalChargesCents(accruals, atMs) <= 0;
  // Charges never decrease as time goes on: double a step until it runs out, then halve back to the
  // millisecond. Probes stay at or below maxDateMs, below 2^53, where every millisecond is exact.
  let inCreditMs = nowMs;
  let stepMs = monthMs;
  let outMs: number;
  for (;;) {
    const probeMs = Math.min(inCreditMs + stepMs, maxDateMs);
    if (isOut(probeMs)) {
      outMs = probeMs;
      break;
    }
    if (probeMs === maxDateMs) return maxDateMs;
    inCreditMs = probeMs;
    stepMs *= 2;
  }
  while (outMs - inCreditMs > 1) {
    const middleMs = inCreditMs + Math.floor((outMs - inCreditMs) / 2);
    if (isOut(middleMs)) outMs = middleMs;
    else inCreditMs = middleMs;
  }
  return outMs;
}

/**
 * When every running capsul already exists, charges grow linearly from now: the exact charge is
 * exactNow + rate·d, and rounded half up it reaches what was paid once 2·exact ≥ monthMs·(2·paid − 1).
 * Solved in whole cent·ms, so it is the same millisecond the search over the rounded fold finds.
 */
function runsOutLinearly(balanceCents: Cents, accruals: readonly Accrual[], running: readonly Accrual[], nowMs: number): number {
  let exactNow = 0n;
  for (const accrual of accruals) exactNow += accruedExact(accrual, nowMs);
  const paidCents = BigInt(balanceCents) + BigInt(roundCents(exactNow));
  const rate = running.reduce((sum, accrual) => sum + BigInt(accrual.priceCentsPerMonth), 0n);
  const needed = monthMsBig * (2n * paidCents - 1n) - 2n * exactNow;
  const waitMs = needed <= 0n ? 0n : (needed + 2n * rate - 1n) / (2n * rate);
  return waitMs >= BigInt(maxDateMs - nowMs) ? maxDateMs : nowMs + Number(waitMs);
}
