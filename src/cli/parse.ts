// Parsing operator input: strict, with one-line errors that say what was expected.
import { UsageError } from './context.ts';

/** An instant in ISO 8601: a date (midnight UTC), or a date and time; no zone means UTC. */
export function parseInstant(text: string, flag: string): Date {
  const match = /^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)(Z|[+-]\d{2}:?\d{2})?)?$/.exec(text.trim());
  if (!match) {
    throw new UsageError(`${flag} takes an ISO 8601 time like 2020-05-05 or 2020-05-05T14:30:00Z, not "${text}"`);
  }
  const [, date, time, zone] = match;
  const iso = time ? `${date}T${time}${zone ?? 'Z'}` : `${date}T00:00:00Z`;
  const ms = Date.parse(iso);
  if (Number.isNaN(ms) || !iso.startsWith(new Date(Date.parse(`${date}T00:00:00Z`)).toISOString().slice(0, 10))) {
    throw new UsageError(`${flag}: "${text}" is not a real date`);
  }
  return new Date(ms);
}

export function parseId(text: string | undefined, what: string): number {
  if (text === undefined) throw new UsageError(`which ${what}? give its id`);
  if (!/^\d{1,15}$/.test(text) || Number(text) <= 0) throw new UsageError(`"${text}" is not a ${what} id (a positive whole number)`);
  return Number(text);
}

export function required(value: string | undefined, flag: string): string {
  if (value === undefined || value.trim() === '') throw new UsageError(`${flag} is required`);
  return value;
}
