// The smallest top-up pays for a capsul: the configured minimum (unset by default) raised to a month of
// the cheapest size in the catalogue, a warning at start when one configured is lower, and an error when
// not even the largest top-up pays for one.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, readConfig } from '../../src/config.ts';
import { effectiveTopUpLimits, topUpCents, topUpLimitsCheck } from '../../src/payments/provider.ts';
import { failsWith } from '../support/domain-error.ts';

const f1xs = { size: 'f1-xs', priceCentsPerMonth: 533 };

describe('the smallest top-up', () => {
  it('given a configured minimum below a month of the cheapest capsul, the forms take that month, and say for which size', () => {
    const limits = effectiveTopUpLimits({ topUpMinCents: 500, topUpMaxCents: 100_000 }, f1xs);
    assert.deepEqual(limits, { topUpMinCents: 533, topUpMaxCents: 100_000, raisedFor: 'f1-xs' });
    assert.equal(topUpCents('5.33', limits), 533);
    assert.throws(() => topUpCents('5.32', limits), failsWith('invalid', /^the smallest top-up is \$5\.33$/));
  });

  it('given a configured minimum that covers the month, or an empty catalogue, the configured one', () => {
    assert.deepEqual(effectiveTopUpLimits({ topUpMinCents: 2000, topUpMaxCents: 100_000 }, f1xs), {
      topUpMinCents: 2000,
      topUpMaxCents: 100_000,
      raisedFor: null,
    });
    assert.deepEqual(effectiveTopUpLimits({ topUpMinCents: 533, topUpMaxCents: 100_000 }, f1xs).raisedFor, null);
    assert.deepEqual(effectiveTopUpLimits({ topUpMinCents: 500, topUpMaxCents: 100_000 }, null).topUpMinCents, 500);
  });

  it('warns at start of a configured minimum below the month, says nothing of one unset or enough, and refuses a maximum below it', () => {
    assert.deepEqual(topUpLimitsCheck({ topUpMinCents: 500, topUpMaxCents: 100_000 }, f1xs), {
      warning: 'TOP_UP_MIN_DOLLARS ($5.00) is below a month of the cheapest capsul (f1-xs, $5.33): the add-funds forms take at least $5.33',
    });
    assert.equal(topUpLimitsCheck({ topUpMinCents: null, topUpMaxCents: 100_000 }, f1xs), null);
    assert.equal(topUpLimitsCheck({ topUpMinCents: 1000, topUpMaxCents: 100_000 }, f1xs), null);
    assert.equal(topUpLimitsCheck({ topUpMinCents: 500, topUpMaxCents: 100_000 }, null), null);
    assert.deepEqual(topUpLimitsCheck({ topUpMinCents: null, topUpMaxCents: 500 }, f1xs), {
      error: 'TOP_UP_MAX_DOLLARS ($5.00) is below a month of the cheapest capsul (f1-xs, $5.33): no top-up could pay for a capsul',
    });
  });

  it('is unset by default (a month of the cheapest capsul), or what TOP_UP_MIN_DOLLARS says, checked', () => {
    assert.equal(readConfig({}).topUpMinCents, null);
    assert.equal(readConfig({ TOP_UP_MIN_DOLLARS: '  ' }).topUpMinCents, null);
    assert.equal(readConfig({ TOP_UP_MIN_DOLLARS: '7.50' }).topUpMinCents, 750);
    for (const [value, message] of [
      ['0', /TOP_UP_MIN_DOLLARS must be at least 0\.01/],
      ['2000', /no more than TOP_UP_MAX_DOLLARS/],
      ['five', /TOP_UP_MIN_DOLLARS must be an amount of dollars/],
    ] as const) {
      assert.throws(
        () => readConfig({ TOP_UP_MIN_DOLLARS: value }),
        (error: unknown) => error instanceof ConfigError && message.test(error.message),
      );
    }
  });
});
