// Fuzzing both payment webhooks (Stripe, BTCPay), signed and forged: hostile text, wrong types, missing and repeated
// fields, wrong content types. The models are in test/fuzz/hub.ts, the properties in test/support/fuzz.ts.
import { describe } from 'node:test';
import { fuzzArea } from './hub.ts';

describe('fuzz: both payment webhooks (Stripe, BTCPay), signed and forged', () => {
  fuzzArea('webhooks', 30);
});
