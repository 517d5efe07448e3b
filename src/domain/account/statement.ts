// A month's statement, folded from the account's events with the balance's own functions: the opening
// balance is `balanceCentsAt` the month's first instant, the closing balance `balanceCentsAt` the next
// month's, and the lines between them are every payment fact that took effect in the month and each
// capsul's charge for the time it ran in it. Months are calendar months in UTC.
//
// A statement is always computed from the ledger as it stands (a reissued statement): a fact recorded
// after its month closed (a payment entered late with `--at`, a refund or a vanishing reported late)
// appears in the month it took effect, flagged with the day it was recorded, and the statement says it
// was revised. So a month's opening is always what `capsul balance --as-of` its first instant answers.
import { accrualEndMs, accruedExact, roundCents, totalChargesCents } from '../shared/billing.ts';
import { invalid } from '../shared/errors.ts';
import type { Cents } from '../shared/money.ts';
import type { AccountEvent, Provider } from './events.ts';
import { balanceCentsAt, creditCentsAt, foldAccount, initialAccount, type Account } from './state.ts';

/** A calendar month in UTC: "2026-11". */
export type Month = string;

/** An account event with the instant it was written to the ledger (which may be long after its `at`). */
export type RecordedEvent = { event: AccountEvent; recordedAtMs: number };

export type PaymentLineKind = 'payment' | 'invalidation' | 'reinstatement' | 'refund';

export type PaymentLine = {
  kind: PaymentLineKind;
  atMs: number;
  paymentId: number;
  provider: Provider;
  reference: string | null;
  /** what the fact did to the balance (negative for a reversal or a refund) */
  amountCents: Cents;
  /** when it was recorded, if that was after its month closed; null otherwise */
  recordedLateAtMs: number | null;
};

export type ChargeLine = {
  kind: 'charge';
  vmId: string;
  size: string;
  priceCentsPerMonth: Cents;
  fromMs: number;
  toMs: number;
  /** minus the capsul's charge for [fromMs, toMs], rounded on its own */
  amountCents: Cents;
};

/** The account's charges are rounded once, on the total: its difference from the charge lines, each rounded on its own. */
export type RoundingLine = { kind: 'rounding'; amountCents: Cents };

export type StatementLine = PaymentLine | ChargeLine | RoundingLine;

export type MonthlyStatement = {
  month: Month;
  startMs: number;
  endMs: number;
  openingCents: Cents;
  closingCents: Cents;
  /** money facts in time order, then charges by start */
  lines: StatementLine[];
  /** the latest instant a fact taking effect by the month's end was recorded after it: the statement was reissued then */
  revisedAtMs: number | null;
};

const monthPattern = /^(\d{4})-(\d{2})$/;

/** "2026-11" → the month, or a one-line refusal. */
export function parseMonth(text: string): Month {
  const match = monthPattern.exec(text.trim());
  const month = match ? Number(match[2]) : 0;
  if (!match || Number(match[1]) < 1970 || month < 1 || month > 12) {
    throw invalid(`${JSON.stringify(text)} is not a month: give it as YYYY-MM, like 2026-11`);
  }
  return `${match[1]}-${match[2]}`;
}

export const monthStartMs = (month: Month): number => Date.parse(`${month}-01T00:00:00.000Z`);

export function nextMonth(month: Month): Month {
  const date = new Date(monthStartMs(month));
  date.setUTCMonth(date.getUTCMonth() + 1);
  return monthOf(date.getTime());
}

export function previousMonth(month: Month): Month {
  const date = new Date(monthStartMs(month));
  date.setUTCMonth(date.getUTCMonth() - 1);
  return monthOf(date.getTime());
}

/** The month an instant falls in. */
export const monthOf = (atMs: number): Month => new Date(atMs).toISOString().slice(0, 7);

/** Whether the month is over at `nowMs` (only a closed month has a statement). */
export const isClosed = (month: Month, nowMs: number): boolean => monthStartMs(nextMonth(month)) <= nowMs;

/** The account after its recorded events. */
export const foldRecorded = (events: readonly RecordedEvent[]): Account =>
  foldAccount(
    initialAccount(),
    events.map(({ event }) => event),
  );

const paymentKinds: Partial<Record<AccountEvent['type'], PaymentLineKind>> = {
  PaymentRecorded: 'payment',
  PaymentInvalidated: 'invalidation',
  PaymentReinstated: 'reinstatement',
  PaymentRefunded: 'refund',
};

/**
 * The month's statement. The balance as of an instant counts every fact at or before it, so a month
 * covers the facts after its first instant up to and including the next month's first instant.
 * `state`: the events folded, when the caller has it already.
 */
export function monthlyStatement(events: readonly RecordedEvent[], month: Month, state: Account = foldRecorded(events)): MonthlyStatement {
  return statementOf(state, events, month);
}

function statementOf(state: Account, events: readonly RecordedEvent[], month: Month): MonthlyStatement {
  const startMs = monthStartMs(month);
  const endMs = monthStartMs(nextMonth(month));
  const charges = chargeLines(state, startMs, endMs);
  const lines: StatementLine[] = [...paymentLines(state, events, startMs, endMs), ...charges];
  const vms = [...state.vms.values()];
  const chargesCents = totalChargesCents(vms, endMs) - totalChargesCents(vms, startMs);
  const roundingCents = -chargesCents - charges.reduce((sum, line) => sum + line.amountCents, 0);
  if (roundingCents !== 0) lines.push({ kind: 'rounding', amountCents: roundingCents });
  const openingCents = balanceCentsAt(state, startMs);
  const closingCents = balanceCentsAt(state, endMs);
  const linesCents = lines.reduce((sum, line) => sum + line.amountCents, 0);
  if (openingCents + linesCents !== closingCents) {
    throw new Error(`statement ${month}: opening ${openingCents} + lines ${linesCents} is not the closing ${closingCents}`);
  }
  let revisedAtMs: number | null = null;
  for (const { event, recordedAtMs } of events) {
    if (Date.parse(event.data.at) <= endMs && recordedAtMs > endMs) revisedAtMs = Math.max(revisedAtMs ?? 0, recordedAtMs);
  }
  return { month, startMs, endMs, openingCents, closingCents, lines, revisedAtMs };
}

/**
 * One line per payment fact in the month. What each did to the balance is the payment's credit just
 * after less just before it, from the same `creditCentsAt` the balance sums; facts of one payment at
 * the same instant share one change, shown on the first of them.
 */
function paymentLines(state: Account, events: readonly RecordedEvent[], startMs: number, endMs: number): PaymentLine[] {
  const lines: PaymentLine[] = [];
  const counted = new Set<string>();
  for (const { event, recordedAtMs } of events) {
    const kind = paymentKinds[event.type];
    if (kind === undefined || !('paymentId' in event.data)) continue;
    const payment = state.payments.get(event.data.paymentId);
    const atMs = Date.parse(event.data.at);
    if (!payment || atMs <= startMs || atMs > endMs) continue;
    const key = `${payment.paymentId}@${atMs}`;
    const amountCents = counted.has(key) ? 0 : creditCentsAt(payment, atMs) - creditCentsAt(payment, atMs - 1);
    counted.add(key);
    lines.push({
      kind,
      atMs,
      paymentId: payment.paymentId,
      provider: payment.provider,
      reference: payment.reference,
      amountCents,
      recordedLateAtMs: recordedAtMs > monthEndAfter(atMs) ? recordedAtMs : null,
    });
  }
  return lines.sort((a, b) => a.atMs - b.atMs);
}

/** The end of the statement month a fact at `atMs` belongs to (a fact at a month's first instant closes the month before). */
function monthEndAfter(atMs: number): number {
  const month = monthOf(atMs - 1);
  return monthStartMs(nextMonth(month));
}

/** Each capsul that ran in the month: its charge for that time, rounded on its own (the balance rounds the total). */
function chargeLines(state: Account, startMs: number, endMs: number): ChargeLine[] {
  const lines: ChargeLine[] = [];
  for (const vm of state.vms.values()) {
    const exact = accruedExact(vm, endMs) - accruedExact(vm, startMs);
    if (exact <= 0n) continue;
    lines.push({
      kind: 'charge',
      vmId: vm.vmId,
      size: vm.size,
      priceCentsPerMonth: vm.priceCentsPerMonth,
      fromMs: Math.max(vm.createdAtMs, startMs),
      toMs: Math.min(accrualEndMs(vm) ?? endMs, endMs),
      amountCents: -roundCents(exact),
    });
  }
  return lines.sort((a, b) => a.fromMs - b.fromMs || a.vmId.localeCompare(b.vmId));
}

/** At most this many months are listed: twenty years of statements. */
export const maxStatementMonths = 240;

/**
 * The closed months (before `nowMs`) the account has a statement for, newest first: those a statement
 * would have a line in — a payment fact took effect in it, or a capsul ran in it — found without
 * computing each month's statement.
 */
export function statementMonths(events: readonly RecordedEvent[], nowMs: number, state: Account = foldRecorded(events)): Month[] {
  const months = new Set<Month>();
  for (const { event } of events) {
    if (paymentKinds[event.type] === undefined || !('paymentId' in event.data)) continue;
    // A fact at a month's first instant belongs to the month before (the balance as of an instant counts it).
    if (state.payments.has(event.data.paymentId)) months.add(monthOf(Date.parse(event.data.at) - 1));
  }
  for (const vm of state.vms.values()) {
    if (vm.priceCentsPerMonth <= 0) continue;
    const endMs = Math.min(accrualEndMs(vm) ?? nowMs, nowMs);
    if (endMs <= vm.createdAtMs) continue; // deleted the instant it was created: never charged
    for (let month = monthOf(vm.createdAtMs); monthStartMs(month) < endMs; month = nextMonth(month)) months.add(month);
  }
  return [...months]
    .filter((month) => isClosed(month, nowMs))
    .sort()
    .reverse()
    .slice(0, maxStatementMonths);
}
