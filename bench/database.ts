// The bench's own database, thrown away at the end: a fresh `capsul_bench_<random>` on the server of
// DATABASE_URL (dropped after), or else a throwaway embedded PostgreSQL in a temp dir (fsync off).
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { redact } from '../src/db/database.ts';
import { startEmbedded, type EmbeddedDatabase } from '../src/db/embedded.ts';

export type BenchDatabase = {
  /** the superuser's URL: migrations, seeding, rebuild, emmett's raw appends */
  url: string;
  /** the embedded server's role passwords (a server of DATABASE_URL is expected to trust local roles) */
  rolePasswords?: Record<string, string>;
  /** for the summary: where the numbers come from */
  description: string;
  drop(): Promise<void>;
};

export async function benchDatabase(databaseUrl: string | undefined, log: (line: string) => void): Promise<BenchDatabase> {
  if (databaseUrl) return freshDatabaseOn(databaseUrl, log);
  const tempDir = mkdtempSync(path.join(os.tmpdir(), 'capsul-bench-'));
  chmodSync(tempDir, 0o755); // as root, the server runs as the postgres user, which must enter it
  const started = Date.now();
  let embedded: EmbeddedDatabase;
  try {
    embedded = await startEmbedded({ dataDir: path.join(tempDir, 'pg'), ephemeral: true });
  } catch (error) {
    rmSync(tempDir, { recursive: true, force: true });
    throw error;
  }
  log(`embedded PostgreSQL ready in ${((Date.now() - started) / 1000).toFixed(1)}s (throwaway, fsync off)`);
  const server = await serverDescription(embedded.connectionString);
  let dropped = false;
  return {
    url: embedded.connectionString,
    rolePasswords: embedded.rolePasswords,
    description: `throwaway embedded ${server}`,
    async drop() {
      if (dropped) return;
      dropped = true;
      await embedded.stop();
      rmSync(tempDir, { recursive: true, force: true });
    },
  };
}

async function freshDatabaseOn(serverUrl: string, log: (line: string) => void): Promise<BenchDatabase> {
  const name = `capsul_bench_${randomBytes(4).toString('hex')}`;
  await admin(serverUrl, (c) => c.query(`CREATE DATABASE ${name}`));
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  log(`created database ${name} on ${redact(serverUrl)}`);
  const server = await serverDescription(url.toString());
  let dropped = false;
  return {
    url: url.toString(),
    description: `${server} at ${url.host}, database ${name}`,
    async drop() {
      if (dropped) return;
      dropped = true;
      await admin(serverUrl, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
      log(`dropped database ${name}`);
    },
  };
}

async function admin<T>(connectionString: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end().catch(() => {});
  }
}

/** "PostgreSQL 15.20 (fsync=on, synchronous_commit=on)" */
async function serverDescription(connectionString: string): Promise<string> {
  return admin(connectionString, async (c) => {
    const { rows } = await c.query(
      `SELECT current_setting('server_version') AS version, current_setting('fsync') AS fsync,
              current_setting('synchronous_commit') AS sync, current_setting('shared_buffers') AS buffers`,
    );
    const r = rows[0];
    return `PostgreSQL ${String(r.version).split(' ')[0]} (fsync=${r.fsync}, synchronous_commit=${r.sync}, shared_buffers=${r.buffers})`;
  });
}
