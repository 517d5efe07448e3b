// Which PostgreSQL to use: DATABASE_URL when set, else the embedded one in `<dataDir>/pg`.
import path from 'node:path';
import pg from 'pg';

export type Database = { connectionString: string; embedded: boolean; stop(): Promise<void> };

export class DatabaseConnectError extends Error {}

export async function resolveDatabase(options: {
  databaseUrl: string | undefined;
  dataDir: string;
  log?: (line: string) => void;
}): Promise<Database> {
  if (options.databaseUrl) {
    return { connectionString: options.databaseUrl, embedded: false, stop: async () => {} };
  }
  const { startEmbedded } = await import('./embedded.ts');
  const db = await startEmbedded({ dataDir: path.join(options.dataDir, 'pg'), log: options.log });
  return { connectionString: db.connectionString, embedded: true, stop: () => db.stop() };
}

/** One pool per process; `max` bounds the connections this process may hold. */
export function createPool(connectionString: string, max = 10): pg.Pool {
  const pool = new pg.Pool({ connectionString, max, connectionTimeoutMillis: 10_000, idleTimeoutMillis: 30_000 });
  // An idle client's error (e.g. the server restarting) must not crash the process.
  pool.on('error', () => {});
  return pool;
}

/** Fails with one line that names the cause when the database cannot be reached. */
export async function checkConnection(pool: pg.Pool, connectionString: string): Promise<void> {
  try {
    await pool.query('SELECT 1');
  } catch (error) {
    throw new DatabaseConnectError(`cannot connect to the database at ${redact(connectionString)}: ${connectReason(error)}`);
  }
}

function connectReason(error: unknown): string {
  const e = error as { code?: string; message?: string };
  switch (e.code) {
    case 'ECONNREFUSED': return 'connection refused (is PostgreSQL running there?)';
    case 'ENOTFOUND': return 'unknown host';
    case 'ETIMEDOUT': return 'connection timed out';
    case '28P01': case '28000': return 'authentication failed (check the user and password)';
    case '3D000': return e.message ?? 'database does not exist';
    default: return e.message ?? String(error);
  }
}

/** A connection string fit for messages and logs: the password is never shown. */
export function redact(connectionString: string): string {
  try {
    const url = new URL(connectionString);
    if (url.password) url.password = '***';
    return url.toString();
  } catch {
    return '(unparseable DATABASE_URL)';
  }
}
