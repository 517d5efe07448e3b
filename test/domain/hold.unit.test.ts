// A held payment's decider as Given / When / Then: held once whoever reports it again, closed without
// credit at most once, and never once the money was credited or when there is no such hold.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DeciderSpecification } from '@event-driven-io/emmett';
import { decideHold, evolveHold, initialHold, type HoldCommand } from '../../src/domain/hold/decider.ts';
import { holdIdOf, holdStream, type HoldEvent } from '../../src/domain/hold/events.ts';
import { failsWith } from '../support/domain-error.ts';

const given = DeciderSpecification.for({ decide: decideHold, evolve: evolveHold, initialState: initialHold });

const t0 = new Date('2026-01-01T00:00:00.000Z');
const later = new Date('2026-01-02T00:00:00.000Z');
const reference = 'pi_3Q0abc';
const holdId = holdIdOf('stripe', reference);

const hold = (now = t0): HoldCommand => ({
  type: 'HoldPayment',
  data: { provider: 'stripe', reference, email: 'alice@example.org', amountCents: 1500, expectedCents: 2000 },
  metadata: { now, cause: { by: { kind: 'job', id: 'stripe' }, reason: 'the amount differs from the checkout' } },
});
const resolve = (creditedAsPaymentId: number | null = null, now = later): HoldCommand => ({
  type: 'ResolvePaymentHold',
  data: { provider: 'stripe', reference, creditedAsPaymentId },
  metadata: { now, cause: { by: { kind: 'operator', id: 'alice' }, reason: 'refunded at Stripe' } },
});
const held: HoldEvent = {
  type: 'PaymentHeld',
  data: { holdId, provider: 'stripe', reference, email: 'alice@example.org', amountCents: 1500, expectedCents: 2000, at: t0.toISOString() },
};
const resolved: HoldEvent = { type: 'PaymentHoldResolved', data: { holdId, at: later.toISOString() } };

describe('holding a payment', () => {
  it('holds money a provider reported, under its opaque id', () => {
    given([]).when(hold()).then([held]);
  });

  it('changes nothing when the same money is reported again', () => {
    given([held]).when(hold(later)).then([]);
    given([held, resolved]).when(hold(later)).then([]);
  });

  it('refuses a provider whose payments are not held, a reference with spaces around it, and an amount that is not whole cents', () => {
    given([])
      .when({ ...hold(), data: { ...hold().data, provider: 'paypal' as 'stripe' } } as HoldCommand)
      .thenThrows(failsWith('invalid', /"paypal" is not a payment provider/));
    given([])
      .when({ ...hold(), data: { ...hold().data, reference: ` ${reference}` } } as HoldCommand)
      .thenThrows(failsWith('invalid', /no spaces around it/));
    given([])
      .when({ ...hold(), data: { ...hold().data, amountCents: 1.5 } } as HoldCommand)
      .thenThrows(failsWith('invalid', /whole number of cents/));
  });
});

describe('closing a held payment without credit', () => {
  it('closes it', () => {
    given([held]).when(resolve()).then([resolved]);
  });

  it('refuses a hold that does not exist', () => {
    given([])
      .when(resolve())
      .thenThrows(failsWith('not_found', /there is no held stripe payment pi_3Q0abc/));
  });

  it('refuses a hold credited since (a payment recorded under its reference)', () => {
    given([held])
      .when(resolve(42))
      .thenThrows(failsWith('refused', /held payment pi_3Q0abc was recorded as payment 42: nothing to close/));
  });

  it('refuses to close it without a reason in its cause', () => {
    const unexplained = (reason?: string): HoldCommand => ({
      type: 'ResolvePaymentHold',
      data: { provider: 'stripe', reference, creditedAsPaymentId: null },
      metadata: { now: later, cause: { by: { kind: 'operator', id: 'alice' }, ...(reason === undefined ? {} : { reason }) } },
    });
    given([held])
      .when(unexplained())
      .thenThrows(failsWith('invalid', /^a reason is required$/));
    given([held])
      .when(unexplained('two\nlines'))
      .thenThrows(failsWith('invalid', /one line of visible text/));
  });

  it('refuses a hold closed already', () => {
    given([held, resolved])
      .when(resolve())
      .thenThrows(failsWith('refused', /held payment pi_3Q0abc is closed already/));
  });
});

describe("a hold's id", () => {
  it('is opaque, the same for the same money, and different for another provider or reference', () => {
    assert.match(holdId, /^[0-9a-f]{32}$/);
    assert.equal(holdIdOf('stripe', reference), holdId);
    assert.notEqual(holdIdOf('btcpay', reference), holdId);
    assert.notEqual(holdIdOf('stripe', `${reference}x`), holdId);
    assert.equal(holdStream(holdId), `hold-${holdId}`);
    assert.ok(!holdStream(holdId).includes(reference), 'the stream id does not show the reference');
  });
});
