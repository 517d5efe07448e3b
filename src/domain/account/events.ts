// The account stream (`account-<id>`) holds every fact that moves money, so one expected stream
// version guards the balance: payments and their corrections, and each capsul's creation (with the
// monthly price captured then) and its deletion request (when billing stops).
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

export type PaymentInvalidated = Event<
  'PaymentInvalidated',
  { accountId: string; paymentId: number; reason: string; at: string }
>;

export type PaymentReinstated = Event<
  'PaymentReinstated',
  { accountId: string; paymentId: number; reason: string; at: string }
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

export type VmDeletionRequested = Event<
  'VmDeletionRequested',
  { accountId: string; vmId: string; reason: string; at: string }
>;

export type AccountEvent =
  | AccountOpened
  | PaymentRecorded
  | PaymentInvalidated
  | PaymentReinstated
  | VmCreationRequested
  | VmDeletionRequested;

export const accountEventTypes: AccountEvent['type'][] = [
  'AccountOpened', 'PaymentRecorded', 'PaymentInvalidated', 'PaymentReinstated',
  'VmCreationRequested', 'VmDeletionRequested',
];

export const accountStream = (accountId: string) => `account-${accountId}`;
