// A payment held for an operator (`hold-<id>`): money a provider reported that capsul does not credit
// on its own (an amount that disagrees with the checkout, a payment for a checkout capsul never opened),
// and its closing without credit. Who held or closed it, and why, are the events' metadata (`by`,
// `reason`), as for every command.
import { createHash } from 'node:crypto';
import type { Event } from '@event-driven-io/emmett';
import type { Cents } from '../shared/money.ts';

/** The providers whose payments may be held. */
export type HoldProvider = 'stripe' | 'btcpay';

export type PaymentHeld = Event<
  'PaymentHeld',
  {
    holdId: string;
    provider: HoldProvider;
    /** the provider's id for the money (payment intent, invoice) */
    reference: string;
    /** who paid, as far as the provider or the checkout says */
    email: string | null;
    /** what the provider says was paid */
    amountCents: Cents;
    /** what the checkout asked for, when known */
    expectedCents: Cents | null;
    at: string;
  }
>;

/** Closed without credit by an operator (refunded at the provider, a duplicate). */
export type PaymentHoldResolved = Event<'PaymentHoldResolved', { holdId: string; at: string }>;

export type HoldEvent = PaymentHeld | PaymentHoldResolved;

export const holdEventTypes: HoldEvent['type'][] = ['PaymentHeld', 'PaymentHoldResolved'];

/**
 * A hold's id: opaque, and the same for the same money whoever reports it again, so a redelivered
 * report finds its hold's stream (schema_migrations/15_up_held_payment_events.sql computes it alike).
 */
export function holdIdOf(provider: HoldProvider, reference: string): string {
  return createHash('sha256').update(`${provider}/${reference}`, 'utf8').digest('hex').slice(0, 32);
}

export const holdStream = (holdId: string) => `hold-${holdId}`;
