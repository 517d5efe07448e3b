// The account's state folded from its events: enough to decide, and to compute the balance at any instant.
import { isAccruing, totalChargesCents, type Accrual } from '../shared/billing.ts';
import { linearFold } from '../shared/fold.ts';
import type { Cents } from '../shared/money.ts';
import type { AccountEvent, Provider, WarningLevel } from './events.ts';

export type PaymentState = {
  paymentId: number;
  amountCents: Cents;
  provider: Provider;
  reference: string | null;
  receivedAtMs: number;
  /** validity changes in order: [atMs, valid]; the payment is valid until the first invalidation */
  validity: readonly { atMs: number; valid: boolean }[];
  /** refunded totals in order: [atMs, total]; each larger than the one before */
  refunds: readonly { atMs: number; totalRefundedCents: Cents }[];
};

export type VmState = Accrual & { vmId: string; size: string; os: string };

/** A suspension in force: since when, the capsuls it stopped, and when deletion for nonpayment comes. */
export type Suspension = {
  atMs: number;
  vmIds: readonly string[];
  deleteAfterMs: number;
  balanceCents: Cents;
  suspensionPointCents: Cents;
};

export type Account = {
  accountId: string | null;
  email: string | null;
  payments: ReadonlyMap<number, PaymentState>;
  references: ReadonlyMap<string, number>;
  vms: ReadonlyMap<string, VmState>;
  /** warning levels issued since the last top-up (a payment recorded or reinstated re-arms them all) */
  warningsIssued: ReadonlySet<WarningLevel>;
  /** the suspension in force, if any (AccountSuspended, until AccountResumed) */
  suspension: Suspension | null;
  /** whether each month's statement is emailed (StatementEmailsChosen); yes until the customer says otherwise */
  statementEmails: boolean;
};

export const initialAccount = (): Account => ({
  accountId: null,
  email: null,
  payments: new Map(),
  references: new Map(),
  vms: new Map(),
  warningsIssued: new Set(),
  suspension: null,
  statementEmails: true,
});

const ms = (iso: string) => Date.parse(iso);

/** A new payment's validity changes and refunds: one empty list shared by all (they are replaced, never changed). */
const none: readonly never[] = Object.freeze([]);

/** The account being folded: its own collections, changed in place (shared/fold.ts). */
type WorkingAccount = Account & {
  payments: Map<number, PaymentState>;
  references: Map<string, number>;
  vms: Map<string, VmState>;
  warningsIssued: Set<WarningLevel>;
};

const workingCopy = (state: Account): WorkingAccount => ({
  ...state,
  payments: new Map(state.payments),
  references: new Map(state.references),
  vms: new Map(state.vms),
  warningsIssued: new Set(state.warningsIssued),
});

function applyAccount(state: WorkingAccount, event: AccountEvent): void {
  switch (event.type) {
    case 'AccountOpened':
      state.accountId = event.data.accountId;
      state.email = event.data.email;
      return;
    case 'PaymentRecorded': {
      const d = event.data;
      state.payments.set(d.paymentId, {
        paymentId: d.paymentId,
        amountCents: d.amountCents,
        provider: d.provider,
        reference: d.reference,
        receivedAtMs: ms(d.at),
        validity: none,
        refunds: none,
      });
      if (d.reference) state.references.set(d.reference, d.paymentId);
      rearmWarnings(state);
      return;
    }
    case 'PaymentInvalidated':
    case 'PaymentReinstated': {
      const payment = state.payments.get(event.data.paymentId);
      if (!payment) return;
      const change = { atMs: ms(event.data.at), valid: event.type === 'PaymentReinstated' };
      state.payments.set(payment.paymentId, { ...payment, validity: inTimeOrder(payment.validity, change) });
      if (event.type === 'PaymentReinstated') rearmWarnings(state);
      return;
    }
    case 'PaymentRefunded': {
      const payment = state.payments.get(event.data.paymentId);
      if (!payment) return;
      const refunds = [...payment.refunds, { atMs: ms(event.data.at), totalRefundedCents: event.data.totalRefundedCents }];
      state.payments.set(payment.paymentId, { ...payment, refunds });
      return;
    }
    case 'BalanceWarningIssued':
      state.warningsIssued.add(event.data.level);
      return;
    case 'VmCreationRequested': {
      const d = event.data;
      state.vms.set(d.vmId, {
        vmId: d.vmId,
        size: d.size,
        os: d.os,
        priceCentsPerMonth: d.priceCentsPerMonth,
        createdAtMs: ms(d.at),
        deletionRequestedAtMs: null,
        vanishedAtMs: null,
      });
      return;
    }
    case 'VmDeletionRequested': {
      const vm = state.vms.get(event.data.vmId);
      if (vm) state.vms.set(vm.vmId, { ...vm, deletionRequestedAtMs: ms(event.data.at) });
      return;
    }
    case 'VmAccrualEnded': {
      const vm = state.vms.get(event.data.vmId);
      if (!vm) return;
      // The earliest instant it was seen gone wins, in whatever order they were recorded.
      const vanishedAtMs = Math.min(vm.vanishedAtMs ?? Number.POSITIVE_INFINITY, ms(event.data.at));
      state.vms.set(vm.vmId, { ...vm, vanishedAtMs });
      return;
    }
    case 'AccountSuspended': {
      const d = event.data;
      state.suspension = {
        atMs: ms(d.at),
        vmIds: d.vmIds,
        deleteAfterMs: ms(d.deleteAfter),
        balanceCents: d.balanceCents,
        suspensionPointCents: d.suspensionPointCents,
      };
      return;
    }
    case 'AccountResumed':
      state.suspension = null;
      return;
    case 'StatementEmailsChosen':
      state.statementEmails = event.data.send;
      return;
    default: {
      const unknown: never = event;
      throw new Error(`no account event ${(unknown as { type: string }).type}`);
    }
  }
}

/** A top-up re-arms every warning. Only when one was issued: `clear()` allocates a new table even for an empty Set, once per payment. */
function rearmWarnings(state: WorkingAccount): void {
  if (state.warningsIssued.size > 0) state.warningsIssued.clear();
}

/**
 * A payment's validity changes with `change` among them, in time order: a provider's correction may take
 * effect before one already recorded. It goes after every change at or before its instant, where a
 * stable sort of them all would put it.
 */
function inTimeOrder(validity: PaymentState['validity'], change: PaymentState['validity'][number]): PaymentState['validity'] {
  let at = validity.length;
  while (at > 0 && validity[at - 1]!.atMs > change.atMs) at--;
  return [...validity.slice(0, at), change, ...validity.slice(at)];
}

/**
 * `foldAccount(state, events)`: the account after `events`, in O(events); `evolveAccount` for one event.
 * Every place that folds an account stream folds with `foldAccount`. Changing the state's shape or what
 * an event does to it: bump `accountSnapshot.shapeVersion` (snapshot.ts), or stored snapshots lie.
 */
export const { fold: foldAccount, evolve: evolveAccount } = linearFold(workingCopy, applyAccount);

export function isPaymentValidAt(payment: PaymentState, atMs: number): boolean {
  if (payment.receivedAtMs > atMs) return false;
  let valid = true;
  for (const change of payment.validity) if (change.atMs <= atMs) valid = change.valid;
  return valid;
}

export function isPaymentValid(payment: PaymentState): boolean {
  return payment.validity.at(-1)?.valid ?? true;
}

/** The refunded total as of `atMs` (the largest reported by then). */
export function refundedCentsAt(payment: PaymentState, atMs: number): Cents {
  let total = 0;
  for (const refund of payment.refunds) if (refund.atMs <= atMs) total = Math.max(total, refund.totalRefundedCents);
  return total;
}

export const refundedCents = (payment: PaymentState): Cents => refundedCentsAt(payment, Number.POSITIVE_INFINITY);

/** What a payment credits at `atMs`: nothing unless valid then; its amount less what was refunded by then. */
export function creditCentsAt(payment: PaymentState, atMs: number): Cents {
  return isPaymentValidAt(payment, atMs) ? payment.amountCents - refundedCentsAt(payment, atMs) : 0;
}

/** Valid payments received by `atMs`, less refunds, minus every capsul's charges up to `atMs` (past or future). */
export function balanceCentsAt(state: Account, atMs: number): Cents {
  let paid = 0;
  for (const payment of state.payments.values()) paid += creditCentsAt(payment, atMs);
  const accruals = [...state.vms.values()].filter((vm) => vm.createdAtMs <= atMs);
  return paid - totalChargesCents(accruals, atMs);
}

/** Capsuls neither deleted (requested) nor vanished from their host: they accrue charges. */
export function activeVms(state: Account): VmState[] {
  return [...state.vms.values()].filter(isAccruing);
}
