// Outgoing email. With SMTP configured (MAIL_SERVER …) messages go through nodemailer's SMTP
// transport; without it (development) each message is rendered by nodemailer all the same and written
// to `<dataDir>/outbox/` twice: `<name>.eml`, the message exactly as it would be sent (long lines
// folded by quoted-printable, as mail must be), and `<name>.txt` beside it for a person, with the
// sender, recipient, subject and the text unfolded, so a login link reads and copies whole. The
// caller's `log` gets one line naming the .txt file.
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import nodemailer from 'nodemailer';
import type { Config, MailConfig } from '../config.ts';

export type Message = { to: string; subject: string; text: string };

export type Mailer = {
  send(message: Message): Promise<void>;
  /** where development messages are written; null when mail goes out by SMTP */
  outboxDir: string | null;
};

/** The mailer the configuration asks for: SMTP (MAIL_SERVER …), else the outbox in the data dir. */
export function configuredMailer(config: Pick<Config, 'mailFrom' | 'mail' | 'dataDir'>, log: (line: string) => void): Mailer {
  return createMailer({ from: config.mailFrom, smtp: config.mail, outboxDir: path.join(config.dataDir, 'outbox'), log });
}

export function createMailer(options: { from: string; smtp?: MailConfig; outboxDir: string; log?: (line: string) => void }): Mailer {
  if (options.smtp) {
    const { host, port, tls, user, password } = options.smtp;
    const transport = nodemailer.createTransport({
      host,
      port,
      secure: tls === 'tls',
      requireTLS: tls === 'starttls',
      ignoreTLS: tls === 'none',
      ...(user ? { auth: { user, pass: password ?? '' } } : {}),
      connectionTimeout: 10_000,
      greetingTimeout: 10_000,
      socketTimeout: 20_000,
    });
    return {
      outboxDir: null,
      async send(message) {
        await transport.sendMail({ from: options.from, ...message });
      },
    };
  }
  const transport = nodemailer.createTransport({ streamTransport: true, buffer: true, newline: 'unix' });
  return {
    outboxDir: options.outboxDir,
    async send(message) {
      const info = await transport.sendMail({ from: options.from, ...message });
      await mkdir(options.outboxDir, { recursive: true, mode: 0o700 });
      // Sortable by time, unique within the millisecond.
      const name = path.join(options.outboxDir, `${new Date().toISOString().replace(/[:.]/g, '-')}-${randomBytes(3).toString('hex')}`);
      await writeFile(`${name}.eml`, info.message as Buffer, { mode: 0o600 });
      const readable = [`From: ${options.from}`, `To: ${message.to}`, `Subject: ${message.subject}`, '', message.text].join('\n');
      // The .txt appears whole or not at all: whoever waits for it (a person, a test) never reads half.
      await writeFile(`${name}.txt.partial`, readable, { mode: 0o600 });
      await rename(`${name}.txt.partial`, `${name}.txt`);
      options.log?.(`mail to ${message.to} ("${message.subject}") written to ${name}.txt (as sent: .eml)`);
    },
  };
}

/**
 * The newest message to `to` in a development outbox, as a person reads it (its .txt); with
 * `containing`, the newest that matches it (a login link, when a statement or a receipt came after).
 */
export async function latestOutboxMessage(outboxDir: string, to: string, containing?: RegExp): Promise<string | null> {
  const files = (await readdir(outboxDir).catch(() => [] as string[]))
    .filter((name) => name.endsWith('.txt'))
    .sort()
    .reverse();
  for (const name of files) {
    const text = await readFile(path.join(outboxDir, name), 'utf8');
    const header = /^To: (.*)$/m.exec(text)?.[1] ?? '';
    if (header.toLowerCase() === to.toLowerCase() && (!containing || containing.test(text))) return text;
  }
  return null;
}
