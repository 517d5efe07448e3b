// What every read module shares: the connection it reads through (a pool, or a client inside a
// snapshot) and the conversions from SQL text to domain units (milliseconds since the epoch).
import type pg from 'pg';

export type Queryable = Pick<pg.ClientBase, 'query'>;

/** A timestamp column as milliseconds since the epoch, in text (exact: no float on the way). */
export const epochMs = (column: string) => `(extract(epoch FROM ${column}) * 1000)::bigint::text`;

export const msOrNull = (text: string | null | undefined): number | null => (text === null || text === undefined ? null : Number(text));
