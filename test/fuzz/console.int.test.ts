// Fuzzing the customer's console (capsuls, SSH keys, balance, history): hostile text, wrong types, missing and repeated
// fields, wrong content types. The models are in test/fuzz/hub.ts, the properties in test/support/fuzz.ts.
import { describe } from 'node:test';
import { fuzzArea } from './hub.ts';

describe("fuzz: the customer's console (capsuls, SSH keys, balance, history)", () => {
  fuzzArea('console', 6);
});
