// Outgoing email. With SMTP configured (MAIL_SERVER …) messages go through nodemailer's SMTP
// transport; without it (development) each message is rendered by nodemailer all the same and written
// to `<dataDir>/outbox/` as an .eml file, and the caller's `log` gets one line naming it.
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import nodemailer from 'nodemailer';
import type { MailConfig } from '../config.ts';

export type Message = { to: string; subject: string; text: string };

export type Mailer = {
  send(message: Message): Promise<void>;
  /** where development messages are written; null when mail goes out by SMTP */
  outboxDir: string | null;
};

export function createMailer(options: { from: string; smtp?: MailConfig; outboxDir: string; log?: (line: string) => void }): Mailer {
  if (options.smtp) {
    const { host, port, tls, user, password } = options.smtp;
    const transport = nodemailer.createTransport({
      host, port, secure: tls === 'tls', requireTLS: tls === 'starttls', ignoreTLS: tls === 'none',
      ...(user ? { auth: { user, pass: password ?? '' } } : {}),
      connectionTimeout: 10_000, greetingTimeout: 10_000, socketTimeout: 20_000,
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
      const file = path.join(options.outboxDir, `${new Date().toISOString().replace(/[:.]/g, '-')}-${randomBytes(3).toString('hex')}.eml`);
      await writeFile(file, info.message as Buffer, { mode: 0o600 });
      options.log?.(`mail to ${message.to} ("${message.subject}") written to ${file}`);
    },
  };
}

/** The newest message to `to` in a development outbox, as text (tests and the README's tour read it). */
export async function latestOutboxMessage(outboxDir: string, to: string): Promise<string | null> {
  const files = (await readdir(outboxDir).catch(() => [] as string[])).filter((name) => name.endsWith('.eml')).sort().reverse();
  for (const name of files) {
    const text = await readFile(path.join(outboxDir, name), 'utf8');
    const header = /^To: (.*)$/m.exec(text)?.[1] ?? '';
    if (header.toLowerCase().includes(to.toLowerCase())) return decodeBody(text);
  }
  return null;
}

/** Undoes quoted-printable (long lines) so the message reads as sent; the headers are left as they are. */
function decodeBody(eml: string): string {
  if (!/^Content-Transfer-Encoding: quoted-printable$/im.test(eml)) return eml;
  return eml.replace(/=\r?\n/g, '').replace(/=([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}
