// What BTCPay's return page tells the customer: capsul's own word on the checkout first, else BTCPay Server's.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { returnState } from '../../../src/hub/payments/btcpay.ts';
import type { GreenfieldInvoice } from '../../../src/payments/btcpay.ts';

const invoice = (status: string): GreenfieldInvoice => ({
  id: 'Inv1',
  status,
  additionalStatus: 'None',
  amount: '20',
  currency: 'USD',
  checkoutLink: 'https://btcpay.test/i/Inv1',
  metadata: {},
});

describe('returnState', () => {
  it('shows a checkout capsul has settled as capsul has it, whatever BTCPay Server says now', () => {
    assert.deepEqual(returnState('credited', invoice('New')), { state: 'credited', checked: true });
    assert.deepEqual(returnState('held', null), { state: 'held', checked: false });
  });

  it('shows an open checkout as BTCPay Server sees its invoice, and unpaid when it could not be asked', () => {
    assert.deepEqual(returnState('open', invoice('Processing')), { state: 'confirming', checked: true });
    assert.deepEqual(returnState('open', invoice('Settled')), { state: 'settling', checked: true });
    assert.deepEqual(returnState('open', invoice('Expired')), { state: 'expired', checked: true });
    assert.deepEqual(returnState('open', invoice('Invalid')), { state: 'invalid', checked: true });
    assert.deepEqual(returnState('open', invoice('New')), { state: 'unpaid', checked: true });
    assert.deepEqual(returnState('open', null), { state: 'unpaid', checked: false });
  });
});
