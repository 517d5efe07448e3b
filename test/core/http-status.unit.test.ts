// The one mapping from the domain's refusals to HTTP statuses.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { httpStatusOf } from '../../src/core/http-status.ts';
import { DomainError, invalid, notFound, refused } from '../../src/domain/shared/errors.ts';

describe('httpStatusOf', () => {
  it('gives 400 for wrong input, 404 for what is not there, 409 for a refusal of the state', () => {
    assert.equal(httpStatusOf(invalid('no')), 400);
    assert.equal(httpStatusOf(notFound('no')), 404);
    assert.equal(httpStatusOf(refused('no')), 409);
    assert.equal(httpStatusOf(new DomainError('insufficient_funds', 'no')), 409);
  });
});
