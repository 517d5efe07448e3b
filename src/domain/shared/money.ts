// Money is integer cents end to end; text crosses the boundary as exact decimal dollars ("20.00").
import { invalid } from './errors.ts';

export type Cents = number;

/** The largest single payment accepted: a typo guard, not a business limit. */
export const maxPaymentCents: Cents = 100_000_000; // $1,000,000.00

/** Parses a positive dollar amount with at most two decimals: "20", "20.5", "20.05". */
export function parseDollars(text: string): Cents {
  const trimmed = text.trim();
  const match = /^(\d{1,9})(?:\.(\d{1,2}))?$/.exec(trimmed);
  if (!match) {
    // JSON quoting keeps the message on one line whatever was typed (newlines, control characters).
    throw invalid(`${JSON.stringify(text)} is not an amount in dollars: use digits with at most two decimals, like 20 or 20.05`);
  }
  const cents = Number(match[1]) * 100 + Number((match[2] ?? '').padEnd(2, '0'));
  if (cents <= 0) throw invalid(`the amount must be more than zero, not "${trimmed}"`);
  if (cents > maxPaymentCents) throw invalid(`the amount ${trimmed} is more than the ${formatCents(maxPaymentCents)} limit`);
  return cents;
}

/** 2050 → "20.50", -51 → "-0.51". */
export function formatCents(cents: Cents): string {
  if (!Number.isSafeInteger(cents)) throw new RangeError(`not a whole number of cents: ${cents}`);
  const sign = cents < 0 ? '-' : '';
  const abs = Math.abs(cents);
  return `${sign}${Math.floor(abs / 100)}.${String(abs % 100).padStart(2, '0')}`;
}

/** Postgres NUMERIC text ("5.33") → cents, exactly. */
export function centsFromNumeric(text: string): Cents {
  const match = /^(-?)(\d+)(?:\.(\d{1,2}))?$/.exec(text);
  if (!match) throw new RangeError(`not a dollar amount with at most two decimals: ${text}`);
  const cents = Number(match[2]) * 100 + Number((match[3] ?? '').padEnd(2, '0'));
  return match[1] ? -cents : cents;
}
