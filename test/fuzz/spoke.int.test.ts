// Fuzzing the spoke API, with the right token and wrong ones: hostile text, wrong types, missing and repeated
// fields, wrong content types. The models are in test/fuzz/hub.ts, the properties in test/support/fuzz.ts.
import { describe } from 'node:test';
import { fuzzArea } from './hub.ts';

describe('fuzz: the spoke API, with the right token and wrong ones', () => {
  fuzzArea('spoke', 25);
});
