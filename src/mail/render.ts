// Emails from the Eta templates in ./templates: to customers, and to operators about incidents. Plain
// text, so nothing is HTML-escaped; a template's first line is "Subject: …" and its body starts after
// the blank line that follows.
import { fileURLToPath } from 'node:url';
import { Eta } from 'eta';
import type { WarningLevel } from '../domain/account/events.ts';
import type { Message } from './mailer.ts';

const templatesDir = fileURLToPath(new URL('./templates/', import.meta.url));
// Compiled once per process. No automatic trimming: a template's line breaks are the email's.
const eta = new Eta({ views: templatesDir, autoEscape: false, autoTrim: false, cache: true });

export type MailTemplate = 'receipt' | 'statement' | `warning-${WarningLevel}` | 'suspended' | 'resumed' | 'incidents';

/** A capsul as emails list it. */
export type MailCapsul = { id: string; size: string; pricePerMonth: string };

export function renderMail(template: MailTemplate, to: string, data: Record<string, unknown>): Message {
  const rendered = eta.render(`./${template}`, data);
  const match = /^Subject: ([^\r\n]+)\r?\n\r?\n/.exec(rendered);
  if (!match) throw new Error(`mail template ${template} must start with "Subject: …" and a blank line`);
  return { to, subject: match[1]!.trim(), text: `${rendered.slice(match[0].length).trimEnd()}\n` };
}
