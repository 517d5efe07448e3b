// Fuzzing the operator's pages: hostile text, wrong types, missing and repeated fields, wrong content types, with and
// without credentials. See test/fuzz/hub.ts for the models and test/support/fuzz.ts for the properties.
import { describe } from 'node:test';
import { fuzzRoutes } from './hub.ts';

describe("fuzz: the operator's pages", () => {
  fuzzRoutes((m) => m.sender === 'admin', 10);
});
