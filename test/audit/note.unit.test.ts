// C2SP signed notes: Go's own vectors (golang.org/x/mod sumdb/note/note_test.go) byte for byte, the
// spec's example, and the refusals Go makes.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { generateSignerKey, isValidKeyName, maxNoteSignatures, openNote, signNote, verifierKeyFor } from '../../src/audit/note.ts';

// From Go's note_test.go (TestSign, TestOpen, TestNewVerifier, TestNewSigner).
const peterSignerKey = 'PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz';
const peterKey = 'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW';
const enochKey = 'EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop';
const text = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const peterSig = '— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n';
const enochSig = '— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n';
const peter = {
  name: 'PeterNeumann',
  keyHash: 0xc74f20a3,
  base64: 'x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=',
};
const enoch = {
  name: 'EnochRoot',
  keyHash: 0xaf0cfe78,
  base64: 'rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=',
};

// Go slices these strings by byte; "— " is four bytes of UTF-8 but two UTF-16 units here.
const insertAtByte = (s: string, at: number, insert: string) => {
  const bytes = Buffer.from(s, 'utf8');
  return Buffer.concat([bytes.subarray(0, at), Buffer.from(insert), bytes.subarray(at)]).toString('utf8');
};

describe('signed notes against Go’s vectors', () => {
  it('signs Go’s text with Go’s key into exactly Go’s note (Ed25519 is deterministic)', () => {
    assert.equal(signNote(text, peterSignerKey), `${text}\n${peterSig}`);
  });

  it('derives Go’s verifier key from Go’s signer key', () => {
    assert.equal(verifierKeyFor(peterSignerKey), peterKey);
  });

  it('opens a note with one known and one unknown signature, as TestOpen does', () => {
    const opened = openNote(`${text}\n${peterSig}${enochSig}`, [peterKey]);
    assert.equal(opened.text, text);
    assert.deepEqual(opened.signatures, [peter]);
    assert.deepEqual(opened.unknownSignatures, [enoch]);
  });

  it('verifies both signatures when both keys are known', () => {
    const opened = openNote(`${text}\n${peterSig}${enochSig}`, [peterKey, enochKey]);
    assert.deepEqual(opened.signatures, [peter, enoch]);
    assert.deepEqual(opened.unknownSignatures, []);
  });

  it('refuses a note no known key signed', () => {
    assert.throws(
      () => openNote(`${text}\n${peterSig}${enochSig}`, []),
      /^Error: note has no verifiable signatures \(signed by PeterNeumann\+c74f20a3, EnochRoot\+af0cfe78\)$/,
    );
  });

  it('refuses an ambiguous verifier list only when the ambiguous key signed', () => {
    assert.throws(() => openNote(`${text}\n${enochSig}`, [enochKey, peterKey, enochKey]), /ambiguous key EnochRoot\+af0cfe78/);
    assert.equal(openNote(`${text}\n${peterSig}`, [enochKey, peterKey, enochKey]).text, text);
  });

  it(`refuses more than ${maxNoteSignatures} signatures, known or not`, () => {
    assert.throws(() => openNote(`${text}\n${peterSig.repeat(101)}`, [peterKey]), /malformed note/);
    assert.throws(() => openNote(`${text}\n${peterSig.repeat(101)}`, []), /malformed note/);
    assert.equal(openNote(`${text}\n${peterSig.repeat(100)}`, [peterKey]).signatures.length, 1);
  });

  it('refuses a bad signature by a known key', () => {
    assert.throws(
      () => openNote(`${text}\n${insertAtByte(peterSig, 60, 'ABCD')}`, [peterKey]),
      /^Error: invalid signature for key PeterNeumann\+c74f20a3$/,
    );
  });

  it('drops repeated signatures, verified and unverified, as Go does', () => {
    const enochABCD = {
      ...enoch,
      base64: 'rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5nABCD2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=',
    };
    const opened = openNote(`${text}\n${peterSig}${peterSig}${enochSig}${enochSig}${insertAtByte(enochSig, 60, 'ABCD')}`, [peterKey]);
    assert.deepEqual(opened.signatures, [peter]);
    assert.deepEqual(opened.unknownSignatures, [enoch, enochABCD]);
  });

  const badNotes: Array<[string, string]> = [
    ['the bare text', text],
    ['no signature lines', `${text}\n`],
    ['a signature line without its newline', `${text}\n${peterSig.slice(0, -1)}`],
    ['a control character', `\u0001${text}\n${peterSig}`],
    ['a lone surrogate (Go: invalid UTF-8)', `\ud800${text}\n${peterSig}`],
    [
      'a name with a space',
      `${text}\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=`,
    ],
    ['a line after the signatures', `${text}\n${peterSig}Unexpected line.\n`],
  ];
  for (const [what, note] of badNotes) {
    it(`refuses as malformed a note with ${what}`, () => {
      assert.throws(() => openNote(note, [peterKey]), /^Error: malformed note/);
    });
  }

  it('refuses every strict substring and every one-byte change of Go’s verifier key, as TestNewVerifier does', () => {
    const note = `${text}\n${peterSig}`;
    for (let i = 0; i <= peterKey.length; i++) {
      for (let j = i + 1; j <= peterKey.length; j++) {
        if (i !== 0 || j !== peterKey.length) assert.throws(() => openNote(note, [peterKey.slice(i, j)]), /verifier/, peterKey.slice(i, j));
      }
    }
    for (let i = 0; i < peterKey.length; i++) {
      const changed = peterKey.slice(0, i) + String.fromCharCode(peterKey.charCodeAt(i) + 1) + peterKey.slice(i + 1);
      assert.throws(() => openNote(note, [changed]), /verifier/, changed);
    }
    // Go's two adjusted-hash keys: a wrong-length key and an unknown algorithm.
    assert.throws(() => openNote(note, ['PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==']), /verifier key/);
    assert.throws(
      () => openNote(note, ['PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW']),
      /unknown verifier algorithm/,
    );
  });

  it('refuses every strict substring and every one-byte change of Go’s signer key, as TestNewSigner does', () => {
    for (let i = 0; i <= peterSignerKey.length; i++) {
      for (let j = i + 1; j <= peterSignerKey.length; j++) {
        if (i !== 0 || j !== peterSignerKey.length) assert.throws(() => verifierKeyFor(peterSignerKey.slice(i, j)), /signer/);
      }
    }
    for (let i = 0; i < peterSignerKey.length; i++) {
      const changed = peterSignerKey.slice(0, i) + String.fromCharCode(peterSignerKey.charCodeAt(i) + 1) + peterSignerKey.slice(i + 1);
      assert.throws(() => signNote(text, changed), /signer/);
    }
  });

  it('never quotes a signer key in its errors', () => {
    const broken = `${peterSignerKey.slice(0, -2)}zz`;
    assert.throws(
      () => signNote(text, broken),
      (error: unknown) => error instanceof Error && !error.message.includes(broken.slice(30)),
    );
  });
});

describe('signed notes per the C2SP spec', () => {
  it('verifies the spec’s example note with its example key', () => {
    const note =
      'This is an example message.\n\n— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n';
    const opened = openNote(note, ['example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k']);
    assert.equal(opened.text, 'This is an example message.\n');
    assert.equal(opened.signatures[0]?.keyHash, 0x530d903a);
  });

  it('generates keys in Go’s text forms that sign and verify each other', () => {
    const { signerKey, verifierKey } = generateSignerKey('capsul.example/log');
    assert.match(signerKey, /^PRIVATE\+KEY\+capsul\.example\/log\+[0-9a-f]{8}\+[A-Za-z0-9+/]{44}$/);
    assert.match(verifierKey, /^capsul\.example\/log\+[0-9a-f]{8}\+[A-Za-z0-9+/]{44}$/);
    assert.equal(verifierKeyFor(signerKey), verifierKey);
    assert.equal(signerKey.split('+')[3], verifierKey.split('+')[1]);
    const note = signNote('héllo, wörld\nsecond line\n', signerKey);
    assert.equal(openNote(note, [verifierKey]).text, 'héllo, wörld\nsecond line\n');
  });

  it('signs the text up to and including its last newline, blank lines and all', () => {
    const { signerKey, verifierKey } = generateSignerKey('log');
    for (const body of ['\n', 'a\n\nb\n', 'a\n\n']) assert.equal(openNote(signNote(body, signerKey), [verifierKey]).text, body);
  });

  it('refuses altered text, an altered signature and another key of the same name', () => {
    const { signerKey, verifierKey } = generateSignerKey('log');
    const note = signNote('size 5\n', signerKey);
    assert.throws(() => openNote(note.replace('size 5', 'size 6'), [verifierKey]), /invalid signature for key log\+/);
    const signature = note.slice(note.lastIndexOf(' ') + 1, -1);
    const bytes = Buffer.from(signature, 'base64');
    bytes[10]! ^= 1;
    assert.throws(() => openNote(note.replace(signature, bytes.toString('base64')), [verifierKey]), /invalid signature for key log\+/);
    const impostor = generateSignerKey('log');
    assert.throws(() => openNote(signNote('size 5\n', impostor.signerKey), [verifierKey]), /no verifiable signatures/);
  });

  it('refuses a non-canonical base64 signature', () => {
    const { signerKey, verifierKey } = generateSignerKey('log');
    const note = signNote('x\n', signerKey);
    assert.throws(() => openNote(note.replace(/=\n$/, '\n'), [verifierKey]), /malformed note/);
  });

  it('refuses to sign text without its final newline or with control characters', () => {
    assert.throws(() => signNote('abc', peterSignerKey), /^Error: malformed note: the text must end with a newline$/);
    assert.throws(() => signNote('a\tb\n', peterSignerKey), /control character/);
  });

  it('takes Go’s key names: non-empty, no Unicode white space, no plus', () => {
    for (const name of ['example.com/log', 'PeterNeumann', 'ünïcode', '—']) assert.ok(isValidKeyName(name), name);
    for (const name of ['', 'a b', 'a+b', 'a\tb', 'a\u00a0b', 'a\u2003b', 'a\u3000b', 'a\nb', '\ud800']) {
      assert.equal(isValidKeyName(name), false, JSON.stringify(name));
      assert.throws(() => generateSignerKey(name), /^Error: invalid key name/);
    }
  });
});
