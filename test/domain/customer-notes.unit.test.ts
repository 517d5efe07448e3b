// What a customer is told of a correction to their payment, as Given / When / Then: the note an operator
// gives is kept in the event's data, checked like every other line the ledger keeps; none given keeps
// none, and the customer is told the kind's default; the reason stays in the cause, never in the data.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DeciderSpecification } from '@event-driven-io/emmett';
import { decideAccount, type AccountCommand } from '../../src/domain/account/decider.ts';
import type { AccountEvent } from '../../src/domain/account/events.ts';
import { customerNoteOf, defaultCustomerNotes, type PaymentCorrection } from '../../src/domain/account/notes.ts';
import { evolveAccount, initialAccount } from '../../src/domain/account/state.ts';
import { maxCustomerNoteLength } from '../../src/domain/shared/text.ts';
import { failsWith } from '../support/domain-error.ts';

const given = DeciderSpecification.for({ decide: decideAccount, evolve: evolveAccount, initialState: initialAccount });
const decideAfter = (events: AccountEvent[], command: AccountCommand) =>
  decideAccount(command, events.reduce(evolveAccount, initialAccount()));

const accountId = 'acc-notes';
const t0 = new Date('2026-03-01T00:00:00.000Z');
const now = new Date('2026-03-10T00:00:00.000Z');
const iso = (date: Date) => date.toISOString();
const operator = { by: { kind: 'operator', id: 'alice' }, reason: 'chargeback dp_123, fraud?' } as const;

const opened: AccountEvent = { type: 'AccountOpened', data: { accountId, email: 'a@x.org', at: iso(t0) } };
const paid: AccountEvent = {
  type: 'PaymentRecorded',
  data: { accountId, paymentId: 1, amountCents: 2000, provider: 'stripe', reference: 'pi_1', at: iso(t0), recordedAt: iso(t0) },
};
const invalidated = (customerNote?: string): AccountEvent => ({
  type: 'PaymentInvalidated',
  data: { accountId, paymentId: 1, ...(customerNote === undefined ? {} : { customerNote }), at: iso(now) },
});

const invalidate = (customerNote?: string): AccountCommand => ({
  type: 'InvalidatePayment',
  data: { paymentId: 1, ...(customerNote === undefined ? {} : { customerNote }) },
  metadata: { now, cause: operator },
});
const reinstate = (customerNote?: string): AccountCommand => ({
  type: 'ReinstatePayment',
  data: { paymentId: 1, ...(customerNote === undefined ? {} : { customerNote }) },
  metadata: { now, cause: { ...operator, reason: 'dispute dp_123 won' } },
});
const refund = (customerNote?: string): AccountCommand => ({
  type: 'RecordRefund',
  data: { paymentId: 1, totalRefundedCents: 700, reference: 'ch_1', ...(customerNote === undefined ? {} : { customerNote }) },
  metadata: { now, cause: { by: { kind: 'job', id: 'stripe' } } },
});

describe("a correction's customer note", () => {
  it('given a valid payment, when it is invalidated with a note, the event keeps the note, trimmed, and not the reason', () => {
    given([opened, paid])
      .when(invalidate('  Your card issuer reversed this payment.  '))
      .then([invalidated('Your card issuer reversed this payment.')]);
    const [event] = decideAfter([opened, paid], invalidate('Reversed.'));
    assert.ok(!JSON.stringify(event).includes('chargeback'), 'the reason stays in the cause');
  });

  it('given a valid payment, when it is invalidated without a note, the event keeps none', () => {
    assert.deepEqual(decideAfter([opened, paid], invalidate()), [invalidated()]);
  });

  it('given an invalidated payment, when it is reinstated with a note, the event keeps the note', () => {
    given([opened, paid, invalidated()])
      .when(reinstate('Your bank withdrew the reversal.'))
      .then([
        { type: 'PaymentReinstated', data: { accountId, paymentId: 1, customerNote: 'Your bank withdrew the reversal.', at: iso(now) } },
      ]);
  });

  it('given a payment, when a refund is recorded with a note, the event keeps the note; without one, none', () => {
    given([opened, paid])
      .when(refund('Refunded as agreed by email.'))
      .then([
        {
          type: 'PaymentRefunded',
          data: {
            accountId,
            paymentId: 1,
            totalRefundedCents: 700,
            reference: 'ch_1',
            customerNote: 'Refunded as agreed by email.',
            at: iso(now),
          },
        },
      ]);
    const [event] = decideAfter([opened, paid], refund());
    assert.ok(event && !('customerNote' in event.data));
  });

  it(`takes a note of ${maxCustomerNoteLength} characters and refuses one longer`, () => {
    given([opened, paid])
      .when(invalidate('n'.repeat(maxCustomerNoteLength)))
      .then([invalidated('n'.repeat(maxCustomerNoteLength))]);
    given([opened, paid])
      .when(invalidate('n'.repeat(maxCustomerNoteLength + 1)))
      .thenThrows(failsWith('invalid', /^a customer note may be at most 200 characters$/));
  });

  for (const [label, note] of [
    ['nothing but spaces', '   '],
    ['a line break', 'reversed\nPayment 2 was refunded'],
    ['a right-to-left override', 'reversed \u202Edetaler'],
    ['a zero-width space', 'rever\u200Bsed'],
    ['a lone surrogate', 'reversed \uD800'],
  ] as const) {
    it(`refuses a note (${label}), whatever the payment's state`, () => {
      given([opened, paid])
        .when(invalidate(note))
        .thenThrows(failsWith('invalid', /^a customer note (is required|must be one line of visible text|holds a broken character)/));
      // Even a correction that would change nothing is refused: a bad note never passes silently.
      given([opened, paid, invalidated()])
        .when(invalidate(note))
        .thenThrows(failsWith('invalid', /^a customer note/));
      given([opened, paid])
        .when(refund(note))
        .thenThrows(failsWith('invalid', /^a customer note/));
    });
  }
});

describe('what the customer is told', () => {
  const correction = (type: PaymentCorrection['type'], customerNote?: string): PaymentCorrection =>
    ({
      type,
      data: { accountId, paymentId: 1, totalRefundedCents: 700, reference: null, at: iso(now), ...(customerNote ? { customerNote } : {}) },
    }) as PaymentCorrection;

  it("given a correction with a note, the note; given one without (every event written before notes), its kind's default", () => {
    assert.equal(customerNoteOf(correction('PaymentInvalidated', 'Reversed by your bank.')), 'Reversed by your bank.');
    assert.equal(customerNoteOf(correction('PaymentInvalidated')), 'payment reversed by your bank or payment provider');
    assert.equal(customerNoteOf(correction('PaymentReinstated')), 'the reversal was cancelled');
    assert.equal(customerNoteOf(correction('PaymentRefunded')), 'refunded to you the way you paid');
  });

  it('has a default for every kind of correction, each one line the checks would take', () => {
    for (const [type, note] of Object.entries(defaultCustomerNotes)) {
      assert.ok(note.length > 0 && note.length <= maxCustomerNoteLength, type);
      given([opened, paid])
        .when(invalidate(note))
        .then([invalidated(note)]);
    }
  });
});
