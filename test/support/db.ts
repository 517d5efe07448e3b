// A database of the test's own, copied from the run's migrated template (see test/run.ts). Its `pool`
// works as capsul_app, as the hub does, so every test meets the database's real privileges; `admin`
// (the server's superuser) is for what only an owner or a superuser may do, such as the attacks that
// the guards and the log must stop or reveal.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { createPool, roleNames, roleUrl, type Role } from '../../src/db/database.ts';
import { Hosts } from '../../src/ledger/hosts.ts';
import { Ledger } from '../../src/ledger/ledger.ts';
import { historyIndexTable } from '../../src/projections/history-index.ts';
import { historyTable, tableNames } from '../../src/projections/tables.ts';

export type TestDatabase = {
  name: string;
  /** the superuser's URL (DATABASE_URL for a capsul process) */
  url: string;
  /** capsul_app's connections */
  pool: pg.Pool;
  /** the superuser's connections (created on first use) */
  readonly admin: pg.Pool;
  ledger: Ledger;
  /** what a capsul process needs to reach this database as each of its roles */
  env: Record<string, string>;
  close(): Promise<void>;
};

function server(): { url: string; runId: string } {
  const url = process.env.CAPSUL_TEST_SERVER_URL;
  const runId = process.env.CAPSUL_TEST_RUN_ID;
  if (!url || !runId) throw new Error('database tests run through npm test (test/run.ts), which provides the server');
  return { url, runId };
}

/** The URL of database `name` as `role` (admin: the server's superuser). */
export function urlFor(name: string, role: Role = 'admin'): string {
  const url = new URL(server().url);
  url.pathname = `/${name}`;
  if (role === 'admin') return url.toString();
  const passwords = JSON.parse(process.env.CAPSUL_TEST_ROLE_PASSWORDS ?? '{}') as Record<string, string>;
  return roleUrl(url.toString(), roleNames[role], passwords[roleNames[role]]);
}

/** DATABASE_URL and the role URLs a capsul process needs for database `name`. */
export function envFor(name: string): Record<string, string> {
  return { DATABASE_URL: urlFor(name), DATABASE_APP_URL: urlFor(name, 'app'), DATABASE_READER_URL: urlFor(name, 'reader') };
}

export async function admin<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: server().url });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** An empty database (no schema at all), for migration tests. */
export async function emptyDatabase(): Promise<{ name: string; url: string; drop(): Promise<void> }> {
  const name = `${server().runId}_${process.pid}_${randomBytes(3).toString('hex')}`;
  await admin((c) => c.query(`CREATE DATABASE ${name}`));
  return { name, url: urlFor(name), drop: () => admin((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(() => {}) };
}

/** A migrated database with a pool and the ledger, all of the test's own. */
export async function testDatabase(options: { now?: () => Date; poolSize?: number; host?: boolean } = {}): Promise<TestDatabase> {
  const { runId } = server();
  const name = `${runId}_${process.pid}_${randomBytes(3).toString('hex')}`;
  // CREATE DATABASE … TEMPLATE needs the template to be idle: retry briefly if another file is copying it.
  for (let attempt = 1; ; attempt++) {
    try {
      await admin((c) => c.query(`CREATE DATABASE ${name} TEMPLATE ${runId}_template`));
      break;
    } catch (error) {
      if (attempt >= 50 || (error as { code?: string }).code !== '55006') throw error;
      await new Promise((resolve) => setTimeout(resolve, 50 + Math.random() * 100));
    }
  }
  const url = urlFor(name);
  const pool = createPool(urlFor(name, 'app'), options.poolSize ?? 10);
  let adminPool: pg.Pool | undefined;
  const ledger = new Ledger({ pool, now: options.now });
  // A registered host with plenty of room (it never heartbeats, so nothing is placed on it): capsul
  // creation checks that some host could take the capsul.
  if (options.host !== false) await new Hosts({ pool }).add({ hostId: 'test-host', memoryMb: 1_000_000, vcpus: 1000, cause: operator });
  return {
    name,
    url,
    pool,
    ledger,
    env: envFor(name),
    get admin() {
      adminPool ??= createPool(url, 4);
      return adminPool;
    },
    async close() {
      await pool.end().catch(() => {});
      await adminPool?.end().catch(() => {});
      await admin((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).catch(() => {});
    },
  };
}

export const operator = { by: { kind: 'operator' as const, id: 'test' } };

export const sshKey = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGd3Fq8n5yR7t0fB1xQx6hWlC6cR3r2M7sVtqyq3b2kP test@capsul';

/**
 * What verifyProjections answers when every projection, its row history and the history index equal a
 * replay of the events: found by digest, with no relation compared row by row.
 */
export const projectionsMatch = {
  matches: true,
  differences: {
    ...Object.fromEntries(tableNames.flatMap((table) => [[table, 0] as const, [historyTable(table), 0] as const])),
    [historyIndexTable]: 0,
  },
  comparedRowByRow: [],
};

/**
 * Runs `sql` as the owner with the projector's setting on, in a transaction of its own: an edit of a
 * projection or its history that no event explains (what rebuild and verify must find and repair).
 */
export async function editBehindTheLedger(owner: pg.Pool, sql: string | string[], params?: unknown[]): Promise<void> {
  const client = await owner.connect();
  try {
    await client.query('BEGIN');
    await client.query(`SELECT set_config('capsul.projector', 'on', true)`);
    for (const statement of typeof sql === 'string' ? [sql] : sql) await client.query(statement, params);
    await client.query('COMMIT');
  } finally {
    client.release();
  }
}
