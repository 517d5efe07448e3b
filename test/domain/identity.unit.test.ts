// Who a customer is (their email, compared case-insensitively) and the SSH keys they hand a capsul.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { canonicalEmail } from '../../src/domain/shared/email.ts';
import { maxSshKeyLength, parseSshPublicKey } from '../../src/domain/shared/ssh.ts';
import { failsWith } from '../support/domain-error.ts';

describe('canonicalEmail', () => {
  it('compares addresses case-insensitively', () => {
    assert.equal(canonicalEmail('Foo@X.org'), canonicalEmail('foo@x.org'));
  });

  it('writes the canonical form trimmed and in lower case', () => {
    assert.equal(canonicalEmail('  Alice.Smith+capsul@Example.CO.uk \n'), 'alice.smith+capsul@example.co.uk');
    assert.equal(canonicalEmail('GUS@EXAMPLE.ORG'), 'gus@example.org');
  });

  const good: [string, string][] = [
    ['a.b+tag@sub.example.org', 'a.b+tag@sub.example.org'],
    ['x@xn--bcher-kva.example', 'x@xn--bcher-kva.example'],
    ['x@example.xn--p1ai', 'x@example.xn--p1ai'],
    ["o'brien_{x}~=!#$%&*/?^`|-@a-b.example.org", "o'brien_{x}~=!#$%&*/?^`|-@a-b.example.org"],
    ['a@1.example', 'a@1.example'],
    [`${'l'.repeat(64)}@${'d'.repeat(63)}.example.org`, `${'l'.repeat(64)}@${'d'.repeat(63)}.example.org`],
  ];
  for (const [text, canonical] of good) {
    it(`takes ${JSON.stringify(text.length > 40 ? `${text.slice(0, 20)}…` : text)}`, () => {
      assert.equal(canonicalEmail(text), canonical);
    });
  }

  const junk = [
    '',
    'foo',
    'foo@',
    '@x.org',
    'foo@x',
    'foo bar@x.org',
    'foo@x..org',
    'foo@.x.org',
    '<foo@x.org>',
    'a@b@x.org',
    'foo@x_y.org',
    'foo@x.org.',
    '"foo"@x.org',
    'foo@[192.0.2.1]',
    'foo\u0000@x.org',
    'foo\u001bbar@x.org',
    'foo\u007f@x.org',
    `${'a'.repeat(250)}@x.org`,
    // domains: labels of [a-z0-9-], not starting or ending with '-', 1–63 long; a TLD of letters (or xn--); two labels at least
    'a@-.org',
    'a@-x.org',
    'a@x-.org',
    'a@b.c-',
    'a@b.-c',
    'a@localhost',
    'a@b.c',
    'a@1.23',
    'a@x.o1g',
    'a@x.xn--',
    `a@${'b'.repeat(64)}.org`,
    `a@${Array.from({ length: 64 }, () => 'abc').join('.')}.org`,
    // local parts: a dot-atom of at most 64
    '.a@x.org',
    'a.@x.org',
    'a..b@x.org',
    `${'l'.repeat(65)}@x.org`,
    'a(b)@x.org',
    'a,b@x.org',
    'a\\b@x.org',
  ];
  for (const text of junk) {
    it(`refuses ${JSON.stringify(text.length > 40 ? `${text.slice(0, 20)}…` : text)}`, () => {
      assert.throws(() => canonicalEmail(text), failsWith('invalid', /is not an email address/));
    });
  }

  // Characters that do not show (or show as something else) never make an account of their own.
  const unseen: [string, string, string][] = [
    ['a zero-width space', 'gu\u200bs@example.org', 'U+200B'],
    ['a zero-width joiner', 'gus\u200d@example.org', 'U+200D'],
    ['a right-to-left override', '\u202egro.elpmaxe@sug', 'U+202E'],
    ['a left-to-right isolate', 'gus@exa\u2066mple.org', 'U+2066'],
    ['a soft hyphen', 'gu\u00ads@example.org', 'U+00AD'],
    ['a byte order mark inside', 'gu\ufeffs@example.org', 'U+FEFF'],
    ['a word joiner', 'gus@example\u2060.org', 'U+2060'],
    ['a C1 control', 'gus\u0085@example.org', 'U+0085'],
    ['a tab inside', 'gus\t@example.org', 'U+0009'],
  ];
  for (const [what, text, codePoint] of unseen) {
    it(`refuses ${what}, naming it by code point and showing it escaped`, () => {
      assert.throws(
        () => canonicalEmail(text),
        failsWith(
          'invalid',
          new RegExp(`is not an email address: it holds an invisible or control character \\(${codePoint.replace('+', '\\+')}\\)$`),
        ),
      );
      assert.throws(
        () => canonicalEmail(text),
        (error: Error) => /^[\x20-\x7e]+$/.test(error.message),
        'the message is printable ASCII',
      );
    });
  }

  it('refuses other non-ASCII: Unicode domains are taken only in their xn-- form', () => {
    assert.throws(
      () => canonicalEmail('x@bücher.example'),
      failsWith('invalid', /^"x@b\\u00fccher\.example" is not an email address: it holds a character outside ASCII \(U\+00FC\)/),
    );
    assert.throws(() => canonicalEmail('gus@exаmple.org'), failsWith('invalid', /U\+0430/), 'a Cyrillic a');
    assert.throws(() => canonicalEmail('gus@example.org\u00a0x'), failsWith('invalid', /it holds a space \(U\+00A0\)/));
  });

  it('keeps its refusal on one line when the text holds a newline', () => {
    assert.throws(
      () => canonicalEmail('foo\nbar@x.org'),
      failsWith('invalid', /^"foo\\nbar@x\.org" is not an email address: it holds an invisible or control character \(U\+000A\)$/),
    );
  });
});

// Real-looking keys: the base64 blob is the SSH wire format, each field a uint32 length then bytes.
const sshString = (bytes: Buffer) => {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(bytes.length);
  return Buffer.concat([length, bytes]);
};
const blobOf = (embeddedType: string, ...fields: Buffer[]) =>
  Buffer.concat([sshString(Buffer.from(embeddedType, 'latin1')), ...fields.map(sshString)]).toString('base64');
const ed25519Blob = () => blobOf('ssh-ed25519', randomBytes(32));
/** string "ssh-rsa", mpint e = 65537, mpint n: 2048 bits with a leading zero byte (the top bit is set). */
const rsaBlob = () =>
  blobOf('ssh-rsa', Buffer.from([0x01, 0x00, 0x01]), Buffer.concat([Buffer.from([0x00, 0x80 | randomBytes(1)[0]!]), randomBytes(255)]));

describe('parseSshPublicKey', () => {
  it('accepts an ed25519 key with its comment', () => {
    const blob = ed25519Blob();
    assert.deepEqual(parseSshPublicKey(`ssh-ed25519 ${blob} alice@laptop`), {
      type: 'ssh-ed25519',
      blob,
      comment: 'alice@laptop',
      line: `ssh-ed25519 ${blob} alice@laptop`,
    });
  });

  it('accepts an RSA key without a comment', () => {
    const blob = rsaBlob();
    assert.deepEqual(parseSshPublicKey(`ssh-rsa ${blob}`), { type: 'ssh-rsa', blob, comment: '', line: `ssh-rsa ${blob}` });
  });

  it('normalises the line: trimmed, one space between fields, the trailing newline gone', () => {
    const blob = ed25519Blob();
    const key = parseSshPublicKey(`\t ssh-ed25519 \t ${blob}   alice  on\tlaptop \n`);
    assert.equal(key.line, `ssh-ed25519 ${blob} alice on laptop`);
    assert.equal(key.comment, 'alice on laptop');
  });

  it('refuses a key of a type it does not know', () => {
    assert.throws(
      () => parseSshPublicKey(`ssh-dss ${blobOf('ssh-dss', randomBytes(128))}`),
      failsWith('invalid', /is not an SSH public key: it should start with one of ssh-ed25519, ssh-rsa/),
    );
  });

  it('refuses a private key pasted by mistake', () => {
    assert.throws(() => parseSshPublicKey('-----BEGIN OPENSSH PRIVATE KEY-----'), failsWith('invalid', /is not an SSH public key/));
  });

  it('refuses a type prefix in the wrong case', () => {
    assert.throws(() => parseSshPublicKey(`SSH-ED25519 ${ed25519Blob()}`), failsWith('invalid', /is not an SSH public key/));
  });

  it('refuses a key with no base64 part', () => {
    assert.throws(
      () => parseSshPublicKey('ssh-ed25519'),
      failsWith('invalid', /^the ssh-ed25519 key's base64 part is damaged or missing$/),
    );
  });

  it('refuses base64 with a character cut out', () => {
    const blob = ed25519Blob();
    assert.throws(
      () => parseSshPublicKey(`ssh-ed25519 ${blob.slice(0, 20)}${blob.slice(21)}`),
      failsWith('invalid', /base64 part is damaged or missing$/),
    );
  });

  it('refuses base64 with a character that is not base64', () => {
    const blob = ed25519Blob();
    assert.throws(
      () => parseSshPublicKey(`ssh-ed25519 ${blob.slice(0, 20)}!${blob.slice(21)}`),
      failsWith('invalid', /base64 part is damaged or missing$/),
    );
  });

  it('refuses a blob too short to be a key', () => {
    assert.throws(() => parseSshPublicKey('ssh-ed25519 AAAAC3Nz'), failsWith('invalid', /base64 part is damaged or missing$/));
  });

  it('refuses an RSA blob labelled as ed25519', () => {
    assert.throws(
      () => parseSshPublicKey(`ssh-ed25519 ${rsaBlob()} alice@laptop`),
      failsWith('invalid', /^the key's data does not match its type ssh-ed25519$/),
    );
  });

  it('refuses a blob that does not start with a type name', () => {
    assert.throws(
      () => parseSshPublicKey(`ssh-ed25519 ${randomBytes(51).toString('base64')}`),
      failsWith('invalid', /does not match its type ssh-ed25519$/),
    );
  });

  it('refuses two keys pasted as one', () => {
    assert.throws(
      () => parseSshPublicKey(`ssh-ed25519 ${ed25519Blob()} alice@laptop\nssh-ed25519 ${ed25519Blob()} alice@phone`),
      failsWith('invalid', /^an SSH public key is a single line$/),
    );
  });

  it('refuses a carriage return inside the line', () => {
    assert.throws(
      () => parseSshPublicKey(`ssh-ed25519 ${ed25519Blob()} alice\rbob`),
      failsWith('invalid', /^an SSH public key is a single line$/),
    );
  });

  for (const [label, control] of [
    ['an escape', '\u001b[2J'],
    ['a DEL', '\u007f'],
    ['a bell', '\u0007'],
    ['a vertical tab', '\v'],
  ] as const) {
    it(`refuses ${label} character in the comment`, () => {
      assert.throws(
        () => parseSshPublicKey(`ssh-ed25519 ${ed25519Blob()} alice${control}@laptop`),
        failsWith('invalid', /^an SSH key comment may only hold printable ASCII$/),
      );
    });
  }

  it('refuses a NUL character in the comment', () => {
    assert.throws(
      () => parseSshPublicKey(`ssh-ed25519 ${ed25519Blob()} alice\u0000@laptop`),
      failsWith('invalid', /^an SSH public key is a single line$/),
    );
  });

  it('refuses a comment outside printable ASCII', () => {
    assert.throws(
      () => parseSshPublicKey(`ssh-ed25519 ${ed25519Blob()} alice@läptop`),
      failsWith('invalid', /^an SSH key comment may only hold printable ASCII$/),
    );
  });

  it(`refuses a line longer than ${maxSshKeyLength} characters`, () => {
    assert.throws(
      () => parseSshPublicKey(`ssh-ed25519 ${ed25519Blob()} ${'a'.repeat(maxSshKeyLength)}`),
      failsWith('invalid', /at most 16384 characters$/),
    );
  });
});
