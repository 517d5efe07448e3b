// C2SP tlog-checkpoint bodies: the spec's example, Go's tlog vectors, strict refusals, a round trip.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { formatCheckpoint, parseCheckpoint } from '../../src/audit/checkpoint.ts';
import { leafHash } from '../../src/audit/merkle.ts';
import { generateSignerKey, isValidKeyName, openNote, signNote } from '../../src/audit/note.ts';

// c2sp.org/tlog-checkpoint's example body.
const specExample = 'example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n';
// Go's sumdb/tlog note_test.go (TestFormatTree / TestParseTree): a tree of 123456789012 records whose
// hash is RecordHash("hello world").
const goTree = 'go.sum database tree\n123456789012\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n';

describe('checkpoint bodies', () => {
  it('parses the spec’s example and writes it back byte for byte', () => {
    const checkpoint = parseCheckpoint(specExample);
    assert.equal(checkpoint.origin, 'example.com/behind-the-sofa');
    assert.equal(checkpoint.treeSize, 20852163);
    assert.equal(checkpoint.rootHash.toString('base64'), 'CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=');
    assert.deepEqual(checkpoint.extensions, []);
    assert.equal(formatCheckpoint(checkpoint), specExample);
  });

  it('parses Go’s tree note, whose origin has spaces (allowed, though not recommended)', () => {
    const checkpoint = parseCheckpoint(goTree);
    assert.equal(checkpoint.origin, 'go.sum database tree');
    assert.equal(checkpoint.treeSize, 123456789012);
    assert.deepEqual(checkpoint.rootHash, leafHash(Buffer.from('hello world')));
  });

  it('keeps extension lines, in order', () => {
    const checkpoint = parseCheckpoint(`${specExample}ext one\nJOE\n`);
    assert.deepEqual(checkpoint.extensions, ['ext one', 'JOE']);
    assert.equal(formatCheckpoint(checkpoint), `${specExample}ext one\nJOE\n`);
  });

  it('writes the empty tree as size 0 with the empty root', () => {
    const text = formatCheckpoint({
      origin: 'log',
      treeSize: 0,
      rootHash: Buffer.from('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', 'hex'),
    });
    assert.equal(text, 'log\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n');
    assert.equal(parseCheckpoint(text).treeSize, 0);
  });

  const bad: Array<[string, string, RegExp]> = [
    ['Go’s hex size', 'go.sum database tree\n0xabcdef\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n', /tree size "0xabcdef"/],
    ['Go’s oversized root', 'go.sum database tree\n123456789012\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBTOOBIG=\n', /root hash/],
    ['Go’s junk after the body without a newline', `${goTree}JOE`, /must end with a newline/],
    ['no final newline', specExample.slice(0, -1), /must end with a newline/],
    ['an empty origin', `\n5\n${leafHash(Buffer.alloc(0)).toString('base64')}\n`, /origin/],
    ['a missing root line', 'log\n5\n', /root hash ""/],
    ['only an origin', 'log\n', /tree size ""/],
    ['a leading zero', 'log\n05\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n', /without leading zeros/],
    ['a signed size', 'log\n+5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n', /tree size "\+5"/],
    ['a negative size', 'log\n-1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n', /tree size "-1"/],
    ['a padded size', 'log\n 5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n', /tree size " 5"/],
    ['a size beyond 2^53−1', 'log\n9007199254740992\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n', /beyond 2\^53−1/],
    ['a 31-byte root', 'log\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxqw==\n', /root hash/],
    ['an unpadded root', 'log\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I\n', /root hash/],
    ['a URL-safe root', 'log\n5\nCsUYapGGPo4dkMgIAUqom_Xajj7h2fB2MPA3j2jxq2I=\n', /root hash/],
    ['a root with trailing space', 'log\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I= \n', /root hash/],
    ['an empty extension line', `${specExample}\n`, /extension lines must be non-empty/],
    ['a control character in the origin', 'lo\u0007g\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n', /origin/],
  ];
  for (const [what, text, message] of bad) {
    it(`refuses ${what}, in one line`, () => {
      assert.throws(
        () => parseCheckpoint(text),
        (error: unknown) => error instanceof Error && message.test(error.message) && !error.message.includes('\n'),
      );
    });
  }

  it('refuses to write an origin that could not also name its signing key, or a bad size or root', () => {
    const rootHash = Buffer.alloc(32);
    for (const origin of ['', 'go.sum database tree', 'a+b', 'a\nb'])
      assert.throws(() => formatCheckpoint({ origin, treeSize: 1, rootHash }), /invalid checkpoint origin/);
    for (const treeSize of [-1, 1.5, NaN, 2 ** 53])
      assert.throws(() => formatCheckpoint({ origin: 'log', treeSize, rootHash }), /invalid checkpoint tree size/);
    assert.throws(() => formatCheckpoint({ origin: 'log', treeSize: 1, rootHash: Buffer.alloc(31) }), /32 bytes/);
    assert.throws(() => formatCheckpoint({ origin: 'log', treeSize: 1, rootHash, extensions: [''] }), /extension lines/);
  });

  it('round-trips any valid checkpoint', () => {
    const origin = fc
      .string({ unit: 'binary', minLength: 1, maxLength: 40 })
      .filter((name) => isValidKeyName(name) && !/[\u0000-\u001f]/.test(name));
    fc.assert(
      fc.property(origin, fc.maxSafeNat(), fc.uint8Array({ minLength: 32, maxLength: 32 }), (origin, treeSize, root) => {
        const checkpoint = { origin, treeSize, rootHash: Buffer.from(root), extensions: [] };
        assert.deepEqual(parseCheckpoint(formatCheckpoint(checkpoint)), checkpoint);
      }),
    );
  });

  it('is signed and opened as a C2SP signed note whose key name is the origin', () => {
    const { signerKey, verifierKey } = generateSignerKey('capsul.example/audit');
    const body = formatCheckpoint({ origin: 'capsul.example/audit', treeSize: 3, rootHash: leafHash(Buffer.from('x')) });
    const opened = openNote(signNote(body, signerKey), [verifierKey]);
    assert.equal(parseCheckpoint(opened.text).treeSize, 3);
    assert.equal(opened.signatures[0]?.name, parseCheckpoint(opened.text).origin);
  });
});
