// The Stripe provider's pure core: a checkout session read field by field, whether from a signed event or
// from Stripe's API. What capsul cannot use is an Unusable (acknowledged, never a 500), never a guess.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkoutFacts, Unusable } from '../../src/payments/stripe.ts';

const session = (over: Record<string, unknown> = {}) => ({
  id: 'cs_test_1',
  object: 'checkout.session',
  mode: 'payment',
  payment_status: 'paid',
  payment_intent: 'pi_1',
  amount_total: 2000,
  currency: 'USD',
  metadata: { capsul_email: 'A@Example.org' },
  ...over,
});

describe('checkoutFacts', () => {
  it('reads what capsul uses of a paid session', () => {
    assert.deepEqual(checkoutFacts(session()), {
      id: 'cs_test_1',
      mode: 'payment',
      paymentStatus: 'paid',
      paymentIntent: 'pi_1',
      amountCents: 2000,
      currency: 'usd',
      emailHint: 'a@example.org',
      paidAt: null,
    });
  });

  it("takes the payment time from an expanded payment intent, and the customer's email when the metadata has none", () => {
    const facts = checkoutFacts(
      session({ payment_intent: { id: 'pi_1', created: 1_800_000_000 }, metadata: {}, customer_details: { email: 'b@example.org' } }),
    );
    assert.equal(facts.paymentIntent, 'pi_1');
    assert.deepEqual(facts.paidAt, new Date(1_800_000_000_000));
    assert.equal(facts.emailHint, 'b@example.org');
  });

  it('reads no amount as 0, no payment intent as null, and an email that is none as no hint', () => {
    const facts = checkoutFacts(session({ amount_total: null, payment_intent: null, metadata: { capsul_email: 'not an email' } }));
    assert.equal(facts.amountCents, 0);
    assert.equal(facts.paymentIntent, null);
    assert.equal(facts.emailHint, null);
  });

  it('finds anything of another shape unusable', () => {
    const odd = [
      null,
      [],
      session({ id: 'pi_1' }),
      session({ id: 'cs_../x' }),
      session({ mode: 7 }),
      session({ payment_status: 'x'.repeat(101) }),
      session({ payment_intent: 'ch_1' }),
      session({ payment_intent: { id: 'pi_1', created: 1e12 } }),
      session({ amount_total: 20.5 }),
      session({ amount_total: -1 }),
      session({ currency: 'dollars' }),
    ];
    for (const object of odd) assert.throws(() => checkoutFacts(object), Unusable, JSON.stringify(object));
  });
});
