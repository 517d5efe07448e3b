// Billing math, exact. A capsul accrues its captured monthly price prorated by time from its creation
// until its deletion is requested; a month is 30.44 days (capsul-flask's figure).
//
// Rounding, applied once: every capsul's accrual is kept exact in units of 1/monthMs of a cent
// (price in cents × milliseconds), the account's total is summed exactly, and only that total is
// rounded to whole cents, half up. Per-capsul figures shown to people are rounded the same way on
// their own, so they may differ from the total by a cent when added up by hand.
import type { Cents } from './money.ts';

export const monthMs = 2_630_016_000; // 30.44 × 86,400,000
const monthMsBig = BigInt(monthMs);

export type Accrual = { priceCentsPerMonth: Cents; createdAtMs: number; deletionRequestedAtMs: number | null };

/** The exact charge of one capsul up to `atMs`, in cent·ms (divide by monthMs for cents). */
export function accruedExact(accrual: Accrual, atMs: number): bigint {
  const endMs = Math.min(atMs, accrual.deletionRequestedAtMs ?? Number.POSITIVE_INFINITY);
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
