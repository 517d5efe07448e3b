// Opening capsul's database for work, the same way for the hub, the CLI and the tests: the schema
// brought up to date on the admin connection (which is then closed), the projections rebuilt when a
// migration ran (a migration may reshape or empty them), then pools of the role the work needs.
import type pg from 'pg';
import {
  checkConnection,
  checkRole,
  createPool,
  DatabaseConnectError,
  redact,
  roleNames,
  setRolePasswords,
  type Database,
  type Role,
} from '../db/database.ts';
import { countEvents } from '../db/event-store.ts';
import { latestVersion, migrate, MigrationError, schemaVersion, SchemaTooNewError } from '../db/migrate.ts';
import { rebuildProjections, type LogEvidence, type Progress } from '../projections/rebuild.ts';

export type PrepareOptions = {
  log?: (line: string) => void;
  onProgress?: Progress;
  /** default: this code's version */
  target?: number;
  /** what a rebuild after a migration checks the events against (src/audit/key.ts localEvidence) */
  evidence?: LogEvidence;
};

/**
 * Brings the schema to this code's version. A DATABASE_URL that may not migrate (a hub given only
 * capsul_app's login) is fine while the schema is current; behind, it says who must migrate.
 */
export async function prepareDatabase(db: Database, options: PrepareOptions = {}): Promise<{ from: number; to: number }> {
  const admin = createPool(db.urls.admin, 2);
  try {
    await checkConnection(admin, db.urls.admin);
    const current = await schemaVersion(admin);
    const target = options.target ?? latestVersion();
    if (current === target && !db.rolePasswords) return { from: current, to: current };
    const result = await migrate(admin, { log: options.log, target: options.target }).catch((error: Error) => {
      if (error instanceof SchemaTooNewError || !/permission denied|must be owner|must be (a )?member/.test(error.message)) throw error;
      throw new MigrationError(
        `the database is at schema version ${current} and this code needs ${latestVersion()}, but DATABASE_URL may not migrate it: ` +
          `run capsul migrate with the owner's or a superuser's DATABASE_URL (${error.message})`,
      );
    });
    if (db.rolePasswords) await setRolePasswords(admin, db.rolePasswords);
    if (result.from !== result.to && result.to === latestVersion() && (await countEvents(admin)) > 0) {
      options.log?.('the schema changed: rebuilding the projections from the events');
      await rebuildProjections(admin, { onProgress: options.onProgress, log: options.evidence });
    }
    return result;
  } finally {
    await admin.end().catch(() => {});
  }
}

/** A pool of `role`'s own connections, checked to be that role and no more. */
export async function openPool(db: Database, role: Role, max: number): Promise<pg.Pool> {
  const url = db.urls[role];
  const pool = createPool(url, max);
  try {
    await checkConnection(pool, url).catch((error: Error) => {
      if (role === 'admin') throw error;
      const setting = role === 'app' ? 'DATABASE_APP_URL' : 'DATABASE_READER_URL';
      throw new DatabaseConnectError(
        `${error.message} — capsul connects as ${roleNames[role]} for this: set ${setting}, or give that role's password in ~/.pgpass (docs/configuration.md)`,
      );
    });
    if (role !== 'admin') await checkRole(pool, role);
    return pool;
  } catch (error) {
    await pool.end().catch(() => {});
    throw error;
  }
}

/** Where the database is, for a start-up line: never a password. */
export function describeDatabase(db: Database): string {
  return db.embedded ? 'embedded PostgreSQL' : redact(db.urls.admin);
}
