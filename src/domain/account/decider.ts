// Pure decisions over the account stream: payments and their corrections, capsul creation and deletion.
import type { Command } from '@event-driven-io/emmett';
import { requiredReason, type CommandContext } from '../events.ts';
import { DomainError, invalid, notFound, refused } from '../shared/errors.ts';
import { lineOfText, maxReferenceLength } from '../shared/text.ts';
import { formatCents, maxPaymentCents, type Cents } from '../shared/money.ts';
import { maxSshKeysPerCapsul, parseSshPublicKey } from '../shared/ssh.ts';
import { warningLevels, type AccountEvent, type Provider, type WarningLevel } from './events.ts';
import { checkedCustomerNote } from './notes.ts';
import {
  evaluateAccount,
  isOverdraft,
  isPastGrace,
  isPastOverdraft,
  nonpaymentReason,
  nonpaymentRulesRefusal,
  nonpaymentStepOf,
  type NonpaymentRules,
} from './policy.ts';
import { accountSnapshot } from './snapshot.ts';
import {
  activeVms,
  balanceCentsAt,
  evolveAccount,
  foldAccount,
  initialAccount,
  isPaymentValid,
  refundedCents,
  type Account,
  type PaymentState,
} from './state.ts';

/** `providerStart`: no payment can have been received before the provider began (PROVIDER_START_DATE). */
export type CommandMetadata = CommandContext & { providerStart?: Date };

/** The provider's start when none is configured: no payment before it is believable. */
export const defaultProviderStart = new Date('2000-01-01T00:00:00Z');

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
/**
 * `effectiveAt`: a payment provider's correction (a dispute's funds withdrawn or reinstated) takes
 * effect at the provider's time, and one older than the payment's latest change is stale. Without it
 * (an operator), the correction takes effect now and one that changes nothing records nothing.
 * A correction's cause must give a reason, which only operators and auditors see; `customerNote` is
 * what the customer is told instead (absent: its kind's default, notes.ts).
 */
type Correction = { paymentId: number; effectiveAt?: Date; customerNote?: string };
export type InvalidatePayment = Command<'InvalidatePayment', Correction, CommandMetadata>;
export type ReinstatePayment = Command<'ReinstatePayment', Correction, CommandMetadata>;
/** A provider's refund: the payment's refunded total so far, and when the provider made it. */
export type RecordRefund = Command<
  'RecordRefund',
  { paymentId: number; totalRefundedCents: Cents; reference: string | null; effectiveAt?: Date; customerNote?: string },
  CommandMetadata
>;
/** Issued only when the policy (policy.ts) says the account is due exactly `level` now, at this overdraft. */
export type IssueBalanceWarning = Command<'IssueBalanceWarning', { level: WarningLevel; overdraftCents: Cents }, CommandMetadata>;
export type RequestVmCreation = Command<
  'RequestVmCreation',
  { vmId: string; size: string; os: string; sshPublicKeys: string[]; priceCentsPerMonth: Cents },
  CommandMetadata
>;
/**
 * Its cause must give a reason. A deletion for nonpayment (the cause's reason `nonpayment`) names the
 * overdraft it was decided at, and is refused unless the balance is at or below it now, or the account
 * has been suspended past its grace and its balance is still at or below the suspension point.
 */
export type RequestVmDeletion = Command<'RequestVmDeletion', { vmId: string; overdraftCents?: Cents }, CommandMetadata>;
/**
 * Issued only when the rules (policy.ts nonpaymentStepOf) say the account is due a suspension now:
 * its capsuls running then are stopped (by the reactions) until a top-up, or deleted after the grace.
 */
export type SuspendAccount = Command<'SuspendAccount', NonpaymentRules, CommandMetadata>;
/** Issued only when a suspended account's balance is back above the suspension point: its capsuls start again. */
export type ResumeAccount = Command<'ResumeAccount', Record<string, never>, CommandMetadata>;
/**
 * The capsul's host saw it gone without a deletion request (VmVanished on its stream, which the
 * reaction loads): its charges end at `vanishedAt`.
 */
export type EndVmAccrual = Command<
  'EndVmAccrual',
  { vmId: string; vanishedAt: Date; host: string; reportId: string | null },
  CommandMetadata
>;

/** The customer's choice whether each month's statement is emailed to them. */
export type ChooseStatementEmails = Command<'ChooseStatementEmails', { send: boolean }, CommandMetadata>;

export type AccountCommand =
  | RecordPayment
  | InvalidatePayment
  | ReinstatePayment
  | RecordRefund
  | IssueBalanceWarning
  | RequestVmCreation
  | RequestVmDeletion
  | EndVmAccrual
  | SuspendAccount
  | ResumeAccount
  | ChooseStatementEmails;

/** How far in the future a received-at time may lie (clock skew between machines). */
const clockSkewMs = 5 * 60_000;
export const vmIdPattern = /^capsul-[a-z0-9]{10}$/;

export function decideAccount(command: AccountCommand, state: Account): AccountEvent[] {
  const now = command.metadata!.now;
  const at = now.toISOString();
  switch (command.type) {
    case 'RecordPayment':
      return recordPayment(command.data, state, now, command.metadata!.providerStart);
    case 'InvalidatePayment':
    case 'ReinstatePayment':
      requiredReason(command.metadata.cause);
      return correctPayment(command.type === 'ReinstatePayment', command.data, state, now);
    case 'RecordRefund':
      return recordRefund(command.data, state, now);
    case 'IssueBalanceWarning':
      return issueBalanceWarning(command.data, state, now);
    case 'RequestVmCreation':
      return requestVmCreation(command.data, state, now);
    case 'RequestVmDeletion': {
      const vm = state.vms.get(command.data.vmId);
      if (!vm) throw notFound(`there is no capsul ${command.data.vmId} on this account`);
      const reason = requiredReason(command.metadata.cause);
      if (vm.deletionRequestedAtMs !== null) return [];
      if (reason === nonpaymentReason) requireNonpayment(state, now, command.data.overdraftCents);
      return [{ type: 'VmDeletionRequested', data: { accountId: state.accountId!, vmId: vm.vmId, at } }];
    }
    case 'EndVmAccrual':
      return endVmAccrual(command.data, state, now);
    case 'SuspendAccount':
      return suspendAccount(command.data, state, now);
    case 'ResumeAccount':
      return resumeAccount(state, now);
    case 'ChooseStatementEmails': {
      if (state.accountId === null) throw notFound('there is no account yet: statements begin with the first payment');
      if (typeof command.data.send !== 'boolean') throw invalid('say whether to send the statements: yes or no');
      if (state.statementEmails === command.data.send) return [];
      return [{ type: 'StatementEmailsChosen', data: { accountId: state.accountId, send: command.data.send, at } }];
    }
    default: {
      const unknown: never = command;
      throw new Error(`unknown command ${(unknown as { type: string }).type}`);
    }
  }
}

/**
 * The warning the policy says the account is due now, once per episode: asked again, or after a higher
 * level in this episode, nothing changes; any other level is refused.
 */
function issueBalanceWarning(data: IssueBalanceWarning['data'], state: Account, now: Date): AccountEvent[] {
  const { level, overdraftCents } = data;
  if (!warningLevels.includes(level)) throw invalid(`${JSON.stringify(level)} is not a warning level`);
  requireOverdraft(overdraftCents);
  if (state.accountId === null) throw notFound('there is no account to warn');
  const due = evaluateAccount(state, now.getTime(), overdraftCents);
  if (due.level !== level) {
    throw refused(
      `the account is due ${due.level === null ? 'no warning' : `the ${due.level} warning`} at ${now.toISOString()}, not ${level}`,
    );
  }
  if (due.toIssue === null) return []; // it, or a higher level, was issued already in this episode
  return [
    { type: 'BalanceWarningIssued', data: { accountId: state.accountId, level, balanceCents: due.balanceCents, at: now.toISOString() } },
  ];
}

function requireNonpayment(state: Account, now: Date, overdraftCents: Cents | undefined): void {
  if (overdraftCents === undefined) throw invalid('a deletion for nonpayment names the overdraft it was decided at');
  requireOverdraft(overdraftCents);
  if (isPastOverdraft(state, now.getTime(), overdraftCents) || isPastGrace(state, now.getTime())) return;
  const balance = balanceCentsAt(state, now.getTime());
  const suspension = state.suspension;
  const grace =
    suspension === null
      ? 'and the account is not suspended'
      : now.getTime() < suspension.deleteAfterMs
        ? `and its suspension's grace runs until ${new Date(suspension.deleteAfterMs).toISOString()}`
        : `and above the suspension point ${formatCents(suspension.suspensionPointCents)}`;
  throw refused(
    `the balance ${formatCents(balance)} at ${now.toISOString()} is above the overdraft ${formatCents(overdraftCents)} ${grace}: no deletion for nonpayment`,
  );
}

/** A suspension, only when the rules say it is due now; asked again while suspended, nothing changes. */
function suspendAccount(rules: NonpaymentRules, state: Account, now: Date): AccountEvent[] {
  const refusal = nonpaymentRulesRefusal(rules);
  if (refusal) throw invalid(refusal);
  if (state.accountId === null) throw notFound('there is no account to suspend');
  if (state.suspension !== null) return [];
  const nowMs = now.getTime();
  const due = nonpaymentStepOf(state, nowMs, rules);
  if (due?.step !== 'suspend') {
    const balance = balanceCentsAt(state, nowMs);
    throw refused(
      `the account is due ${due === null ? 'nothing' : `a ${due.step}`} at ${now.toISOString()} (balance ${formatCents(balance)}), not a suspension`,
    );
  }
  const vmIds = activeVms(state)
    .filter((vm) => vm.createdAtMs <= nowMs)
    .map((vm) => vm.vmId)
    .sort();
  return [
    {
      type: 'AccountSuspended',
      data: {
        accountId: state.accountId,
        vmIds,
        balanceCents: balanceCentsAt(state, nowMs),
        suspensionPointCents: rules.suspensionPointCents,
        overdraftCents: rules.overdraftCents,
        deleteAfter: new Date(due.deleteAfterMs).toISOString(),
        at: now.toISOString(),
      },
    },
  ];
}

/**
 * A resumption, only when a suspended account's balance is back above the point it was suspended at:
 * the capsuls the suspension stopped and not deleted since start again. Not suspended: nothing changes.
 */
function resumeAccount(state: Account, now: Date): AccountEvent[] {
  const suspension = state.suspension;
  if (state.accountId === null || suspension === null) return [];
  const balance = balanceCentsAt(state, now.getTime());
  if (balance <= suspension.suspensionPointCents) {
    throw refused(
      `the balance ${formatCents(balance)} is not above the suspension point ${formatCents(suspension.suspensionPointCents)}: add funds first`,
    );
  }
  const active = new Set(activeVms(state).map((vm) => vm.vmId));
  return [
    {
      type: 'AccountResumed',
      data: {
        accountId: state.accountId,
        vmIds: suspension.vmIds.filter((vmId) => active.has(vmId)),
        balanceCents: balance,
        suspensionPointCents: suspension.suspensionPointCents,
        at: now.toISOString(),
      },
    },
  ];
}

function requireOverdraft(overdraftCents: Cents): void {
  if (!isOverdraft(overdraftCents)) throw invalid(`the overdraft is zero or negative cents, not ${overdraftCents}`);
}

function recordPayment(data: RecordPayment['data'], state: Account, now: Date, providerStart?: Date): AccountEvent[] {
  if (!Number.isSafeInteger(data.amountCents) || data.amountCents <= 0 || data.amountCents > maxPaymentCents) {
    throw invalid(`a payment must be between 0.01 and ${formatCents(maxPaymentCents)} dollars`);
  }
  if (!Number.isSafeInteger(data.paymentId) || data.paymentId <= 0) throw invalid('a payment id is a positive whole number');
  if (state.payments.has(data.paymentId)) throw refused(`payment ${data.paymentId} is already recorded`);
  const receivedAtMs = data.receivedAt.getTime();
  if (Number.isNaN(receivedAtMs)) throw invalid('the time the payment was received is not a valid time');
  if (receivedAtMs > now.getTime() + clockSkewMs) throw invalid('a payment cannot be received in the future');
  if (providerStart && receivedAtMs < providerStart.getTime()) {
    throw invalid(
      `a payment cannot be received before ${providerStart.toISOString().slice(0, 10)}, when this provider began (PROVIDER_START_DATE)`,
    );
  }
  if (data.reference !== null) {
    // Kept as given (it is the provider's key): one line of visible text, nothing around it.
    if (lineOfText(data.reference, 'a payment reference', maxReferenceLength) !== data.reference)
      throw invalid('a payment reference has no spaces around it');
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
      accountId,
      paymentId: data.paymentId,
      amountCents: data.amountCents,
      provider: data.provider,
      reference: data.reference,
      at: data.receivedAt.toISOString(),
      recordedAt: now.toISOString(),
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
  // that the balance covers only once can never both succeed, whatever their timing. A vanished capsul
  // is not running: it costs nothing more.
  const balance = balanceCentsAt(state, now.getTime());
  const committed = activeVms(state).reduce((sum, vm) => sum + vm.priceCentsPerMonth, 0);
  if (!coversAMonth(balance, committed, data.priceCentsPerMonth)) {
    const running = committed > 0 ? ` plus a month of your running capsuls (${formatCents(committed)})` : '';
    throw new DomainError(
      'insufficient_funds',
      `the balance ${formatCents(balance)} does not cover a month of ${data.size} (${formatCents(data.priceCentsPerMonth)})${running}: add funds first`,
    );
  }
  return [
    {
      type: 'VmCreationRequested',
      data: {
        accountId: state.accountId,
        vmId: data.vmId,
        size: data.size,
        os: data.os,
        sshPublicKeys,
        priceCentsPerMonth: data.priceCentsPerMonth,
        at: now.toISOString(),
      },
    },
  ];
}

/**
 * Ends a vanished capsul's charges at the instant its host saw it gone: never before it was created,
 * never after now. Recorded whether or not its deletion was requested before (the fold takes whichever
 * came first), so the reaction that asks for it finds it done; asked again for the same or a later
 * instant, nothing changes.
 */
function endVmAccrual(data: EndVmAccrual['data'], state: Account, now: Date): AccountEvent[] {
  const vm = state.vms.get(data.vmId);
  if (!vm) throw notFound(`there is no capsul ${data.vmId} on this account`);
  const vanishedAtMs = data.vanishedAt.getTime();
  if (Number.isNaN(vanishedAtMs)) throw invalid('the time the capsul vanished is not a valid time');
  const atMs = Math.min(Math.max(vanishedAtMs, vm.createdAtMs), now.getTime());
  if (vm.vanishedAtMs !== null && vm.vanishedAtMs <= atMs) return [];
  return [
    {
      type: 'VmAccrualEnded',
      data: {
        accountId: state.accountId!,
        vmId: vm.vmId,
        reason: 'vanished-from-host',
        host: data.host,
        reportId: data.reportId,
        at: new Date(atMs).toISOString(),
      },
    },
  ];
}

function correctPayment(valid: boolean, data: Correction, state: Account, now: Date): AccountEvent[] {
  const note = noteOf(data.customerNote);
  const payment = existingPayment(state, data.paymentId);
  const event = (at: string): AccountEvent[] => {
    const fields = { accountId: state.accountId!, paymentId: payment.paymentId, ...note, at };
    return [valid ? { type: 'PaymentReinstated', data: fields } : { type: 'PaymentInvalidated', data: fields }];
  };
  if (data.effectiveAt === undefined) return isPaymentValid(payment) === valid ? [] : event(now.toISOString());
  const atMs = providerTime(data.effectiveAt, payment, now);
  const latest = payment.validity.at(-1);
  // Providers deliver out of order: a change older than the latest one recorded is stale, and the same
  // change again is a redelivery. A newer one is recorded even when the payment's validity stays as it
  // is, so that an older change arriving after it is recognised as stale. Two changes at the same
  // instant (providers count whole seconds) settle as reinstated: funds come back after they went.
  if (latest && (latest.atMs > atMs || (latest.atMs === atMs && (latest.valid === valid || latest.valid)))) return [];
  return event(new Date(atMs).toISOString());
}

function recordRefund(data: RecordRefund['data'], state: Account, now: Date): AccountEvent[] {
  const note = noteOf(data.customerNote);
  const payment = existingPayment(state, data.paymentId);
  const total = data.totalRefundedCents;
  if (!Number.isSafeInteger(total) || total <= 0) throw invalid('a refunded total is a positive number of cents');
  if (total > payment.amountCents) {
    throw invalid(`a refund of ${formatCents(total)} exceeds payment ${payment.paymentId} of ${formatCents(payment.amountCents)}`);
  }
  if (total <= refundedCents(payment)) return []; // this total, or a larger one, is recorded already
  const atMs = data.effectiveAt === undefined ? now.getTime() : providerTime(data.effectiveAt, payment, now);
  return [
    {
      type: 'PaymentRefunded',
      data: {
        accountId: state.accountId!,
        paymentId: payment.paymentId,
        totalRefundedCents: total,
        reference: data.reference,
        ...note,
        at: new Date(atMs).toISOString(),
      },
    },
  ];
}

/** A correction's customer note as its event keeps it: checked when given, absent when not (the history then says the default). */
function noteOf(customerNote: string | undefined): { customerNote?: string } {
  return customerNote === undefined ? {} : { customerNote: checkedCustomerNote(customerNote) };
}

/** A provider's time for a change to a payment: valid, not in the future, and not before the payment. */
function providerTime(at: Date, payment: PaymentState, now: Date): number {
  const atMs = at.getTime();
  if (Number.isNaN(atMs)) throw invalid("the provider's time of the change is not a valid time");
  if (atMs > now.getTime() + clockSkewMs) throw invalid('a payment cannot change in the future');
  return Math.max(atMs, payment.receivedAtMs);
}

/**
 * capsul-flask's rule for a new capsul, made safe against creations racing each other: the balance
 * must carry a month of every capsul not deleted (`committedCents` a month) and of the new one.
 */
export function coversAMonth(balanceCents: Cents, committedCents: Cents, priceCents: Cents): boolean {
  return balanceCents >= committedCents + priceCents;
}

function existingPayment(state: Account, paymentId: number) {
  const payment = state.payments.get(paymentId);
  if (!payment) throw notFound(`there is no payment ${paymentId}`);
  return payment;
}

export const accountDecider = {
  decide: decideAccount,
  evolve: evolveAccount,
  fold: foldAccount,
  initialState: initialAccount,
  snapshot: accountSnapshot,
};
