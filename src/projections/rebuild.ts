// Rebuild, verify and as-of: the events folded in memory through the same projection code as the
// inline path, then bulk-inserted.
import type pg from 'pg';
import { effectiveAt } from '../domain/events.ts';
import { MemoryTables } from './memory.ts';
import { countEvents, readAllEvents } from './read.ts';
import { enableProjectorSQL } from './sql.ts';
import { tableNames, type Row, type TableName } from './tables.ts';

export type Progress = (done: number, total: number) => void;
const insertChunkRows = 2000;

async function fold(client: pg.PoolClient, options: { atMs?: number; onProgress?: Progress }): Promise<MemoryTables> {
  const total = options.onProgress ? await countEvents(client) : 0;
  const memory = new MemoryTables();
  let done = 0;
  for await (const batch of readAllEvents(client)) {
    for (const stored of batch) {
      // An account is an identity, not a fact in time: it is there for any payment received before it opened.
      const timeless = stored.event.type === 'AccountOpened';
      if (options.atMs !== undefined && !timeless && Date.parse(effectiveAt(stored.event)) > options.atMs) continue;
      await memory.apply(stored.event);
    }
    done += batch.length;
    options.onProgress?.(done, total);
  }
  return memory;
}

async function bulkInsert(client: pg.PoolClient, target: string, typeName: string, rows: Row[]): Promise<void> {
  for (let i = 0; i < rows.length; i += insertChunkRows) {
    await client.query(
      `INSERT INTO ${target} SELECT * FROM jsonb_populate_recordset(NULL::${typeName}, $1::jsonb)`,
      [JSON.stringify(rows.slice(i, i + insertChunkRows))],
    );
  }
}

/**
 * Replaces the projection tables with a replay of every event, in one transaction. The EXCLUSIVE
 * lock lets readers keep reading the old rows; appends wait at their projection write and apply on
 * top after commit, so nothing is lost or doubled while appends keep arriving.
 */
export async function rebuildProjections(pool: pg.Pool, options: { onProgress?: Progress } = {}) {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query(`LOCK TABLE ${tableNames.join(', ')} IN EXCLUSIVE MODE`);
    const memory = await fold(client, options);
    await client.query(enableProjectorSQL);
    const rows: Partial<Record<TableName, number>> = {};
    for (const table of tableNames) {
      await client.query(`DELETE FROM ${table}`);
      await bulkInsert(client, table, table, memory.rows(table));
      rows[table] = memory.rows(table).length;
    }
    await client.query('COMMIT');
    return { rows: rows as Record<TableName, number> };
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}

/**
 * Rebuilds aside (temporary tables) and compares with the live tables, both read in one snapshot.
 * Returns, per table, how many rows differ (in either direction).
 */
export async function verifyProjections(pool: pg.Pool, options: { onProgress?: Progress } = {}) {
  const client = await pool.connect();
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    const memory = await fold(client, options);
    const differences = {} as Record<TableName, number>;
    for (const table of tableNames) {
      const aside = `rebuilt_${table}`;
      await client.query(`CREATE TEMP TABLE ${aside} (LIKE public.${table}) ON COMMIT DROP`);
      await bulkInsert(client, aside, aside, memory.rows(table));
      const { rows } = await client.query(
        `SELECT (SELECT count(*) FROM (TABLE public.${table} EXCEPT ALL TABLE ${aside}) a)::int
              + (SELECT count(*) FROM (TABLE ${aside} EXCEPT ALL TABLE public.${table}) b)::int AS n`,
      );
      differences[table] = rows[0].n;
    }
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

