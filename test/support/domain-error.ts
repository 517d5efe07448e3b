import assert from 'node:assert/strict';
import { DomainError } from '../../src/domain/shared/errors.ts';

/** A check for thenThrows / assert.throws: the domain error `code`, with one helpful line as message. */
export const failsWith = (code: DomainError['code'], about: RegExp) => (error: unknown) => {
  assert.ok(error instanceof DomainError, `expected a DomainError, got ${String(error)}`);
  assert.equal(error.code, code, `code of "${error.message}"`);
  assert.match(error.message, about);
  assert.doesNotMatch(error.message, /[\r\n]/, 'the message is a single line');
  return true;
};
