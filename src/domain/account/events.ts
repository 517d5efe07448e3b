// The account stream (`account-<id>`) holds every fact that moves money, so one expected stream
// version guards the balance: payments and their corrections, and each capsul's creation (with the
// monthly price captured then), its deletion request and its vanishing from its host (each of which
// stops its billing, whichever comes first).
import type { Event } from '@event-driven-io/emmett';
import type { Cents } from '../shared/money.ts';

export type Provider = 'manual' | 'stripe' | 'btcpay';

/** Every event's `at` is when the fact took effect (ISO 8601, UTC): what as-of queries filter on. */
export type AccountOpened = Event<'AccountOpened', { accountId: string; email: string; at: string }>;

export type PaymentRecorded = Event<
  'PaymentRecorded',
  {
    accountId: string;
    paymentId: number;
    amountCents: Cents;
    provider: Provider;
    /** the provider's id for the payment; recording the same reference again changes nothing */
    reference: string | null;
    /** when the money was received: the payment counts from here */
    at: string;
    recordedAt: string;
  }
>;

/**
 * A correction's `customerNote` is what the customer's history says of it, when whoever corrected the
 * payment gave one; absent, the history says its kind's default (notes.ts). The reason, for operators
 * and auditors, is the cause's, in the event's metadata: the customer never sees it.
 */
export type PaymentInvalidated = Event<'PaymentInvalidated', { accountId: string; paymentId: number; customerNote?: string; at: string }>;

export type PaymentReinstated = Event<'PaymentReinstated', { accountId: string; paymentId: number; customerNote?: string; at: string }>;

/**
 * A refund by the provider. `totalRefundedCents` is the payment's refunded total so far (providers
 * report it so), which makes a partial refund delivered twice or out of order harmless: only a larger
 * total changes anything. The payment then counts for its amount less that total.
 */
export type PaymentRefunded = Event<
  'PaymentRefunded',
  { accountId: string; paymentId: number; totalRefundedCents: Cents; reference: string | null; customerNote?: string; at: string }
>;

/** capsul-flask's warning levels, in escalating order; each is issued once per episode. */
export const warningLevels = [
  'runs-out-within-week',
  'runs-out-within-day',
  'out-of-funds',
  'deletion-within-week',
  'deletion-now',
] as const;
export type WarningLevel = (typeof warningLevels)[number];

/** A balance warning was issued (and emailed): the same level is not issued again until a top-up. */
export type BalanceWarningIssued = Event<
  'BalanceWarningIssued',
  { accountId: string; level: WarningLevel; balanceCents: Cents; at: string }
>;

export type VmCreationRequested = Event<
  'VmCreationRequested',
  {
    accountId: string;
    vmId: string;
    size: string;
    os: string;
    sshPublicKeys: string[];
    /** the size's price when the capsul was created: a later price change never rewrites it */
    priceCentsPerMonth: Cents;
    at: string;
  }
>;

export type VmDeletionRequested = Event<'VmDeletionRequested', { accountId: string; vmId: string; at: string }>;

/**
 * The capsul's charges end at `at`, the instant its host saw it gone without any deletion request
 * (VmVanished on the capsul's stream, reported as `reportId` by `host`): a reaction to that fact, so
 * the customer never pays for time the capsul did not exist. Once per capsul; an earlier instant
 * would end them earlier still.
 */
export type VmAccrualEnded = Event<
  'VmAccrualEnded',
  { accountId: string; vmId: string; reason: 'vanished-from-host'; host: string; reportId: string | null; at: string }
>;

/**
 * The balance reached the suspension point with capsuls running: they are stopped (not deleted) until a
 * top-up brings the balance back above it, or deleted for nonpayment once `deleteAfter` has passed (or
 * at the overdraft, whichever comes first). They keep their disks, so they keep their charges.
 * `vmIds`: the capsuls running then, which a resumption starts again.
 */
export type AccountSuspended = Event<
  'AccountSuspended',
  {
    accountId: string;
    vmIds: string[];
    balanceCents: Cents;
    suspensionPointCents: Cents;
    overdraftCents: Cents;
    /** when deletion for nonpayment comes, unless the balance is back above the suspension point by then */
    deleteAfter: string;
    at: string;
  }
>;

/** A top-up brought a suspended account's balance back above the suspension point: its capsuls start again. */
export type AccountResumed = Event<
  'AccountResumed',
  { accountId: string; vmIds: string[]; balanceCents: Cents; suspensionPointCents: Cents; at: string }
>;

/**
 * The customer chose whether their monthly statement is emailed to them (`send`); until the first
 * choice it is. A preference, not money: it moves no balance, but it is the customer's own decision,
 * kept with who made it and when, like every other change to their account.
 */
export type StatementEmailsChosen = Event<'StatementEmailsChosen', { accountId: string; send: boolean; at: string }>;

export type AccountEvent =
  | AccountOpened
  | PaymentRecorded
  | PaymentInvalidated
  | PaymentReinstated
  | PaymentRefunded
  | BalanceWarningIssued
  | VmCreationRequested
  | VmDeletionRequested
  | VmAccrualEnded
  | AccountSuspended
  | AccountResumed
  | StatementEmailsChosen;

export const accountEventTypes: AccountEvent['type'][] = [
  'AccountOpened',
  'PaymentRecorded',
  'PaymentInvalidated',
  'PaymentReinstated',
  'PaymentRefunded',
  'BalanceWarningIssued',
  'VmCreationRequested',
  'VmDeletionRequested',
  'VmAccrualEnded',
  'AccountSuspended',
  'AccountResumed',
  'StatementEmailsChosen',
];

export const accountStream = (accountId: string) => `account-${accountId}`;
