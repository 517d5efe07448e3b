// Rebuild and verify: the events folded in memory through the same projection code as the append
// path, then written in bulk. The history index is rebuilt and verified alongside, by the database
// from the same events (history-index.ts).
import type pg from 'pg';
import { LogCheck, trustedCheckpoints, type Finding, type VerifyOptions } from '../audit/verify.ts';
import { MemoryTables, shareOf } from './memory.ts';
import {
  countEvents,
  currentSnapshot,
  keepSequencesAboveEvents,
  readAllEvents,
  readEventsNotIn,
  type StoredEvent,
} from '../db/event-store.ts';
import { historyIndexDifferences, historyIndexRepair, historyIndexTable, repairHistoryIndex } from './history-index.ts';
import { enableProjectorSQL } from './sql.ts';
import { historyTable, tableNames, type Row, type TableName } from './tables.ts';

export type Progress = (done: number, total: number) => void;

/** What rebuild and verify report on: every projection, its row history, and the history index. */
export type ReplayedTable = TableName | ReturnType<typeof historyTable> | typeof historyIndexTable;

/** The events no longer match the signed log: nothing is rebuilt over them (docs/audit.md). */
export class LogMismatchError extends Error {
  constructor(readonly findings: Finding[]) {
    super(
      `the events no longer match the signed log, so nothing was rebuilt: ${findings[0]?.message ?? ''}` +
        `${findings.length > 1 ? ` (and ${findings.length - 1} more: capsul audit verify lists them)` : ''}`,
    );
  }
}

/** What rebuild and verify check the events against. */
export type LogEvidence = Pick<VerifyOptions, 'verifierKeys' | 'outsideCheckpoint'>;

/** No verifier key at hand: the events are still checked against the stored leaves and checkpoint roots. */
const noKeys: LogEvidence = { verifierKeys: [] };
const insertChunkRows = 5000;

/**
 * How many rows and versions of history a rebuild or a verify holds in memory at once, at most: some
 * 500 bytes each, so about 100 MB over the process's own. The events are folded in as many passes as
 * that takes, each holding one share of the rows (shareOf), so memory stays within it however large
 * the ledger; each pass more costs a read of the log.
 */
export const rowsPerPass = 200_000;
/** Rows and versions an event makes, at most, for a ledger like the bench's (2.3 at a million events). */
const rowsPerEvent = 3;

type FoldOptions = { onProgress?: Progress; log: LogEvidence; rowsPerPass?: number };

/** Checks the events against the signed log as they are read: up to the latest signed checkpoint the signed roots are the evidence; after it, the stored leaves. */
async function logCheck(client: pg.PoolClient, log: LogEvidence) {
  const trusted = await trustedCheckpoints(client, log);
  const check = await LogCheck.start(client, trusted.checkpoints, { leavesFrom: trusted.checkpoints.at(-1)?.treeSize ?? 0 });
  return {
    accept: (batch: StoredEvent[]) => check.accept(batch),
    async finish() {
      const findings = [...trusted.findings, ...(await check.finish())];
      if (findings.length > 0) throw new LogMismatchError(findings);
    },
  };
}

/**
 * Every event the caller's snapshot sees, folded and written into temporary tables `rebuilt_<table>`
 * and `rebuilt_<table>_history` (dropped at commit), in passes of at most `rowsPerPass` rows and
 * versions: each pass reads every event and holds one share of the rows. The first pass also checks
 * the events against the signed log. Returns how many rows and versions each table got.
 */
async function foldAside(client: pg.PoolClient, options: FoldOptions): Promise<Record<ReplayedTable, number>> {
  const total = await countEvents(client);
  const passes = Math.max(1, Math.ceil((total * rowsPerEvent) / (options.rowsPerPass ?? rowsPerPass)));
  const written = {} as Record<ReplayedTable, number>;
  for (const table of tableNames) {
    for (const name of [table, historyTable(table)]) {
      await client.query(`CREATE TEMP TABLE rebuilt_${name} (LIKE public.${name}) ON COMMIT DROP`);
      written[name] = 0;
    }
  }
  for (let pass = 0; pass < passes; pass++) {
    const memory = new MemoryTables(passes === 1 ? undefined : (table, key) => shareOf(table, key, passes) === pass);
    const check = pass === 0 ? await logCheck(client, options.log) : undefined;
    let done = 0;
    for await (const batch of readAllEvents(client)) {
      // Hashed as read, before anything folds them: the same pass checks the log.
      await check?.accept(batch);
      for (const stored of batch) memory.apply(stored.event, stored.metadata, stored.recordedAt);
      done += batch.length;
      options.onProgress?.(pass * total + done, passes * total);
    }
    await check?.finish();
    for (const table of tableNames) {
      written[table] += await bulkInsert(client, `rebuilt_${table}`, `rebuilt_${table}`, memory.rows(table));
      const history = historyTable(table);
      written[history] += await bulkInsert(client, `rebuilt_${history}`, `rebuilt_${history}`, memory.historyRows(table));
    }
  }
  return written;
}

/** The rows of `keys` (by table), folded from every event the caller's snapshot sees: what a rebuild rewrites. */
async function foldRows(client: pg.PoolClient, keys: Map<TableName, Set<string>>): Promise<MemoryTables> {
  const memory = new MemoryTables((table, key) => keys.get(table)!.has(key));
  for await (const batch of readAllEvents(client))
    for (const stored of batch) memory.apply(stored.event, stored.metadata, stored.recordedAt);
  return memory;
}

/** Writes `rows` into `target` in chunks; returns how many. */
async function bulkInsert(client: pg.PoolClient, target: string, typeName: string, rows: Iterable<Row>): Promise<number> {
  let count = 0;
  let chunk: Row[] = [];
  const flush = async () => {
    await client.query(`INSERT INTO ${target} SELECT * FROM json_populate_recordset(NULL::${typeName}, $1::json)`, [JSON.stringify(chunk)]);
    count += chunk.length;
    chunk = [];
  };
  for (const row of rows) {
    chunk.push(row);
    if (chunk.length === insertChunkRows) await flush();
  }
  if (chunk.length > 0) await flush();
  return count;
}

/**
 * The rows whose live projection or live history differs from the replay written aside, by table: a
 * row is compared whole; a history (whose versions have no key of their own) as the hashes of its
 * versions, per row.
 */
async function differingRows(client: pg.PoolClient): Promise<Map<ReplayedTable, string[]>> {
  const differing = new Map<ReplayedTable, string[]>();
  for (const table of tableNames) {
    const rows = await client.query(
      `SELECT coalesce(l.id, r.id)::text AS id FROM public.${table} l FULL JOIN rebuilt_${table} r ON r.id = l.id
       WHERE l.id IS NULL OR r.id IS NULL OR ROW(l.*) IS DISTINCT FROM ROW(r.*)`,
    );
    differing.set(
      table,
      rows.rows.map((row) => row.id),
    );
    const history = historyTable(table);
    const hashed = (relation: string) =>
      `SELECT id, md5(string_agg(md5(v::text), '' ORDER BY md5(v::text))) AS versions FROM ${relation} v GROUP BY id`;
    const histories = await client.query(
      `SELECT coalesce(l.id, r.id)::text AS id FROM (${hashed(`public.${history}`)}) l FULL JOIN (${hashed(`rebuilt_${history}`)}) r
       ON r.id = l.id WHERE l.versions IS DISTINCT FROM r.versions`,
    );
    differing.set(
      history,
      histories.rows.map((row) => row.id),
    );
  }
  return differing;
}

/** The rows given by id (as text) in the live table, as the replay has them: removed, then put back from `memory`. */
async function rewriteRows(client: pg.PoolClient, table: TableName, ids: string[], memory: MemoryTables): Promise<void> {
  const history = historyTable(table);
  // The ids as the table's own id type, whatever it is (payments: bigint; the rest: text).
  const idsOf = (name: string) => `SELECT (jsonb_populate_record(NULL::${name}, jsonb_build_object('id', k))).id FROM unnest($1::text[]) k`;
  await client.query(`DELETE FROM ${table} WHERE id IN (${idsOf(table)})`, [ids]);
  await client.query(`DELETE FROM ${history} WHERE id IN (${idsOf(history)})`, [ids]);
  const rows = ids.map((id) => memory.row(table, id)).filter((row): row is Row => row !== undefined);
  await bulkInsert(client, table, table, rows);
  await bulkInsert(
    client,
    history,
    history,
    ids.flatMap((id) => memory.history(table, id)),
  );
}

/**
 * `betweenPhases`: a pause between the unlocked fold and the locked write (tests hold it there to
 * append meanwhile); `rowsPerPass`: the memory bound (tests make it small to fold in many passes).
 */
export type RebuildOptions = {
  onProgress?: Progress;
  log?: LogEvidence;
  betweenPhases?: () => Promise<void>;
  rowsPerPass?: number;
};

/**
 * Makes the projection tables, their row history and the history index equal to a replay of every
 * event, without stopping the business and in bounded memory. First, in one snapshot and without
 * locks: the events folded (in passes of at most rowsPerPass rows, the first checking them against
 * the signed log), written aside and compared with the live tables, which appends keep writing
 * meanwhile; the rows that differ are folded again on their own. Then, briefly, under an EXCLUSIVE
 * lock (readers read on; appends wait at their projection write and apply on top after commit, so
 * nothing is lost or doubled): the events committed since the snapshot folded onto those rows, and
 * only they written. Rows the later events touched that did not differ were right, and the appends
 * kept them right. Returns each table's rows (histories: versions) at the snapshot, and how many
 * rows were rewritten because they differed.
 */
export async function rebuildProjections(pool: pg.Pool, options: RebuildOptions = {}) {
  const client = await pool.connect();
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    const snapshot = await currentSnapshot(client);
    const rows = await foldAside(client, { ...options, log: options.log ?? noKeys });
    const differing = await differingRows(client);
    const indexRepair = await historyIndexRepair(client);
    const stale = new Map(tableNames.map((table) => [table, new Set([...differing.get(table)!, ...differing.get(historyTable(table))!])]));
    const anyStale = [...stale.values()].some((keys) => keys.size > 0);
    const memory = anyStale ? await foldRows(client, stale) : undefined;
    await client.query('COMMIT');
    await options.betweenPhases?.();

    await client.query('BEGIN');
    await client.query(
      `LOCK TABLE ${[...tableNames.flatMap((t) => [t, historyTable(t)]), historyIndexTable].join(', ')} IN EXCLUSIVE MODE`,
    );
    await client.query(enableProjectorSQL);
    if (memory) {
      for (const stored of await readEventsNotIn(client, snapshot)) memory.apply(stored.event, stored.metadata, stored.recordedAt);
      for (const table of tableNames) if (stale.get(table)!.size > 0) await rewriteRows(client, table, [...stale.get(table)!], memory);
    }
    const changed = {} as Record<ReplayedTable, number>;
    for (const [table, ids] of differing) changed[table] = ids.length;
    rows[historyIndexTable] = indexRepair.rows;
    changed[historyIndexTable] = await repairHistoryIndex(client, indexRepair);
    await keepSequencesAboveEvents(client);
    await client.query('COMMIT');
    return { rows, changed };
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}

/**
 * Rebuilds aside (temporary tables, in passes as a rebuild does) and compares with the live tables,
 * all read in one snapshot. Returns, per table, how many rows (by id) differ, are missing or are
 * extra, per history how many rows' histories differ, and for the history index how many rows are
 * missing, extra or retyped.
 */
export async function verifyProjections(pool: pg.Pool, options: { onProgress?: Progress; log?: LogEvidence; rowsPerPass?: number } = {}) {
  const client = await pool.connect();
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    await foldAside(client, { ...options, log: options.log ?? noKeys });
    const differences = {} as Record<ReplayedTable, number>;
    for (const [table, ids] of await differingRows(client)) differences[table] = ids.length;
    differences[historyIndexTable] = await historyIndexDifferences(client);
    return { matches: Object.values(differences).every((n) => n === 0), differences };
  } finally {
    await client.query('ROLLBACK').catch(() => {});
    client.release();
  }
}
