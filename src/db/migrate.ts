// Schema versions, capsul-flask's scheme: `schemaversion` holds one row; `schema_migrations/NN_up_<name>.sql`
// moves NN-1 → NN and `NN_down_<name>.sql` moves back. One transaction per step, under an advisory lock
// so that processes starting together apply each step once.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { advisoryLocks, withAdvisoryLock } from './advisory-lock.ts';
import { keepSequencesAboveEvents } from './event-store.ts';

export const migrationsDir = fileURLToPath(new URL('../../schema_migrations/', import.meta.url));

export type Migration = { version: number; name: string; upFile: string; downFile: string };

export class SchemaTooNewError extends Error {}
export class MigrationError extends Error {}
/** A down step that would drop events or facts no event holds: refused, nothing changed. */
export class DowngradeRefusedError extends MigrationError {}

/** From this version on, every step runs as capsul_owner, so what it creates belongs to the owner (11 made the roles). */
export const firstOwnedVersion = 12;

/**
 * Tables a down step may drop with their rows: what is rebuilt (projections, found by their guard
 * trigger), seeded again by an up step (the catalogue), or worth nothing once gone (logins, sessions,
 * heartbeats, emmett's bookkeeping, monitoring). Every other table holds events or facts no event holds.
 */
const disposableTables = [
  'schemaversion',
  'sessions',
  'login_tokens',
  'host_heartbeats',
  'job_runs',
  // snapshots of long streams (migration 23): derived from the events, written again by the next loads
  'stream_snapshots',
  // monitoring (migration 18): its down step keeps what version 17 knew (incident_emails); the rest is observation
  'incidents',
  'webhook_deliveries',
  // the history index (migration 22): rebuilt from the events like a projection, but not one (its guard has its own name)
  'account_events',
  'vm_sizes',
  'os_images',
  'dmb_migrations',
];

export function listMigrations(dir = migrationsDir): Migration[] {
  const files = readdirSync(dir).filter((f) => f.endsWith('.sql'));
  const byVersion = new Map<number, Partial<Migration>>();
  for (const file of files) {
    const match = /^(\d+)_(up|down)_([a-z0-9_]+)\.sql$/.exec(file);
    if (!match) throw new MigrationError(`unexpected file in schema_migrations: ${file}`);
    const version = Number(match[1]);
    const entry = byVersion.get(version) ?? { version, name: match[3] };
    if (match[2] === 'up') entry.upFile = path.join(dir, file);
    else entry.downFile = path.join(dir, file);
    byVersion.set(version, entry);
  }
  const migrations = [...byVersion.values()].sort((a, b) => a.version! - b.version!);
  migrations.forEach((m, index) => {
    if (m.version !== index + 1) throw new MigrationError(`schema_migrations: version ${index + 1} is missing`);
    if (!m.upFile || !m.downFile) throw new MigrationError(`schema_migrations: version ${m.version} needs both an up and a down file`);
  });
  return migrations as Migration[];
}

export function latestVersion(dir = migrationsDir): number {
  return listMigrations(dir).length;
}

/** The database's schema version; 0 for a database capsul has never touched. */
export async function schemaVersion(db: pg.Pool | pg.PoolClient): Promise<number> {
  const exists = await db.query(`SELECT to_regclass('schemaversion') IS NOT NULL AS present`);
  if (!exists.rows[0].present) return 0;
  const { rows } = await db.query('SELECT version FROM schemaversion');
  return rows.length ? Number(rows[0].version) : 0;
}

export type MigrateOptions = {
  /** version to reach; default the newest this code knows */
  target?: number;
  dir?: string;
  log?: (line: string) => void;
};

/**
 * Moves the schema to `target` (up or down) one transaction per step and returns the versions seen.
 * A database newer than this code is refused unless an explicit lower target asks to go down.
 */
export async function migrate(pool: pg.Pool, options: MigrateOptions = {}): Promise<{ from: number; to: number }> {
  const migrations = listMigrations(options.dir);
  const latest = migrations.length;
  const target = options.target ?? latest;
  const log = options.log ?? (() => {});
  if (!Number.isInteger(target) || target < 0 || target > latest) {
    throw new MigrationError(`cannot migrate to version ${target}: this code knows versions 0 to ${latest}`);
  }
  return withAdvisoryLock(pool, advisoryLocks.migration, async (client) => {
    await client.query(`
      CREATE TABLE IF NOT EXISTS schemaversion (version INT PRIMARY KEY NOT NULL);
      CREATE UNIQUE INDEX IF NOT EXISTS schemaversion_one_row ON schemaversion ((true));
      INSERT INTO schemaversion (version) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM schemaversion);`);
    const from = await schemaVersion(client);
    if (from > latest && options.target === undefined) {
      throw new SchemaTooNewError(
        `the database is at schema version ${from}, newer than this code (which knows up to ${latest}): run a newer capsul`,
      );
    }
    const current =
      target >= from ? await migrateUp(client, migrations, from, target, log) : await migrateDown(client, migrations, from, target, log);
    if (current !== from) await keepSequencesAboveEvents(client);
    return { from, to: current };
  });
}

/** Each up step in a transaction of its own: a failing step leaves the ones before it applied. */
async function migrateUp(
  client: pg.PoolClient,
  migrations: Migration[],
  from: number,
  target: number,
  log: (line: string) => void,
): Promise<number> {
  for (let current = from; current < target; current++) {
    const migration = migrations[current]!;
    log(`schema ${current} → ${current + 1}: ${path.basename(migration.upFile)}`);
    await client.query('BEGIN');
    try {
      await actAsOwnerFrom(client, migration);
      await client.query(readFileSync(migration.upFile, 'utf8'));
      await client.query('UPDATE schemaversion SET version = $1', [current + 1]);
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK');
      throw new MigrationError(
        `${path.basename(migration.upFile)} failed, schema stays at version ${current}: ${(error as Error).message}`,
      );
    }
  }
  return target;
}

/**
 * All down steps in one transaction: a downgrade happens whole or not at all, so a step refused for
 * the facts it would drop leaves the schema as it found it, and the steps are told only once done.
 */
async function migrateDown(
  client: pg.PoolClient,
  migrations: Migration[],
  from: number,
  target: number,
  log: (line: string) => void,
): Promise<number> {
  const done: string[] = [];
  await client.query('BEGIN');
  try {
    for (let current = from; current > target; current--) {
      const migration = migrations[current - 1];
      if (!migration) throw new SchemaTooNewError(`no migration file for version ${current}: run a newer capsul`);
      const file = path.basename(migration.downFile);
      await actAsOwnerFrom(client, migration);
      try {
        await runDownKeepingFacts(client, readFileSync(migration.downFile, 'utf8'), `${current} → ${current - 1} (${file})`);
      } catch (error) {
        if (error instanceof DowngradeRefusedError) throw error;
        throw new MigrationError(`${file} failed, schema stays at version ${from}: ${(error as Error).message}`);
      }
      await client.query('UPDATE schemaversion SET version = $1', [current - 1]);
      done.push(`schema ${current} → ${current - 1}: ${file}`);
    }
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK');
    throw error;
  }
  for (const line of done) log(line);
  return target;
}

/** From firstOwnedVersion on, a step runs as capsul_owner; before it, as the connection's own user. */
async function actAsOwnerFrom(client: pg.PoolClient, migration: Migration): Promise<void> {
  await client.query(migration.version >= firstOwnedVersion ? 'SET LOCAL ROLE capsul_owner' : 'SET LOCAL ROLE NONE');
}

type TableState = { rows: Map<string, number>; columns: Map<string, string[]> };

/** Row counts and columns of every table whose rows a down step must not lose (partitions stand for their parent). */
async function factTables(client: pg.PoolClient): Promise<TableState> {
  const { rows } = await client.query(
    `SELECT c.relname AS table,
            array(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum) AS columns
     FROM pg_class c
     WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND NOT (c.relname = ANY($1))
       AND NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname = 'capsul_projection_guard')`,
    [disposableTables],
  );
  const state: TableState = { rows: new Map(), columns: new Map() };
  for (const row of rows) {
    state.columns.set(row.table, row.columns);
    const counted = await client.query(`SELECT count(*)::text AS n FROM ${quoteIdent(row.table)}`);
    state.rows.set(row.table, Number(counted.rows[0].n));
  }
  return state;
}

/**
 * Runs a down step, then looks at what it did: a table of events or facts that held rows is gone or
 * shorter, or a column that held values is gone → the step is undone and refused. capsul-flask refused
 * every downgrade; here a downgrade is allowed as long as it only drops what can be had again.
 */
async function runDownKeepingFacts(client: pg.PoolClient, sql: string, step: string): Promise<void> {
  const before = await factTables(client);
  await client.query('SAVEPOINT capsul_down');
  await client.query(sql);
  const after = await factTables(client);
  const losses: string[] = [];
  const droppedColumns: [string, string][] = [];
  for (const [table, columns] of before.columns) {
    const rowsBefore = before.rows.get(table) ?? 0;
    if (!after.columns.has(table)) {
      if (rowsBefore > 0) losses.push(`the table ${table} (${rowsBefore.toLocaleString('en-US')} ${rowsBefore === 1 ? 'row' : 'rows'})`);
      continue;
    }
    const rowsAfter = after.rows.get(table);
    if (rowsAfter !== undefined && rowsAfter < rowsBefore)
      losses.push(`${(rowsBefore - rowsAfter).toLocaleString('en-US')} ${rowsBefore - rowsAfter === 1 ? 'row' : 'rows'} of ${table}`);
    for (const column of columns) if (!after.columns.get(table)!.includes(column)) droppedColumns.push([table, column]);
  }
  if (droppedColumns.length > 0) {
    // Whether a dropped column held anything is asked of the table as it was: undo, look, redo.
    await client.query('ROLLBACK TO SAVEPOINT capsul_down');
    for (const [table, column] of droppedColumns) {
      const { rows } = await client.query(
        `SELECT EXISTS (SELECT 1 FROM ${quoteIdent(table)} WHERE ${quoteIdent(column)} IS NOT NULL) AS held`,
      );
      if (rows[0].held) losses.push(`the column ${table}.${column}`);
    }
    if (losses.length === 0) await client.query(sql);
  }
  await client.query('RELEASE SAVEPOINT capsul_down');
  if (losses.length > 0) {
    throw new DowngradeRefusedError(
      `refused: schema ${step} would drop ${losses.join(', ')}: events or facts no event holds; nothing was changed`,
    );
  }
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}
