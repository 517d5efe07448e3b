import { invalid } from './errors.ts';

/** RFC 5322 atext: what a dot-atom local part may hold besides its dots. */
const localPartPattern = /^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*$/;
/** A host name label: letters, digits and hyphens, not at either end. */
const labelPattern = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
/** A top-level domain: letters, or an A-label (punycode) of an internationalised one. */
const tldPattern = /^([a-z]{2,63}|xn--[a-z0-9-]{1,59})$/;
const maxLocalPartLength = 64;
const maxDomainLength = 253;
/** RFC 5321's path limit (256) without its angle brackets. */
const maxEmailLength = 254;

/**
 * Accounts are identified by email compared case-insensitively: `Foo@X.org` and `foo@x.org` are one
 * account. The canonical form (trimmed, lower case) is what projections store and lookups use, and
 * every way in (login form, admin filters, CLI, configuration, provider webhooks) goes through here.
 *
 * The rule, kept narrow so that two addresses that look alike are the same account or one is refused:
 * - ASCII only. Invisible and format characters (Unicode Cf: zero-width spaces and joiners, bidi
 *   overrides, soft hyphens), controls and every other non-ASCII character are refused, so a pasted
 *   `gus\u200b@…` or a right-to-left override never becomes an account of its own. Internationalised
 *   local parts (SMTPUTF8) are refused for the same reason and because not every mail server takes them.
 * - Local part: an RFC 5322 dot-atom (no quoted strings, no leading, trailing or doubled dots), 1–64.
 * - Domain: at least two labels, each 1–63 of [a-z0-9-] not starting or ending with `-`, the last (the
 *   TLD) letters only or an `xn--` A-label; 253 at most; no IP literals, no trailing dot. IDN domains
 *   are accepted only as punycode (`xn--bcher-kva.example`): Unicode domains are refused, not
 *   converted, so one account never hides behind two spellings.
 * - The whole address: 254 at most.
 */
export function canonicalEmail(text: string): string {
  const trimmed = text.trim();
  const unseen = /[^\x21-\x7e]/u.exec(trimmed);
  if (unseen) throw refusal(text, reasonFor(unseen[0]));
  const email = trimmed.toLowerCase();
  const at = email.lastIndexOf('@');
  const local = email.slice(0, at);
  const domain = email.slice(at + 1);
  const labels = domain.split('.');
  const valid =
    at > 0 &&
    email.length <= maxEmailLength &&
    local.length <= maxLocalPartLength &&
    localPartPattern.test(local) &&
    domain.length <= maxDomainLength &&
    labels.length >= 2 &&
    labels.every((label) => labelPattern.test(label)) &&
    tldPattern.test(labels.at(-1)!);
  if (!valid) throw refusal(text);
  return email;
}

/** `value` in canonical form when it is an email address (from a provider's payload, say), else null. */
export function canonicalEmailOrNull(value: unknown): string | null {
  if (typeof value !== 'string') return null;
  try {
    return canonicalEmail(value);
  } catch {
    return null;
  }
}

/** Why a character outside printable ASCII is refused, naming it by code point (it may not show). */
function reasonFor(character: string): string {
  const codePoint = `U+${character.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;
  if (/[\p{Cf}\p{Cc}\p{Cs}\p{Co}\p{Cn}]/u.test(character)) return `it holds an invisible or control character (${codePoint})`;
  if (/\p{White_Space}/u.test(character)) return `it holds a space (${codePoint})`;
  return `it holds a character outside ASCII (${codePoint}): addresses are ASCII, internationalised domains in their xn-- form`;
}

/** One line, with the text quoted so that nothing in it (line breaks, bidi overrides) shows as itself. */
function refusal(text: string, reason?: string) {
  return invalid(`${quoted(text)} is not an email address${reason ? `: ${reason}` : ''}`);
}

/** JSON quoting, and every invisible, control or non-ASCII character as a \u escape; at most 100 characters shown. */
function quoted(text: string): string {
  const shown = [...text].length > 100 ? `${[...text].slice(0, 100).join('')}…` : text;
  return JSON.stringify(shown).replace(/[^\x20-\x7e\u2026]/g, (unit) => `\\u${unit.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
