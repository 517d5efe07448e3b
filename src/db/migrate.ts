// Schema versions, capsul-flask's scheme: `schemaversion` holds one row; `schema_migrations/NN_up_<name>.sql`
// moves NN-1 → NN and `NN_down_<name>.sql` moves back. One transaction per step, under an advisory lock
// so that processes starting together apply each step once.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';

export const migrationsDir = fileURLToPath(new URL('../../schema_migrations/', import.meta.url));

/** pg_advisory_lock key for schema changes (an arbitrary constant: "capsul" in ASCII). */
const migrationLockKey = 0x63617073756c;

export type Migration = { version: number; name: string; upFile: string; downFile: string };

export class SchemaTooNewError extends Error {}
export class MigrationError extends Error {}

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
  const client = await pool.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1)', [migrationLockKey]);
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
    let current = from;
    while (current !== target) {
      const up = current < target;
      const migration = up ? migrations[current] : migrations[current - 1];
      if (!migration) throw new SchemaTooNewError(`no migration file for version ${current}: run a newer capsul`);
      const next = up ? current + 1 : current - 1;
      const file = up ? migration.upFile : migration.downFile;
      log(`schema ${current} → ${next}: ${path.basename(file)}`);
      await client.query('BEGIN');
      try {
        await client.query(readFileSync(file, 'utf8'));
        await client.query('UPDATE schemaversion SET version = $1', [next]);
        await client.query('COMMIT');
      } catch (error) {
        await client.query('ROLLBACK');
        throw new MigrationError(`${path.basename(file)} failed, schema stays at version ${current}: ${(error as Error).message}`);
      }
      current = next;
    }
    return { from, to: current };
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [migrationLockKey]).catch(() => {});
    client.release();
  }
}
