// What a customer is told of a correction to their payment. The reason an operator or a provider gives
// ("chargeback dp_123", "fraud?") is for operators and auditors: it stays in the cause, in the event's
// metadata. The customer's history says the correction's customer note instead: the one given with it,
// kept in the event's data, or else its kind's default, chosen when the history is shown (so events
// written before notes existed, and corrections given none, read the same).
import type { PaymentInvalidated, PaymentRefunded, PaymentReinstated } from './events.ts';
import { lineOfText, maxCustomerNoteLength } from '../shared/text.ts';

export type PaymentCorrection = PaymentInvalidated | PaymentReinstated | PaymentRefunded;

/** What the customer is told of each kind of correction when no note was given. */
export const defaultCustomerNotes: Record<PaymentCorrection['type'], string> = {
  PaymentInvalidated: 'payment reversed by your bank or payment provider',
  PaymentReinstated: 'the reversal was cancelled',
  PaymentRefunded: 'refunded to you the way you paid',
};

/** A note given with a correction, as it is kept: one line of visible text, trimmed, at most 200 characters. */
export function checkedCustomerNote(note: string): string {
  return lineOfText(note, 'a customer note', maxCustomerNoteLength);
}

/** What the customer's history says of a correction. */
export function customerNoteOf(event: PaymentCorrection): string {
  return event.data.customerNote ?? defaultCustomerNotes[event.type];
}
