// Projection rows folded in memory, with each row's history: the fast path of rebuild and verify. It
// mirrors capsul_apply_projection and capsul_record_history (schema_migrations/21_up_row_history.sql,
// generated since 24_up_static_projector.sql) operation for operation; rebuild and verify compare the
// two. A fold may hold only some rows (`holds`): each row's fate depends on its own operations alone, so
// a rebuild folds the log in several passes, a share of the rows each, and holds no more than that
// share in memory.
import { holdsFrom } from '../domain/events.ts';
import type { StoredEvent } from '../db/event-store.ts';
import { project } from './project.ts';
import { assertCompleteRow, isLookup, keyOf, tableNames, type Row, type RowOp, type TableName } from './tables.ts';

/**
 * A version of a row: `valid` in effective time (ms; -Infinity and Infinity for open ends), `known` in
 * recorded time (the events' `created` as microsecond ISO text, which sorts as it reads; null: current).
 */
type Version = { row: Row; validFrom: number; validTo: number; knownFrom: string; knownTo: string | null };

/** Which rows a fold holds (by table and keyOf); the rest it passes over. */
export type Holds = (table: TableName, key: string) => boolean;

/**
 * Where a fold gives each version once it is no longer known (final: no later event changes it),
 * instead of keeping it: a digest needs each version once, not all at once. The version's row of
 * `<table>_history` is `row` with `ranges` (its valid and known), given apart to spare a copy.
 */
export type Retire = (table: TableName, row: Row, ranges: HistoryRanges) => void;
export type HistoryRanges = { valid: string; known: string };

/**
 * The tables whose rows other rows read (a lookup: a payment's email from its account). A fold that
 * does not hold one of their rows still keeps it, without history, for those lookups.
 */
const lookedUp: ReadonlySet<TableName> = new Set(['accounts']);

export class MemoryTables {
  readonly tables = new Map<TableName, Map<string, Row>>(tableNames.map((name) => [name, new Map()]));
  /** the looked-up tables' rows this fold does not hold, kept for lookups only */
  private readonly forLookups = new Map<TableName, Map<string, Row>>([...lookedUp].map((name) => [name, new Map()]));
  /** per table: each row's current versions (known now), and every version no longer known */
  private readonly current = new Map<TableName, Map<string, Version[]>>(tableNames.map((name) => [name, new Map()]));
  private readonly replaced = new Map<TableName, Map<string, Version[]>>(tableNames.map((name) => [name, new Map()]));

  /** `holds`: which rows this fold keeps (default: all of them); `retire`: see Retire (default: keep them). */
  constructor(
    private readonly holds: Holds = () => true,
    private readonly retire?: Retire,
  ) {}

  /** An event as read from the store: with its cause, and when it was appended (`recordedAt`). */
  apply({ event, metadata, recordedAt }: Pick<StoredEvent, 'event' | 'metadata' | 'recordedAt'>): void {
    const from = holdsFrom(event);
    const effectiveMs = from === null ? Number.NEGATIVE_INFINITY : Date.parse(from);
    for (const op of project(event, metadata)) this.applyOp(op, effectiveMs, recordedAt);
  }

  private applyOp(op: RowOp, effectiveMs: number, recordedAt: string): void {
    if (op.kind === 'insert') assertCompleteRow(op.table, op.row);
    const key = keyOf(op.table, op.kind === 'insert' ? op.row : op.key);
    if (!this.holds(op.table, key)) {
      if (lookedUp.has(op.table)) applyToRow(this.forLookups.get(op.table)!, key, op, this.resolve);
      return;
    }
    const written = applyToRow(this.tables.get(op.table)!, key, op, this.resolve);
    if (written === null) return;
    const versions = this.current.get(op.table)!;
    if (op.kind === 'insert') {
      versions.set(key, [
        { row: { ...written }, validFrom: effectiveMs, validTo: Number.POSITIVE_INFINITY, knownFrom: recordedAt, knownTo: null },
      ]);
    } else {
      this.revise(op.table, key, versions.get(key)!, written, effectiveMs, recordedAt);
    }
  }

  /**
   * As capsul_record_history: the versions valid at or after the change take it from then on. A row's
   * current versions are kept in effective order and cover a range without gaps, so those touched are
   * the last few (for facts in order, only the last): the rest is left as it is.
   */
  private revise(table: TableName, key: string, versions: Version[], set: Row, effectiveMs: number, recordedAt: string): void {
    let first = versions.length;
    while (first > 0 && versions[first - 1]!.validTo > effectiveMs) first--;
    const revised: Version[] = [];
    for (const version of versions.slice(first)) {
      const knownFrom = version.knownFrom > recordedAt ? version.knownFrom : recordedAt;
      // Made by this same append, it was never known on its own.
      if (version.knownFrom < recordedAt) {
        if (this.retire) this.retire(table, version.row, historyRanges(version, recordedAt));
        else this.replacedOf(table, key).push({ ...version, knownTo: recordedAt });
      }
      if (version.validFrom < effectiveMs) revised.push({ ...version, validTo: effectiveMs, knownFrom });
      revised.push({
        row: { ...version.row, ...set },
        validFrom: Math.max(version.validFrom, effectiveMs),
        validTo: version.validTo,
        knownFrom,
        knownTo: null,
      });
    }
    versions.length = first;
    for (const version of revised) versions.push(version);
  }

  /** Lookups read the rows folded so far, as capsul_apply_projection reads the tables. */
  private readonly resolve = (values: Row): Row => {
    if (!Object.values(values).some(isLookup)) return values; // the ops are fresh objects, ours to keep
    const resolved: Row = {};
    for (const [column, value] of Object.entries(values)) {
      if (!isLookup(value)) {
        resolved[column] = value;
        continue;
      }
      const { table, id, column: from } = value.$lookup;
      const key = keyOf(table, { id });
      const found = (this.tables.get(table)!.get(key) ?? this.forLookups.get(table)?.get(key))?.[from];
      if (found === undefined || found === null) throw new Error(`projection: no ${table} row ${id} to read ${from} from`);
      resolved[column] = found;
    }
    return resolved;
  };

  private replacedOf(table: TableName, key: string): Version[] {
    const byKey = this.replaced.get(table)!;
    let versions = byKey.get(key);
    if (!versions) byKey.set(key, (versions = []));
    return versions;
  }

  rows(table: TableName): Row[] {
    return [...this.tables.get(table)!.values()];
  }

  /** The row of `key` (keyOf), if there is one. */
  row(table: TableName, key: string): Row | undefined {
    return this.tables.get(table)!.get(key);
  }

  /** Every version of the table's rows, as `<table>_history` holds them, a row's at a time (but those retired). */
  *historyRows(table: TableName): Generator<Row> {
    for (const key of this.tables.get(table)!.keys()) yield* this.history(table, key);
  }

  /** Every version of one row (`key`: keyOf), as `<table>_history` holds them. */
  history(table: TableName, key: string): Row[] {
    const all = [...(this.replaced.get(table)!.get(key) ?? []), ...(this.current.get(table)!.get(key) ?? [])];
    return all.map(historyRow);
  }
}

/** A version as a row of `<table>_history`. */
const historyRow = (v: Version): Row => ({ ...v.row, ...historyRanges(v) });

/** A version's ranges as `<table>_history` holds them; `knownTo`: when it stopped being known (default: its own). */
const historyRanges = (v: Version, knownTo = v.knownTo): HistoryRanges => ({
  valid: rangeText(v.validFrom === Number.NEGATIVE_INFINITY ? '-infinity' : new Date(v.validFrom).toISOString(), validEnd(v.validTo)),
  known: rangeText(v.knownFrom, knownTo),
});

/**
 * An operation on one row of a table, as capsul_apply_projection does it (insert unless there; update
 * if there, in place: the rows belong to this fold alone). Returns what it wrote, an insert's row or an
 * update's values, or null when it wrote nothing.
 */
function applyToRow(rows: Map<string, Row>, key: string, op: RowOp, resolve: (values: Row) => Row): Row | null {
  if (op.kind === 'insert') {
    if (rows.has(key)) return null;
    const row = resolve(op.row);
    rows.set(key, row);
    return row;
  }
  const row = rows.get(key);
  if (!row) return null;
  const set = resolve(op.set);
  Object.assign(row, set);
  return set;
}

/**
 * Which of `passes` shares of the rows a row falls in: FNV-1a of its table and key, so every pass of
 * a rebuild (and a later one) agrees without keeping a list.
 */
export function shareOf(table: TableName, key: string, passes: number): number {
  let hash = 0x811c9dc5;
  const text = `${table}\u0000${key}`;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) % passes;
}

const validEnd = (ms: number) => (ms === Number.POSITIVE_INFINITY ? null : new Date(ms).toISOString());
/** A tstzrange literal, [from, to), unbounded above when `to` is null. */
const rangeText = (from: string, to: string | null) => `[${from},${to ?? ''})`;
