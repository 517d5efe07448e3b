// Rebuild and verify: the events folded in memory through the same projection code as the append
// path, then written in bulk. As-of reads the row history the append path keeps (no replay).
import type pg from 'pg';
import { LogCheck, trustedCheckpoints, type Finding, type VerifyOptions } from '../audit/verify.ts';
import { MemoryTables } from './memory.ts';
import { countEvents, keepSequencesAboveEvents, readAllEvents, type Instants } from '../db/event-store.ts';
import { enableProjectorSQL } from './sql.ts';
import { historyTable, projectionTables, tableNames, type Row, type TableName } from './tables.ts';

export type Progress = (done: number, total: number) => void;

/** A projection table or its history. */
export type ReplayedTable = TableName | ReturnType<typeof historyTable>;

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

async function fold(client: pg.PoolClient, options: { onProgress?: Progress; log: LogEvidence }): Promise<MemoryTables> {
  const total = options.onProgress ? await countEvents(client) : 0;
  const memory = new MemoryTables();
  const trusted = await trustedCheckpoints(client, options.log);
  // Up to the latest signed checkpoint the signed roots are the evidence; after it, the stored leaves.
  const check = await LogCheck.start(client, trusted.checkpoints, { leavesFrom: trusted.checkpoints.at(-1)?.treeSize ?? 0 });
  let done = 0;
  for await (const batch of readAllEvents(client)) {
    // Hashed as read, before anything folds them: the same pass checks the log.
    await check.accept(batch);
    for (const stored of batch) memory.apply(stored.event, stored.metadata, stored.recordedAt);
    done += batch.length;
    options.onProgress?.(done, total);
  }
  const findings = [...trusted.findings, ...(await check.finish())];
  if (findings.length > 0) throw new LogMismatchError(findings);
  return memory;
}

async function bulkInsert(client: pg.PoolClient, target: string, typeName: string, rows: Row[]): Promise<void> {
  for (let i = 0; i < rows.length; i += insertChunkRows) {
    await client.query(`INSERT INTO ${target} SELECT * FROM json_populate_recordset(NULL::${typeName}, $1::json)`, [
      JSON.stringify(rows.slice(i, i + insertChunkRows)),
    ]);
  }
}

/**
 * The replayed rows of each projection and its history, in temporary tables `rebuilt_<table>` and
 * `rebuilt_<table>_history` dropped at commit.
 */
async function writeAside(client: pg.PoolClient, memory: MemoryTables): Promise<void> {
  for (const table of tableNames) {
    for (const [name, rows] of [
      [table, memory.rows(table)],
      [historyTable(table), memory.historyRows(table)],
    ] as const) {
      await client.query(`CREATE TEMP TABLE rebuilt_${name} (LIKE public.${name}) ON COMMIT DROP`);
      await bulkInsert(client, `rebuilt_${name}`, `rebuilt_${name}`, rows);
    }
  }
}

/**
 * How many versions the live history and the replayed one do not share (a version has no key of its
 * own): each version's text hashed and counted on both sides, so the comparison is one hash join.
 */
async function historyDifferences(client: pg.PoolClient, table: TableName): Promise<number> {
  const counted = (relation: string) => `SELECT md5(v::text) AS version, count(*) AS n FROM ${relation} v GROUP BY 1`;
  const { rows } = await client.query(
    `SELECT coalesce(sum(abs(coalesce(l.n, 0) - coalesce(r.n, 0))), 0)::int AS n
     FROM (${counted(`public.${historyTable(table)}`)}) l FULL JOIN (${counted(`rebuilt_${historyTable(table)}`)}) r USING (version)`,
  );
  return rows[0].n;
}

/**
 * Makes the projection tables equal to a replay of every event, in one transaction, writing only the
 * rows that differ. The EXCLUSIVE lock lets readers keep reading the old rows; appends wait at their
 * projection write and apply on top after commit, so nothing is lost or doubled while appends arrive.
 */
export async function rebuildProjections(pool: pg.Pool, options: { onProgress?: Progress; log?: LogEvidence } = {}) {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query(`LOCK TABLE ${tableNames.flatMap((t) => [t, historyTable(t)]).join(', ')} IN EXCLUSIVE MODE`);
    const memory = await fold(client, { ...options, log: options.log ?? noKeys });
    await writeAside(client, memory);
    await client.query(enableProjectorSQL);
    const rows = {} as Record<ReplayedTable, number>;
    const changed = {} as Record<ReplayedTable, number>;
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
      // The history is written whole when any version differs (after a migration it starts empty).
      const history = historyTable(table);
      const differing = await historyDifferences(client, table);
      if (differing > 0) {
        await client.query(`DELETE FROM ${history}`);
        await client.query(`INSERT INTO ${history} SELECT * FROM rebuilt_${history}`);
      }
      rows[history] = memory.historyRows(table).length;
      changed[history] = differing;
    }
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
 * Returns, per table, how many rows (by id) differ, are missing or are extra.
 */
export async function verifyProjections(pool: pg.Pool, options: { onProgress?: Progress; log?: LogEvidence } = {}) {
  const client = await pool.connect();
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    await writeAside(client, await fold(client, { ...options, log: options.log ?? noKeys }));
    const differences = {} as Record<ReplayedTable, number>;
    for (const table of tableNames) {
      const { rows } = await client.query(
        `SELECT count(*)::int AS n FROM public.${table} l FULL JOIN rebuilt_${table} r ON r.id = l.id
         WHERE l.id IS NULL OR r.id IS NULL OR ROW(l.*) IS DISTINCT FROM ROW(r.*)`,
      );
      differences[table] = rows[0].n;
      differences[historyTable(table)] = await historyDifferences(client, table);
    }
    return { matches: Object.values(differences).every((n) => n === 0), differences };
  } finally {
    await client.query('ROLLBACK').catch(() => {});
    client.release();
  }
}

/**
 * Shadows each projection table, for the rest of this session, with a temporary view of the same name
 * over its row history at `at` (absent: the latest, as the live tables): the rows as they were at `asOf` (effective time), as the ledger knew
 * them at `knownAt` (recorded time). Nothing is replayed; the views read the history's index. The
 * caller must discard the connection after use (`client.release(true)`).
 */
export async function shadowProjectionsAt(client: pg.PoolClient, at: Instants): Promise<void> {
  // The instants are Dates written by toISOString: nothing of the user's text reaches the SQL.
  const instant = (date: Date | undefined) => `'${date ? date.toISOString() : 'infinity'}'::timestamptz`;
  for (const table of tableNames) {
    await client.query(
      `CREATE TEMP VIEW ${table} AS SELECT ${projectionTables[table].columns.join(', ')} FROM public.${historyTable(table)}
       WHERE valid @> ${instant(at.asOf)} AND known @> ${instant(at.knownAt)}`,
    );
  }
}
