// Which PostgreSQL to use, and as whom. DATABASE_URL when set, else the embedded one in `<dataDir>/pg`.
// capsul connects as three roles (schema_migrations/11_up_roles.sql), each on connections of its own:
//   admin   DATABASE_URL itself (or the embedded superuser): migrations and rebuild, nothing else;
//   app     capsul_app: the hub, jobs and the commands that change things;
//   reader  capsul_reader: capsul sql, history, balance, audit.
// A role's URL is DATABASE_APP_URL / DATABASE_READER_URL when set; otherwise DATABASE_URL with the user
// swapped and no password, which works where the server trusts the role or ~/.pgpass (PGPASSFILE)
// holds its password. The embedded database gives each role a random password of its own.
import path from 'node:path';
import pg from 'pg';
import { advisoryLocks, withAdvisoryLock } from './advisory-lock.ts';

export const roleNames = { owner: 'capsul_owner', app: 'capsul_app', reader: 'capsul_reader' } as const;
export type Role = 'admin' | 'app' | 'reader';

export type Database = {
  urls: Record<Role, string>;
  embedded: boolean;
  /** the embedded cluster's role passwords, set on the roles once migrations made them */
  rolePasswords?: Record<'capsul_app' | 'capsul_reader', string>;
  stop(): Promise<void>;
  /**
   * The embedded server went away (killed, crashed, stopped by the process that owned it): join it again
   * or start it, on its old port. False when it could only come back on another port, which this
   * process's pools cannot follow.
   */
  recover?(): Promise<boolean>;
};

export class DatabaseConnectError extends Error {}

export async function resolveDatabase(options: {
  databaseUrl: string | undefined;
  appUrl?: string;
  readerUrl?: string;
  dataDir: string;
  log?: (line: string) => void;
}): Promise<Database> {
  if (options.databaseUrl) {
    return {
      urls: {
        admin: options.databaseUrl,
        app: options.appUrl ?? roleUrl(options.databaseUrl, roleNames.app),
        reader: options.readerUrl ?? roleUrl(options.databaseUrl, roleNames.reader),
      },
      embedded: false,
      stop: async () => {},
    };
  }
  const { startEmbedded } = await import('./embedded.ts');
  const start = () => startEmbedded({ dataDir: path.join(options.dataDir, 'pg'), log: options.log });
  let db = await start();
  return {
    urls: {
      admin: db.connectionString,
      app: roleUrl(db.connectionString, roleNames.app, db.rolePasswords.capsul_app),
      reader: roleUrl(db.connectionString, roleNames.reader, db.rolePasswords.capsul_reader),
    },
    embedded: true,
    rolePasswords: db.rolePasswords,
    stop: () => db.stop(),
    async recover() {
      const again = await start();
      if (again.connectionString !== db.connectionString) {
        await again.stop();
        return false;
      }
      db = again;
      return true;
    },
  };
}

/** The same server and database as `url`, as `user` (with `password`, or none: trust or ~/.pgpass). */
export function roleUrl(url: string, user: string, password?: string): string {
  const parsed = new URL(url);
  parsed.username = user;
  parsed.password = password === undefined ? '' : encodeURIComponent(password);
  return parsed.toString();
}

/**
 * Gives the embedded cluster's login roles their passwords (as the superuser, after migrating), in one
 * transaction under a lock: processes starting together would otherwise collide on the same catalogue
 * rows ("tuple concurrently updated").
 */
export async function setRolePasswords(admin: pg.Pool, passwords: Record<string, string>): Promise<void> {
  await withAdvisoryLock(
    admin,
    advisoryLocks.rolePasswords,
    async (client) => {
      for (const [role, password] of Object.entries(passwords)) {
        const { rows } = await client.query(
          `SELECT format('ALTER ROLE %I PASSWORD %L', $1::text, $2::text) AS sql
                                           WHERE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`,
          [role, password],
        );
        if (rows[0]) await client.query(rows[0].sql);
      }
    },
    { scope: 'transaction' },
  );
}

export class RoleError extends Error {}

/**
 * What a role's connection really is: everyday work must not hold powers it does not need, so a
 * superuser, the owner, or (for the reader) the app behind DATABASE_APP_URL / DATABASE_READER_URL is
 * refused rather than used.
 */
export async function checkRole(pool: pg.Pool, role: 'app' | 'reader'): Promise<void> {
  const {
    rows: [who],
  } = await pool.query(
    `SELECT current_user AS name, r.rolsuper OR r.rolbypassrls AS powerful,
            pg_has_role(current_user, 'capsul_owner', 'USAGE') AS owner,
            pg_has_role(current_user, 'capsul_app', 'USAGE') AS app,
            pg_has_role(current_user, 'capsul_reader', 'USAGE') AS reader
     FROM pg_roles r WHERE r.rolname = current_user`,
  );
  const setting = role === 'app' ? 'DATABASE_APP_URL' : 'DATABASE_READER_URL';
  const refuse = (why: string) =>
    new RoleError(
      `the ${role} connection is the role ${who.name}, ${why}: capsul works as ${roleNames[role]} there (set ${setting}, docs/configuration.md)`,
    );
  if (who.powerful) throw refuse('a superuser');
  if (who.owner) throw refuse("which owns capsul's tables");
  if (role === 'reader' && who.app) throw refuse('which may write');
  if (!who[role]) throw refuse(`which is not ${roleNames[role]} nor a member of it`);
}

/** One pool per process; `max` bounds the connections this process may hold. */
export function createPool(connectionString: string, max = 10): pg.Pool {
  const pool = new pg.Pool({
    connectionString,
    max,
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
    // Run by the pool on each new connection before its first user gets it.
    onConnect: async (client) => {
      // A connection that breaks (the server restarting, or killed) must not crash the process: an idle
      // client's error reaches the pool's listener, a checked-out one's its own (a session holding an
      // advisory lock); the query under way, if any, fails with it as usual.
      client.on('error', () => {});
      // Awaited, so no query is ever queued behind it; a server or proxy that refuses it keeps its defaults.
      await client.query(serverKeepalives).catch(() => {});
    },
  });
  pool.on('error', () => {});
  return pool;
}

/**
 * How soon the server ends the session of a process whose machine vanished without closing its
 * connections (power, a network cut): about a minute instead of the system's two hours. The session's
 * advisory locks (placement, the scheduler's leadership, a running job) go with it, so another hub takes
 * over. Per session (SET), so a connection pooler in front of PostgreSQL needs no startup parameter.
 */
export const serverKeepalives = 'SET tcp_keepalives_idle = 30; SET tcp_keepalives_interval = 10; SET tcp_keepalives_count = 3';

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
    case 'ECONNREFUSED':
      return 'connection refused (is PostgreSQL running there?)';
    case 'ENOTFOUND':
      return 'unknown host';
    case 'ETIMEDOUT':
      return 'connection timed out';
    case '28P01':
    case '28000':
      return `${e.message ?? 'authentication failed'} (check the user and password)`;
    case '3D000':
      return e.message ?? 'database does not exist';
    default:
      // node-pg asks ~/.pgpass when a URL has no password and the server wants one.
      if (/client password must be a string/.test(e.message ?? ''))
        return 'the server wants a password and none was given (in the URL or ~/.pgpass)';
      return e.message ?? String(error);
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
