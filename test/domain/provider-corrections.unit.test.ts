// Payment providers' corrections as Given / When / Then: disputes delivered late, twice or out of
// order; refunds as growing totals (balance warnings: account-policy.unit.test.ts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DeciderSpecification } from '@event-driven-io/emmett';
import { decideAccount, type AccountCommand } from '../../src/domain/account/decider.ts';
import type { AccountEvent } from '../../src/domain/account/events.ts';
import { balanceCentsAt, evolveAccount, initialAccount } from '../../src/domain/account/state.ts';
import { failsWith } from '../support/domain-error.ts';

const testCause = { by: { kind: 'job', id: 'stripe' } } as const;

const given = DeciderSpecification.for({ decide: decideAccount, evolve: evolveAccount, initialState: initialAccount });
const fold = (events: AccountEvent[]) => events.reduce(evolveAccount, initialAccount());

const accountId = 'acc-1';
const t0 = new Date('2026-03-01T00:00:00.000Z');
const hourMs = 3600_000;
const after = (ms: number) => new Date(t0.getTime() + ms);
const now = after(100 * hourMs);
const iso = (date: Date) => date.toISOString();

const opened: AccountEvent = { type: 'AccountOpened', data: { accountId, email: 'a@x.org', at: iso(t0) } };
const paid = (amountCents = 2000, paymentId = 1, at = t0): AccountEvent => ({
  type: 'PaymentRecorded',
  data: { accountId, paymentId, amountCents, provider: 'stripe', reference: `pi_${paymentId}`, at: iso(at), recordedAt: iso(at) },
});
const withdrawn = (at: Date): AccountCommand => ({
  type: 'InvalidatePayment',
  data: { paymentId: 1, effectiveAt: at },
  metadata: { now, cause: { ...testCause, reason: 'chargeback dp_1' } },
});
const reinstated = (at: Date): AccountCommand => ({
  type: 'ReinstatePayment',
  data: { paymentId: 1, effectiveAt: at },
  metadata: { now, cause: { ...testCause, reason: 'chargeback dp_1 won' } },
});
const invalidatedEvent = (at: Date): AccountEvent => ({
  type: 'PaymentInvalidated',
  data: { accountId, paymentId: 1, at: iso(at) },
});
const reinstatedEvent = (at: Date): AccountEvent => ({
  type: 'PaymentReinstated',
  data: { accountId, paymentId: 1, at: iso(at) },
});
const refund = (totalRefundedCents: number, at?: Date): AccountCommand => ({
  type: 'RecordRefund',
  data: { paymentId: 1, totalRefundedCents, reference: 'ch_1', ...(at ? { effectiveAt: at } : {}) },
  metadata: { now, cause: testCause },
});
const refundedEvent = (totalRefundedCents: number, at: Date): AccountEvent => ({
  type: 'PaymentRefunded',
  data: { accountId, paymentId: 1, totalRefundedCents, reference: 'ch_1', at: iso(at) },
});
describe('a dispute from a payment provider', () => {
  it("given a valid payment, when the funds are withdrawn, it is invalidated as of the provider's time", () => {
    given([opened, paid()])
      .when(withdrawn(after(hourMs)))
      .then([invalidatedEvent(after(hourMs))]);
  });

  it('given the withdrawal recorded, when it is delivered again, nothing changes', () => {
    given([opened, paid(), invalidatedEvent(after(hourMs))])
      .when(withdrawn(after(hourMs)))
      .then([]);
  });

  it('given the reinstatement recorded first, when the older withdrawal arrives, it is stale and changes nothing', () => {
    given([opened, paid()])
      .when(reinstated(after(2 * hourMs)))
      .then([reinstatedEvent(after(2 * hourMs))]);
    given([opened, paid(), reinstatedEvent(after(2 * hourMs))])
      .when(withdrawn(after(hourMs)))
      .then([]);
  });

  it('given withdrawn then reinstated, the payment counts again, and did not count in between', () => {
    const state = fold([opened, paid(), invalidatedEvent(after(hourMs)), reinstatedEvent(after(2 * hourMs))]);
    assert.equal(balanceCentsAt(state, after(hourMs / 2).getTime()), 2000);
    assert.equal(balanceCentsAt(state, after(1.5 * hourMs).getTime()), 0);
    assert.equal(balanceCentsAt(state, now.getTime()), 2000);
  });

  it('whatever the order of delivery, the payment ends as the newest change says', () => {
    const deliveries = [withdrawn(after(hourMs)), reinstated(after(2 * hourMs)), withdrawn(after(3 * hourMs))];
    const orders = [
      [0, 1, 2],
      [0, 2, 1],
      [1, 0, 2],
      [1, 2, 0],
      [2, 0, 1],
      [2, 1, 0],
      [2, 2, 1, 0, 0],
    ];
    for (const order of orders) {
      let events: AccountEvent[] = [opened, paid()];
      for (const i of order) events = [...events, ...decideAccount(deliveries[i]!, fold(events))];
      assert.equal(balanceCentsAt(fold(events), now.getTime()), 0, `order ${order.join(',')}`);
    }
  });

  it('given a withdrawal and a reinstatement at the same second, whichever arrives first, the payment ends reinstated', () => {
    given([opened, paid(), invalidatedEvent(after(hourMs))])
      .when(reinstated(after(hourMs)))
      .then([reinstatedEvent(after(hourMs))]);
    given([opened, paid(), reinstatedEvent(after(hourMs))])
      .when(withdrawn(after(hourMs)))
      .then([]);
  });

  it('refuses a change dated in the future', () => {
    given([opened, paid()])
      .when(withdrawn(after(200 * hourMs)))
      .thenThrows(failsWith('invalid', /in the future/));
  });

  it('dates a change before the payment was received at its receipt', () => {
    given([opened, paid(2000, 1, after(hourMs))])
      .when(withdrawn(t0))
      .then([invalidatedEvent(after(hourMs))]);
  });
});

describe('a refund from a payment provider', () => {
  it('given a $20 payment, when $7 is refunded, the payment counts for $13', () => {
    given([opened, paid()])
      .when(refund(700, after(hourMs)))
      .then([refundedEvent(700, after(hourMs))]);
    const state = fold([opened, paid(), refundedEvent(700, after(hourMs))]);
    assert.equal(balanceCentsAt(state, now.getTime()), 1300);
    assert.equal(balanceCentsAt(state, after(hourMs / 2).getTime()), 2000, 'not before the refund');
  });

  it('given $12 refunded in all, when the earlier $7 total arrives late or again, nothing changes', () => {
    given([opened, paid(), refundedEvent(1200, after(2 * hourMs))])
      .when(refund(700, after(hourMs)))
      .then([]);
    given([opened, paid(), refundedEvent(1200, after(2 * hourMs))])
      .when(refund(1200, after(2 * hourMs)))
      .then([]);
  });

  it('refuses a refund larger than the payment, or of nothing', () => {
    given([opened, paid()])
      .when(refund(2001))
      .thenThrows(failsWith('invalid', /exceeds payment 1/));
    given([opened, paid()])
      .when(refund(0))
      .thenThrows(failsWith('invalid', /positive/));
  });

  it('given an invalidated payment that was also refunded, it counts for nothing, not less', () => {
    const state = fold([opened, paid(), refundedEvent(500, after(hourMs)), invalidatedEvent(after(2 * hourMs))]);
    assert.equal(balanceCentsAt(state, now.getTime()), 0);
  });
});
