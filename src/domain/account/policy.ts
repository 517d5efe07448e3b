// The account's money policies: which balance warning it is due, when its capsuls are suspended, resumed
// and deleted for nonpayment, decided from its folded state alone. Pure (no clock, no database), so every level and
// boundary is tested on its own; the decider enforces them and the warnings job asks them what to send.
// docs/billing.md works through examples.
import { warningLevels, type AccountEvent, type WarningLevel } from './events.ts';
import { balanceCentsAt, foldAccount, initialAccount, type Account, type VmState } from './state.ts';
import { creditRunsOutAtMs, isAccruing, type Accrual } from '../shared/billing.ts';
import type { Cents } from '../shared/money.ts';

export const dayMs = 86_400_000;
export const weekMs = 7 * dayMs;

/** The reason of a deletion the policy asks for: the balance reached the overdraft. */
export const nonpaymentReason = 'nonpayment';

export type BalanceSituation = {
  balanceCents: Cents;
  /** all of the account's capsuls as of `nowMs`: deleted ones accrue nothing but settle the rounding */
  accruals: readonly Accrual[];
  nowMs: number;
  /** zero or negative: at or below this balance the account's capsuls are deleted */
  overdraftCents: Cents;
  /** a suspension's end of grace, when one is in force: deletion for nonpayment comes then at the latest */
  deleteAfterMs?: number | null;
};

/**
 * When capsuls stop and go for nonpayment (docs/billing.md, "Suspension, grace, deletion"): at or below
 * the suspension point they are suspended (stopped, disks kept, still charged); a top-up above it
 * resumes them; still suspended `graceMs` later, or at the overdraft whichever comes first, they are
 * deleted. overdraft <= suspension point <= 0; at the overdraft itself there is no suspension (the
 * deletion is due first).
 */
export type NonpaymentRules = { suspensionPointCents: Cents; graceMs: number; overdraftCents: Cents };

export const defaultGraceMs = 14 * dayMs;

export type NonpaymentStep =
  | { step: 'suspend'; deleteAfterMs: number }
  | { step: 'resume' }
  | { step: 'delete'; why: 'overdraft' | 'grace-ended' }
  | null;

/** Why the rules are not rules, or null: the suspension point lies at or above the overdraft, at most zero; grace is whole and positive. */
export function nonpaymentRulesRefusal(rules: NonpaymentRules): string | null {
  const { suspensionPointCents: point, graceMs, overdraftCents } = rules;
  if (!isOverdraft(overdraftCents)) return `the overdraft is zero or negative cents, not ${overdraftCents}`;
  if (!Number.isSafeInteger(point) || point > 0 || point < overdraftCents)
    return `the suspension point is whole cents at or above the overdraft (${overdraftCents}) and at most zero, not ${point}`;
  if (!Number.isSafeInteger(graceMs) || graceMs <= 0) return `the grace period is a positive number of milliseconds, not ${graceMs}`;
  return null;
}

/**
 * What nonpayment asks of the account at `nowMs`, or null: resume a suspended account whose balance is
 * back above the suspension point; delete the capsuls of one at or below the overdraft, or suspended
 * past its grace; suspend one with capsuls running at or below the suspension point.
 */
export function nonpaymentStepOf(account: Account, nowMs: number, rules: NonpaymentRules): NonpaymentStep {
  const balanceCents = balanceCentsAt(account, nowMs);
  const suspension = account.suspension;
  if (suspension !== null && balanceCents > rules.suspensionPointCents) return { step: 'resume' };
  const running = [...account.vms.values()].some((vm) => isRunning(vm, nowMs));
  if (!running) return null;
  if (balanceCents <= rules.overdraftCents) return { step: 'delete', why: 'overdraft' };
  if (suspension !== null && nowMs >= suspension.deleteAfterMs) return { step: 'delete', why: 'grace-ended' };
  if (suspension === null && balanceCents <= rules.suspensionPointCents) return { step: 'suspend', deleteAfterMs: nowMs + rules.graceMs };
  return null;
}

/**
 * The highest level that applies, or null. With nothing running the balance cannot fall, so there
 * is nothing to warn about, whatever the balance.
 */
export function warningLevelOf(situation: BalanceSituation): WarningLevel | null {
  const { balanceCents, accruals, nowMs, overdraftCents } = situation;
  const deleteAfterMs = situation.deleteAfterMs ?? null;
  if (!isOverdraft(overdraftCents)) throw new RangeError(`the overdraft is zero or negative cents, not ${overdraftCents}`);
  if (!accruals.some((accrual) => isRunning(accrual, nowMs))) return null;
  if (balanceCents <= overdraftCents || (deleteAfterMs !== null && nowMs >= deleteAfterMs)) return 'deletion-now';
  if (balanceCents <= 0) {
    const reachesOverdraftAtMs = reachesCentsAtMs(situation, overdraftCents);
    const deletionAtMs = Math.min(reachesOverdraftAtMs ?? Number.POSITIVE_INFINITY, deleteAfterMs ?? Number.POSITIVE_INFINITY);
    return deletionAtMs - nowMs <= weekMs ? 'deletion-within-week' : 'out-of-funds';
  }
  const runsOutAtMs = creditRunsOutAtMs(balanceCents, accruals, nowMs);
  if (runsOutAtMs === null) return null;
  if (runsOutAtMs - nowMs <= dayMs) return 'runs-out-within-day';
  if (runsOutAtMs - nowMs <= weekMs) return 'runs-out-within-week';
  return null;
}

/**
 * The first millisecond at or after `nowMs` at which the balance is `thresholdCents` or less, at the
 * running capsuls' rate: the runway to zero is the case `thresholdCents` = 0, shifted.
 */
export function reachesCentsAtMs(situation: Omit<BalanceSituation, 'overdraftCents'>, thresholdCents: Cents): number | null {
  return creditRunsOutAtMs(situation.balanceCents - thresholdCents, situation.accruals, situation.nowMs);
}

/**
 * The level to issue now: none when it, or a higher one, was issued already in this episode (after
 * "out of funds", a "runs out within a week" would only confuse).
 */
export function warningToIssue(level: WarningLevel | null, issued: ReadonlySet<WarningLevel>): WarningLevel | null {
  if (level === null) return null;
  const rank = warningLevels.indexOf(level);
  return warningLevels.some((other, i) => i >= rank && issued.has(other)) ? null : level;
}

/**
 * The account as it stood at `atMs`: its events that had taken effect by then, folded. Opening an
 * account is an identity, not a fact in time (as in the projections' as-of replay).
 */
export function accountAsOf(events: readonly AccountEvent[], atMs: number): Account {
  return foldAccount(
    initialAccount(),
    events.filter((event) => event.type === 'AccountOpened' || Date.parse(event.data.at) <= atMs),
  );
}

export type AccountEvaluation = {
  balanceCents: Cents;
  level: WarningLevel | null;
  /** `level` unless it or a higher one was issued already in this episode */
  toIssue: WarningLevel | null;
  /** the capsuls that accrue charges, oldest first */
  running: VmState[];
  rateCentsPerMonth: Cents;
  /** when the balance reaches zero, and the overdraft, at this rate (null: never) */
  runsOutAtMs: number | null;
  reachesOverdraftAtMs: number | null;
};

/** Everything the warnings job needs to know about one account at `nowMs`. */
export function evaluateAccount(account: Account, nowMs: number, overdraftCents: Cents): AccountEvaluation {
  const balanceCents = balanceCentsAt(account, nowMs);
  const accruals = [...account.vms.values()].filter((vm) => vm.createdAtMs <= nowMs);
  const running = accruals
    .filter((vm) => isRunning(vm, nowMs))
    .sort((a, b) => a.createdAtMs - b.createdAtMs || a.vmId.localeCompare(b.vmId));
  const situation = { balanceCents, accruals, nowMs, overdraftCents, deleteAfterMs: account.suspension?.deleteAfterMs ?? null };
  const level = warningLevelOf(situation);
  return {
    balanceCents,
    level,
    toIssue: warningToIssue(level, account.warningsIssued),
    running,
    rateCentsPerMonth: running.reduce((sum, vm) => sum + vm.priceCentsPerMonth, 0),
    runsOutAtMs: creditRunsOutAtMs(balanceCents, accruals, nowMs),
    reachesOverdraftAtMs: reachesCentsAtMs(situation, overdraftCents),
  };
}

/** An overdraft is a whole number of cents, zero or negative. */
export const isOverdraft = (cents: Cents): boolean => Number.isSafeInteger(cents) && cents <= 0;

/** Past the overdraft: at or below it at `nowMs`, the account's capsuls are deleted for nonpayment. */
export function isPastOverdraft(account: Account, nowMs: number, overdraftCents: Cents): boolean {
  return balanceCentsAt(account, nowMs) <= overdraftCents;
}

/** Suspended past its grace at `nowMs` and still at or below the suspension point it was suspended at. */
export function isPastGrace(account: Account, nowMs: number): boolean {
  const suspension = account.suspension;
  return suspension !== null && nowMs >= suspension.deleteAfterMs && balanceCentsAt(account, nowMs) <= suspension.suspensionPointCents;
}

/** Accrues charges at `nowMs` (as billing.ts counts a running capsul). */
function isRunning(accrual: Accrual, nowMs: number): boolean {
  return accrual.createdAtMs <= nowMs && isAccruing(accrual) && accrual.priceCentsPerMonth > 0;
}
