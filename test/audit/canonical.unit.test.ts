// RFC 8785 canonical JSON: the RFC's own examples byte for byte, the refusals that keep leaves
// I-JSON-exact, and a round-trip property.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { canonicalJson, canonicalJsonOfParsed, maxCanonicalDepth } from '../../src/audit/canonical.ts';

const utf8Hex = (text: string) => Buffer.from(text, 'utf8').toString('hex');

// The examples of RFC 8785 (§3.2.2 "values", §3.2.3 "weird" sorting) and its author's companion test data
// (github.com/cyberphone/json-canonicalization, testdata/input and testdata/outhex): input text and the
// exact expected output bytes.
const rfcExamples: Record<string, { input: string; outputHex: string }> = {
  arrays: {
    input: '[56, {"d": true, "10": null, "1": [ ]}]',
    outputHex: '5b35362c7b2231223a5b5d2c223130223a6e756c6c2c2264223a747275657d5d',
  },
  french: {
    input:
      '{"peach": "This sorting order", "péché": "is wrong according to French", "pêche": "but canonicalization MUST", "sin": "ignore locale"}',
    outputHex:
      '7b227065616368223a225468697320736f7274696e67206f72646572222c2270c3a96368c3a9223a2269732077726f6e67206163636f7264696e6720746f204672656e6368222c2270c3aa636865223a226275742063616e6f6e6963616c697a6174696f6e204d555354222c2273696e223a2269676e6f7265206c6f63616c65227d',
  },
  structures: {
    input: String.raw`{"1": {"f": {"f": "hi","F": 5} ,"\n": 56.0}, "10": { }, "": "empty", "a": { }, "111": [ {"e": "yes","E": "no" } ], "A": { }}`,
    outputHex:
      '7b22223a22656d707479222c2231223a7b225c6e223a35362c2266223a7b2246223a352c2266223a226869227d7d2c223130223a7b7d2c22313131223a5b7b2245223a226e6f222c2265223a22796573227d5d2c2241223a7b7d2c2261223a7b7d7d',
  },
  unicode: {
    input: String.raw`{"Unnormalized Unicode":"A\u030a"}`,
    outputHex: '7b22556e6e6f726d616c697a656420556e69636f6465223a2241cc8a227d',
  },
  weird: {
    input: String.raw`{"\u20ac": "Euro Sign", "\r": "Carriage Return", "\u000a": "Newline", "1": "One", "\u0080": "Control\u007f", "\ud83d\ude02": "Smiley", "\u00f6": "Latin Small Letter O With Diaeresis", "\ufb33": "Hebrew Letter Dalet With Dagesh", "</script>": "Browser Challenge"}`,
    outputHex:
      '7b225c6e223a224e65776c696e65222c225c72223a2243617272696167652052657475726e222c2231223a224f6e65222c223c2f7363726970743e223a2242726f77736572204368616c6c656e6765222c22c280223a22436f6e74726f6c7f222c22c3b6223a224c6174696e20536d616c6c204c6574746572204f205769746820446961657265736973222c22e282ac223a224575726f205369676e222c22f09f9882223a22536d696c6579222c22efacb3223a22486562726577204c65747465722044616c6574205769746820446167657368227d',
  },
};

// RFC 8785 §3.2.2's example, verbatim. It holds 1E30, which the RFC writes as 1e+30 but we refuse (an
// integer beyond 2^53−1), so it is checked twice: refused whole, and byte-exact without that number.
const rfcValuesInput = String.raw`{
  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}`;
const rfcValuesOutputHex =
  '7b226c69746572616c73223a5b6e756c6c2c747275652c66616c73655d2c226e756d62657273223a5b3333333333333333332e333333333333332c31652b33302c342e352c302e3030322c31652d32375d2c22737472696e67223a22e282ac245c75303030665c6e4127425c225c5c5c5c5c222f227d';

// RFC 8785 Appendix B: IEEE 754 bit patterns and their JSON text (checked against ES Number#toString).
const inRangeNumbers: Array<[string, string]> = [
  ['0000000000000000', '0'],
  ['8000000000000000', '0'], // minus zero
  ['0000000000000001', '5e-324'],
  ['8000000000000001', '-5e-324'],
  ['3eb0c6f7a0b5ed8c', '9.999999999999997e-7'],
  ['3eb0c6f7a0b5ed8d', '0.000001'],
  ['41b3de4355555553', '333333333.3333332'],
  ['41b3de4355555554', '333333333.33333325'],
  ['41b3de4355555555', '333333333.3333333'],
  ['41b3de4355555556', '333333333.3333334'],
  ['41b3de4355555557', '333333333.33333343'],
  ['becbf647612f3696', '-0.0000033333333333333333'],
  ['43143ff3c1cb0959', '1424953923781206.2'], // round to even
];
// The same appendix's integers beyond ±(2^53−1): exact doubles, but refused as not I-JSON-exact.
const outOfRangeNumbers = [
  '7fefffffffffffff', // 1.7976931348623157e+308
  'ffefffffffffffff',
  '4340000000000000', // 9007199254740992 = 2^53
  'c340000000000000',
  '4430000000000000', // 295147905179352830000
  '44b52d02c7e14af6', // 1e+23
  '444b1ae4d6e2ef50', // 1e+21
];
const doubleFromHex = (hex: string) => Buffer.from(hex, 'hex').readDoubleBE(0);

describe('canonicalJson on RFC 8785 examples', () => {
  for (const [name, { input, outputHex }] of Object.entries(rfcExamples)) {
    it(`writes the "${name}" example byte for byte`, () => {
      assert.equal(utf8Hex(canonicalJson(JSON.parse(input))), outputHex);
    });
  }

  it('writes the §3.2.2 "values" example byte for byte, less the 1E30 it refuses', () => {
    assert.throws(() => canonicalJson(JSON.parse(rfcValuesInput)), /\$\["numbers"\]\[1\] is 1e\+30, an integer beyond/);
    const expected = Buffer.from(rfcValuesOutputHex, 'hex').toString('utf8').replace('1e+30,', '');
    assert.equal(canonicalJson(JSON.parse(rfcValuesInput.replace('1E30, ', ''))), expected);
  });

  it('sorts the §3.2.3 example by UTF-16 code units, not code points or locale', () => {
    const input = {
      '\u20ac': 'Euro Sign',
      '\r': 'Carriage Return',
      '\ufb33': 'Hebrew Letter Dalet With Dagesh',
      '1': 'One',
      '\ud83d\ude00': 'Emoji: Grinning Face',
      '\u0080': 'Control',
      '\u00f6': 'Latin Small Letter O With Diaeresis',
    };
    const expected = [
      '"\\r":"Carriage Return"',
      '"1":"One"',
      '"\u0080":"Control"',
      '"\u00f6":"Latin Small Letter O With Diaeresis"',
      '"\u20ac":"Euro Sign"',
      '"\ud83d\ude00":"Emoji: Grinning Face"',
      '"\ufb33":"Hebrew Letter Dalet With Dagesh"',
    ];
    assert.equal(canonicalJson(input), `{${expected.join(',')}}`);
  });

  for (const [hex, text] of inRangeNumbers) {
    it(`writes the double ${hex} as ${text}`, () => {
      assert.equal(canonicalJson(doubleFromHex(hex)), text);
    });
  }
});

describe('canonicalJson refuses what is not I-JSON-exact', () => {
  for (const hex of outOfRangeNumbers) {
    it(`refuses the integer ${doubleFromHex(hex)} (${hex}), beyond ±(2^53−1)`, () => {
      assert.throws(() => canonicalJson(doubleFromHex(hex)), /an integer beyond ±\(2\^53−1\)/);
    });
  }

  it('takes the largest safe integers and refuses the next ones', () => {
    assert.equal(canonicalJson([Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER]), '[9007199254740991,-9007199254740991]');
    assert.throws(() => canonicalJson(Number.MAX_SAFE_INTEGER + 1), /beyond/);
    assert.throws(() => canonicalJson(-Number.MAX_SAFE_INTEGER - 1), /beyond/);
  });

  const refused: Array<[string, unknown, RegExp]> = [
    ['NaN', NaN, /\$ is NaN/],
    ['Infinity', Infinity, /\$ is Infinity/],
    ['-Infinity', { a: [-Infinity] }, /\$\["a"\]\[0\] is -Infinity/],
    ['undefined', undefined, /\$ is undefined/],
    ['an undefined member', { a: 1, b: undefined }, /\$\["b"\] is undefined/],
    // biome-ignore lint/suspicious/noSparseArray: the hole is the input under test
    ['a hole in an array', [1, , 3], /\$\[1\] is undefined/],
    ['a function', { f: () => 1 }, /\$\["f"\] is a function/],
    ['a BigInt', 1n, /\$ is a bigint/],
    ['a symbol', Symbol('s'), /\$ is a symbol/],
    ['a symbol key', { [Symbol('s')]: 1 }, /symbol keys/],
    ['a Date', new Date(0), /is a Date object/],
    ['a Map', new Map(), /is a Map object/],
    ['a class instance', new (class Money {})(), /is a Money object/],
    ['a lone surrogate', 'a\ud800b', /lone UTF-16 surrogate/],
    ['a lone surrogate in a key', { '\udc00': 1 }, /lone UTF-16 surrogate/],
  ];
  for (const [what, value, message] of refused) {
    it(`refuses ${what}, in one line`, () => {
      assert.throws(
        () => canonicalJson(value),
        (error: unknown) => error instanceof Error && message.test(error.message) && !error.message.includes('\n'),
      );
    });
  }

  it('refuses nesting beyond the limit, and so a cycle, instead of overflowing the stack', () => {
    let deep: unknown = 0;
    for (let i = 0; i < maxCanonicalDepth + 1; i++) deep = [deep];
    assert.throws(() => canonicalJson(deep), /nests deeper than/);
    const cycle: { self?: unknown } = {};
    cycle.self = cycle;
    assert.throws(() => canonicalJson(cycle), /nests deeper than/);
  });

  it('takes objects without a prototype and writes -0 as 0', () => {
    const bare = Object.assign(Object.create(null) as object, { b: -0, a: 'x' });
    assert.equal(canonicalJson(bare), '{"a":"x","b":0}');
  });
});

// Any I-JSON value: well-formed Unicode strings (any code point) and numbers within the safe range.
const jsonValue: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    fc.maxSafeInteger(),
    fc.double({ noNaN: true, noDefaultInfinity: true, min: -(2 ** 52), max: 2 ** 52 }),
    fc.string({ unit: 'binary' }),
    fc.array(tie('value'), { maxLength: 5 }),
    fc.dictionary(fc.string({ unit: 'binary' }), tie('value'), { maxKeys: 5 }),
  ),
})).value;

describe('canonicalJson properties', () => {
  it('is a fixed point: canonicalising the parsed canonical text gives the same text', () => {
    fc.assert(
      fc.property(jsonValue, (value) => {
        const canonical = canonicalJson(value);
        assert.equal(canonicalJson(JSON.parse(canonical)), canonical);
      }),
      { numRuns: 500 },
    );
  });

  it('does not depend on the order members were added in', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string({ unit: 'binary' }), jsonValue, { maxKeys: 8 }), (object) => {
        const reversed = Object.fromEntries(Object.entries(object).reverse());
        assert.equal(canonicalJson(reversed), canonicalJson(object));
      }),
    );
  });

  it('parses back to the value it was written from', () => {
    fc.assert(
      fc.property(jsonValue, (value) => {
        // JSON.stringify's own output only serves to turn -0 into 0 here, as canonical JSON does.
        assert.deepStrictEqual(JSON.parse(canonicalJson(value)), JSON.parse(JSON.stringify(value)));
      }),
      { numRuns: 300 },
    );
  });
});

describe('canonicalJsonOfParsed (events read back from the store)', () => {
  it('writes exactly the bytes canonicalJson writes, for anything JSON.parse produces', () => {
    fc.assert(
      fc.property(jsonValue, (value) => {
        const parsed: unknown = JSON.parse(JSON.stringify(value));
        assert.equal(canonicalJsonOfParsed(parsed), canonicalJson(parsed));
      }),
      { numRuns: 1000 },
    );
  });

  it('puts integer-like keys in their sorted place, not first as JavaScript objects do', () => {
    const parsed: unknown = JSON.parse('{"b":1,"10":2,"":3,"2":4,"a":5}');
    assert.equal(canonicalJsonOfParsed(parsed), '{"":3,"10":2,"2":4,"a":5,"b":1}');
    assert.equal(canonicalJsonOfParsed(parsed), canonicalJson(parsed));
  });

  it('keeps a "__proto__" member a member, in its sorted place', () => {
    const parsed: unknown = JSON.parse('{"z":1,"__proto__":{"polluted":true},"a":[{"__proto__":2}]}');
    assert.equal(canonicalJsonOfParsed(parsed), '{"__proto__":{"polluted":true},"a":[{"__proto__":2}],"z":1}');
    assert.equal(canonicalJsonOfParsed(parsed), canonicalJson(parsed));
    assert.equal(({} as { polluted?: boolean }).polluted, undefined);
  });

  it('writes an integer beyond 2^53, which canonicalJson refuses, as JavaScript reads it: deterministic, never a crash', () => {
    const parsed: unknown = JSON.parse('{"n":12345678901234567890}');
    assert.throws(() => canonicalJson(parsed), /beyond/);
    assert.equal(canonicalJsonOfParsed(parsed), '{"n":12345678901234567000}');
  });
});
