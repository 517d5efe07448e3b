// Fuzzing the spoke API: hostile text, wrong types, missing and repeated fields, wrong content types, with and
// without credentials. See test/fuzz/hub.ts for the models and test/support/fuzz.ts for the properties.
import { describe } from 'node:test';
import { fuzzRoutes } from './hub.ts';

describe("fuzz: the spoke API", () => {
  fuzzRoutes((m) => m.sender === 'spoke', 10);
});
