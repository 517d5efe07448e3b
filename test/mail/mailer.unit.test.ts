// The development outbox: every message a real RFC 5322 file and a readable text beside it (a long link
// whole), newest found by recipient.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { createMailer, latestOutboxMessage } from '../../src/mail/mailer.ts';

const dir = mkdtempSync(path.join(os.tmpdir(), 'capsul-mail-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('development outbox', () => {
  it('writes each message as a private .eml file and a readable .txt, logs where, and finds the newest per recipient', async () => {
    const lines: string[] = [];
    const outbox = path.join(dir, 'outbox');
    const mailer = createMailer({ from: 'capsul <no-reply@capsul.test>', outboxDir: outbox, log: (line) => lines.push(line) });
    assert.equal(mailer.outboxDir, outbox);
    const longLink = `https://capsul.test/${'a'.repeat(120)}?next=%2Fconsole`;
    await mailer.send({ to: 'a@capsul.test', subject: 'first', text: 'one' });
    await new Promise((resolve) => setTimeout(resolve, 5));
    await mailer.send({ to: 'a@capsul.test', subject: 'second', text: `two\n${longLink}\n` });
    await mailer.send({ to: 'b@capsul.test', subject: 'other', text: 'three' });
    const files = readdirSync(outbox).sort();
    assert.equal(files.length, 6, 'an .eml and a .txt per message');
    assert.deepEqual(
      files.map((name) => path.extname(name)),
      ['.eml', '.txt', '.eml', '.txt', '.eml', '.txt'],
    );
    const read = (name: string) => readFileSync(path.join(outbox, name), 'utf8');
    const second = (extension: string) => read(files.find((name) => name.endsWith(extension) && /^Subject: second$/m.test(read(name)))!);
    for (const name of files) assert.equal(statSync(path.join(outbox, name)).mode & 0o777, 0o600, name);
    assert.equal(lines.length, 3);
    assert.match(lines[0]!, /mail to a@capsul\.test \("first"\) written to .*\.txt \(as sent: \.eml\)$/);
    // As sent: quoted-printable folds the long line, as RFC 5322's 78-character lines ask.
    const sent = second('.eml');
    assert.match(sent, /^Content-Transfer-Encoding: quoted-printable$/m);
    assert.ok(
      sent.split('\n').every((line) => line.length <= 78),
      'no line of the .eml is over 78 characters',
    );
    assert.ok(!sent.includes(longLink));
    // For a person: the link on one line, to read and copy.
    const readable = second('.txt');
    assert.ok(readable.split('\n').includes(longLink), readable);
    const latest = await latestOutboxMessage(outbox, 'A@capsul.test');
    assert.match(latest!, /^Subject: second$/m);
    assert.match(latest!, /^From: capsul <no-reply@capsul\.test>$/m);
    assert.ok(latest!.includes(longLink), 'a line longer than 76 characters reads whole');
    // The newest that has what is looked for: "first" says "one", though "second" came after.
    assert.match((await latestOutboxMessage(outbox, 'a@capsul.test', /^one$/m))!, /^Subject: first$/m);
    assert.equal(await latestOutboxMessage(outbox, 'a@capsul.test', /nowhere/), null);
    assert.equal(await latestOutboxMessage(outbox, 'nobody@capsul.test'), null);
    assert.equal(await latestOutboxMessage(path.join(dir, 'missing'), 'a@capsul.test'), null);
  });
});
