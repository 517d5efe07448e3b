// The account's state as a snapshot (domain/shared/snapshot.ts): payments and capsuls as rows, in the
// order the Maps hold them, so the state read back iterates exactly as the folded one.
import { fields, flag, list, number, oneOf, orNull, row, text, type SnapshotCodec } from '../shared/snapshot.ts';
import { warningLevels, type Provider } from './events.ts';
import type { Account, PaymentState, Suspension, VmState } from './state.ts';

const providers: readonly Provider[] = ['manual', 'stripe', 'btcpay'];

const encodePayment = (p: PaymentState) => [
  p.paymentId,
  p.amountCents,
  p.provider,
  p.reference,
  p.receivedAtMs,
  p.validity.map((change) => [change.atMs, change.valid]),
  p.refunds.map((refund) => [refund.atMs, refund.totalRefundedCents]),
];

function decodePayment(value: unknown): PaymentState {
  const [paymentId, amountCents, provider, reference, receivedAtMs, validity, refunds] = row(value, 7, 'a payment');
  return {
    paymentId: number(paymentId, 'a payment id'),
    amountCents: number(amountCents, 'a payment amount'),
    provider: oneOf(provider, providers, 'a provider'),
    reference: orNull(reference, text, 'a reference'),
    receivedAtMs: number(receivedAtMs, 'a payment instant'),
    validity: list(validity, 'validity').map((change) => {
      const [atMs, valid] = row(change, 2, 'a validity change');
      return { atMs: number(atMs, 'a validity instant'), valid: flag(valid, 'validity') };
    }),
    refunds: list(refunds, 'refunds').map((refund) => {
      const [atMs, total] = row(refund, 2, 'a refund');
      return { atMs: number(atMs, 'a refund instant'), totalRefundedCents: number(total, 'a refunded total') };
    }),
  };
}

const encodeVm = (vm: VmState) => [
  vm.vmId,
  vm.size,
  vm.os,
  vm.priceCentsPerMonth,
  vm.createdAtMs,
  vm.deletionRequestedAtMs,
  vm.vanishedAtMs,
];

function decodeVm(value: unknown): VmState {
  const [vmId, size, os, price, createdAtMs, deletionRequestedAtMs, vanishedAtMs] = row(value, 7, 'a capsul');
  return {
    vmId: text(vmId, 'a capsul id'),
    size: text(size, 'a size'),
    os: text(os, 'an os'),
    priceCentsPerMonth: number(price, 'a price'),
    createdAtMs: number(createdAtMs, 'a creation instant'),
    deletionRequestedAtMs: orNull(deletionRequestedAtMs, number, 'a deletion instant'),
    vanishedAtMs: orNull(vanishedAtMs, number, 'a vanishing instant'),
  };
}

function decodeSuspension(value: unknown): Suspension {
  const s = fields(value, 'the suspension');
  return {
    atMs: number(s.atMs, 'the suspension instant'),
    vmIds: list(s.vmIds, 'the suspended capsuls').map((id) => text(id, 'a suspended capsul')),
    deleteAfterMs: number(s.deleteAfterMs, 'the deletion instant'),
    balanceCents: number(s.balanceCents, 'the suspended balance'),
    suspensionPointCents: number(s.suspensionPointCents, 'the suspension point'),
  };
}

export const accountSnapshot: SnapshotCodec<Account> = {
  shapeVersion: 1,
  encode: (state) => ({
    accountId: state.accountId,
    email: state.email,
    payments: [...state.payments.values()].map(encodePayment),
    references: [...state.references],
    vms: [...state.vms.values()].map(encodeVm),
    warningsIssued: [...state.warningsIssued],
    suspension: state.suspension,
    statementEmails: state.statementEmails,
  }),
  decode: (json) => {
    const s = fields(json, 'the account');
    const payments = list(s.payments, 'payments').map(decodePayment);
    const vms = list(s.vms, 'capsuls').map(decodeVm);
    return {
      accountId: orNull(s.accountId, text, 'the account id'),
      email: orNull(s.email, text, 'the email'),
      payments: new Map(payments.map((payment) => [payment.paymentId, payment])),
      references: new Map(
        list(s.references, 'references').map((entry) => {
          const [reference, paymentId] = row(entry, 2, 'a reference');
          return [text(reference, 'a reference'), number(paymentId, 'a referenced payment')];
        }),
      ),
      vms: new Map(vms.map((vm) => [vm.vmId, vm])),
      warningsIssued: new Set(list(s.warningsIssued, 'warnings').map((level) => oneOf(level, warningLevels, 'a warning level'))),
      suspension: orNull(s.suspension, decodeSuspension, 'the suspension'),
      statementEmails: flag(s.statementEmails, 'the statement choice'),
    };
  },
};
