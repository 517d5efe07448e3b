// Pure decisions over the account stream: payments and their corrections, capsul creation and deletion.
import type { Command } from '@event-driven-io/emmett';
import { DomainError, invalid, notFound, refused } from '../shared/errors.ts';
import { formatCents, maxPaymentCents, type Cents } from '../shared/money.ts';
import { maxSshKeysPerCapsul, parseSshPublicKey } from '../shared/ssh.ts';
import type { AccountEvent, Provider } from './events.ts';
import { activeVms, balanceCentsAt, evolveAccount, initialAccount, isPaymentValid, type Account } from './state.ts';

export type CommandMetadata = { now: Date };

export type RecordPayment = Command<
  'RecordPayment',
  {
    accountId: string;
    email: string;
    paymentId: number;
    amountCents: Cents;
    provider: Provider;
    reference: string | null;
    receivedAt: Date;
  },
  CommandMetadata
>;
export type InvalidatePayment = Command<'InvalidatePayment', { paymentId: number; reason: string }, CommandMetadata>;
export type ReinstatePayment = Command<'ReinstatePayment', { paymentId: number; reason: string }, CommandMetadata>;
export type RequestVmCreation = Command<
  'RequestVmCreation',
  { vmId: string; size: string; os: string; sshPublicKeys: string[]; priceCentsPerMonth: Cents },
  CommandMetadata
>;
export type RequestVmDeletion = Command<'RequestVmDeletion', { vmId: string; reason: string }, CommandMetadata>;

export type AccountCommand = RecordPayment | InvalidatePayment | ReinstatePayment | RequestVmCreation | RequestVmDeletion;

/** How far in the future a received-at time may lie (clock skew between machines). */
const clockSkewMs = 5 * 60_000;
export const maxReasonLength = 1000;
export const vmIdPattern = /^capsul-[a-z0-9]{10}$/;

export function decideAccount(command: AccountCommand, state: Account): AccountEvent[] {
  const now = command.metadata!.now;
  const at = now.toISOString();
  switch (command.type) {
    case 'RecordPayment':
      return recordPayment(command.data, state, now);
    case 'InvalidatePayment': {
      const payment = existingPayment(state, command.data.paymentId);
      const reason = requireReason(command.data.reason);
      if (!isPaymentValid(payment)) return [];
      return [{ type: 'PaymentInvalidated', data: { accountId: state.accountId!, paymentId: payment.paymentId, reason, at } }];
    }
    case 'ReinstatePayment': {
      const payment = existingPayment(state, command.data.paymentId);
      const reason = requireReason(command.data.reason);
      if (isPaymentValid(payment)) return [];
      return [{ type: 'PaymentReinstated', data: { accountId: state.accountId!, paymentId: payment.paymentId, reason, at } }];
    }
    case 'RequestVmCreation':
      return requestVmCreation(command.data, state, now);
    case 'RequestVmDeletion': {
      const vm = state.vms.get(command.data.vmId);
      if (!vm) throw notFound(`there is no capsul ${command.data.vmId} on this account`);
      const reason = requireReason(command.data.reason);
      if (vm.deletionRequestedAtMs !== null) return [];
      return [{ type: 'VmDeletionRequested', data: { accountId: state.accountId!, vmId: vm.vmId, reason, at } }];
    }
    default: {
      const unknown: never = command;
      throw new Error(`unknown command ${(unknown as { type: string }).type}`);
    }
  }
}

function recordPayment(data: RecordPayment['data'], state: Account, now: Date): AccountEvent[] {
  if (!Number.isSafeInteger(data.amountCents) || data.amountCents <= 0 || data.amountCents > maxPaymentCents) {
    throw invalid(`a payment must be between 0.01 and ${formatCents(maxPaymentCents)} dollars`);
  }
  if (!Number.isSafeInteger(data.paymentId) || data.paymentId <= 0) throw invalid('a payment id is a positive whole number');
  if (state.payments.has(data.paymentId)) throw refused(`payment ${data.paymentId} is already recorded`);
  const receivedAtMs = data.receivedAt.getTime();
  if (Number.isNaN(receivedAtMs)) throw invalid('the time the payment was received is not a valid time');
  if (receivedAtMs > now.getTime() + clockSkewMs) throw invalid('a payment cannot be received in the future');
  if (data.reference !== null) {
    if (data.reference.length === 0 || data.reference.length > 200) throw invalid('a payment reference has 1 to 200 characters');
    const existingId = state.references.get(data.reference);
    if (existingId !== undefined) {
      const existing = state.payments.get(existingId)!;
      if (existing.amountCents !== data.amountCents || existing.provider !== data.provider) {
        throw refused(
          `reference ${data.reference} was already recorded as payment ${existingId} of ${formatCents(existing.amountCents)} dollars`,
        );
      }
      return []; // the same payment delivered again
    }
  }
  const events: AccountEvent[] = [];
  const accountId = state.accountId ?? data.accountId;
  if (state.accountId === null) {
    const openedAt = new Date(Math.min(receivedAtMs, now.getTime())).toISOString();
    events.push({ type: 'AccountOpened', data: { accountId, email: data.email, at: openedAt } });
  }
  events.push({
    type: 'PaymentRecorded',
    data: {
      accountId, paymentId: data.paymentId, amountCents: data.amountCents, provider: data.provider,
      reference: data.reference, at: data.receivedAt.toISOString(), recordedAt: now.toISOString(),
    },
  });
  return events;
}

function requestVmCreation(data: RequestVmCreation['data'], state: Account, now: Date): AccountEvent[] {
  if (!vmIdPattern.test(data.vmId)) throw invalid(`"${data.vmId}" is not a capsul id (capsul- and 10 letters or digits)`);
  if (state.vms.has(data.vmId)) throw refused(`capsul ${data.vmId} already exists`);
  if (!Number.isSafeInteger(data.priceCentsPerMonth) || data.priceCentsPerMonth <= 0) throw invalid('a capsul price must be positive');
  if (data.sshPublicKeys.length === 0) throw invalid('a capsul needs at least one SSH public key');
  if (data.sshPublicKeys.length > maxSshKeysPerCapsul) throw invalid(`a capsul takes at most ${maxSshKeysPerCapsul} SSH keys`);
  const sshPublicKeys = [...new Set(data.sshPublicKeys.map((key) => parseSshPublicKey(key).line))];
  if (state.accountId === null) {
    throw new DomainError('insufficient_funds', 'this account has no payments yet: add funds before creating a capsul');
  }
  // The balance must carry every running capsul, the new one included, for a month: so two creations
  // that the balance covers only once can never both succeed, whatever their timing.
  const balance = balanceCentsAt(state, now.getTime());
  const committed = activeVms(state).reduce((sum, vm) => sum + vm.priceCentsPerMonth, 0);
  const needed = committed + data.priceCentsPerMonth;
  if (balance < needed) {
    const running = committed > 0 ? ` plus a month of your running capsuls (${formatCents(committed)})` : '';
    throw new DomainError(
      'insufficient_funds',
      `the balance ${formatCents(balance)} does not cover a month of ${data.size} (${formatCents(data.priceCentsPerMonth)})${running}: add funds first`,
    );
  }
  return [{
    type: 'VmCreationRequested',
    data: {
      accountId: state.accountId, vmId: data.vmId, size: data.size, os: data.os, sshPublicKeys,
      priceCentsPerMonth: data.priceCentsPerMonth, at: now.toISOString(),
    },
  }];
}

function existingPayment(state: Account, paymentId: number) {
  const payment = state.payments.get(paymentId);
  if (!payment) throw notFound(`there is no payment ${paymentId}`);
  return payment;
}

function requireReason(reason: string): string {
  const trimmed = reason.trim();
  if (!trimmed) throw invalid('a reason is required');
  if (trimmed.length > maxReasonLength) throw invalid(`a reason may be at most ${maxReasonLength} characters`);
  return trimmed;
}

export const accountDecider = { decide: decideAccount, evolve: evolveAccount, initialState: initialAccount };
