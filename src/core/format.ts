// How every page shows money, memory and instants, so the same fact reads the same everywhere.
import { formatCents, type Cents } from '../domain/shared/money.ts';

/** "$12.50", "-$3.07" */
export const dollars = (cents: Cents) => (cents < 0 ? `-$${formatCents(-cents)}` : `$${formatCents(cents)}`);

/** "512 MiB", "2 GiB" */
export const formatMemory = (memoryMb: number) => (memoryMb >= 1024 ? `${memoryMb / 1024} GiB` : `${memoryMb} MiB`);

/** "2027-02-23 16:43 UTC": an instant (milliseconds, a Date, or ISO text), in UTC to the minute. */
export const utcMinute = (value: number | Date | string) => `${new Date(value).toISOString().slice(0, 16).replace('T', ' ')} UTC`;

/** "2027-02-23" */
export const utcDay = (value: number | Date | string) => new Date(value).toISOString().slice(0, 10);

/** "1 capsul", "3 capsuls": a count and its noun (plural by an "s"). */
export const plural = (count: number, noun: string) => `${count} ${noun}${count === 1 ? '' : 's'}`;
