// Digests of a projection table's rows, computed the same way by the database (over the live rows)
// and in memory (over a fold's rows), so a rebuild or a verify can tell that the two are equal without
// sending a row either way. A row's text is each column in the table's order, length-prefixed (so no
// value can pass for two), in an encoding both sides produce from the column's type; its hash is the
// first 16 bytes of sha256 of that text; a table's digest is sha256 of its rows' hashes in byte order,
// the same for any order the rows come in, computed by the database on both sides (digestOfHashes; a
// replay's hashes are written to a temporary table as they come, so memory does not grow with the rows).
// Equal digests mean equal rows. A value the memory side cannot encode as the database would (an unusual
// timestamp's text, a number jsonb prints otherwise) makes the digests differ, never agree falsely: the
// caller then compares row by row.
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
  // Each column's text is computed once, in a subquery of its own (OFFSET 0 keeps the planner from
  // pasting its expressions back in twice, for the length prefix and the text).
  const values = columns.map(({ name, type }, i) => `${encodings[type].sql(`t.${quoteIdent(name)}`)} AS c${i}`).join(', ');
  const text = columns
    .map(({ name }, i) => `CASE WHEN t.${quoteIdent(name)} IS NULL THEN '-' ELSE octet_length(v.c${i})::text || ':' || v.c${i} END`)
    .join(' || ');
  const { rows } = await db.query(
    `SELECT count(*)::int AS rows, ${digestOfHashes} AS digest
     FROM (SELECT substr(sha256(convert_to(${text}, 'UTF8')), 1, ${hashBytes}) AS h
           FROM ${relation} t, LATERAL (SELECT ${values} OFFSET 0) v) hashed`,
  );
  return { rows: rows[0].rows, digest: rows[0].digest ?? null };
}

export type TableDigest = { rows: number; digest: Buffer | null };

const hashBytes = 16;

/** A table's digest from its rows' hashes (column `h`), the same SQL for the live rows and a replay's. */
const digestOfHashes = `sha256(string_agg(h, ''::bytea ORDER BY h))`;

/** The temporary table a replay's row hashes are written to, a chunk a row (ReplayDigests). */
const replayedHashes = 'capsul_replayed_row_hashes';

/**
 * A replay's row hashes (16 bytes a row, as liveDigest makes them), digested as liveDigest digests the
 * live rows. The hashes are kept in chunks until `flush` writes them to a temporary table of the
 * caller's transaction, where the database digests them at the end: a fold that flushes after each pass
 * holds only that pass's hashes, however many rows the replay makes in all.
 */
export class ReplayDigests<R extends string> {
  readonly #relations = new Map<R, { columns: Column[]; chunk: Buffer; inChunk: number; rows: number; unencodable: boolean }>();
  #full: { relation: R; hashes: Buffer }[] = [];

  private constructor(
    private readonly db: Queryable,
    columns: Map<R, Column[]>,
    private readonly chunkRows: number,
  ) {
    for (const [relation, cols] of columns)
      this.#relations.set(relation, {
        columns: cols,
        chunk: Buffer.allocUnsafe(chunkRows * hashBytes),
        inChunk: 0,
        rows: 0,
        unencodable: false,
      });
  }

  /** Digests of `columns`' relations, written through `db` (a transaction's: the table goes at its end); `chunkRows` hashes a chunk. */
  static async start<R extends string>(db: Queryable, columns: Map<R, Column[]>, options: { chunkRows?: number } = {}) {
    await db.query(`CREATE TEMP TABLE ${replayedHashes} (relation text NOT NULL, hashes bytea NOT NULL) ON COMMIT DROP`);
    return new ReplayDigests(db, columns, Math.max(1, Math.trunc(options.chunkRows ?? 4096)));
  }

  /** A row of `relation`, its columns read from `over` first when given (a version's ranges beside its row). */
  add(relation: R, row: Row, over?: Row): void {
    const digest = this.#relations.get(relation)!;
    digest.rows++;
    const text = rowText(digest.columns, row, over);
    if (text === undefined) {
      digest.unencodable = true;
      return;
    }
    // As a latin1 string: cheaper than a Buffer of its own per row (see merkle.ts).
    digest.chunk.write(hash('sha256', text, 'binary'), digest.inChunk * hashBytes, hashBytes, 'latin1');
    if (++digest.inChunk === this.chunkRows) this.#close(relation);
  }

  /** Writes the hashes held so far to the database, the caller's connection being otherwise idle. */
  async flush(): Promise<void> {
    for (const relation of this.#relations.keys()) this.#close(relation);
    const full = this.#full;
    this.#full = [];
    if (full.length === 0) return;
    await this.db.query(`INSERT INTO pg_temp.${replayedHashes} (relation, hashes) SELECT * FROM unnest($1::text[], $2::bytea[])`, [
      full.map((chunk) => chunk.relation),
      full.map((chunk) => chunk.hashes),
    ]);
  }

  /** Every relation's digest; a relation with a row that could not be encoded as the database would gets an empty one, which no table has. */
  async digests(): Promise<Map<R, TableDigest>> {
    await this.flush();
    const { rows } = await this.db.query(
      `SELECT relation, ${digestOfHashes} AS digest FROM pg_temp.${replayedHashes}
       CROSS JOIN LATERAL generate_series(0, octet_length(hashes) / ${hashBytes} - 1) AS i
       CROSS JOIN LATERAL substr(hashes, i * ${hashBytes} + 1, ${hashBytes}) AS h GROUP BY relation`,
    );
    const written = new Map<string, Buffer>(rows.map((row) => [row.relation, row.digest]));
    const digests = new Map<R, TableDigest>();
    for (const [relation, { rows: count, unencodable }] of this.#relations)
      digests.set(relation, { rows: count, digest: unencodable ? Buffer.alloc(0) : (written.get(relation) ?? null) });
    return digests;
  }

  /** Sets `relation`'s chunk aside to be written, and starts the next. */
  #close(relation: R): void {
    const digest = this.#relations.get(relation)!;
    if (digest.inChunk === 0) return;
    this.#full.push({ relation, hashes: digest.chunk.subarray(0, digest.inChunk * hashBytes) });
    digest.chunk = Buffer.allocUnsafe(this.chunkRows * hashBytes);
    digest.inChunk = 0;
  }
}

/** A row's text for its hash, as liveDigest encodes it in the database; undefined when a value cannot be encoded so. */
function rowText(columns: Column[], row: Row, over?: Row): string | undefined {
  let text = '';
  for (const { name, type } of columns) {
    const value = over !== undefined && name in over ? over[name] : row[name];
    if (value === null || value === undefined) {
      text += '-';
      continue;
    }
    const encoded = encodings[type].js(value);
    if (encoded === undefined) return undefined;
    text += `${Buffer.byteLength(encoded)}:${encoded}`;
  }
  return text;
}

export const sameDigest = (a: TableDigest, b: TableDigest) =>
  a.rows === b.rows && (a.digest === null ? b.digest === null : b.digest !== null && a.digest.equals(b.digest));

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
