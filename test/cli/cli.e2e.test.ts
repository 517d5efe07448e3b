// `capsul` end to end against a real database: every command, what it prints, its exit code, and what
// it must refuse. Mostly in-process through main(argv, io); a few runs of the real executable.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { commands } from '../../src/cli/commands.ts';
import { accountStream } from '../../src/domain/account/events.ts';
import { vmStream } from '../../src/domain/vm/events.ts';
import type { CliIo } from '../../src/cli/context.ts';
import { main } from '../../src/cli/main.ts';
import { latestVersion } from '../../src/db/migrate.ts';
import { holdPayment } from '../../src/payments/holds.ts';
import { tableNames } from '../../src/projections/tables.ts';
import { editBehindTheLedger, emptyDatabase, sshKey, testDatabase, type TestDatabase } from '../support/db.ts';
import { databaseFingerprint } from '../support/fingerprint.ts';
import { assertRefused } from '../support/processes.ts';
import { vmCommand } from '../support/scenario.ts';

const testCause = { by: { kind: 'operator', id: 'test' } } as const;

const repoDir = fileURLToPath(new URL('../../', import.meta.url));
const monthMs = 3044 * 864_000; // 30.44 days
const refusedUrl = 'postgres://capsul:secret-pw@127.0.0.1:1/nowhere';

let db: TestDatabase;
let dataDir: string;

type Run = { code: number; stdout: string; stderr: string };

/** Runs `capsul <args>` in process, as user alice, against this file's database. */
async function capsul(args: string[], options: { url?: string; user?: string; env?: Record<string, string> } = {}): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const io: CliIo = {
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
    env: { ...db.env, ...(options.url ? { DATABASE_URL: options.url } : {}), CAPSUL_DATA_DIR: dataDir, ...options.env },
    user: options.user ?? 'alice',
    interactive: false,
  };
  const code = await main(args, io);
  return { code, stdout, stderr };
}

/** Runs the real executable, `node bin/capsul.js <args>`. */
function capsulBinary(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...db.env, CAPSUL_DATA_DIR: dataDir, ...env };
  delete childEnv.NODE_TEST_CONTEXT;
  delete childEnv.NODE_OPTIONS;
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['bin/capsul.js', ...args], { cwd: repoDir, env: childEnv, timeout: 240_000 }, (error, stdout, stderr) => {
      if (error && typeof error.code !== 'number') reject(error);
      else resolve({ code: error ? (error.code as number) : 0, stdout, stderr });
    });
  });
}

/** Succeeded, printing exactly `stdout`. */
function assertPrints(run: Run, stdout: string): void {
  assert.equal(run.code, 0, `exit code (stderr: ${run.stderr})`);
  assert.equal(run.stdout, stdout);
}

async function query<T = Record<string, string>>(sql: string, params: unknown[] = []): Promise<T[]> {
  return (await db.pool.query(sql, params)).rows as T[];
}

async function one(sql: string, params: unknown[] = []): Promise<string> {
  const rows = await query(sql, params);
  assert.equal(rows.length, 1, sql);
  return String(Object.values(rows[0]!)[0]);
}

const eventCount = () => one('SELECT count(*)::text FROM emt_messages');

const paymentCount = () => one('SELECT count(*)::text FROM payments');
const vmCount = () => one('SELECT count(*)::text FROM vms');

async function pay(email: string, dollars: string, ...extra: string[]): Promise<number> {
  const run = await capsul(['record-payment', '--email', email, '--dollars', dollars, ...extra]);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /^\d+\n$/);
  return Number(run.stdout);
}

async function createVm(email: string, size = 'f1-xs', ...extra: string[]): Promise<string> {
  const run = await capsul(['create-vm', '--email', email, '--size', size, '--os', 'debian12', '--ssh-key', sshKey, ...extra]);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /^capsul-[a-z0-9]{10}\n$/);
  return run.stdout.trim();
}

/** An OpenSSH ed25519 public key line whose 32 key bytes are all `fill`. */
function ed25519Key(fill: number, comment: string): string {
  const type = Buffer.from('ssh-ed25519');
  const blob = Buffer.alloc(4 + type.length + 4 + 32, fill);
  blob.writeUInt32BE(type.length, 0);
  type.copy(blob, 4);
  blob.writeUInt32BE(32, 4 + type.length);
  return `ssh-ed25519 ${blob.toString('base64')} ${comment}`;
}

/** A timestamp column as epoch milliseconds (events carry millisecond times). */
async function epochMs(sql: string, params: unknown[]): Promise<number> {
  return Number(await one(`SELECT (extract(epoch FROM (${sql})) * 1000)::bigint::text`, params));
}

const iso = (ms: number) => new Date(ms).toISOString();

before(async () => {
  db = await testDatabase();
  dataDir = mkdtempSync(path.join(os.tmpdir(), 'capsul-cli-'));
});

after(async () => {
  await db?.close();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe('capsul --help and usage', () => {
  it('prints the list of commands for --help, -h and help', async () => {
    for (const flag of ['--help', '-h', 'help']) {
      const run = await capsul([flag], { url: refusedUrl });
      assert.equal(run.code, 0);
      assert.equal(run.stderr, '');
      assert.match(run.stdout, /^usage: capsul <command> \[options\]\n/);
      for (const name of [...Object.keys(commands), 'serve']) assert.match(run.stdout, new RegExp(`^  ${name} +\\S`, 'm'), name);
    }
  });

  it('prints the usage and exits 2 with no command', async () => {
    const run = await capsul([], { url: refusedUrl });
    assert.equal(run.code, 2);
    assert.match(run.stdout, /^usage: capsul <command>/);
  });

  it("prints each command's usage for --help and -h, without touching the database", async () => {
    for (const name of [...Object.keys(commands), 'serve']) {
      for (const flag of ['--help', '-h']) {
        const run = await capsul([name, flag], { url: refusedUrl });
        assert.equal(run.code, 0, `${name} ${flag}: ${run.stderr}`);
        assert.equal(run.stderr, '', name);
        assert.ok(run.stdout.startsWith(`usage: capsul ${name}`), `${name} ${flag}: ${run.stdout}`);
        assert.ok(run.stdout.endsWith('\n'));
      }
    }
  });

  it("documents each command's flags in its usage", async () => {
    for (const [name, spec] of Object.entries(commands)) {
      const { stdout } = await capsul([name, '--help'], { url: refusedUrl });
      for (const [option, config] of Object.entries(spec.options)) {
        const flag = config.short ? `-${config.short}` : `--${option}`;
        assert.ok(stdout.includes(flag), `${name} --help mentions ${flag}`);
      }
    }
  });

  it('exits 2 for an unknown command', async () => {
    const run = await capsul(['frobnicate', '--all'], { url: refusedUrl });
    assert.equal(run.code, 2);
    assert.equal(run.stdout, '');
    assert.equal(run.stderr, 'capsul: unknown command "frobnicate" (run "capsul --help" for the list)\n');
  });

  it('exits 2 for an unknown option, a missing value and an extra argument', async () => {
    assertRefused(await capsul(['balance', '--emial', 'a@b.org']), 2, /^capsul balance: .*'--emial'.*\(see capsul balance --help\)\n$/);
    assertRefused(await capsul(['balance', '--email']), 2, /^capsul balance: .*--email.*\(see capsul balance --help\)\n$/);
    assertRefused(
      await capsul(['balance', 'extra', '--email', 'a@b.org']),
      2,
      /^capsul balance: unexpected argument "extra" \(see capsul balance --help\)\n$/,
    );
    assertRefused(await capsul(['delete-vm', 'capsul-aaaaaaaaaa', 'capsul-bbbbbbbbbb']), 2, /unexpected argument "capsul-bbbbbbbbbb"/);
  });

  it('takes a value that starts with a dash as --flag=value, and says so when it is given apart', async () => {
    assertRefused(
      await capsul(['sql', '-c', '-- a comment\nSELECT 1']),
      2,
      /^capsul sql: Option '-c' argument is ambiguous: a value that starts with "-" is given as --command=<value> \(see capsul sql --help\)\n$/,
    );
    assertPrints(await capsul(['sql', '--command=-- a comment\nSELECT 1']), '1\n');
    assertRefused(
      await capsul(['create-vm', '--email', 'a@b.org', '--size', 'f1-xs', '--os', 'debian12', '--ssh-key', '-----BEGIN']),
      2,
      /a value that starts with "-" is given as --ssh-key=<value>/,
    );
  });

  it('says in one line, exit 1, when its database connection is cut in the middle of a command', async () => {
    const running = capsulBinary(['sql', '-c', 'SELECT pg_sleep(60)']);
    // Cut the reader's session from the server's side, as a restart or a network cut would.
    let cut = 0;
    for (let attempt = 0; attempt < 200 && cut === 0; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      const { rows } = await db.admin.query(`SELECT count(*)::int AS n FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE datname = current_database() AND usename = 'capsul_reader' AND query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()) t`);
      cut = rows[0].n;
    }
    assert.equal(cut, 1, "the command's session was found and cut");
    const run = await running;
    assert.equal(run.code, 1);
    assert.equal(run.stdout, '');
    assert.match(run.stderr, /^capsul sql: SQL error: terminating connection due to administrator command\n$/);
  });

  it('says in one line, exit 1, when the database cannot be reached, without showing the password', async () => {
    const run = await capsul(['balance', '--email', 'a@b.org'], { url: refusedUrl });
    assertRefused(
      run,
      1,
      /^capsul balance: cannot connect to the database at postgres:\/\/capsul:\*\*\*@127\.0\.0\.1:1\/nowhere: connection refused/,
    );
    assert.ok(!run.stderr.includes('secret-pw'));
    assertRefused(
      await capsul(['schema-version'], { url: 'mysql://somewhere/db' }),
      1,
      /^capsul schema-version: DATABASE_URL must be a URL starting with postgres:\/\//,
    );
  });
});

describe('capsul sql', () => {
  let paymentId: number;
  let vmId: string;

  before(async () => {
    paymentId = await pay('sql@example.org', '20', '--at', '2020-05-05T00:00:00Z');
    vmId = await createVm('sql@example.org');
  });

  it('runs several statements, one line per row, values joined by ", "', async () => {
    assertPrints(
      await capsul(['sql', '-c', `SELECT 1 AS one; SELECT 'a' AS x, 'b' AS y UNION ALL SELECT 'c', 'd' ORDER BY 1;`]),
      '1\na, b\nc, d\n',
    );
  });

  it('prints the column names first with --header, for each statement', async () => {
    const run = await capsul([
      'sql',
      '--header',
      '-c',
      `SELECT id, dollars_per_month, vcpus FROM vm_sizes WHERE id IN ('f1-xs', 'f1-xx') ORDER BY id; SELECT 1 AS n`,
    ]);
    assertPrints(run, 'id, dollars_per_month, vcpus\nf1-xs, 5.33, 1\nf1-xx, 50.00, 4\nn\n1\n');
  });

  it('formats timestamps in UTC, booleans, numerics and NULL', async () => {
    const run = await capsul([
      'sql',
      '-c',
      `SELECT timestamptz '2020-05-05 02:00:00+02', timestamp '2020-05-05 00:00:00',
      true, false, 20::numeric(10, 2), NULL, 'text', 7, timestamptz '2020-05-05 00:00:00.25+00'`,
    ]);
    assertPrints(run, '2020-05-05T00:00:00, 2020-05-05T00:00:00, TRUE, FALSE, 20.00, , text, 7, 2020-05-05T00:00:00.25\n');
  });

  it("prints the projections with capsul-flask's column names and values", async () => {
    const run = await capsul([
      'sql',
      '--header',
      '-c',
      `SELECT id, created, email, dollars, invalidated FROM payments WHERE id = ${paymentId}`,
    ]);
    assertPrints(run, `id, created, email, dollars, invalidated\n${paymentId}, 2020-05-05T00:00:00, sql@example.org, 20.00, FALSE\n`);
    const vm = await capsul(['sql', '-c', `SELECT id, email, os, size, deleted, state FROM vms WHERE id = '${vmId}'`]);
    assertPrints(vm, `${vmId}, sql@example.org, debian12, f1-xs, , pending\n`);
  });

  it("runs the operators' recipe with DATABASE_URL alone: the roles come from it (and ~/.pgpass where the server wants passwords)", async () => {
    const passwords = JSON.parse(process.env.CAPSUL_TEST_ROLE_PASSWORDS ?? '{}') as Record<string, string>;
    const pgpass = path.join(dataDir, 'pgpass');
    const server = new URL(db.url);
    // A server that trusts local roles needs nothing; the embedded test server wants passwords: a password file.
    writeFileSync(
      pgpass,
      Object.entries(passwords)
        .map(([role, pw]) => `${server.hostname}:${server.port}:*:${role}:${pw}\n`)
        .join(''),
      { mode: 0o600 },
    );
    const run = await capsulBinary(
      ['sql', '-c', `SELECT id, created, email, dollars, invalidated from payments WHERE id = ${paymentId}; SELECT current_user`],
      { DATABASE_URL: db.url, DATABASE_APP_URL: '', DATABASE_READER_URL: '', PGPASSFILE: pgpass },
    );
    assertPrints(run, `${paymentId}, 2020-05-05T00:00:00, sql@example.org, 20.00, FALSE\ncapsul_reader\n`);
  });

  it('prints nothing for a query without rows (its header with --header)', async () => {
    assertPrints(await capsul(['sql', '-c', 'SELECT id FROM payments WHERE false']), '');
    assertPrints(await capsul(['sql', '--header', '-c', 'SELECT id, dollars FROM payments WHERE false']), 'id, dollars\n');
  });

  it('prints "N rows affected." for a statement that returns no rows', async () => {
    assertPrints(await capsul(['sql', '-c', 'DO $$ BEGIN END $$']), '0 rows affected.\n');
  });

  it('reads the statements from a file with -f', async () => {
    const file = path.join(dataDir, 'report.sql');
    writeFileSync(
      file,
      `-- sizes report; two statements\nSELECT id FROM vm_sizes WHERE id = 'f1-m';\n\n/* and; a count */\nSELECT count(*) FROM vm_sizes;\n`,
    );
    assertPrints(await capsul(['sql', '-f', file]), 'f1-m\n6\n');
    assertPrints(await capsul(['sql', '--header', '-f', file]), 'id\nf1-m\ncount\n6\n');
  });

  it('refuses bad input: no SQL, both -c and -f, an unreadable file, comments only, an SQL error', async () => {
    assertRefused(await capsul(['sql']), 2, /^capsul sql: give the SQL with either -c "<SQL>" or -f <file>/);
    assertRefused(await capsul(['sql', '-c', 'SELECT 1', '-f', 'x.sql']), 2, /either -c/);
    assertRefused(await capsul(['sql', '-f', path.join(dataDir, 'missing.sql')]), 1, /^capsul sql: cannot read .*missing\.sql: ENOENT\n$/);
    assertRefused(await capsul(['sql', '-c', '/* nothing */ ;']), 1, /^capsul sql: no SQL statement given\n$/);
    assertRefused(await capsul(['sql', '-c', 'SELEKT 1']), 1, /^capsul sql: SQL error: syntax error at or near "SELEKT"\n$/);
    assertRefused(await capsul(['sql', '-c', `SELECT 'open`]), 1, /^capsul sql: SQL has an unclosed string\n$/);
    assertRefused(await capsul(['sql', '-c', 'SELECT 1;'.repeat(101)]), 1, /at most 100 statements/);
  });

  describe('read-only by privilege: it connects as capsul_reader', () => {
    /** The attack is refused by the database (42501 and friends), whatever the SQL looks like, and changes nothing. */
    async function refusedByTheDatabase(sql: string, pattern: RegExp = /read-only and nothing was changed/) {
      const before = await databaseFingerprint(db.admin);
      const run = await capsul(['sql', '-c', sql]);
      assertRefused(run, 1, pattern);
      assert.deepEqual(await databaseFingerprint(db.admin), before, `${sql} changed something`);
    }

    it('refuses UPDATE payments, changes nothing, and names capsul invalidate-payment', async () => {
      await refusedByTheDatabase(
        'UPDATE payments SET invalidated = true',
        /^capsul sql: capsul sql is read-only and nothing was changed \(.*\): .*capsul invalidate-payment/,
      );
    });

    it('names the command even after a leading comment (as in a -f file)', async () => {
      const file = path.join(dataDir, 'chargeback.sql');
      writeFileSync(file, `-- chargeback, May 2020\nUPDATE payments SET invalidated = true WHERE id = ${paymentId};\n`);
      assertRefused(await capsul(['sql', '-f', file]), 1, /read-only and nothing was changed .*capsul invalidate-payment/);
      assert.equal(await one('SELECT invalidated::text FROM payments WHERE id = $1', [paymentId]), 'false');
    });

    it('refuses DELETE FROM vms and names capsul delete-vm', async () => {
      await refusedByTheDatabase('DELETE FROM vms', /read-only and nothing was changed .*capsul delete-vm/);
    });

    it("refuses writes to the catalogue and to the app's own tables", async () => {
      await refusedByTheDatabase(`INSERT INTO vm_sizes VALUES ('f9-ro', 1, 1, 1, 1)`, /catalogue through a migration/);
      await refusedByTheDatabase(`DELETE FROM sessions`);
    });

    it('refuses changing a held payment, even with --write, and names capsul resolve-hold', async () => {
      const advice = /read-only and nothing was changed .*payment_holds is a projection of the event ledger: .*capsul resolve-hold/;
      await refusedByTheDatabase(`UPDATE payment_holds SET resolved = now()`, advice);
      await refusedByTheDatabase(`DELETE FROM payment_holds`, advice);
      assertRefused(await capsul(['sql', '--write', '-c', `UPDATE payment_holds SET resolved = now()`]), 1, /There is no --write/);
      await refusedByTheDatabase('WITH x AS (UPDATE vm_sizes SET vcpus = 99 RETURNING 1) SELECT * FROM x');
    });

    it("cannot run a program, read or write the server's files, or keep large objects", async () => {
      await refusedByTheDatabase(
        `COPY (SELECT 1) TO PROGRAM 'id > /tmp/capsul-pwned'`,
        /SQL error: permission denied|must be superuser|read-only/,
      );
      await refusedByTheDatabase(`SELECT pg_read_file('/etc/passwd')`, /permission denied/);
      await refusedByTheDatabase(`COPY payments TO '/tmp/capsul-payments.csv'`, /permission denied|must be superuser|read-only/);
      await refusedByTheDatabase(`SELECT lo_import('/etc/passwd')`, /permission denied/);
      await refusedByTheDatabase(`SELECT lo_from_bytea(0, 'kept')`, /permission denied/);
      assert.equal(await one('SELECT count(*)::text FROM pg_largeobject_metadata'), '0');
    });

    it("cannot end other sessions or take the locks the hub's jobs use", async () => {
      const client = await db.pool.connect();
      try {
        const pid = await client.query('SELECT pg_backend_pid() AS pid');
        await refusedByTheDatabase(`SELECT pg_terminate_backend(${pid.rows[0].pid})`, /permission denied/);
        assert.equal((await client.query('SELECT 1 AS alive')).rows[0].alive, 1, "the app's session is still there");
      } finally {
        client.release();
      }
      await refusedByTheDatabase('SELECT pg_advisory_lock(42)', /permission denied/);
    });

    it('cannot lift a guard: replica mode, the projector setting, a DO block, a blinding temporary view', async () => {
      await refusedByTheDatabase('SET session_replication_role = replica', /permission denied/);
      await refusedByTheDatabase(`DO $$ BEGIN SET capsul.projector = 'on'; UPDATE payments SET dollars = 777; END $$`);
      await refusedByTheDatabase(
        `DO $$ BEGIN PERFORM set_config('capsul.projector', 'on', true); UPDATE payments SET dollars = 5000; END $$`,
      );
      await refusedByTheDatabase(
        `DO $$ BEGIN CREATE TEMP VIEW pg_stat_xact_user_tables AS SELECT 0 AS n_tup_ins; UPDATE payments SET dollars = 5000; END $$`,
      );
      await refusedByTheDatabase(
        `DO $$ BEGIN EXECUTE 'SET session_replication_role = replica'; UPDATE emt_messages SET message_data = '{}'; END $$`,
      );
    });

    it('cannot change the event store, its functions, triggers, tables or roles', async () => {
      await refusedByTheDatabase('DELETE FROM emt_messages', /append-only/);
      await refusedByTheDatabase(`INSERT INTO emt_messages (stream_position, transaction_id, stream_id, message_schema_version, message_id,
        message_type, message_data, message_metadata) VALUES (1, pg_current_xact_id(), 'account-forged', '1', 'f', 'PaymentRecorded', '{}', '{}')`);
      await refusedByTheDatabase(`UPDATE emt_streams SET stream_position = stream_position + 1`);
      await refusedByTheDatabase(`SELECT capsul_apply_projection('[]'::jsonb)`, /permission denied/);
      await refusedByTheDatabase(
        `SELECT * FROM capsul_append('account-x', 'account', 0, ARRAY['m'], ARRAY['PaymentRecorded'], ARRAY['{}'::jsonb], ARRAY['{}'::jsonb], '[]')`,
        /permission denied/,
      );
      await refusedByTheDatabase(
        `CREATE OR REPLACE FUNCTION capsul_apply_projection(ops jsonb) RETURNS void LANGUAGE sql AS 'SELECT'`,
        /SQL error|read-only/,
      );
      await refusedByTheDatabase(`ALTER TABLE payments RENAME TO U&"pay\\0064ents"`);
      await refusedByTheDatabase('ALTER TABLE emt_messages DETACH PARTITION emt_messages_emt_default');
      await refusedByTheDatabase('DROP TABLE emt_messages_emt_default_active');
      await refusedByTheDatabase('ALTER TABLE payments DISABLE TRIGGER capsul_projection_guard');
      await refusedByTheDatabase('SET ROLE capsul_app', /permission denied/);
      await refusedByTheDatabase('SET ROLE capsul_owner', /permission denied/);
      await refusedByTheDatabase('ALTER ROLE capsul_reader SUPERUSER', /permission denied|read-only/);
      assert.equal(await one(`SELECT count(*)::text FROM pg_trigger WHERE tgname LIKE 'capsul%' AND tgenabled <> 'O'`), '0');
      assert.equal(
        await one(`SELECT count(*)::text FROM pg_tables WHERE tablename IN ('accounts', 'payments', 'vms', 'emt_messages')`),
        '4',
      );
    });

    it('has no --write: says what to do instead', async () => {
      assertRefused(
        await capsul(['sql', '--write', '-c', `INSERT INTO vm_sizes VALUES ('f9-w', 1, 1, 1, 1)`]),
        1,
        /^capsul sql: capsul sql is read-only: it connects as capsul_reader.*There is no --write: change the catalogue with a migration/,
      );
      assert.equal(await one(`SELECT count(*)::text FROM vm_sizes WHERE id = 'f9-w'`), '0');
    });

    it('refuses to connect as a role with more powers than reading (DATABASE_READER_URL)', async () => {
      const run = await capsul(['sql', '-c', 'SELECT 1'], { env: { DATABASE_READER_URL: db.url } });
      assertRefused(run, 1, /^capsul sql: the reader connection is the role \w+, a superuser: capsul works as capsul_reader there/);
      const app = await capsul(['sql', '-c', 'SELECT 1'], { env: { DATABASE_READER_URL: db.env.DATABASE_APP_URL! } });
      assertRefused(app, 1, /the reader connection is the role capsul_app, which may write/);
    });
  });
});

describe('--known-at: as the ledger knew it (docs/audit.md, "Two clocks")', () => {
  const email = 'late@example.org';
  const mine = `SELECT id, created, dollars FROM payments WHERE email = '${email}' ORDER BY id`;
  let onTime: number;
  let late: number;
  let recordedBefore: string;

  before(async () => {
    onTime = await pay(email, '20', '--at', '2025-11-03T09:00:00Z');
    // A millisecond after the first payment was appended; the next is recorded only later, though it
    // was received in October: a late fact.
    const appended = `SELECT created FROM emt_messages WHERE message_type = 'PaymentRecorded' AND message_data->>'paymentId' = $1`;
    recordedBefore = iso((await epochMs(appended, [String(onTime)])) + 1);
    await new Promise((resolve) => setTimeout(resolve, 5));
    late = await pay(email, '15', '--at', '2025-10-20T12:00:00Z');
  });

  it('shows a late-recorded payment as of its time, but not as known before it was recorded', async () => {
    const both = `${late}, 2025-10-20T12:00:00, 15.00\n${onTime}, 2025-11-03T09:00:00, 20.00\n`;
    const sorted = `SELECT id, created, dollars FROM payments WHERE email = '${email}' ORDER BY created`;
    assertPrints(await capsul(['sql', '--as-of', '2025-12-01', '-c', sorted]), both);
    assertPrints(
      await capsul(['sql', '--as-of', '2025-12-01', '--known-at', recordedBefore, '-c', mine]),
      `${onTime}, 2025-11-03T09:00:00, 20.00\n`,
    );
    assertPrints(await capsul(['sql', '--known-at', recordedBefore, '-c', `SELECT count(*) FROM payments WHERE id = ${late}`]), '0\n');
    assertPrints(await capsul(['sql', '--known-at', iso(Date.now() + 1000), '-c', sorted]), both);
    assertPrints(await capsul(['sql', '--as-of', '2025-10-31', '-c', mine]), `${late}, 2025-10-20T12:00:00, 15.00\n`);
    assertPrints(await capsul(['sql', '--as-of', '2025-10-31', '--known-at', recordedBefore, '-c', mine]), '');
  });

  it('answers balance and history as known then too', async () => {
    assertPrints(await capsul(['balance', '--email', email, '--as-of', '2025-12-01']), '35.00\n');
    assertPrints(await capsul(['balance', '--email', email, '--as-of', '2025-12-01', '--known-at', recordedBefore]), '20.00\n');
    assertPrints(await capsul(['balance', '--email', email, '--as-of', '2025-10-31', '--known-at', recordedBefore]), '0.00\n');
    const events = async (...args: string[]) =>
      (await capsul(['history', '--email', email, ...args])).stdout
        .trim()
        .split('\n')
        .map((line) => line.split('  ')[2]);
    assert.deepEqual(await events(), ['AccountOpened', 'PaymentRecorded', 'PaymentRecorded']);
    assert.deepEqual(await events('--known-at', recordedBefore), ['AccountOpened', 'PaymentRecorded']);
    assert.deepEqual(await events('--as-of', '2025-10-31'), ['AccountOpened', 'PaymentRecorded'], 'the late one, in effect by then');
    const refused = await capsul(['balance', '--email', email, '--known-at', '2020-01-01']);
    assertRefused(refused, 1, /there was no account for late@example.org yet at 2020-01-01T00:00:00.000Z/);
  });
});

describe('capsul sql --as-of', () => {
  const email = 'asof@example.org';
  let first: number;
  let second: number;
  let invalidatedAtMs: number;
  const paymentsOf = `SELECT id, created, dollars, invalidated FROM payments WHERE email = '${email}' ORDER BY id`;

  before(async () => {
    first = await pay(email, '20', '--at', '2020-05-05T00:00:00Z');
    second = await pay(email, '7.50', '--at', '2021-01-01T12:00:00Z');
    assert.equal((await capsul(['invalidate-payment', String(first), '--reason', 'chargeback'])).code, 0);
    invalidatedAtMs = await epochMs('SELECT invalidated_at FROM payments WHERE id = $1', [first]);
  });

  it('shows no payment before the first one was received', async () => {
    assertPrints(await capsul(['sql', '--as-of', '2020-05-04T23:59:59Z', '-c', paymentsOf]), '');
    assertPrints(await capsul(['sql', '--as-of', '2020-05-04', '-c', `SELECT count(*) FROM payments WHERE email = '${email}'`]), '0\n');
  });

  it('shows each payment from the time it was received (--at)', async () => {
    assertPrints(await capsul(['sql', '--as-of', '2020-05-05', '-c', paymentsOf]), `${first}, 2020-05-05T00:00:00, 20.00, FALSE\n`);
    assertPrints(
      await capsul(['sql', '--as-of', '2021-01-01T12:00:00Z', '-c', paymentsOf]),
      `${first}, 2020-05-05T00:00:00, 20.00, FALSE\n${second}, 2021-01-01T12:00:00, 7.50, FALSE\n`,
    );
  });

  it('shows an invalidation as FALSE before its time and TRUE from it', async () => {
    const invalidated = `SELECT invalidated FROM payments WHERE id = ${first}`;
    assertPrints(await capsul(['sql', '--as-of', iso(invalidatedAtMs - 1), '-c', invalidated]), 'FALSE\n');
    assertPrints(await capsul(['sql', '--as-of', iso(invalidatedAtMs), '-c', invalidated]), 'TRUE\n');
  });

  it('shows capsuls from their creation on', async () => {
    const vmId = await createVm('sql@example.org');
    const createdMs = await epochMs('SELECT created FROM vms WHERE id = $1', [vmId]);
    const count = `SELECT count(*) FROM vms WHERE id = '${vmId}'`;
    assertPrints(await capsul(['sql', '--as-of', iso(createdMs - 1), '-c', count]), '0\n');
    assertPrints(await capsul(['sql', '--as-of', iso(createdMs), '-c', count]), '1\n');
  });

  it('leaves the live tables as they are: a write through the history is refused', async () => {
    const write = await capsul(['sql', '--as-of', '2021-06-01', '-c', 'UPDATE payments SET invalidated = false']);
    assertRefused(write, 1, /nothing was changed/);
    assertPrints(
      await capsul(['sql', '-c', paymentsOf]),
      `${first}, 2020-05-05T00:00:00, 20.00, TRUE\n${second}, 2021-01-01T12:00:00, 7.50, FALSE\n`,
    );
  });

  it('refuses a time that is not ISO 8601', async () => {
    assertRefused(await capsul(['sql', '--known-at', 'now', '-c', 'SELECT 1']), 2, /--known-at takes an ISO 8601 time/);
    assertRefused(await capsul(['balance', '--email', email, '--known-at', '2021-13-01']), 2, /--known-at/);
    assertRefused(await capsul(['history', '--email', email, '--known-at', 'then']), 2, /--known-at takes an ISO 8601 time/);
    assertRefused(await capsul(['sql', '--as-of', 'yesterday', '-c', 'SELECT 1']), 2, /--as-of takes an ISO 8601 time/);
    assertRefused(await capsul(['sql', '--as-of', '2021-02-30', '-c', 'SELECT 1']), 2, /is not a real date/);
  });
});

describe('capsul record-payment', () => {
  it("prints the new payment's id alone on stdout", async () => {
    const run = await capsul(['record-payment', '--email', 'pay@example.org', '--dollars', '20']);
    assert.equal(run.code, 0);
    assert.match(run.stdout, /^[1-9]\d*\n$/);
    assert.equal(run.stderr, '');
    const id = Number(run.stdout);
    assert.deepEqual(await query(`SELECT email, dollars::text, invalidated, provider FROM payments WHERE id = $1`, [id]), [
      { email: 'pay@example.org', dollars: '20.00', invalidated: false, provider: 'manual' },
    ]);
  });

  it('records --at as payments.created, in any zone', async () => {
    const id = await pay('pay@example.org', '5.05', '--at', '2020-05-05T14:30:00+02:00');
    assertPrints(await capsul(['sql', '-c', `SELECT created, dollars FROM payments WHERE id = ${id}`]), '2020-05-05T12:30:00, 5.05\n');
  });

  it('refuses amounts that are not positive dollars with at most two decimals, recording nothing', async () => {
    const [payments, events] = [await paymentCount(), await eventCount()];
    for (const dollars of ['abc', '-5', '0', '0.00', '1e3', '20.001', '', '20,00', '$20', '1000000.01']) {
      const run = await capsul(['record-payment', '--email', 'refused@example.org', `--dollars=${dollars}`]);
      assert.notEqual(run.code, 0, dollars);
      assert.equal(run.stdout, '', dollars);
      assert.match(run.stderr, /^capsul record-payment: [^\n]+\n$/, dollars);
    }
    assertRefused(
      await capsul(['record-payment', '--email', 'refused@example.org', '--dollars', 'abc']),
      1,
      /"abc" is not an amount in dollars/,
    );
    assertRefused(await capsul(['record-payment', '--email', 'refused@example.org', '--dollars', '0']), 1, /more than zero/);
    assertRefused(await capsul(['record-payment', '--email', 'refused@example.org', '--dollars', '-5']), 2, /--dollars/);
    assert.equal(await paymentCount(), payments);
    assert.equal(await eventCount(), events);
    assert.equal(await one(`SELECT count(*)::text FROM accounts WHERE email = 'refused@example.org'`), '0');
  });

  it('refuses a bad email, a missing flag, a bad --at, one in the future or before the provider began, an empty --by', async () => {
    const events = await eventCount();
    assertRefused(
      await capsul(['record-payment', '--email', 'not-an-email', '--dollars', '5']),
      1,
      /"not-an-email" is not an email address/,
    );
    assertRefused(await capsul(['record-payment', '--dollars', '5']), 2, /--email is required/);
    assertRefused(await capsul(['record-payment', '--email', 'a@example.org']), 2, /--dollars is required/);
    assertRefused(
      await capsul(['record-payment', '--email', 'a@example.org', '--dollars', '5', '--at', 'May 5']),
      2,
      /--at takes an ISO 8601 time/,
    );
    assertRefused(
      await capsul(['record-payment', '--email', 'a@example.org', '--dollars', '5', '--at', '2999-01-01']),
      1,
      /cannot be received in the future/,
    );
    assertRefused(
      await capsul(['record-payment', '--email', 'a@example.org', '--dollars', '5', '--at', '1900-01-01']),
      1,
      /^capsul record-payment: a payment cannot be received before 2000-01-01, when this provider began \(PROVIDER_START_DATE\)\n$/,
    );
    assertRefused(
      await capsul(['record-payment', '--email', 'a@example.org', '--dollars', '5', '--at', '2019-12-31'], {
        env: { PROVIDER_START_DATE: '2020-01-01' },
      }),
      1,
      /cannot be received before 2020-01-01/,
    );
    assertRefused(
      await capsul(['record-payment', '--email', 'a@example.org', '--dollars', '5', '--by', ' ']),
      2,
      /^capsul record-payment: --by is required \(a name of 1 to 100 visible characters\)/,
    );
    assert.equal(await eventCount(), events);
  });

  it('records a --reference once: again prints the same id and adds nothing', async () => {
    const id = await pay('ref@example.org', '12.34', '--reference', 'ch_3Ab');
    const events = await eventCount();
    const again = await capsul(['record-payment', '--email', 'ref@example.org', '--dollars', '12.34', '--reference', 'ch_3Ab']);
    assert.equal(again.code, 0);
    assert.equal(again.stdout, `${id}\n`);
    assert.match(again.stderr, /already recorded/);
    assert.equal(await one(`SELECT count(*)::text FROM payments WHERE reference = 'ch_3Ab'`), '1');
    assert.equal(await eventCount(), events);
    assertRefused(
      await capsul(['record-payment', '--email', 'ref@example.org', '--dollars', '99', '--reference', 'ch_3Ab']),
      1,
      new RegExp(`reference ch_3Ab was already recorded as payment ${id}`),
    );
    assertRefused(
      await capsul(['record-payment', '--email', 'other@example.org', '--dollars', '12.34', '--reference', 'ch_3Ab']),
      1,
      /for another account/,
    );
    assert.equal(await eventCount(), events);
  });

  it('treats emails case-insensitively: one account', async () => {
    await pay('Foo@X.org', '20');
    await pay('foo@x.org', '1.50');
    await pay(' FOO@x.ORG ', '0.50');
    assert.deepEqual(await query(`SELECT email FROM accounts WHERE lower(email) = 'foo@x.org'`), [{ email: 'foo@x.org' }]);
    assertPrints(await capsul(['sql', '-c', `SELECT DISTINCT email FROM payments WHERE lower(email) = 'foo@x.org'`]), 'foo@x.org\n');
    assertPrints(await capsul(['balance', '--email', 'fOO@X.ORG']), '22.00\n');
  });

  it('records who did it: --by, or else the operating-system user', async () => {
    const byBob = await pay('who@example.org', '1', '--by', 'bob', '--reason', 'bank transfer 42');
    const byAlice = await pay('who@example.org', '2');
    const history = await capsul(['history', '--email', 'who@example.org', '--json']);
    const recorded = history.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line))
      .filter((e) => e.type === 'PaymentRecorded');
    assert.deepEqual(
      recorded.map((e) => [e.data.paymentId, e.by]),
      [
        [byBob, 'operator:bob'],
        [byAlice, 'operator:alice'],
      ],
    );
    assert.equal(recorded[0].reason, 'bank transfer 42');
  });

  it('refuses a --by, --reason or --reference that could forge or hide what history shows, recording nothing', async () => {
    const events = await eventCount();
    const forged = `eve\n2026-12-07T00:00:00.000000Z  account-x  PaymentRecorded  {"amountCents":500000}  operator:boss`;
    assertRefused(
      await capsul(['record-payment', '--email', 'forge@example.org', '--dollars', '1', '--by', forged]),
      2,
      /^capsul record-payment: --by must be one line of visible text: it holds U\+000A at position 4 \(a name of 1 to 100 visible characters\)/,
    );
    assertRefused(
      await capsul(['record-payment', '--email', 'forge@example.org', '--dollars', '1', '--reason', 'x'.repeat(100_000)]),
      1,
      /^capsul record-payment: a reason may be at most 1000 characters\n$/,
    );
    assertRefused(
      await capsul(['record-payment', '--email', 'forge@example.org', '--dollars', '1', '--reason', 'ok\u202Egnp.exe']),
      1,
      /a reason must be one line of visible text: it holds U\+202E/,
    );
    assertRefused(
      await capsul(['record-payment', '--email', 'forge@example.org', '--dollars', '1', '--reference', 'bank\rref']),
      1,
      /a payment reference must be one line of visible text: it holds U\+000D/,
    );
    assert.equal(await eventCount(), events);
  });

  it("shows control characters escaped in history, even in an event written behind capsul's back", async () => {
    const id = await pay('escaped@example.org', '1');
    const client = await db.admin.connect();
    try {
      await client.query('SET session_replication_role = replica');
      await client.query(
        `UPDATE emt_messages SET message_metadata = jsonb_set(message_metadata, '{by,id}', to_jsonb($1::text))
                          WHERE message_type = 'PaymentRecorded' AND message_data->>'paymentId' = $2`,
        ['mallory\n2026-forged\u202E', String(id)],
      );
    } finally {
      await client.query('RESET session_replication_role').catch(() => {});
      client.release();
    }
    const run = await capsul(['history', '--payment', String(id)]);
    assert.equal(run.code, 0, run.stderr);
    const lines = run.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 1, 'one event, one line');
    assert.match(lines[0]!, /operator:mallory\\u000a2026-forged\\u202e$/);
  });
});

describe('capsul resolve-hold', () => {
  it('closes a held payment without credit, once, with who and why; refuses what it cannot close in one line', async () => {
    const noMail = { send: async () => {}, outboxDir: null };
    await holdPayment(
      { pool: db.pool, mailer: noMail, adminEmails: [], now: () => new Date() },
      {
        provider: 'stripe',
        reference: 'pi_cli_hold',
        email: 'h@example.org',
        amountCents: 900,
        expectedCents: null,
        reason: 'amount differs',
      },
    );
    assertRefused(
      await capsul(['resolve-hold', '--provider', 'paypal', '--reference', 'pi_cli_hold', '--reason', 'x']),
      2,
      /--provider is stripe or btcpay/,
    );
    assertRefused(
      await capsul(['resolve-hold', '--provider', 'stripe', '--reference', 'pi_cli_hold', '--reason', ' ']),
      2,
      /--reason is required/,
    );
    assertRefused(
      await capsul(['resolve-hold', '--provider', 'stripe', '--reference', 'pi_nope', '--reason', 'x']),
      1,
      /no held stripe payment pi_nope/,
    );
    const done = await capsul([
      'resolve-hold',
      '--provider',
      'stripe',
      '--reference',
      'pi_cli_hold',
      '--reason',
      'refunded in Stripe',
      '--by',
      'alice',
    ]);
    assert.equal(done.code, 0, done.stderr);
    assert.match(done.stderr, /closed without credit/);
    const { rows } = await db.pool.query(
      `SELECT resolved IS NOT NULL AS closed, resolved_by, resolution FROM payment_holds WHERE reference = 'pi_cli_hold'`,
    );
    assert.deepEqual(rows[0], { closed: true, resolved_by: 'operator:alice', resolution: 'refunded in Stripe' });
    assertRefused(
      await capsul(['resolve-hold', '--provider', 'stripe', '--reference', 'pi_cli_hold', '--reason', 'again']),
      1,
      /closed already/,
    );
  });
});

describe('capsul invalidate-payment and reinstate-payment', () => {
  const email = 'dispute@example.org';
  let id: number;

  before(async () => {
    id = await pay(email, '30');
  });

  it('invalidates a payment: payments.invalidated is TRUE and the balance drops', async () => {
    const run = await capsul(['invalidate-payment', String(id), '--reason', 'chargeback 2020-05', '--by', 'carol']);
    assert.equal(run.code, 0);
    assert.equal(run.stdout, '');
    assert.equal(run.stderr, `payment ${id} invalidated\n`);
    assertPrints(
      await capsul(['sql', '-c', `SELECT invalidated, invalidation_reason FROM payments WHERE id = ${id}`]),
      'TRUE, chargeback 2020-05\n',
    );
    assertPrints(await capsul(['balance', '--email', email]), '0.00\n');
  });

  it('says it already is when invalidated again, adding no event, exit 0', async () => {
    const events = await eventCount();
    const run = await capsul(['invalidate-payment', String(id), '--reason', 'again']);
    assert.equal(run.code, 0);
    assert.equal(run.stdout, '');
    assert.equal(run.stderr, `payment ${id} is already invalidated: nothing changed\n`);
    assert.equal(await eventCount(), events);
    const types = (await capsul(['history', '--payment', String(id), '--json'])).stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l).type);
    assert.deepEqual(types, ['PaymentRecorded', 'PaymentInvalidated']);
  });

  it('reinstates it (a dispute won), once', async () => {
    const run = await capsul(['reinstate-payment', String(id), '--reason', 'dispute won']);
    assert.equal(run.code, 0);
    assert.equal(run.stdout, '');
    assert.equal(run.stderr, `payment ${id} reinstated\n`);
    assertPrints(await capsul(['sql', '-c', `SELECT invalidated, invalidated_at FROM payments WHERE id = ${id}`]), 'FALSE, \n');
    assertPrints(await capsul(['balance', '--email', email]), '30.00\n');
    const events = await eventCount();
    const again = await capsul(['reinstate-payment', String(id), '--reason', 'again']);
    assert.equal(again.code, 0);
    assert.equal(again.stderr, `payment ${id} is valid already: nothing changed\n`);
    assert.equal(await eventCount(), events);
  });

  it('records the reason and who did it', async () => {
    const lines = (await capsul(['history', '--payment', String(id), '--json'])).stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const invalidated = lines.find((e) => e.type === 'PaymentInvalidated');
    assert.equal(invalidated.by, 'operator:carol');
    assert.equal(invalidated.reason, 'chargeback 2020-05', "the reason is the cause's");
    assert.equal(invalidated.data.reason, undefined, 'not copied into the data');
    assert.equal(lines.find((e) => e.type === 'PaymentReinstated').by, 'operator:alice');
  });

  it('refuses an unknown id (exit 1), a missing or empty reason and a bad id (exit 2)', async () => {
    const events = await eventCount();
    for (const command of ['invalidate-payment', 'reinstate-payment']) {
      assertRefused(
        await capsul([command, '999999', '--reason', 'x']),
        1,
        new RegExp(`^capsul ${command}: there is no payment 999999\\n$`),
      );
      assertRefused(await capsul([command, String(id)]), 2, new RegExp(`^capsul ${command}: --reason is required`));
      assertRefused(await capsul([command, String(id), '--reason', '  ']), 2, /--reason is required/);
      assertRefused(await capsul([command, 'abc', '--reason', 'x']), 2, /"abc" is not a payment id/);
      assertRefused(await capsul([command, '0', '--reason', 'x']), 2, /"0" is not a payment id/);
      assertRefused(await capsul([command, '--reason', 'x']), 2, /which payment\?/);
    }
    assert.equal(await eventCount(), events);
    assert.equal(await one('SELECT invalidated::text FROM payments WHERE id = $1', [id]), 'false');
  });
});

describe("capsul invalidate-payment's and reinstate-payment's note to the customer", () => {
  const email = 'told-by-cli@example.org';
  let id: number;

  before(async () => {
    id = await pay(email, '12');
  });

  it('says in --help what the customer sees, and that the reason is never shown to them', async () => {
    for (const [command, note] of [
      ['invalidate-payment', 'payment reversed by your bank or payment provider'],
      ['reinstate-payment', 'the reversal was cancelled'],
    ] as const) {
      const { stdout } = await capsul([command, '--help'], { url: refusedUrl });
      assert.match(stdout, /--customer-note <text>/, command);
      assert.ok(stdout.includes(`Without it the customer sees "${note}"`), command);
      assert.match(stdout, /The customer never sees it\./, command);
    }
  });

  it('keeps --customer-note in the event, which the customer sees, beside the reason, which capsul history shows', async () => {
    const run = await capsul([
      'invalidate-payment',
      String(id),
      '--reason',
      'chargeback dp_42',
      '--customer-note',
      ' Reversed by your card issuer. ',
    ]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stderr, `payment ${id} invalidated\n`);
    const line = (await capsul(['history', '--payment', String(id)])).stdout.trim().split('\n').at(-1)!;
    assert.match(line, /PaymentInvalidated .*"customerNote":"Reversed by your card issuer\."/);
    assert.match(line, /"chargeback dp_42"$/, "the reason, the cause's, ends the line");
    assert.equal(await one('SELECT invalidation_reason FROM payments WHERE id = $1', [id]), 'chargeback dp_42');
  });

  it('refuses a bad note in one line, exit 1, and changes nothing, even when the correction would change nothing', async () => {
    const events = await eventCount();
    for (const [command, note, message] of [
      ['reinstate-payment', 'x'.repeat(201), /^capsul reinstate-payment: a customer note may be at most 200 characters\n$/],
      [
        'reinstate-payment',
        'won\u202Eevil',
        /^capsul reinstate-payment: a customer note must be one line of visible text: it holds U\+202E at position 4\n$/,
      ],
      ['reinstate-payment', 'two\nlines', /^capsul reinstate-payment: a customer note must be one line of visible text: it holds U\+000A/],
      ['invalidate-payment', '   ', /^capsul invalidate-payment: a customer note is required\n$/],
    ] as const) {
      assertRefused(await capsul([command, String(id), '--reason', 'dispute won', '--customer-note', note]), 1, message);
    }
    assert.equal(await eventCount(), events);
    assert.equal(await one('SELECT invalidated::text FROM payments WHERE id = $1', [id]), 'true');
  });
});

describe('capsul serve and the top-up limits', () => {
  it('refuses to start, in one line, when not even the largest top-up pays for a month of the cheapest capsul', async () => {
    const env = {
      CAPSUL_MODE: 'hub',
      STRIPE_SECRET_KEY: 'sk_test_limits',
      STRIPE_WEBHOOK_SECRET: 'whsec_limits',
      TOP_UP_MAX_DOLLARS: '5',
    };
    const run = await capsul(['serve'], { env });
    assert.equal(run.code, 1, run.stderr);
    assert.match(
      run.stderr,
      /^capsul: configuration error: TOP_UP_MAX_DOLLARS \(\$5\.00\) is below a month of the cheapest capsul \(f1-xs, \$5\.33\): no top-up could pay for a capsul$/m,
    );
  });
});

describe('capsul create-vm and delete-vm', () => {
  const email = 'vm@example.org';

  before(async () => {
    await pay(email, '20');
  });

  it('creates a capsul and prints its id alone', async () => {
    const run = await capsul(['create-vm', '--email', 'VM@example.org', '--size', 'f1-s', '--os', 'alpine322', '--ssh-key', sshKey]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^capsul-[a-z0-9]{10}\n$/);
    assert.equal(run.stderr, '');
    const vmId = run.stdout.trim();
    assertPrints(
      await capsul(['sql', '-c', `SELECT email, size, os, dollars_per_month, state, deleted FROM vms WHERE id = '${vmId}'`]),
      'vm@example.org, f1-s, alpine322, 7.16, pending, \n',
    );
  });

  it('takes --ssh-key more than once', async () => {
    const [a, b] = [ed25519Key(1, 'laptop'), ed25519Key(2, 'phone')];
    const vmId = await createVm(email, 'f1-xs', '--ssh-key', a, '--ssh-key', b);
    const keys = await query<{ key: string }>('SELECT unnest(ssh_public_keys) AS key FROM vms WHERE id = $1', [vmId]);
    assert.deepEqual(
      keys.map((r) => r.key),
      [sshKey, a, b],
    );
  });

  it('refuses a capsul the balance does not cover for a month, creating nothing', async () => {
    // 20.00 paid, f1-s (7.16) and f1-xs (5.33) running: 12.49 committed, so f1-m (12.50) does not fit.
    const [vms, events] = [await vmCount(), await eventCount()];
    const run = await capsul(['create-vm', '--email', email, '--size', 'f1-m', '--os', 'debian12', '--ssh-key', sshKey]);
    assertRefused(
      run,
      1,
      /^capsul create-vm: the balance \d+\.\d\d does not cover a month of f1-m \(12\.50\) plus a month of your running capsuls \(12\.49\): add funds first\n$/,
    );
    await pay('poor@example.org', '5');
    assertRefused(
      await capsul(['create-vm', '--email', 'poor@example.org', '--size', 'f1-xs', '--os', 'debian12', '--ssh-key', sshKey]),
      1,
      /^capsul create-vm: the balance 5\.00 does not cover a month of f1-xs \(5\.33\): add funds first\n$/,
    );
    assertRefused(
      await capsul(['create-vm', '--email', 'nobody@example.org', '--size', 'f1-xs', '--os', 'debian12', '--ssh-key', sshKey]),
      1,
      /there is no account for nobody@example\.org/,
    );
    assert.equal(await vmCount(), vms);
    assert.equal(await eventCount(), String(Number(events) + 2), 'only the payment and its account were added');
  });

  it('refuses a bad size, OS or key, and a missing flag, creating nothing', async () => {
    const [vms, events] = [await vmCount(), await eventCount()];
    const base = ['create-vm', '--email', email];
    assertRefused(
      await capsul([...base, '--size', 'f9-huge', '--os', 'debian12', '--ssh-key', sshKey]),
      1,
      /^capsul create-vm: "f9-huge" is not a capsul size: choose one of f1-xs, f1-s, f1-m, f1-l, f1-x, f1-xx\n$/,
    );
    assertRefused(
      await capsul([...base, '--size', 'f1-xs', '--os', 'windows', '--ssh-key', sshKey]),
      1,
      /"windows" is not an OS image: choose one of .*debian12/,
    );
    assertRefused(await capsul([...base, '--size', 'f1-xs', '--os', 'ubuntu22', '--ssh-key', sshKey]), 1, /"ubuntu22" is deprecated/);
    assertRefused(await capsul([...base, '--size', 'f1-xs', '--os', 'debian12', '--ssh-key', 'hunter2']), 1, /is not an SSH public key/);
    assertRefused(await capsul([...base, '--size', 'f1-xs', '--os', 'debian12', '--ssh-key', 'ssh-ed25519 AAAA']), 1, /damaged or missing/);
    assertRefused(
      await capsul([...base, '--size', 'f1-xs', '--os', 'debian12', '--ssh-key', sshKey.replace('ssh-ed25519', 'ssh-rsa')]),
      1,
      /does not match its type/,
    );
    assertRefused(await capsul([...base, '--size', 'f1-xs', '--os', 'debian12']), 2, /--ssh-key is required/);
    assertRefused(await capsul([...base, '--os', 'debian12', '--ssh-key', sshKey]), 2, /--size is required/);
    assertRefused(
      await capsul(['create-vm', '--email', 'bad email', '--size', 'f1-xs', '--os', 'debian12', '--ssh-key', sshKey]),
      1,
      /is not an email address/,
    );
    assert.equal(await vmCount(), vms);
    assert.equal(await eventCount(), events);
  });

  it('deletes a capsul: vms.deleted is set and billing stops; again changes nothing', async () => {
    await pay('delete@example.org', '10');
    const vmId = await createVm('delete@example.org');
    const run = await capsul(['delete-vm', vmId, '--reason', 'customer asked']);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, '');
    assert.equal(run.stderr, `capsul ${vmId}: deletion requested\n`);
    const [vm] = await query(`SELECT deleted IS NOT NULL AS deleted, deletion_reason, state FROM vms WHERE id = $1`, [vmId]);
    assert.deepEqual(vm, { deleted: true, deletion_reason: 'customer asked', state: 'pending' });
    const events = await eventCount();
    const again = await capsul(['delete-vm', vmId]);
    assert.equal(again.code, 0);
    assert.equal(again.stderr, `capsul ${vmId} is already being deleted: nothing changed\n`);
    assert.equal(await eventCount(), events);
    // Charges stop at the deletion: a year on, the balance is what it was then.
    const createdMs = await epochMs('SELECT created FROM vms WHERE id = $1', [vmId]);
    const deletedMs = await epochMs('SELECT deleted FROM vms WHERE id = $1', [vmId]);
    const chargeCents = Math.round((533 * (deletedMs - createdMs)) / monthMs);
    assertPrints(
      await capsul(['balance', '--email', 'delete@example.org', '--as-of', iso(deletedMs + 365 * 86_400_000)]),
      `${((1000 - chargeCents) / 100).toFixed(2)}\n`,
    );
  });

  it('refuses an unknown or missing capsul id', async () => {
    assertRefused(await capsul(['delete-vm', 'capsul-zzzzzzzzzz']), 1, /^capsul delete-vm: there is no capsul capsul-zzzzzzzzzz\n$/);
    assertRefused(await capsul(['delete-vm']), 2, /which capsul\?/);
  });
});

describe('capsul fail-operation', () => {
  it('settles an operation its host will never report the end of as failed, with the operator and the reason; again changes nothing', async () => {
    await pay('stuck@example.org', '10');
    const vmId = await createVm('stuck@example.org');
    const accountId = (await query<{ account_id: string }>('SELECT account_id FROM vms WHERE id = $1', [vmId]))[0]!.account_id;
    const create = '0f8e2c4a-1111-4222-8333-444455556666';
    await vmCommand(db, {
      type: 'PlaceVm',
      data: { vmId, host: 'test-host', operationId: create, context: { accountId, deletionRequested: false } },
      metadata: { now: new Date(), cause: testCause },
    });
    const run = await capsul(['fail-operation', create, '--reason', 'outcome report refused: clock was off', '--by', 'ops-ann']);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, '');
    assert.equal(run.stderr, `operation ${create} (create of capsul ${vmId}): settled as failed\n`);
    const [operation] = await query('SELECT completed IS NOT NULL AS ended, outcome FROM operations WHERE id = $1', [create]);
    assert.deepEqual(operation, { ended: true, outcome: 'failed' });
    const [vm] = await query('SELECT state, failure FROM vms WHERE id = $1', [vmId]);
    assert.deepEqual(vm, { state: 'failed', failure: 'settled as failed by an operator: outcome report refused: clock was off' });
    const history = await capsul(['history', '--vm', vmId, '--json']);
    const failed = history.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line))
      .find((event) => event.type === 'VmFailed');
    assert.equal(failed.by, 'operator:ops-ann');
    assert.equal(failed.reason, 'outcome report refused: clock was off');
    assert.equal(failed.data.operationId, create);

    const before = await databaseFingerprint(db.admin);
    const again = await capsul(['fail-operation', create, '--reason', 'once more']);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stderr, `operation ${create} (create of capsul ${vmId}) has already ended: nothing changed\n`);
    assert.deepEqual(await databaseFingerprint(db.admin), before);
  });

  it('refuses an unknown or malformed operation id, and a missing or forged reason, changing nothing', async () => {
    const before = await databaseFingerprint(db.admin);
    assertRefused(
      await capsul(['fail-operation', '0f8e2c4a-0000-4000-8000-000000000000', '--reason', 'x']),
      1,
      /^capsul fail-operation: there is no operation 0f8e2c4a-0000-4000-8000-000000000000\n$/,
    );
    assertRefused(await capsul(['fail-operation', 'create', '--reason', 'x']), 2, /"create" is not an operation id/);
    assertRefused(await capsul(['fail-operation', '--reason', 'x']), 2, /which operation\?/);
    assertRefused(await capsul(['fail-operation', '0f8e2c4a-0000-4000-8000-000000000000']), 2, /--reason is required/);
    assert.deepEqual(await databaseFingerprint(db.admin), before);
  });
});

describe('capsul history', () => {
  const email = 'history@example.org';
  let paymentId: number;
  let vmId: string;
  // time, stream, type, data, who, and the cause's reason (JSON-quoted) when one was given
  const line = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) {2}(\S+) {2}(\S+) {2}(\{.*\}) {2}(\S+)(?: {2}(".*"))?$/;

  before(async () => {
    paymentId = await pay(email, '15', '--by', 'dave');
    vmId = await createVm(email);
    assert.equal((await capsul(['delete-vm', vmId, '--by', 'erin'])).code, 0);
  });

  it('prints one line per event for a payment: time, stream, type, data, who', async () => {
    const run = await capsul(['history', '--payment', String(paymentId)]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stderr, '');
    const lines = run.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 1);
    const [, , stream, type, data, who] = line.exec(lines[0]!)!;
    assert.match(stream!, /^account-/);
    assert.equal(type, 'PaymentRecorded');
    assert.equal(JSON.parse(data!).paymentId, paymentId);
    assert.equal(JSON.parse(data!).amountCents, 1500);
    assert.equal(who, 'operator:dave');
  });

  it("prints a capsul's events", async () => {
    const run = await capsul(['history', '--vm', vmId]);
    assert.equal(run.code, 0, run.stderr);
    const events = run.stdout
      .trimEnd()
      .split('\n')
      .map((l) => line.exec(l)!);
    assert.deepEqual(
      events.map((m) => [m[3], JSON.parse(m[4]!).vmId, m[5], m[6] ?? null]),
      [
        ['VmCreationRequested', vmId, 'operator:alice', null],
        ['VmDeletionRequested', vmId, 'operator:erin', '"deleted by an operator"'],
      ],
    );
  });

  it("prints an account's events, whatever the email's case", async () => {
    const run = await capsul(['history', '--email', 'History@Example.org']);
    assert.equal(run.code, 0, run.stderr);
    const types = run.stdout
      .trimEnd()
      .split('\n')
      .map((l) => line.exec(l)![3]);
    assert.deepEqual(types, ['AccountOpened', 'PaymentRecorded', 'VmCreationRequested', 'VmDeletionRequested']);
  });

  it('prints every event with --all', async () => {
    const run = await capsul(['history', '--all']);
    assert.equal(run.code, 0, run.stderr);
    const lines = run.stdout.trimEnd().split('\n');
    assert.equal(String(lines.length), await eventCount());
    for (const l of lines) assert.match(l, line);
  });

  it('prints one JSON object per line with --json', async () => {
    const run = await capsul(['history', '--email', email, '--json']);
    assert.equal(run.code, 0, run.stderr);
    const events = run.stdout
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.equal(events.length, 4);
    for (const event of events) {
      for (const key of ['time', 'stream', 'type', 'data', 'by']) assert.ok(key in event, `${key} in ${JSON.stringify(event)}`);
      assert.ok(!Number.isNaN(Date.parse(event.time)));
    }
    assert.deepEqual(
      events.map((e) => e.by),
      ['operator:dave', 'operator:dave', 'operator:alice', 'operator:erin'],
    );
    assert.equal(events[1].data.paymentId, paymentId);
    assert.equal(events[2].data.vmId, vmId);
  });

  it("prints for an account, read through the history index, exactly the lines --all prints of its stream and its capsuls'", async () => {
    const accountId = await one('SELECT id FROM accounts WHERE email = $1', [email]);
    const capsuls = await query<{ id: string }>('SELECT id FROM vms WHERE account_id = $1', [accountId]);
    const streams = new Set([accountStream(accountId), ...capsuls.map((row) => vmStream(row.id))]);
    for (const json of [[], ['--json']]) {
      const streamOf = (line: string) => (json.length > 0 ? JSON.parse(line).stream : line.split('  ')[1]);
      const all = await capsul(['history', '--all', ...json]);
      const expected = all.stdout.split('\n').filter((line) => line !== '' && streams.has(streamOf(line)));
      assert.ok(all.stdout.split('\n').length > expected.length + 1, 'other accounts have events too');
      assertPrints(await capsul(['history', '--email', email, ...json]), `${expected.join('\n')}\n`);
    }
  });

  it('refuses no selector or two (exit 2), and an unknown payment, capsul or email (exit 1)', async () => {
    assertRefused(await capsul(['history']), 2, /choose one of --payment <id>, --vm <id>, --email <email> or --all/);
    assertRefused(await capsul(['history', '--all', '--email', email]), 2, /choose one of/);
    assertRefused(await capsul(['history', '--payment', 'x1']), 2, /"x1" is not a payment id/);
    assertRefused(await capsul(['history', '--payment', '999999']), 1, /^capsul history: there is no payment 999999\n$/);
    assertRefused(await capsul(['history', '--vm', 'capsul-zzzzzzzzzz']), 1, /there is no capsul capsul-zzzzzzzzzz/);
    assertRefused(await capsul(['history', '--email', 'ghost@example.org']), 1, /there is no account for ghost@example\.org/);
  });
});

describe('capsul balance', () => {
  it('prints the balance with two decimals alone', async () => {
    await pay('balance@example.org', '20');
    const run = await capsul(['balance', '--email', 'balance@example.org']);
    assertPrints(run, '20.00\n');
    assert.equal(run.stderr, '');
  });

  it('prints the balance as of a past instant, from when the money was received', async () => {
    await pay('past@example.org', '20', '--at', '2020-05-05T00:00:00Z');
    assertPrints(await capsul(['balance', '--email', 'past@example.org', '--as-of', '2020-05-04T23:59:59.999Z']), '0.00\n');
    assertPrints(await capsul(['balance', '--email', 'past@example.org', '--as-of', '2020-05-05']), '20.00\n');
  });

  it("accrues a capsul's monthly price into the future: $20 with an f1-xs is 14.67 a month (30.44 days) on", async () => {
    const email = 'future@example.org';
    await pay(email, '20');
    const vmId = await createVm(email, 'f1-xs');
    const createdMs = await epochMs('SELECT created FROM vms WHERE id = $1', [vmId]);
    const at = (ms: number) => capsul(['balance', '--email', email, '--as-of', iso(createdMs + ms)]);
    assertPrints(await at(0), '20.00\n');
    assertPrints(await at(monthMs / 2), '17.33\n'); // 2.665 rounds half up, once
    assertPrints(await at(monthMs), '14.67\n');
    assertPrints(await at(2 * monthMs), '9.34\n');
  });

  it('prints a negative balance with its sign', async () => {
    const email = 'negative@example.org';
    await pay(email, '5.33');
    const vmId = await createVm(email, 'f1-xs');
    const createdMs = await epochMs('SELECT created FROM vms WHERE id = $1', [vmId]);
    // 5.84 of f1-xs (5.33 a month) accrue after 584/533 months.
    const run = await capsul(['balance', '--email', email, '--as-of', iso(createdMs + Math.ceil((584 * monthMs) / 533))]);
    assertPrints(run, '-0.51\n');
  });

  it('refuses a missing or unknown email and a bad time', async () => {
    assertRefused(await capsul(['balance']), 2, /--email is required/);
    assertRefused(
      await capsul(['balance', '--email', 'ghost@example.org']),
      1,
      /^capsul balance: there is no account for ghost@example\.org\n$/,
    );
    assertRefused(await capsul(['balance', '--email', 'balance@example.org', '--as-of', 'tomorrow']), 2, /--as-of takes an ISO 8601 time/);
  });
});

describe('capsul rebuild-projections', () => {
  it('rebuilds the projections and their row history from the events and says how many rows and versions', async () => {
    const count = (table: string) => one(`SELECT count(*)::text FROM ${table}`);
    const line = async (suffix: string, unit: string) =>
      (await Promise.all(tableNames.map(async (t) => `${t} ${await count(`${t}${suffix}`)} ${unit}`))).join(', ');
    assertPrints(
      await capsul(['rebuild-projections']),
      `rebuilt: ${await line('', 'rows (0 rewritten)')}\nrow history: ${await line('_history', 'versions (0 histories rewritten)')}\n` +
        `history index: ${await count('account_events')} rows (0 rewritten)\n`,
    );
  });

  it('--verify says they match, exit 0, changing nothing', async () => {
    const events = await eventCount();
    assertPrints(await capsul(['rebuild-projections', '--verify']), 'projections match the events\n');
    assert.equal(await eventCount(), events);
  });

  it("--verify finds a projection edited behind the ledger's back (exit 1), and a rebuild repairs it", async () => {
    const id = await pay('tamper@example.org', '10');
    await editBehindTheLedger(db.admin, 'UPDATE payments SET dollars = 1000 WHERE id = $1', [id]);
    const differ = await capsul(['rebuild-projections', '--verify']);
    assert.equal(differ.code, 1);
    assert.equal(
      differ.stdout,
      'projections DIFFER from the events (rows differing: accounts 0, payments 1, vms 0, hosts 0, operations 0, drift 0, payment_holds 0; ' +
        'rows whose history differs: accounts 0, payments 0, vms 0, hosts 0, operations 0, drift 0, payment_holds 0; history index rows differing: 0)\n',
    );
    assert.equal(await one('SELECT dollars::text FROM payments WHERE id = $1', [id]), '1000.00', '--verify changes nothing');
    const rebuilt = await capsul(['rebuild-projections']);
    assert.equal(rebuilt.code, 0);
    assert.match(rebuilt.stdout, /payments \d+ rows \(1 rewritten\)/);
    assert.equal(await one('SELECT dollars::text FROM payments WHERE id = $1', [id]), '10.00');
    assertPrints(await capsul(['rebuild-projections', '--verify']), 'projections match the events\n');
  });

  it("--verify finds a row history edited behind the ledger's back (exit 1), and a rebuild repairs it", async () => {
    const id = await pay('tamper-history@example.org', '10');
    await editBehindTheLedger(db.admin, 'UPDATE payments_history SET dollars = 1000 WHERE id = $1', [id]);
    const differ = await capsul(['rebuild-projections', '--verify']);
    assert.equal(differ.code, 1);
    assert.match(differ.stdout, /rows whose history differs: accounts 0, payments 1, vms 0/);
    const rebuilt = await capsul(['rebuild-projections']);
    assert.match(rebuilt.stdout, /row history: .*payments \d+ versions \(1 histories rewritten\)/);
    assert.equal(await one('SELECT dollars::text FROM payments_history WHERE id = $1', [id]), '10.00');
    assertPrints(await capsul(['rebuild-projections', '--verify']), 'projections match the events\n');
  });
});

describe('capsul migrate and schema-version', () => {
  it('prints the schema version alone', async () => {
    const run = await capsul(['schema-version']);
    assertPrints(run, `${latestVersion()}\n`);
    assert.equal(run.stderr, '');
  });

  it('migrate on a current database says so and changes nothing', async () => {
    const run = await capsul(['migrate']);
    assertPrints(run, '');
    assert.equal(run.stderr, `schema already at version ${latestVersion()}\n`);
    assertRefused(await capsul(['migrate', '--to', 'latest']), 2, /--to takes a schema version number/);
  });

  it('migrates an empty database up, and down with --to', async () => {
    const empty = await emptyDatabase();
    try {
      const zero = await capsul(['schema-version'], { url: empty.url });
      assertPrints(zero, '0\n');
      assert.equal(zero.stderr, `this code's schema version is ${latestVersion()}\n`);
      const up = await capsul(['migrate'], { url: empty.url });
      assertPrints(up, '');
      assert.match(up.stderr, new RegExp(`schema moved from version 0 to ${latestVersion()}\\n$`));
      assertPrints(await capsul(['schema-version'], { url: empty.url }), `${latestVersion()}\n`);
      const down = await capsul(['migrate', '--to', String(latestVersion() - 1)], { url: empty.url });
      assert.equal(down.code, 0, down.stderr);
      assertPrints(await capsul(['schema-version'], { url: empty.url }), `${latestVersion() - 1}\n`);
      // Every other command migrates up on connecting.
      assertPrints(await capsul(['sql', '-c', 'SELECT count(*) FROM vm_sizes'], { url: empty.url }), '6\n');
      assertPrints(await capsul(['schema-version'], { url: empty.url }), `${latestVersion()}\n`);
    } finally {
      await empty.drop();
    }
  });

  it('refuses a database newer than the code, in one line', async () => {
    const empty = await emptyDatabase();
    try {
      assert.equal((await capsul(['migrate'], { url: empty.url })).code, 0);
      const client = new pg.Client({ connectionString: empty.url });
      await client.connect();
      await client.query('UPDATE schemaversion SET version = version + 1');
      await client.end();
      const newer = latestVersion() + 1;
      const version = await capsul(['schema-version'], { url: empty.url });
      assertPrints(version, `${newer}\n`);
      assertRefused(
        await capsul(['balance', '--email', 'a@example.org'], { url: empty.url }),
        1,
        new RegExp(`^capsul balance: .*schema version ${newer}, newer than this code`),
      );
      assertRefused(await capsul(['migrate'], { url: empty.url }), 1, /newer than this code/);
    } finally {
      await empty.drop();
    }
  });
});

describe('the capsul executable (node bin/capsul.js)', () => {
  it('records a payment and prints its id alone', async () => {
    const run = await capsulBinary(['record-payment', '--email', 'binary@example.org', '--dollars', '20']);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^[1-9]\d*\n$/);
    assert.equal(run.stderr, '');
    assert.equal(await one('SELECT dollars::text FROM payments WHERE id = $1', [Number(run.stdout)]), '20.00');
    const history = await capsulBinary(['history', '--payment', run.stdout.trim(), '--json']);
    assert.equal(history.code, 0, history.stderr);
    assert.match(JSON.parse(history.stdout).by, /^operator:\S+$/, 'defaults --by to the operating-system user');
  });

  it('exits 1 with exactly one line on stderr for an error', async () => {
    const run = await capsulBinary(['invalidate-payment', '999999', '--reason', 'chargeback']);
    assert.equal(run.code, 1);
    assert.equal(run.stdout, '');
    assert.equal(run.stderr, 'capsul invalidate-payment: there is no payment 999999\n');
    const refused = await capsulBinary(['sql', '-c', 'DELETE FROM vms']);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /^capsul sql: [^\n]*capsul delete-vm[^\n]*\n$/);
  });

  it('exits 2 for bad usage and 0 for --help', async () => {
    const usage = await capsulBinary(['balance', '--nope']);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /^capsul balance: [^\n]+\n$/);
    const help = await capsulBinary(['--help'], { DATABASE_URL: refusedUrl });
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /^usage: capsul <command> \[options\]\n/);
    assert.match(help.stdout, /^ {2}record-payment +/m);
  });
});
