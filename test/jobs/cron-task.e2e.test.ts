// `capsul cron-task` end to end against a real database: a dry run prints each account, level and
// capsul and changes nothing; --now evaluates another instant, with --dry-run only; a real run warns
// once and mails the development outbox. Mostly in process (capsulHere: main(argv, io)); once the real binary.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { projectRoot } from '../support/processes.ts';
import { operator, sshKey, testDatabase, type TestDatabase } from '../support/db.ts';
import { assertRefused } from '../support/processes.ts';
import { capsulHere } from '../support/cli.ts';

const dayMs = 86_400_000;
const email = 'late@example.org';

let db: TestDatabase;
let dataDir: string;
let vmId: string;

type Run = { code: number; stdout: string; stderr: string };

const capsul = (args: string[]) => capsulHere(args, { ...db.env, CAPSUL_DATA_DIR: dataDir });

function capsulBinary(args: string[]): Promise<Run> {
  const env: NodeJS.ProcessEnv = { ...process.env, ...db.env, CAPSUL_DATA_DIR: dataDir };
  delete env.NODE_TEST_CONTEXT;
  delete env.NODE_OPTIONS;
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['bin/capsul.js', ...args], { cwd: projectRoot, env, timeout: 240_000 }, (error, stdout, stderr) => {
      if (error && typeof error.code !== 'number') reject(error);
      else resolve({ code: error ? (error.code as number) : 0, stdout, stderr });
    });
  });
}

const eventCount = async () => (await db.pool.query('SELECT count(*)::int AS n FROM emt_messages')).rows[0].n as number;
const outboxTexts = () =>
  readdirSync(path.join(dataDir, 'outbox'))
    .filter((name) => name.endsWith('.txt'))
    .map((name) => readFileSync(path.join(dataDir, 'outbox', name), 'utf8'));
const outboxFiles = () => readdirSync(path.join(dataDir, 'outbox')).filter((name) => name.endsWith('.eml')).length;

before(async () => {
  // The account was funded and its capsul created 40 days ago: $8.00 less 40 days of $7.16 a month is
  // -$1.41, out of funds (-$10.00 is another 36 days away).
  const past = new Date(Date.now() - 40 * dayMs);
  db = await testDatabase({ now: () => past });
  dataDir = mkdtempSync(path.join(os.tmpdir(), 'capsul-cron-'));
  await db.ledger.recordPayment({ email, amountCents: 800, cause: operator });
  ({ vmId } = await db.ledger.createVm({ email, size: 'f1-s', os: 'debian12', sshPublicKeys: [sshKey], cause: operator }));
});

after(async () => {
  await db.close();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('capsul cron-task', () => {
  it('explains itself with --help', async () => {
    const run = await capsul(['cron-task', '--help']);
    assert.equal(run.code, 0);
    assert.match(run.stdout, /^usage: capsul cron-task \[--dry-run\] \[--now <ISO>\]/);
    assert.match(run.stdout, /--now <ISO> {2}evaluate as of that instant instead .*: with --dry-run only/);
  });

  it('--dry-run prints each account, level and capsul, and changes nothing', async () => {
    const events = await eventCount();
    const run = await capsul(['cron-task', '--dry-run']);
    assert.equal(run.code, 0, run.stderr);
    const accountId = await db.ledger.accountIdFor(email);
    assert.match(
      run.stdout,
      new RegExp(
        `^warnings: late@example\\.org \\(account ${accountId}\\): out-of-funds, balance -\\$1\\.4\\d: would warn; would suspend \\(deletion after \\S+ \\S+ UTC unless funds are added\\)$`,
        'm',
      ),
    );
    assert.match(run.stdout, new RegExp(`^warnings:   ${vmId} f1-s \\$7\\.16/month: would stop \\(suspended\\)$`, 'm'));
    assert.equal(run.stderr, '');
    assert.equal(await eventCount(), events);
  });

  it('--now with --dry-run evaluates another instant: 40 days on, the capsul would be deleted', async () => {
    const later = new Date(Date.now() + 40 * dayMs).toISOString();
    const run = await capsul(['cron-task', '--dry-run', '--now', later]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(
      run.stdout,
      /^warnings: late@example\.org \(account [^)]+\): deletion-now, balance -\$10\.\d\d: would warn; would delete for nonpayment \(the overdraft is reached\)$/m,
    );
    assert.match(run.stdout, new RegExp(`^warnings:   ${vmId} f1-s \\$7\\.16/month: would delete \\(nonpayment\\)$`, 'm'));
  });

  it('refuses --now without --dry-run, in the future or the past, changing nothing', async () => {
    const events = await eventCount();
    assertRefused(
      await capsul(['cron-task', '--now', '2099-01-01']),
      1,
      /^capsul cron-task: --now 2099-01-01T00:00:00\.000Z is in the future: the jobs act only at the present instant; add --dry-run to see what they would do then\n$/,
    );
    assertRefused(
      await capsul(['cron-task', '--now', '2020-01-01T12:00:00Z']),
      1,
      /is in the past: the jobs act only at the present instant/,
    );
    assert.equal(await eventCount(), events);
  });

  it('refuses a --now that is not an instant', async () => {
    assertRefused(await capsul(['cron-task', '--dry-run', '--now', 'tomorrow']), 2, /--now takes an ISO 8601 time like 2020-05-05/);
    assertRefused(await capsul(['cron-task', '--dry-run', '--now', '2031-02-30']), 2, /"2031-02-30" is not a real date/);
  });

  it('the real executable prints the same dry run', async () => {
    const run = await capsulBinary(['cron-task', '--dry-run']);
    assert.equal(run.code, 0, run.stderr);
    assert.match(
      run.stdout,
      /^warnings: late@example\.org \(account [^)]+\): out-of-funds, balance -\$1\.4\d: would warn; would suspend /m,
    );
  });

  it('acts without --dry-run: warns once, as an event by the job, and mails the outbox; again, nothing more', async () => {
    const run = await capsul(['cron-task']);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^warnings: late@example\.org: out-of-funds issued \(balance -\$1\.4\d\)$/m);
    const { rows } = await db.pool.query(
      `SELECT message_data->>'level' AS level, message_metadata->'by' AS by FROM emt_messages WHERE message_type = 'BalanceWarningIssued'`,
    );
    assert.deepEqual(rows, [{ level: 'out-of-funds', by: { kind: 'job', id: 'balance-warnings' } }]);
    // In a month's first week the account's statement for the month before goes out too: find the warning.
    const mail = outboxTexts().find((text) => /^Subject: capsul: you are out of funds$/m.test(text));
    assert.ok(mail, 'the warning is in the outbox');
    assert.ok(mail!.includes(vmId));

    const events = await eventCount();
    const files = outboxFiles();
    const again = await capsul(['cron-task']);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout, '');
    assert.equal(await eventCount(), events);
    assert.equal(outboxFiles(), files);
  });
});
