// Money is integer cents; text crosses the boundary as exact decimal dollars.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { centsFromNumeric, formatCents, maxPaymentCents, parseDollars } from '../../src/domain/shared/money.ts';
import { failsWith } from '../support/domain-error.ts';

describe('parseDollars', () => {
  for (const [text, cents] of [
    ['20', 2000],
    ['20.5', 2050],
    ['20.05', 2005],
    [' 7 ', 700],
    ['0.01', 1],
    ['1000000', maxPaymentCents],
  ] as const) {
    it(`reads ${JSON.stringify(text)} as ${cents} cents`, () => {
      assert.equal(parseDollars(text), cents);
    });
  }

  for (const text of ['abc', '-5', '1e3', '20.001', '', '   ', '1,000', '$5', '20.', '.5', '0x10', '2 0', '٢٠']) {
    it(`refuses ${JSON.stringify(text)}`, () => {
      assert.throws(() => parseDollars(text), failsWith('invalid', /is not an amount in dollars: use digits with at most two decimals/));
    });
  }

  for (const text of ['0', '0.00']) {
    it(`refuses ${JSON.stringify(text)}: an amount is more than zero`, () => {
      assert.throws(() => parseDollars(text), failsWith('invalid', /^the amount must be more than zero, not "0(\.00)?"$/));
    });
  }

  for (const text of ['1000000.01', '999999999']) {
    it(`refuses ${text}, above the limit`, () => {
      assert.throws(() => parseDollars(text), failsWith('invalid', /is more than the 1000000\.00 limit$/));
    });
  }

  it('keeps its refusal on one line when the text holds a newline', () => {
    assert.throws(() => parseDollars('20\n30'), failsWith('invalid', /^"20\\n30" is not an amount in dollars/));
  });

  it('reads back every amount it formats', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: maxPaymentCents }), (cents) => parseDollars(formatCents(cents)) === cents));
  });
});

describe('formatCents', () => {
  for (const [cents, text] of [
    [2050, '20.50'],
    [2005, '20.05'],
    [0, '0.00'],
    [7, '0.07'],
    [-51, '-0.51'],
    [-2050, '-20.50'],
    [maxPaymentCents, '1000000.00'],
  ] as const) {
    it(`writes ${cents} cents as "${text}"`, () => {
      assert.equal(formatCents(cents), text);
    });
  }

  for (const cents of [0.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53]) {
    it(`refuses ${cents}, not a whole number of cents`, () => {
      assert.throws(() => formatCents(cents), RangeError);
    });
  }
});

describe('centsFromNumeric', () => {
  for (const [text, cents] of [
    ['5.33', 533],
    ['5', 500],
    ['5.3', 530],
    ['0.00', 0],
    ['-0.51', -51],
    ['-12.00', -1200],
  ] as const) {
    it(`reads NUMERIC ${text} as ${cents} cents`, () => {
      assert.equal(centsFromNumeric(text), cents);
    });
  }

  for (const text of ['abc', '5.333', '', '+5', '5.', '1e3']) {
    it(`refuses ${JSON.stringify(text)}`, () => {
      assert.throws(() => centsFromNumeric(text), RangeError);
    });
  }

  it('reads back every amount formatCents writes, negatives included', () => {
    fc.assert(fc.property(fc.integer({ min: -1e12, max: 1e12 }), (cents) => centsFromNumeric(formatCents(cents)) === cents));
  });
});
