// The BTCPay provider's pure core: what a signed delivery asks about, what an invoice's status means for
// capsul's ledger and checkout, and what a dry run says it would do. No server, no database.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Checkout, type GreenfieldInvoice, invoiceAskedAbout, invoiceCents, stepFor, wouldDo } from '../../src/payments/btcpay.ts';

const storeId = 'Store4capsulTests';
const body = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value));

const invoice = (over: Partial<GreenfieldInvoice> = {}): GreenfieldInvoice => ({
  id: 'Inv1',
  status: 'Settled',
  additionalStatus: 'None',
  amount: '20.00',
  currency: 'USD',
  checkoutLink: 'https://btcpay.test/i/Inv1',
  metadata: { orderId: 'capsul:a@example.org', buyerEmail: 'a@example.org' },
  ...over,
});
const checkout = (over: Partial<Checkout> = {}): Checkout => ({
  id: 'Inv1',
  email: 'a@example.org',
  amountCents: 2000,
  status: 'open',
  paymentId: null,
  ...over,
});

describe('invoiceAskedAbout', () => {
  it("names the invoice of a delivery about one of this store's invoices", () => {
    assert.deepEqual(invoiceAskedAbout(body({ invoiceId: 'Inv1', storeId, type: 'InvoiceSettled' }), storeId), { invoiceId: 'Inv1' });
    assert.deepEqual(invoiceAskedAbout(body({ invoiceId: 'Inv1' }), storeId), { invoiceId: 'Inv1' }, 'no store named: this one');
  });

  it('refuses a body that is not a JSON object', () => {
    for (const text of ['not json', '[1]', 'null', '"Inv1"', '42']) {
      const outcome = invoiceAskedAbout(body(text), storeId);
      assert.ok('kind' in outcome && outcome.kind === 'refused', text);
    }
  });

  it("ignores deliveries about no invoice or another store's, and warns about an id that is none", () => {
    assert.deepEqual(invoiceAskedAbout(body({ type: 'Ping' }), storeId), { kind: 'ignored', why: 'not about an invoice', warn: false });
    assert.deepEqual(invoiceAskedAbout(body({ invoiceId: 'Inv1', storeId: 'other' }), storeId), {
      kind: 'ignored',
      why: "another store's invoice",
      warn: false,
    });
    for (const invoiceId of ['../x', '', 7, null, 'a'.repeat(65)]) {
      const outcome = invoiceAskedAbout(body({ invoiceId }), storeId);
      assert.ok('kind' in outcome && outcome.kind === 'ignored' && outcome.warn, JSON.stringify(invoiceId));
    }
  });
});

describe('stepFor', () => {
  it('credits a settled invoice once, for its checkout, and marks it credited', () => {
    assert.deepEqual(stepFor(invoice(), checkout(), null), {
      action: { kind: 'credit', email: 'a@example.org', amountCents: 2000 },
      status: 'credited',
      why: 'Settled',
    });
    const credited = { id: 7, email: 'a@example.org', provider: 'btcpay', invalidated: false };
    assert.deepEqual(stepFor(invoice(), checkout({ status: 'credited', paymentId: 7 }), credited).action, null);
  });

  it('holds a settled invoice whose amount disagrees with its checkout', () => {
    const step = stepFor(invoice({ amount: '25' }), checkout(), null);
    assert.equal(step.action?.kind, 'hold');
    assert.equal(step.status, 'held');
  });

  it('waits on an invoice only seen, and takes back a credited one that turns invalid', () => {
    assert.deepEqual(stepFor(invoice({ status: 'Processing' }), checkout(), null), {
      action: null,
      status: null,
      why: 'Processing: waiting for it to settle',
    });
    const paid = { id: 7, email: 'a@example.org', provider: 'btcpay', invalidated: false };
    const step = stepFor(invoice({ status: 'Invalid', additionalStatus: 'Marked' }), checkout({ status: 'credited' }), paid);
    assert.equal(step.action?.kind, 'invalidate');
    assert.equal(step.status, 'invalid');
  });

  it("holds a settled capsul invoice it has no checkout for; ignores the store's other invoices", () => {
    assert.equal(stepFor(invoice(), null, null).action?.kind, 'hold');
    assert.equal(stepFor(invoice({ metadata: { orderId: 'shop:1' } }), null, null).action, null);
  });
});

describe('invoiceCents', () => {
  it('reads whole cents of a USD amount, and nothing else', () => {
    assert.equal(invoiceCents({ amount: '20', currency: 'USD' }), 2000);
    assert.equal(invoiceCents({ amount: '20.5', currency: 'usd' }), 2050);
    assert.equal(invoiceCents({ amount: '20.500', currency: 'USD' }), 2050);
    assert.equal(invoiceCents({ amount: '20.505', currency: 'USD' }), null);
    assert.equal(invoiceCents({ amount: '20', currency: 'EUR' }), null);
  });
});

describe('wouldDo', () => {
  it('says what a look would change', () => {
    const credit = stepFor(invoice(), checkout(), null);
    assert.equal(wouldDo(credit, checkout()), 'credit $20.00 to a@example.org and mark the checkout credited');
    assert.equal(wouldDo({ action: null, status: 'expired', why: 'Expired' }, checkout({ status: 'expired' })), 'do nothing to the ledger');
  });
});
