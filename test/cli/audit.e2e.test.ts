// `capsul audit` end to end against a real database, in process through main(argv, io): the key, signed
// checkpoints, verification (and the worked example of docs/audit.md: a superuser rewriting a payment),
// the export checked by the standalone verifier as a separate `node` process, inclusion proofs, and the
// leaf index that `history --json` carries.
import assert from 'node:assert/strict';
import { databaseFingerprint } from '../support/fingerprint.ts';
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseCheckpoint } from '../../src/audit/checkpoint.ts';
import { leafText } from '../../src/audit/leaf.ts';
import { sealCommitted } from '../../src/audit/log.ts';
import { MerkleFrontier, leafHash } from '../../src/audit/merkle.ts';
import { generateSignerKey, openNote, verifierKeyFor } from '../../src/audit/note.ts';
import { auditCommands } from '../../src/cli/audit.ts';
import type { CliIo } from '../../src/cli/context.ts';
import { main } from '../../src/cli/main.ts';
import { readAllEvents, type StoredEvent } from '../../src/db/event-store.ts';
import { testDatabase, type TestDatabase } from '../support/db.ts';
import { assertRefused, projectRoot } from '../support/processes.ts';

const logName = 'capsul.test/ledger';
const verifierKeyPattern = /^capsul\.test\/ledger\+[0-9a-f]{8}\+[A-Za-z0-9+/]{44}\n$/;
const refusedUrl = 'postgres://capsul:secret-pw@127.0.0.1:1/nowhere';
const standaloneSource = fileURLToPath(new URL('../../src/audit/standalone/verify-log.mjs', import.meta.url));
const workDir = mkdtempSync(path.join(os.tmpdir(), 'capsul-audit-'));

type Run = { code: number; stdout: string; stderr: string };

/** A capsul installation: a database and a data directory (where the key lives). */
type Site = { db: TestDatabase; dataDir: string; env: Record<string, string> };

let site: Site;
const sites: Site[] = [];

async function newSite(options: { host?: boolean } = {}): Promise<Site> {
  const db = await testDatabase(options);
  const dataDir = mkdtempSync(path.join(workDir, 'data-'));
  const created = { db, dataDir, env: { ...db.env, CAPSUL_DATA_DIR: dataDir, AUDIT_LOG_NAME: logName } };
  sites.push(created);
  return created;
}

/** Runs `capsul <args>` in process against `at`. */
async function capsul(args: string[], at: Site = site, env: Record<string, string> = {}): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const io: CliIo = {
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
    env: { ...at.env, ...env },
    user: 'alice',
    interactive: false,
  };
  const code = await main(args, io);
  return { code, stdout, stderr };
}

/** `node <args>`, as an auditor runs the standalone verifier: no capsul code, no test runner. */
function node(args: string[]): Promise<Run> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.NODE_OPTIONS;
  delete env.NODE_TEST_CONTEXT;
  return new Promise((resolve, reject) => {
    execFile(process.execPath, args, { env, cwd: workDir, timeout: 120_000 }, (error, stdout, stderr) => {
      if (error && typeof error.code !== 'number') reject(error);
      else resolve({ code: error ? (error.code as number) : 0, stdout, stderr });
    });
  });
}

async function pay(at: Site, email: string, dollars: string): Promise<number> {
  const run = await capsul(['record-payment', '--email', email, '--dollars', dollars], at);
  assert.equal(run.code, 0, run.stderr);
  return Number(run.stdout);
}

/** Seals every committed event and signs a checkpoint (waiting long for other test files' transactions). */
async function checkpoint(at: Site): Promise<Run> {
  const run = await capsul(['audit', 'checkpoint', '--wait', '120'], at);
  assert.equal(run.code, 0, run.stderr);
  return run;
}

async function verifierKey(at: Site): Promise<string> {
  const run = await capsul(['audit', 'key'], at);
  assert.equal(run.code, 0, run.stderr);
  return run.stdout.trim();
}

async function one(at: Site, sql: string, params: unknown[] = []): Promise<string> {
  const { rows } = await at.db.admin.query(sql, params);
  assert.equal(rows.length, 1, sql);
  return String(Object.values(rows[0])[0]);
}

/** The leaf index and global position of the event that recorded `paymentId` (leaf null: not sealed). */
async function leafOfPayment(at: Site, paymentId: number): Promise<{ leafIndex: number | null; globalPosition: string }> {
  const { rows } = await at.db.admin.query(
    `SELECT l.leaf_index::text AS leaf, m.global_position::text AS position FROM emt_messages m
     LEFT JOIN capsul_log_leaves l ON l.global_position = m.global_position
     WHERE m.message_type = 'PaymentRecorded' AND m.message_data->>'paymentId' = $1`,
    [String(paymentId)],
  );
  assert.equal(rows.length, 1);
  return { leafIndex: rows[0].leaf === null ? null : Number(rows[0].leaf), globalPosition: rows[0].position };
}

/** The events in commit order, as capsul stores them. */
async function storedEvents(at: Site): Promise<StoredEvent[]> {
  const events: StoredEvent[] = [];
  for await (const batch of readAllEvents(at.db.pool)) events.push(...batch);
  return events;
}

/** The superuser of docs/audit.md's worked example: triggers off for the session, a $20 payment made $5,000. */
async function rewritePayment(at: Site, paymentId: number): Promise<void> {
  const client = await at.db.admin.connect();
  try {
    await client.query('SET session_replication_role = replica');
    const { rowCount } = await client.query(
      `UPDATE emt_messages SET message_data = jsonb_set(message_data, '{amountCents}', '500000')
       WHERE message_type = 'PaymentRecorded' AND message_data->>'paymentId' = $1`,
      [String(paymentId)],
    );
    assert.equal(rowCount, 1);
    await client.query('RESET session_replication_role');
  } finally {
    client.release(true);
  }
}

before(async () => {
  site = await newSite();
});

after(async () => {
  for (const s of sites) await s.db.close();
  rmSync(workDir, { recursive: true, force: true });
});

describe('capsul audit usage', () => {
  it("prints each subcommand's usage for --help, naming its flags, without touching the database", async () => {
    for (const [name, spec] of Object.entries(auditCommands)) {
      const run = await capsul([...name.split(' '), '--help'], site, { DATABASE_URL: refusedUrl });
      assert.equal(run.code, 0, `${name}: ${run.stderr}`);
      assert.equal(run.stderr, '');
      assert.ok(run.stdout.startsWith(`usage: capsul ${name}`), run.stdout);
      for (const option of Object.keys(spec.options)) assert.ok(run.stdout.includes(`--${option}`), `${name} --help names --${option}`);
    }
  });

  it('prints the list of subcommands for capsul audit alone (exit 2) and for --help (exit 0)', async () => {
    const alone = await capsul(['audit'], site, { DATABASE_URL: refusedUrl });
    assert.equal(alone.code, 2);
    assert.match(alone.stdout, /^usage: capsul audit <key\|checkpoint\|verify\|export\|prove>/);
    for (const name of Object.keys(auditCommands)) assert.match(alone.stdout, new RegExp(`^  ${name} +\\S`, 'm'), name);
    const help = await capsul(['audit', '--help'], site, { DATABASE_URL: refusedUrl });
    assert.equal(help.code, 0);
    assert.equal(help.stdout, alone.stdout);
  });

  it('exits 2 for an unknown subcommand, in one line', async () => {
    assertRefused(
      await capsul(['audit', 'nope'], site, { DATABASE_URL: refusedUrl }),
      2,
      /^capsul: unknown command "audit nope" \(run "capsul audit --help" for the list\)\n$/,
    );
  });
});

describe('capsul audit key', () => {
  it('creates the signing key once (mode 0600, a file outside the database) and prints the same verifier key every time', async () => {
    const dataDir = mkdtempSync(path.join(workDir, 'key-'));
    const keyFile = path.join(dataDir, 'audit', 'log.key');
    const first = await capsul(['audit', 'key'], site, { CAPSUL_DATA_DIR: dataDir });
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, verifierKeyPattern);
    assert.equal(first.stderr, `created the log's signing key in ${keyFile}: back it up, and publish the verifier key below\n`);
    assert.equal(statSync(keyFile).mode & 0o777, 0o600);
    const signerKey = readFileSync(keyFile, 'utf8');
    assert.match(signerKey, /^PRIVATE\+KEY\+capsul\.test\/ledger\+[0-9a-f]{8}\+\S+\n$/);
    assert.equal(`${verifierKeyFor(signerKey.trim())}\n`, first.stdout);
    for (let i = 0; i < 3; i++) {
      const again = await capsul(['audit', 'key'], site, { CAPSUL_DATA_DIR: dataDir });
      assert.deepEqual(again, { code: 0, stdout: first.stdout, stderr: '' });
    }
    assert.equal(readFileSync(keyFile, 'utf8'), signerKey, 'the key file is never rewritten');
  });

  it('gives two commands creating it at once on a fresh directory the same key', async () => {
    for (let round = 0; round < 10; round++) {
      const dataDir = mkdtempSync(path.join(workDir, 'race-'));
      const runs = await Promise.all([1, 2].map(() => capsul(['audit', 'key'], site, { CAPSUL_DATA_DIR: dataDir })));
      for (const run of runs) {
        assert.equal(run.code, 0, `round ${round}: ${run.stderr}`);
        assert.match(run.stdout, verifierKeyPattern);
      }
      assert.equal(runs[0]!.stdout, runs[1]!.stdout, `round ${round}: the same key`);
      assert.equal(
        runs.filter((run) => run.stderr.startsWith("created the log's signing key")).length,
        1,
        `round ${round}: one of them created it`,
      );
      assert.equal(`${verifierKeyFor(readFileSync(path.join(dataDir, 'audit', 'log.key'), 'utf8').trim())}\n`, runs[0]!.stdout);
    }
  });

  it('gives separate processes creating it at the same moment the same key (4 processes, 50 fresh directories)', async () => {
    // Each worker imports main() first, then runs `audit key` on the directory it is sent: the four start
    // together, as hubs and commands started at once on a new machine do.
    const workerCode = `
      import { createInterface } from 'node:readline';
      const { main } = await import(${JSON.stringify(new URL('../../src/cli/main.ts', import.meta.url).href)});
      process.stdout.write('ready\\n');
      for await (const line of createInterface({ input: process.stdin })) {
        let out = '', err = '';
        const io = { stdout: { write: (t) => (out += t) }, stderr: { write: (t) => (err += t) }, env: { ...process.env, CAPSUL_DATA_DIR: line }, interactive: false };
        const code = await main(['audit', 'key'], io);
        process.stdout.write(JSON.stringify({ code, stdout: out, stderr: err }) + '\\n');
      }`;
    const env: NodeJS.ProcessEnv = { ...process.env, AUDIT_LOG_NAME: logName };
    delete env.NODE_OPTIONS;
    delete env.NODE_TEST_CONTEXT;
    const workers = Array.from({ length: 4 }, () => {
      const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', workerCode], {
        cwd: projectRoot,
        env,
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (chunk) => (stderr += chunk));
      const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
      const next = async () => {
        const line = await lines.next();
        if (line.done) throw new Error(`a worker ended: ${stderr}`);
        return line.value;
      };
      return { child, next };
    });
    try {
      for (const worker of workers) assert.equal(await worker.next(), 'ready');
      const failures: string[] = [];
      for (let round = 0; round < 50; round++) {
        const dataDir = mkdtempSync(path.join(workDir, 'processes-'));
        for (const worker of workers) worker.child.stdin.write(`${dataDir}\n`);
        const runs = (await Promise.all(workers.map((worker) => worker.next()))).map((line) => JSON.parse(line) as Run);
        const keys = new Set(runs.map((run) => run.stdout));
        if (runs.some((run) => run.code !== 0) || keys.size !== 1) {
          const refused = runs.filter((run) => run.code !== 0).map((run) => `exit ${run.code}: ${run.stderr.trim()}`);
          failures.push(`round ${round}: ${keys.size} different outputs; ${refused.join(' | ')}`);
        }
      }
      assert.deepEqual(failures, [], `every process gets the one key:\n${failures.join('\n')}`);
    } finally {
      for (const worker of workers) {
        worker.child.stdin.end();
        worker.child.kill();
      }
    }
  });
});

describe('capsul audit checkpoint', () => {
  it('refuses an empty log in one line', async () => {
    const empty = await newSite({ host: false });
    assert.equal(await one(empty, 'SELECT count(*)::text FROM emt_messages'), '0');
    assertRefused(
      await capsul(['audit', 'checkpoint'], empty),
      1,
      /^capsul audit checkpoint: the log is empty: there is nothing to sign yet\n$/,
    );
    assert.equal(await one(empty, 'SELECT count(*)::text FROM capsul_log_checkpoints'), '0');
  });

  it('seals every event, prints a signed note that openNote verifies with the key, stores it and keeps it beside the key', async () => {
    const key = await verifierKey(site);
    await pay(site, 'checkpoint@example.org', '20');
    await pay(site, 'checkpoint@example.org', '7.50');
    const run = await checkpoint(site);
    const events = await storedEvents(site);
    assert.equal(run.stderr, `sealed ${events.length} new events; the log has ${events.length} leaves\n`);
    const { text, signatures } = openNote(run.stdout, [key]);
    assert.equal(signatures.length, 1);
    const body = parseCheckpoint(text);
    assert.equal(body.origin, logName);
    assert.equal(body.treeSize, events.length);
    // The signed root is the RFC 6962 root of the events' leaves, in commit order.
    const frontier = new MerkleFrontier();
    for (const stored of events) frontier.append(leafHash(Buffer.from(leafText(stored), 'utf8')));
    assert.ok(body.rootHash.equals(frontier.root()), 'the root signs the events as stored');
    const { rows } = await site.db.admin.query(
      'SELECT tree_size::text AS size, note FROM capsul_log_checkpoints ORDER BY tree_size DESC LIMIT 1',
    );
    assert.deepEqual({ ...rows[0] }, { size: String(events.length), note: run.stdout });
    assert.equal(readFileSync(path.join(site.dataDir, 'audit', 'latest-checkpoint'), 'utf8'), run.stdout);
    // The signing key is only in its file: no row of any table holds its secret part.
    // PRIVATE+KEY+<name>+<hash>+<base64 seed>: the seed's base64 may itself hold '+'.
    const secret = readFileSync(path.join(site.dataDir, 'audit', 'log.key'), 'utf8')
      .trim()
      .split('+')
      .slice(4)
      .join('+');
    assert.equal(secret.length, 44);
    const seedHex = Buffer.from(secret, 'base64').subarray(1).toString('hex');
    const tables = (await site.db.admin.query(`SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'`))
      .rows;
    for (const { relname } of tables) {
      // As text, or as bytes (a bytea column shows them in hex).
      const found = await one(site, `SELECT count(*)::text FROM "${relname}" t WHERE strpos(t::text, $1) > 0 OR strpos(t::text, $2) > 0`, [
        secret,
        seedHex,
      ]);
      assert.equal(found, '0', `${relname} holds the signing key`);
    }
  });

  it('signs the same note again when nothing new was committed, and stores no second one', async () => {
    const first = await checkpoint(site);
    const count = await one(site, 'SELECT count(*)::text FROM capsul_log_checkpoints');
    const again = await checkpoint(site);
    assert.equal(again.stdout, first.stdout);
    assert.match(again.stderr, /^sealed 0 new events; the log has \d+ leaves\n$/);
    assert.equal(await one(site, 'SELECT count(*)::text FROM capsul_log_checkpoints'), count);
  });
});

describe('capsul audit verify', () => {
  before(async () => {
    await pay(site, 'verify@example.org', '12');
    await checkpoint(site);
  });

  it('exits 0 on an intact log: "log intact: …"', async () => {
    const leaves = await one(site, 'SELECT count(*)::text FROM capsul_log_leaves');
    const checkpoints = await one(site, 'SELECT count(*)::text FROM capsul_log_checkpoints');
    const run = await capsul(['audit', 'verify']);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stderr, '');
    assert.equal(run.stdout, `log intact: ${leaves} leaves match their events and ${checkpoints} signed checkpoints\n`);
    const withKey = await capsul(['audit', 'verify', '--key', await verifierKey(site)]);
    assert.equal(withKey.code, 0, withKey.stdout);
  });

  it('says how many newer events are not sealed yet, still exit 0', async () => {
    await pay(site, 'verify@example.org', '1');
    const run = await capsul(['audit', 'verify']);
    assert.equal(run.code, 0, run.stderr);
    assert.match(
      run.stdout,
      /^log intact: \d+ leaves match their events and \d+ signed checkpoints, [1-9]\d* newer events not sealed yet\n$/,
    );
    await checkpoint(site);
  });

  it('with --key another key of the same name: a signature finding for every checkpoint, exit 1', async () => {
    const impostor = generateSignerKey(logName).verifierKey;
    const checkpoints = Number(await one(site, 'SELECT count(*)::text FROM capsul_log_checkpoints'));
    const run = await capsul(['audit', 'verify', '--key', impostor]);
    assert.equal(run.code, 1);
    const lines = run.stdout.trimEnd().split('\n');
    assert.equal(lines.filter((line) => /^SIGNATURE: checkpoint \d+ \(signed [^)]+\): /.test(line)).length, checkpoints, run.stdout);
    assert.match(run.stderr, /^capsul audit verify: the log does NOT match the events: \d+ findings? above\n$/);
  });

  it('without any verifier key: a one-line refusal, exit 1', async () => {
    const nowhere = path.join(workDir, 'no-such-dir', 'log.key');
    assertRefused(
      await capsul(['audit', 'verify'], site, { AUDIT_KEY_FILE: nowhere }),
      1,
      new RegExp(
        `^capsul audit verify: no verifier key: pass --key .*there is no key file at ${nowhere.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\n$`,
      ),
    );
  });
});

describe('capsul audit export, checked by the standalone verifier', () => {
  let dir: string;
  let key: string;

  before(async () => {
    await pay(site, 'export@example.org', '3.21');
    await checkpoint(site);
    key = await verifierKey(site);
    dir = path.join(workDir, 'export-1');
    const run = await capsul(['audit', 'export', '--out', dir]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, '');
    const leaves = await one(site, 'SELECT count(*)::text FROM capsul_log_leaves');
    const checkpoints = await one(site, 'SELECT count(*)::text FROM capsul_log_checkpoints');
    assert.equal(
      run.stderr,
      `exported ${leaves} leaves and ${checkpoints} checkpoints to ${dir}: check them with node ${dir}/verify-log.mjs ${dir}\n`,
    );
  });

  it("writes leaves.jsonl: line i is exactly leaf i's canonical bytes, hashing to its stored leaf", async () => {
    const text = readFileSync(path.join(dir, 'leaves.jsonl'), 'utf8');
    assert.ok(text.endsWith('\n'));
    const lines = text.slice(0, -1).split('\n');
    const byPosition = new Map((await storedEvents(site)).map((stored) => [stored.globalPosition, stored]));
    const { rows: leaves } = await site.db.admin.query(
      'SELECT leaf_index::text AS i, global_position::text AS g, leaf_hash AS h FROM capsul_log_leaves ORDER BY leaf_index',
    );
    assert.equal(lines.length, leaves.length);
    for (const [i, leaf] of leaves.entries()) {
      assert.equal(leaf.i, String(i));
      const stored = byPosition.get(leaf.g);
      assert.ok(stored, `leaf ${i}'s event is in the store`);
      assert.equal(lines[i], leafText(stored), `line ${i} is leaf ${i}'s bytes`);
      assert.ok(
        createHash('sha256').update(Buffer.of(0)).update(lines[i]!, 'utf8').digest().equals(leaf.h),
        `line ${i} hashes to leaf ${i}`,
      );
    }
  });

  it('writes every signed checkpoint, the verifier key, the verifier itself and a README', async () => {
    const { rows } = await site.db.admin.query('SELECT note FROM capsul_log_checkpoints ORDER BY tree_size');
    const files = readdirSync(path.join(dir, 'checkpoints')).sort();
    assert.deepEqual(
      files.map((file) => readFileSync(path.join(dir, 'checkpoints', file), 'utf8')),
      rows.map((row) => row.note),
    );
    assert.equal(readFileSync(path.join(dir, 'verifier.key'), 'utf8'), `${key}\n`);
    assert.ok(
      readFileSync(path.join(dir, 'verify-log.mjs')).equals(readFileSync(standaloneSource)),
      'verify-log.mjs is the standalone verifier',
    );
    const readme = readFileSync(path.join(dir, 'README.txt'), 'utf8');
    assert.ok(readme.includes(`${rows.length} signed checkpoints`), readme);
    assert.ok(readme.includes(key));
    assert.deepEqual(readdirSync(dir).sort(), ['README.txt', 'checkpoints', 'leaves.jsonl', 'verifier.key', 'verify-log.mjs']);
  });

  it('refuses a directory that is not empty, changing nothing in it', async () => {
    const busy = path.join(workDir, 'busy');
    mkdirSync(busy);
    writeFileSync(path.join(busy, 'mine.txt'), 'keep me');
    assertRefused(
      await capsul(['audit', 'export', '--out', busy]),
      1,
      /^capsul audit export: .*busy is not empty: export into a new folder\n$/,
    );
    assert.deepEqual(readdirSync(busy), ['mine.txt']);
    assert.equal(readFileSync(path.join(busy, 'mine.txt'), 'utf8'), 'keep me');
    assertRefused(await capsul(['audit', 'export']), 2, /--out/);
  });

  it('passes the standalone verifier (node verify-log.mjs DIR --key K), exit 0', async () => {
    const run = await node([path.join(dir, 'verify-log.mjs'), dir, '--key', key]);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const leaves = await one(site, 'SELECT count(*)::text FROM capsul_log_leaves');
    const checkpoints = Number(await one(site, 'SELECT count(*)::text FROM capsul_log_checkpoints'));
    assert.match(
      run.stdout,
      new RegExp(
        `^OK: ${leaves} leaves; ${checkpoints} checkpoints? signed by capsul\\.test/ledger\\+[0-9a-f]{8}, all matching \\(largest size ${leaves}\\)$`,
        'm',
      ),
    );
  });

  it('fails the standalone verifier with another key of the same name', async () => {
    const run = await node([path.join(dir, 'verify-log.mjs'), dir, '--key', generateSignerKey(logName).verifierKey]);
    assert.equal(run.code, 1, run.stdout + run.stderr);
    assert.match(run.stdout, /^FAILED: /m);
  });
});

describe('capsul audit prove', () => {
  let key: string;
  let paymentId: number;

  before(async () => {
    key = await verifierKey(site);
    paymentId = await pay(site, 'prove@example.org', '42');
    await pay(site, 'prove@example.org', '1');
    await checkpoint(site);
  });

  it('prints one JSON object that node verify-log.mjs --proof accepts', async () => {
    const run = await capsul(['audit', 'prove', '--payment', String(paymentId)]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stderr, '');
    assert.match(run.stdout, /^\{[^\n]*\}\n$/, 'one line');
    const proof = JSON.parse(run.stdout);
    const { leafIndex, globalPosition } = await leafOfPayment(site, paymentId);
    const latest = (
      await site.db.admin.query('SELECT tree_size::text AS size, note FROM capsul_log_checkpoints ORDER BY tree_size DESC LIMIT 1')
    ).rows[0];
    assert.equal(proof.paymentId, paymentId);
    assert.equal(proof.leafIndex, leafIndex);
    assert.equal(String(proof.globalPosition), globalPosition);
    assert.equal(proof.treeSize, Number(latest.size));
    assert.equal(proof.checkpoint, latest.note);
    const stored = (await storedEvents(site)).find((e) => e.globalPosition === globalPosition)!;
    assert.equal(proof.leaf, leafText(stored));
    const file = path.join(workDir, `payment-${paymentId}.json`);
    writeFileSync(file, run.stdout);
    const checked = await node([standaloneSource, '--proof', file, '--key', key]);
    assert.equal(checked.code, 0, checked.stdout + checked.stderr);
    assert.match(checked.stdout, new RegExp(`^OK: leaf ${leafIndex} is in capsul\\.test/ledger's log at size ${latest.size} `));
    assert.ok(checked.stdout.includes(`\n${proof.leaf}\n`));
    // The same proof for a leaf that says something else does not verify.
    const forged = path.join(workDir, `payment-${paymentId}-forged.json`);
    writeFileSync(forged, JSON.stringify({ ...proof, leaf: proof.leaf.replace('"amountCents":4200', '"amountCents":420000') }));
    assert.notEqual(JSON.parse(readFileSync(forged, 'utf8')).leaf, proof.leaf);
    assert.equal((await node([standaloneSource, '--proof', forged, '--key', key])).code, 1);
  });

  it('refuses an unknown payment, and one not yet in a checkpoint, in one line', async () => {
    assertRefused(await capsul(['audit', 'prove', '--payment', '999999']), 1, /^capsul audit prove: there is no payment 999999\n$/);
    const unsealed = await pay(site, 'prove@example.org', '2');
    assertRefused(
      await capsul(['audit', 'prove', '--payment', String(unsealed)]),
      1,
      new RegExp(
        `^capsul audit prove: payment ${unsealed}'s event is not in a signed checkpoint yet: run capsul audit checkpoint, then ask again\\n$`,
      ),
    );
    // Sealed into the log, but the latest signed checkpoint is older: still not provable.
    const sealedOnly = await pay(site, 'prove@example.org', '3');
    await sealCommitted(site.db.pool, { waitMs: 120_000 });
    assert.equal(typeof (await leafOfPayment(site, sealedOnly)).leafIndex, 'number');
    assertRefused(
      await capsul(['audit', 'prove', '--payment', String(sealedOnly)]),
      1,
      new RegExp(`^capsul audit prove: payment ${sealedOnly}'s event is not in a signed checkpoint yet`),
    );
    assertRefused(await capsul(['audit', 'prove']), 2, /^capsul audit prove: which payment\? .*\(see capsul audit prove --help\)\n$/);
    await checkpoint(site);
  });
});

describe('capsul history --json and the log', () => {
  it("carries globalPosition and leafIndex: null before sealing, the leaf's index after", async () => {
    const paymentId = await pay(site, 'history@example.org', '9');
    const line = async () => {
      const run = await capsul(['history', '--payment', String(paymentId), '--json']);
      assert.equal(run.code, 0, run.stderr);
      const lines = run.stdout.trimEnd().split('\n');
      assert.equal(lines.length, 1);
      return JSON.parse(lines[0]!);
    };
    const before = await line();
    const { globalPosition } = await leafOfPayment(site, paymentId);
    assert.equal(String(before.globalPosition), globalPosition);
    assert.equal(before.leafIndex, null);
    await checkpoint(site);
    const after = await line();
    const { leafIndex } = await leafOfPayment(site, paymentId);
    assert.equal(typeof after.leafIndex, 'number');
    assert.equal(after.leafIndex, leafIndex);
    assert.equal(String(after.globalPosition), globalPosition);
    const all = await capsul(['history', '--all', '--json']);
    for (const event of all.stdout
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l))) {
      assert.ok('globalPosition' in event && 'leafIndex' in event, JSON.stringify(event));
    }
  });
});

describe('the worked example of docs/audit.md: a superuser rewrites a payment', () => {
  let victim: Site;
  let key: string;
  let paymentId: number;
  let leaf: { leafIndex: number | null; globalPosition: string };
  let earlierExport: string;

  before(async () => {
    victim = await newSite();
    key = await verifierKey(victim);
    await pay(victim, 'first@example.org', '5');
    paymentId = await pay(victim, 'victim@example.org', '20');
    await pay(victim, 'victim@example.org', '1.25');
    await checkpoint(victim);
    earlierExport = path.join(workDir, 'victim-before');
    assert.equal((await capsul(['audit', 'export', '--out', earlierExport], victim)).code, 0);
    await pay(victim, 'later@example.org', '3');
    await checkpoint(victim);
    leaf = await leafOfPayment(victim, paymentId);
    assert.equal(typeof leaf.leafIndex, 'number');
    assert.equal((await capsul(['audit', 'verify'], victim)).code, 0);
    await rewritePayment(victim, paymentId);
  });

  it('audit verify exits 1 naming exactly that event: ALTERED: leaf <i> (global position <g>, …)', async () => {
    const run = await capsul(['audit', 'verify'], victim);
    assert.equal(run.code, 1, run.stdout);
    const lines = run.stdout.trimEnd().split('\n');
    const altered = lines.filter((line) => line.startsWith('ALTERED: '));
    assert.equal(altered.length, 1, run.stdout);
    assert.ok(
      altered[0]!.startsWith(`ALTERED: leaf ${leaf.leafIndex} (global position ${leaf.globalPosition}, PaymentRecorded in account-`),
      altered[0],
    );
    assert.ok(
      lines.some((line) => /^CHECKPOINT: checkpoint \d+ \(signed [^)]+\) does not match the events/.test(line)),
      run.stdout,
    );
    assert.ok(!run.stdout.includes('log intact'));
    assert.match(run.stderr, /^capsul audit verify: the log does NOT match the events: \d+ findings above\n$/);
  });

  it('rebuild-projections and rebuild-projections --verify refuse in one line, changing nothing', async () => {
    const before = await databaseFingerprint(victim.db.admin);
    // It names the altered leaf, or a signed checkpoint the events no longer reproduce (rebuild checks the tree only).
    const refusal = new RegExp(
      '^capsul rebuild-projections: the events no longer match the signed log, so nothing was rebuilt: ' +
        `(leaf ${leaf.leafIndex} \\(global position ${leaf.globalPosition}, |checkpoint \\d+ \\(signed [^)]+\\) does not match the events)`,
    );
    assertRefused(await capsul(['rebuild-projections'], victim), 1, refusal);
    assertRefused(await capsul(['rebuild-projections', '--verify'], victim), 1, refusal);
    assert.deepEqual(await databaseFingerprint(victim.db.admin), before);
    assert.equal(
      await one(victim, 'SELECT dollars::text FROM payments WHERE id = $1', [paymentId]),
      '20.00',
      'the projection still shows what was paid',
    );
  });

  it('a new export fails the standalone verifier; --against the earlier export names the exact leaf', async () => {
    const now = path.join(workDir, 'victim-after');
    assert.equal((await capsul(['audit', 'export', '--out', now], victim)).code, 0);
    const verifier = path.join(now, 'verify-log.mjs');
    const alone = await node([verifier, now, '--key', key]);
    assert.equal(alone.code, 1, alone.stdout + alone.stderr);
    assert.match(alone.stdout, /^FAIL checkpoint checkpoints\/\d+ \(size \d+\): root mismatch/m);
    assert.match(alone.stdout, /^FAILED: /m);
    const against = await node([verifier, now, '--key', key, '--against', earlierExport]);
    assert.equal(against.code, 1, against.stdout + against.stderr);
    assert.match(
      against.stdout,
      new RegExp(
        `^FAIL leaf ${leaf.leafIndex} differs from the earlier export \\(altered\\): now "[^\\n]*\\\\"amountCents\\\\":500000`,
        'm',
      ),
    );
    assert.match(against.stdout, new RegExp(`^FAILED: leaf ${leaf.leafIndex} differs from the earlier export \\(altered\\)`, 'm'));
    // The earlier export, kept elsewhere, still verifies: it is the evidence.
    assert.equal((await node([path.join(earlierExport, 'verify-log.mjs'), earlierExport, '--key', key])).code, 0);
  });
});

describe('an event altered after it was sealed, before the next signed checkpoint', () => {
  // The hub seals every 2 seconds and signs every AUDIT_CHECKPOINT_SECONDS (60): between the two, a
  // sealed event has a leaf but no signed root yet.
  let victim: Site;
  let paymentId: number;
  let leaf: { leafIndex: number | null; globalPosition: string };

  before(async () => {
    victim = await newSite();
    await verifierKey(victim);
    await pay(victim, 'signed@example.org', '20');
    await checkpoint(victim);
    paymentId = await pay(victim, 'sealed@example.org', '7');
    await sealCommitted(victim.db.pool, { waitMs: 120_000 });
    leaf = await leafOfPayment(victim, paymentId);
    assert.equal(typeof leaf.leafIndex, 'number', 'sealed');
    const signedSize = Number(await one(victim, 'SELECT max(tree_size)::text FROM capsul_log_checkpoints'));
    assert.ok(leaf.leafIndex! >= signedSize, 'not yet under a signed checkpoint');
    await rewritePayment(victim, paymentId);
  });

  it('audit verify names it: ALTERED: leaf <i> (global position <g>, …), exit 1', async () => {
    const run = await capsul(['audit', 'verify'], victim);
    assert.equal(run.code, 1, run.stdout);
    assert.match(
      run.stdout,
      new RegExp(`^ALTERED: leaf ${leaf.leafIndex} \\(global position ${leaf.globalPosition}, PaymentRecorded in account-`, 'm'),
    );
  });

  it('rebuild-projections refuses to rebuild over it (as its usage and docs/audit.md promise), changing nothing', async () => {
    const before = await databaseFingerprint(victim.db.admin);
    const run = await capsul(['rebuild-projections'], victim);
    assertRefused(
      run,
      1,
      new RegExp(
        `^capsul rebuild-projections: the events no longer match the signed log, so nothing was rebuilt: leaf ${leaf.leafIndex} \\(global position ${leaf.globalPosition}, `,
      ),
    );
    assert.deepEqual(await databaseFingerprint(victim.db.admin), before);
    assert.equal(
      await one(victim, 'SELECT dollars::text FROM payments WHERE id = $1', [paymentId]),
      '7.00',
      'the projection still shows what was paid',
    );
  });
});
