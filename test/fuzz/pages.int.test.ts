// Fuzzing public pages, login and the customer's console: hostile text, wrong types, missing and repeated fields, wrong content types, with and
// without credentials. See test/fuzz/hub.ts for the models and test/support/fuzz.ts for the properties.
import { describe } from 'node:test';
import { fuzzRoutes } from './hub.ts';

describe("fuzz: public pages, login and the customer's console", () => {
  fuzzRoutes((m) => m.sender === 'anonymous' || (m.sender === 'customer' && !m.route.includes('/payment/')), 10);
});
