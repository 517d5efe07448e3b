// Words people give that the ledger keeps and shows again: who acted, why, a provider's reference.
// One line of visible text, so nothing shown from the ledger (history, admin pages, emails) can be
// made to look like something else: no control characters (a line break would forge a history line),
// no bidirectional or zero-width format characters (they reorder or hide what is shown), no broken
// UTF-16. One limit each, whoever writes them (CLI, web, webhooks, jobs).
import { invalid } from './errors.ts';

export const maxReasonLength = 1000;
export const maxActorIdLength = 100;
export const maxReferenceLength = 200;
/** What a customer is told of a correction to their payment: one short line on their history page. */
export const maxCustomerNoteLength = 200;

// C0 and C1 controls, DEL, the line and paragraph separators, bidi embeddings/overrides/isolates and
// marks, zero-width characters and the byte-order mark.
const hidden = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069\u200b-\u200f\u061c\ufeff]/u;
const everyHidden = new RegExp(hidden.source, 'gu');

/** `value` trimmed, or an `invalid` error naming `what` and what is wrong with it. */
export function lineOfText(value: string, what: string, maxLength: number): string {
  const text = value.trim();
  if (!text) throw invalid(`${what} is required`);
  if (text.length > maxLength) throw invalid(`${what} may be at most ${maxLength} characters`);
  const found = hidden.exec(text);
  if (found) {
    const code = found[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0');
    throw invalid(`${what} must be one line of visible text: it holds U+${code} at position ${found.index + 1}`);
  }
  if (!text.isWellFormed()) throw invalid(`${what} holds a broken character (a lone UTF-16 surrogate)`);
  return text;
}

/**
 * Text for a terminal or a log line, whatever it holds: every character lineOfText refuses is shown as
 * an escape (\u000a), so old events written before the rule, or data from elsewhere, cannot forge output.
 */
export function escapeHidden(text: string): string {
  return text.replace(everyHidden, (c) => `\\u${c.codePointAt(0)!.toString(16).padStart(4, '0')}`).toWellFormed();
}
