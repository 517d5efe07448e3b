// Digests of a projection table's rows, computed the same way by the database (over the live rows)
// and in memory (over a fold's rows), so a rebuild or a verify can tell that the two are equal without
// sending a row either way. A row's text is each column in the table's order, length-prefixed (so no
// value can pass for two), in an encoding both sides produce from the column's type; its hash is the
// first 16 bytes of sha256 of that text; a table's digest is sha256 of its rows' hashes in byte order,
// the same for any order the rows come in. Equal digests mean equal rows. A value the memory side
// cannot encode as the database would (an unusual timestamp's text, a number jsonb prints otherwise)
// makes the digests differ, never agree falsely: the caller then compares row by row.
import { hash } from 'node:crypto';
import type { Queryable } from '../db/event-store.ts';
import type { Row } from './tables.ts';

/** The column types the projections and their histories use (format_type's names). */
const encodings = {
  text: { sql: (c: string) => c, js: (v: unknown) => (typeof v === 'string' ? v : undefined) },
  integer: { sql: (c: string) => `${c}::text`, js: (v: unknown) => integerText(v) },
  bigint: { sql: (c: string) => `${c}::text`, js: (v: unknown) => integerText(v) },
  numeric: { sql: (c: string) => `${c}::text`, js: (v: unknown) => decimalText(v) },
  boolean: {
    sql: (c: string) => `CASE WHEN ${c} THEN 't' ELSE 'f' END`,
    js: (v: unknown) => (typeof v === 'boolean' ? (v ? 't' : 'f') : undefined),
  },
  'timestamp with time zone': {
    sql: (c: string) => instantSql(c),
    js: (v: unknown) => (typeof v === 'string' ? instantText(v) : undefined),
  },
  tstzrange: {
    sql: (c: string) =>
      `CASE WHEN isempty(${c}) THEN 'empty' ELSE (CASE WHEN lower_inc(${c}) THEN '[' ELSE '(' END) || coalesce(${instantSql(`lower(${c})`)}, '') ` +
      `|| ',' || coalesce(${instantSql(`upper(${c})`)}, '') || (CASE WHEN upper_inc(${c}) THEN ']' ELSE ')' END) END`,
    js: (v: unknown) => (typeof v === 'string' ? rangeText(v) : undefined),
  },
  jsonb: { sql: (c: string) => `${c}::text`, js: (v: unknown) => byIdentity(v, jsonbCache, jsonbText) },
  'text[]': {
    sql: (c: string) => `to_json(${c})::text`,
    js: (v: unknown) => byIdentity(v, arrayCache, textArrayText),
  },
} as const;

type ColumnType = keyof typeof encodings;
export type Column = { name: string; type: ColumnType };

/** Each relation's columns in their order, with the types the encodings know (any other is a bug here), in one query. */
export async function columnsOf<R extends string>(db: Queryable, relations: readonly R[]): Promise<Map<R, Column[]>> {
  const { rows } = await db.query(
    `SELECT r.name AS relation, a.attname AS name, format_type(a.atttypid, NULL) AS type
     FROM unnest($1::text[]) AS r(name) JOIN pg_attribute a ON a.attrelid = r.name::regclass
     WHERE a.attnum > 0 AND NOT a.attisdropped ORDER BY r.name, a.attnum`,
    [relations],
  );
  const columns = new Map<R, Column[]>(relations.map((relation) => [relation, []]));
  for (const { relation, name, type } of rows) {
    if (!(type in encodings)) throw new Error(`digest: no encoding for ${relation}.${name} of type ${type}`);
    columns.get(relation)!.push({ name, type });
  }
  return columns;
}

/** The database's digest of every row of `relation` (columns: columnsOf it), and how many rows. */
export async function liveDigest(db: Queryable, relation: string, columns: Column[]): Promise<TableDigest> {
  const text = columns
    .map(({ name, type }) => {
      const column = `t.${quoteIdent(name)}`;
      const value = encodings[type].sql(column);
      return `CASE WHEN ${column} IS NULL THEN '-' ELSE octet_length(${value})::text || ':' || ${value} END`;
    })
    .join(' || ');
  const { rows } = await db.query(
    `SELECT count(*)::int AS rows, sha256(string_agg(h, ''::bytea ORDER BY h)) AS digest
     FROM (SELECT substr(sha256(convert_to(${text}, 'UTF8')), 1, ${hashBytes}) AS h FROM ${relation} t) hashed`,
  );
  return { rows: rows[0].rows, digest: rows[0].digest ?? null };
}

export type TableDigest = { rows: number; digest: Buffer | null };

const hashBytes = 16;

/** Row hashes collected in memory, 16 bytes a row in chunks, then digested as liveDigest does. */
export class RowDigest {
  readonly #chunks: Buffer[] = [];
  #rows = 0;
  /** rows that could not be encoded, counted but not hashed */
  #counted = 0;
  #unencodable = false;

  constructor(private readonly columns: Column[]) {}

  /** A row, its columns read from `over` first when given (a version's ranges beside its row). */
  add(row: Row, over?: Row): void {
    let text = '';
    for (const { name, type } of this.columns) {
      const value = over !== undefined && name in over ? over[name] : row[name];
      if (value === null || value === undefined) {
        text += '-';
        continue;
      }
      const encoded = encodings[type].js(value);
      if (encoded === undefined) {
        this.#unencodable = true;
        this.#counted++;
        return;
      }
      text += `${Buffer.byteLength(encoded)}:${encoded}`;
    }
    const offset = (this.#rows % chunkRows) * hashBytes;
    if (offset === 0) this.#chunks.push(Buffer.allocUnsafe(chunkRows * hashBytes));
    hash('sha256', text, 'buffer').copy(this.#chunks.at(-1)!, offset, 0, hashBytes);
    this.#rows++;
  }

  /** The digest; when a row could not be encoded as the database would, an empty one, which no table has. */
  digest(): TableDigest {
    const rows = this.#rows + this.#counted;
    if (this.#unencodable) return { rows, digest: Buffer.alloc(0) };
    if (rows === 0) return { rows, digest: null };
    return { rows, digest: hash('sha256', sortedHashes(this.#chunks, this.#rows), 'buffer') };
  }
}

export const sameDigest = (a: TableDigest, b: TableDigest) =>
  a.rows === b.rows && (a.digest === null ? b.digest === null : b.digest !== null && a.digest.equals(b.digest));

const chunkRows = 4096;

/** The `count` hashes held in `chunks`, in byte order, in one buffer: by their first two bytes (counted), then compared within. */
function sortedHashes(chunks: Buffer[], count: number): Buffer {
  const at = (i: number, byte: number) => chunks[Math.floor(i / chunkRows)]![(i % chunkRows) * hashBytes + byte]!;
  const prefix = (i: number) => (at(i, 0) << 8) | at(i, 1);
  const starts = new Uint32Array(65537);
  for (let i = 0; i < count; i++) starts[prefix(i) + 1]!++;
  for (let p = 1; p <= 65536; p++) starts[p]! += starts[p - 1]!;
  const order = new Uint32Array(count);
  const next = starts.slice(0, 65536);
  for (let i = 0; i < count; i++) order[next[prefix(i)]!++] = i;
  const compare = (a: number, b: number) => {
    for (let byte = 2; byte < hashBytes; byte++) if (at(a, byte) !== at(b, byte)) return at(a, byte) - at(b, byte);
    return 0;
  };
  for (let p = 0; p < 65536; p++) if (starts[p + 1]! - starts[p]! > 1) order.subarray(starts[p]!, starts[p + 1]!).sort(compare);
  const sorted = Buffer.allocUnsafe(count * hashBytes);
  order.forEach((i, n) => {
    const chunk = chunks[Math.floor(i / chunkRows)]!;
    chunk.copy(sorted, n * hashBytes, (i % chunkRows) * hashBytes, ((i % chunkRows) + 1) * hashBytes);
  });
  return sorted;
}

/**
 * A capsul's keys and host keys are the same objects in every version of its row: each is encoded
 * once, by identity, as long as it lives (the rows never change a value in place, they replace it).
 */
type ObjectCache = WeakMap<object, string | undefined>;
const jsonbCache: ObjectCache = new WeakMap();
const arrayCache: ObjectCache = new WeakMap();
function byIdentity(value: unknown, cache: ObjectCache, encode: (value: unknown) => string | undefined): string | undefined {
  if (typeof value !== 'object' || value === null) return encode(value);
  if (cache.has(value)) return cache.get(value);
  const text = encode(value);
  cache.set(value, text);
  return text;
}

/**
 * An instant as UTC ISO text with microseconds and its era (AD or BC, so no two instants read alike),
 * or infinity / -infinity: the text the rows already hold for most of theirs.
 */
const instantSql = (c: string) =>
  `(CASE WHEN isfinite(${c}) THEN to_char(${c} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"BC') ELSE ${c}::text END)`;

/**
 * instantSql's text for an instant as the rows hold them: JavaScript's ISO text (milliseconds), the
 * events' recorded times (microseconds), whole seconds, or another zone. Text that is not an instant's canonical form comes out unlike any the database writes.
 */
function instantText(value: string): string | undefined {
  if (value === 'infinity' || value === '-infinity') return value;
  if (value.at(-1) === 'Z' && value[10] === 'T') {
    if (value.length === 27 && value[19] === '.') return `${value}AD`;
    if (value.length === 24 && value[19] === '.') return `${value.slice(0, 23)}000ZAD`;
    if (value.length === 20) return `${value.slice(0, 19)}.000000ZAD`;
  }
  const match = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?([+-]\d\d:\d\d|Z)$/.exec(value);
  const seconds = match ? Date.parse(`${match[1]}${match[3]}`) : Number.NaN;
  if (Number.isNaN(seconds)) return undefined;
  return `${new Date(seconds).toISOString().slice(0, 19)}.${(match![2] ?? '').padEnd(6, '0')}ZAD`;
}

/** A tstzrange literal as memory.ts writes them, `[from,to)` (either end empty when unbounded). */
function rangeText(value: string): string | undefined {
  const match = /^([[(])([^,]*),([^,]*)([\])])$/.exec(value);
  if (!match) return undefined;
  const [, open, from, to, close] = match;
  const lower = from === '' ? '' : instantText(from!);
  const upper = to === '' ? '' : instantText(to!);
  if (lower === undefined || upper === undefined) return undefined;
  // The database keeps [t,t) as empty, and an unbounded end as exclusive.
  if (lower !== '' && lower === upper && !(open === '[' && close === ']')) return 'empty';
  return `${lower === '' ? '(' : open}${lower},${upper}${upper === '' ? ')' : close}`;
}

function textArrayText(value: unknown): string | undefined {
  return Array.isArray(value) && value.every((e) => typeof e === 'string' || e === null) ? JSON.stringify(value) : undefined;
}

function integerText(value: unknown): string | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) ? String(value) : undefined;
  return typeof value === 'string' && /^-?(0|[1-9]\d*)$/.test(value) && value !== '-0' ? value : undefined;
}

function decimalText(value: unknown): string | undefined {
  const text = typeof value === 'number' ? String(value) : value;
  return typeof text === 'string' && /^-?(0|[1-9]\d*)(\.\d+)?$/.test(text) ? text : undefined;
}

/** jsonb's own text: keys shortest first then bytewise, `, ` and `: ` between. */
function jsonbText(value: unknown): string | undefined {
  if (value === null) return 'null';
  if (typeof value === 'boolean' || typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') return Number.isSafeInteger(value) ? String(value) : undefined;
  if (Array.isArray(value)) {
    const items = value.map(jsonbText);
    return items.includes(undefined) ? undefined : `[${items.join(', ')}]`;
  }
  if (typeof value !== 'object') return undefined;
  const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
  entries.sort(([a], [b]) => Buffer.byteLength(a) - Buffer.byteLength(b) || Buffer.compare(Buffer.from(a), Buffer.from(b)));
  const members: string[] = [];
  for (const [key, v] of entries) {
    const text = jsonbText(v);
    if (text === undefined) return undefined;
    members.push(`${JSON.stringify(key)}: ${text}`);
  }
  return `{${members.join(', ')}}`;
}

const quoteIdent = (name: string) => `"${name.replaceAll('"', '""')}"`;
