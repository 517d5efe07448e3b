// The account's state folded from its events: enough to decide, and to compute the balance at any instant.
import { isAccruing, totalChargesCents, type Accrual } from '../shared/billing.ts';
import type { Cents } from '../shared/money.ts';
import type { AccountEvent, Provider, WarningLevel } from './events.ts';

export type PaymentState = {
  paymentId: number;
  amountCents: Cents;
  provider: Provider;
  reference: string | null;
  receivedAtMs: number;
  /** validity changes in order: [atMs, valid]; the payment is valid until the first invalidation */
  validity: { atMs: number; valid: boolean }[];
  /** refunded totals in order: [atMs, total]; each larger than the one before */
  refunds: { atMs: number; totalRefundedCents: Cents }[];
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
  payments: Map<number, PaymentState>;
  references: Map<string, number>;
  vms: Map<string, VmState>;
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

export function evolveAccount(state: Account, event: AccountEvent): Account {
  switch (event.type) {
    case 'AccountOpened':
      return { ...state, accountId: event.data.accountId, email: event.data.email };
    case 'PaymentRecorded': {
      const d = event.data;
      const payments = new Map(state.payments).set(d.paymentId, {
        paymentId: d.paymentId,
        amountCents: d.amountCents,
        provider: d.provider,
        reference: d.reference,
        receivedAtMs: ms(d.at),
        validity: [],
        refunds: [],
      });
      const references = d.reference ? new Map(state.references).set(d.reference, d.paymentId) : state.references;
      return { ...state, payments, references, warningsIssued: new Set() };
    }
    case 'PaymentInvalidated':
    case 'PaymentReinstated': {
      const payment = state.payments.get(event.data.paymentId);
      if (!payment) return state;
      const change = { atMs: ms(event.data.at), valid: event.type === 'PaymentReinstated' };
      // Kept in time order: a provider's correction may take effect before one already recorded.
      const validity = [...payment.validity, change].sort((a, b) => a.atMs - b.atMs);
      const payments = new Map(state.payments).set(payment.paymentId, { ...payment, validity });
      const warningsIssued = event.type === 'PaymentReinstated' ? new Set<WarningLevel>() : state.warningsIssued;
      return { ...state, payments, warningsIssued };
    }
    case 'PaymentRefunded': {
      const payment = state.payments.get(event.data.paymentId);
      if (!payment) return state;
      const refunds = [...payment.refunds, { atMs: ms(event.data.at), totalRefundedCents: event.data.totalRefundedCents }];
      return { ...state, payments: new Map(state.payments).set(payment.paymentId, { ...payment, refunds }) };
    }
    case 'BalanceWarningIssued':
      return { ...state, warningsIssued: new Set(state.warningsIssued).add(event.data.level) };
    case 'VmCreationRequested': {
      const d = event.data;
      const vms = new Map(state.vms).set(d.vmId, {
        vmId: d.vmId,
        size: d.size,
        os: d.os,
        priceCentsPerMonth: d.priceCentsPerMonth,
        createdAtMs: ms(d.at),
        deletionRequestedAtMs: null,
        vanishedAtMs: null,
      });
      return { ...state, vms };
    }
    case 'VmDeletionRequested': {
      const vm = state.vms.get(event.data.vmId);
      if (!vm) return state;
      return { ...state, vms: new Map(state.vms).set(vm.vmId, { ...vm, deletionRequestedAtMs: ms(event.data.at) }) };
    }
    case 'VmAccrualEnded': {
      const vm = state.vms.get(event.data.vmId);
      if (!vm) return state;
      // The earliest instant it was seen gone wins, in whatever order they were recorded.
      const vanishedAtMs = Math.min(vm.vanishedAtMs ?? Number.POSITIVE_INFINITY, ms(event.data.at));
      return { ...state, vms: new Map(state.vms).set(vm.vmId, { ...vm, vanishedAtMs }) };
    }
    case 'AccountSuspended': {
      const d = event.data;
      const suspension = {
        atMs: ms(d.at),
        vmIds: d.vmIds,
        deleteAfterMs: ms(d.deleteAfter),
        balanceCents: d.balanceCents,
        suspensionPointCents: d.suspensionPointCents,
      };
      return { ...state, suspension };
    }
    case 'AccountResumed':
      return { ...state, suspension: null };
    case 'StatementEmailsChosen':
      return { ...state, statementEmails: event.data.send };
    default: {
      const unknown: never = event;
      return unknown;
    }
  }
}

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
