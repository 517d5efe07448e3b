// The development outbox: every message a real RFC 5322 file, newest found by recipient, long lines readable.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { createMailer, latestOutboxMessage } from '../../src/mail/mailer.ts';

const dir = mkdtempSync(path.join(os.tmpdir(), 'capsul-mail-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('development outbox', () => {
  it('writes each message as a private .eml file, logs where, and finds the newest per recipient', async () => {
    const lines: string[] = [];
    const outbox = path.join(dir, 'outbox');
    const mailer = createMailer({ from: 'capsul <no-reply@capsul.test>', outboxDir: outbox, log: (line) => lines.push(line) });
    assert.equal(mailer.outboxDir, outbox);
    const longLink = `https://capsul.test/${'a'.repeat(120)}?next=%2Fconsole`;
    await mailer.send({ to: 'a@capsul.test', subject: 'first', text: 'one' });
    await new Promise((resolve) => setTimeout(resolve, 5));
    await mailer.send({ to: 'a@capsul.test', subject: 'second', text: `two\n${longLink}\n` });
    await mailer.send({ to: 'b@capsul.test', subject: 'other', text: 'three' });
    const files = readdirSync(outbox);
    assert.equal(files.length, 3);
    assert.ok(files.every((name) => name.endsWith('.eml')));
    assert.equal(statSync(path.join(outbox, files[0]!)).mode & 0o777, 0o600);
    assert.equal(lines.length, 3);
    assert.match(lines[0]!, /mail to a@capsul\.test \("first"\) written to .*\.eml/);
    const latest = await latestOutboxMessage(outbox, 'A@capsul.test');
    assert.match(latest!, /^Subject: second$/m);
    assert.match(latest!, /^From: capsul <no-reply@capsul\.test>$/m);
    assert.ok(latest!.includes(longLink), 'a line longer than 76 characters reads whole');
    assert.equal(await latestOutboxMessage(outbox, 'nobody@capsul.test'), null);
    assert.equal(await latestOutboxMessage(path.join(dir, 'missing'), 'a@capsul.test'), null);
  });
});
