// Rebuild, verify and as-of: the events folded in memory through the same projection code as the
// append path, then written in bulk. The history index is rebuilt and verified alongside, by the
// database from the same events (history-index.ts).
import type pg from 'pg';
import { LogCheck, trustedCheckpoints, type Finding, type VerifyOptions } from '../audit/verify.ts';
import { effectiveAt } from '../domain/events.ts';
import { MemoryTables } from './memory.ts';
import { countEvents, keepSequencesAboveEvents, readAllEvents } from '../db/event-store.ts';
import { historyIndexDifferences, historyIndexTable, rebuildHistoryIndex } from './history-index.ts';
import { enableProjectorSQL } from './sql.ts';
import { tableNames, type Row, type TableName } from './tables.ts';

export type Progress = (done: number, total: number) => void;

/** What rebuild and verify report on: every projection, and the history index. */
export type RebuiltTable = TableName | typeof historyIndexTable;

/** The events no longer match the signed log: nothing is rebuilt over them (docs/audit.md). */
export class LogMismatchError extends Error {
  constructor(readonly findings: Finding[]) {
    super(
      `the events no longer match the signed log, so nothing was rebuilt: ${findings[0]?.message ?? ''}` +
        `${findings.length > 1 ? ` (and ${findings.length - 1} more: capsul audit verify lists them)` : ''}`,
    );
  }
}

/** What rebuild and verify check the events against; without it (as-of) the log is not looked at. */
export type LogEvidence = Pick<VerifyOptions, 'verifierKeys' | 'outsideCheckpoint'>;

/** No verifier key at hand: the events are still checked against the stored leaves and checkpoint roots. */
const noKeys: LogEvidence = { verifierKeys: [] };
const insertChunkRows = 5000;

async function fold(client: pg.PoolClient, options: { atMs?: number; onProgress?: Progress; log?: LogEvidence }): Promise<MemoryTables> {
  const total = options.onProgress ? await countEvents(client) : 0;
  const memory = new MemoryTables();
  const trusted = options.log ? await trustedCheckpoints(client, options.log) : undefined;
  // Up to the latest signed checkpoint the signed roots are the evidence; after it, the stored leaves.
  const check = trusted
    ? await LogCheck.start(client, trusted.checkpoints, { leavesFrom: trusted.checkpoints.at(-1)?.treeSize ?? 0 })
    : undefined;
  let done = 0;
  for await (const batch of readAllEvents(client)) {
    // Hashed as read, before anything folds them: the same pass checks the log.
    await check?.accept(batch);
    for (const stored of batch) {
      // An account is an identity, not a fact in time: it is there for any payment received before it opened.
      const timeless = stored.event.type === 'AccountOpened';
      if (options.atMs !== undefined && !timeless && Date.parse(effectiveAt(stored.event)) > options.atMs) continue;
      memory.apply(stored.event, stored.metadata);
    }
    done += batch.length;
    options.onProgress?.(done, total);
  }
  if (check) {
    const findings = [...trusted!.findings, ...(await check.finish())];
    if (findings.length > 0) throw new LogMismatchError(findings);
  }
  return memory;
}

async function bulkInsert(client: pg.PoolClient, target: string, typeName: string, rows: Row[]): Promise<void> {
  for (let i = 0; i < rows.length; i += insertChunkRows) {
    await client.query(`INSERT INTO ${target} SELECT * FROM json_populate_recordset(NULL::${typeName}, $1::json)`, [
      JSON.stringify(rows.slice(i, i + insertChunkRows)),
    ]);
  }
}

/** The replayed rows of each projection, in temporary tables `rebuilt_<table>` dropped at commit. */
async function writeAside(client: pg.PoolClient, memory: MemoryTables): Promise<void> {
  for (const table of tableNames) {
    await client.query(`CREATE TEMP TABLE rebuilt_${table} (LIKE public.${table}) ON COMMIT DROP`);
    await bulkInsert(client, `rebuilt_${table}`, `rebuilt_${table}`, memory.rows(table));
  }
}

/**
 * Makes the projection tables and the history index equal to a replay of every event, in one
 * transaction, writing only the rows that differ. The EXCLUSIVE lock lets readers keep reading the old rows; appends wait at their
 * projection write and apply on top after commit, so nothing is lost or doubled while appends arrive.
 */
export async function rebuildProjections(pool: pg.Pool, options: { onProgress?: Progress; log?: LogEvidence } = {}) {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query(`LOCK TABLE ${[...tableNames, historyIndexTable].join(', ')} IN EXCLUSIVE MODE`);
    const memory = await fold(client, { ...options, log: options.log ?? noKeys });
    await writeAside(client, memory);
    await client.query(enableProjectorSQL);
    const rows = {} as Record<RebuiltTable, number>;
    const changed = {} as Record<RebuiltTable, number>;
    for (const table of tableNames) {
      // Every projection is keyed by id: a row whose replay differs is deleted and inserted again.
      await client.query(
        `DELETE FROM ${table} USING rebuilt_${table} r WHERE r.id = ${table}.id AND ROW(${table}.*) IS DISTINCT FROM ROW(r.*)`,
      );
      const gone = await client.query(`DELETE FROM ${table} WHERE NOT EXISTS (SELECT 1 FROM rebuilt_${table} r WHERE r.id = ${table}.id)`);
      const added = await client.query(
        `INSERT INTO ${table} SELECT r.* FROM rebuilt_${table} r WHERE NOT EXISTS (SELECT 1 FROM ${table} t WHERE t.id = r.id)`,
      );
      rows[table] = memory.rows(table).length;
      changed[table] = (gone.rowCount ?? 0) + (added.rowCount ?? 0);
    }
    ({ rows: rows[historyIndexTable], changed: changed[historyIndexTable] } = await rebuildHistoryIndex(client));
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
 * Rebuilds aside (temporary tables) and compares with the live tables, both read in one snapshot.
 * Returns, per table (the history index too), how many rows (by key) differ, are missing or are extra.
 */
export async function verifyProjections(pool: pg.Pool, options: { onProgress?: Progress; log?: LogEvidence } = {}) {
  const client = await pool.connect();
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    await writeAside(client, await fold(client, { ...options, log: options.log ?? noKeys }));
    const differences = {} as Record<RebuiltTable, number>;
    for (const table of tableNames) {
      const { rows } = await client.query(
        `SELECT count(*)::int AS n FROM public.${table} l FULL JOIN rebuilt_${table} r ON r.id = l.id
         WHERE l.id IS NULL OR r.id IS NULL OR ROW(l.*) IS DISTINCT FROM ROW(r.*)`,
      );
      differences[table] = rows[0].n;
    }
    differences[historyIndexTable] = await historyIndexDifferences(client);
    return { matches: Object.values(differences).every((n) => n === 0), differences };
  } finally {
    await client.query('ROLLBACK').catch(() => {});
    client.release();
  }
}

/**
 * Builds the projection tables as they stood at `at` into temporary tables of the same names, which
 * shadow the live ones for the rest of this session. The caller must discard the connection after
 * use (`client.release(true)`).
 */
export async function shadowProjectionsAsOf(client: pg.PoolClient, at: Date, options: { onProgress?: Progress } = {}) {
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
  try {
    const memory = await fold(client, { atMs: at.getTime(), onProgress: options.onProgress });
    for (const table of tableNames) {
      await client.query(`CREATE TEMP TABLE ${table} (LIKE public.${table} INCLUDING DEFAULTS)`);
      await bulkInsert(client, `pg_temp.${table}`, `pg_temp.${table}`, memory.rows(table));
    }
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  }
}
