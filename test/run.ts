// `npm test`: one PostgreSQL server for the whole run, then node's test runner over test/**/*.test.ts.
// DATABASE_URL set → that server (each test file creates databases of its own there, dropped at the
// end); unset → a throwaway embedded PostgreSQL in a temp dir (fsync off), stopped at the end.
// Usage: node --import tsx test/run.ts [unit|int|e2e] [file filter]
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { createPool, setRolePasswords } from '../src/db/database.ts';
import { startEmbedded } from '../src/db/embedded.ts';
import { migrate } from '../src/db/migrate.ts';

const layers = ['unit', 'int', 'e2e'];
const args = process.argv.slice(2);
const layer = args.find((a) => layers.includes(a));
const filter = args.find((a) => !layers.includes(a));

function findTests(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const file = path.join(dir, name);
    if (statSync(file).isDirectory()) return findTests(file);
    return name.endsWith('.test.ts') ? [file] : [];
  });
}

const files = findTests('test')
  .filter((file) => !layer || file.endsWith(`.${layer}.test.ts`))
  .filter((file) => !filter || file.includes(filter))
  .sort();
if (files.length === 0) {
  console.error(`no test files match ${args.join(' ') || '(all)'}`);
  process.exit(1);
}

const runId = `capsul_t${randomBytes(4).toString('hex')}`;
let stopServer = async () => {};
let serverUrl: string;
/** the embedded server's role passwords (the machine's server trusts its local connections) */
let rolePasswords: Record<string, string> | undefined;
const needsDatabase = files.some((file) => !file.endsWith('.unit.test.ts'));

if (needsDatabase) {
  if (process.env.DATABASE_URL) {
    serverUrl = process.env.DATABASE_URL;
    console.error(`tests: using the PostgreSQL server of DATABASE_URL (databases ${runId}_*)`);
  } else {
    const tempDir = mkdtempSync(path.join(os.tmpdir(), 'capsul-test-'));
    const dataDir = path.join(tempDir, 'pg');
    const started = Date.now();
    const db = await startEmbedded({ dataDir, ephemeral: true });
    serverUrl = db.connectionString;
    rolePasswords = db.rolePasswords;
    stopServer = async () => {
      await db.stop();
      rmSync(path.dirname(dataDir), { recursive: true, force: true });
    };
    console.error(`tests: embedded PostgreSQL ready in ${((Date.now() - started) / 1000).toFixed(1)}s`);
  }
  // A migrated template: each test database is a cheap copy of it.
  await adminQuery(`CREATE DATABASE ${runId}_template`);
  const pool = createPool(databaseUrl(`${runId}_template`), 2);
  await migrate(pool);
  if (rolePasswords) await setRolePasswords(pool, rolePasswords);
  await pool.end();
}

function databaseUrl(name: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

async function adminQuery(sql: string): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  try {
    return await client.query(sql);
  } finally {
    await client.end();
  }
}

async function dropRunDatabases(): Promise<void> {
  if (!needsDatabase || !process.env.DATABASE_URL) return;
  const { rows } = await adminQuery(`SELECT datname FROM pg_database WHERE datname LIKE '${runId}%'`);
  for (const { datname } of rows) await adminQuery(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
}

const concurrency = Number(process.env.TEST_CONCURRENCY ?? 4);
// Each test, and each file as a whole, may take ten minutes: the embedded-PostgreSQL file alone takes
// about three on a quiet machine and twice that on a busy one. A test that hangs still fails.
const testTimeoutMs = 600_000;
const child = spawn(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-reporter=spec', `--test-concurrency=${concurrency}`, `--test-timeout=${testTimeoutMs}`, ...files],
  {
    stdio: 'inherit',
    env: {
      ...process.env,
      ...(needsDatabase ? { CAPSUL_TEST_SERVER_URL: serverUrl!, CAPSUL_TEST_RUN_ID: runId } : {}),
      ...(rolePasswords ? { CAPSUL_TEST_ROLE_PASSWORDS: JSON.stringify(rolePasswords) } : {}),
      DATABASE_URL: '', // tests choose their own database; nothing may fall back to a shared one
    },
  },
);
const cleanup = async () => {
  await dropRunDatabases().catch((error) => console.error(`tests: could not drop test databases: ${error.message}`));
  await stopServer();
};
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    child.kill(signal);
  });
}
const code: number = await new Promise((resolve) => child.on('exit', (c, signal) => resolve(c ?? (signal ? 1 : 0))));
await cleanup();
process.exit(code);
