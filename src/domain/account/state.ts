// The account's state folded from its events: enough to decide, and to compute the balance at any instant.
import { totalChargesCents, type Accrual } from '../shared/billing.ts';
import type { Cents } from '../shared/money.ts';
import type { AccountEvent, Provider } from './events.ts';

export type PaymentState = {
  paymentId: number;
  amountCents: Cents;
  provider: Provider;
  reference: string | null;
  receivedAtMs: number;
  /** validity changes in order: [atMs, valid]; the payment is valid until the first invalidation */
  validity: { atMs: number; valid: boolean }[];
};

export type VmState = Accrual & { vmId: string; size: string; os: string };

export type Account = {
  accountId: string | null;
  email: string | null;
  payments: Map<number, PaymentState>;
  references: Map<string, number>;
  vms: Map<string, VmState>;
};

export const initialAccount = (): Account => ({
  accountId: null,
  email: null,
  payments: new Map(),
  references: new Map(),
  vms: new Map(),
});

const ms = (iso: string) => Date.parse(iso);

export function evolveAccount(state: Account, event: AccountEvent): Account {
  switch (event.type) {
    case 'AccountOpened':
      return { ...state, accountId: event.data.accountId, email: event.data.email };
    case 'PaymentRecorded': {
      const d = event.data;
      const payments = new Map(state.payments).set(d.paymentId, {
        paymentId: d.paymentId, amountCents: d.amountCents, provider: d.provider, reference: d.reference,
        receivedAtMs: ms(d.at), validity: [],
      });
      const references = d.reference ? new Map(state.references).set(d.reference, d.paymentId) : state.references;
      return { ...state, payments, references };
    }
    case 'PaymentInvalidated':
    case 'PaymentReinstated': {
      const payment = state.payments.get(event.data.paymentId);
      if (!payment) return state;
      const change = { atMs: ms(event.data.at), valid: event.type === 'PaymentReinstated' };
      const payments = new Map(state.payments).set(payment.paymentId, { ...payment, validity: [...payment.validity, change] });
      return { ...state, payments };
    }
    case 'VmCreationRequested': {
      const d = event.data;
      const vms = new Map(state.vms).set(d.vmId, {
        vmId: d.vmId, size: d.size, os: d.os, priceCentsPerMonth: d.priceCentsPerMonth,
        createdAtMs: ms(d.at), deletionRequestedAtMs: null,
      });
      return { ...state, vms };
    }
    case 'VmDeletionRequested': {
      const vm = state.vms.get(event.data.vmId);
      if (!vm) return state;
      return { ...state, vms: new Map(state.vms).set(vm.vmId, { ...vm, deletionRequestedAtMs: ms(event.data.at) }) };
    }
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

/** Valid payments received by `atMs` minus every capsul's charges up to `atMs` (past or future). */
export function balanceCentsAt(state: Account, atMs: number): Cents {
  let paid = 0;
  for (const payment of state.payments.values()) if (isPaymentValidAt(payment, atMs)) paid += payment.amountCents;
  const accruals = [...state.vms.values()].filter((vm) => vm.createdAtMs <= atMs);
  return paid - totalChargesCents(accruals, atMs);
}

/** Capsuls whose deletion has not been requested: they accrue charges. */
export function activeVms(state: Account): VmState[] {
  return [...state.vms.values()].filter((vm) => vm.deletionRequestedAtMs === null);
}
