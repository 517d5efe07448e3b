// The scheduled jobs against a real database with a clock the tests move: warnings issued once and
// re-armed by a top-up, dry runs that change nothing, two runners at once, reconciliation through the
// providers' interface, the drift check, and receipts that go out once per payment.
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { runJobs, type JobOutcome } from '../../src/jobs/runner.ts';
import { sendReceipts } from '../../src/jobs/receipts.ts';
import { placePending } from '../../src/ledger/reactor.ts';
import { Hosts } from '../../src/ledger/hosts.ts';
import type { Message } from '../../src/mail/mailer.ts';
import { operator, sshKey, testDatabase, type TestDatabase } from '../support/db.ts';
import { dayMs, fakeProvider, jobDeps, keepingMailer, manualClock, recording, type Clock } from './support.ts';

const t0 = new Date('2031-03-01T00:00:00Z');
const at = (days: number) => new Date(t0.getTime() + days * dayMs);

let db: TestDatabase | undefined;
afterEach(async () => {
  await db?.close();
  db = undefined;
});

async function setUp(): Promise<{ db: TestDatabase; clock: Clock }> {
  const clock = manualClock(t0);
  db = await testDatabase({ now: clock.now });
  return { db, clock };
}

/** $8.00 and one f1-s ($7.16 a month): the credit runs out after 799.5/716 months (rounding half up), 33.99 days. */
async function smallAccount(db: TestDatabase, email: string): Promise<string> {
  await db.ledger.recordPayment({ email, amountCents: 800, cause: operator });
  const { vmId } = await db.ledger.createVm({ email, size: 'f1-s', os: 'debian12', sshPublicKeys: [sshKey], cause: operator });
  return vmId;
}

async function warnings(db: TestDatabase): Promise<{ level: string; at: string; by: string }[]> {
  const { rows } = await db.pool.query(
    `SELECT message_data->>'level' AS level, message_data->>'at' AS at, message_metadata->'by'->>'id' AS by FROM emt_messages
     WHERE message_type = 'BalanceWarningIssued' ORDER BY global_position`,
  );
  return rows;
}

const eventCount = async (db: TestDatabase) => (await db.pool.query('SELECT count(*)::int AS n FROM emt_messages')).rows[0].n as number;
const statuses = (outcomes: JobOutcome[]) => Object.fromEntries(outcomes.map((o) => [o.job, o.status]));
const subjects = (messages: Message[]) => messages.map((m) => m.subject);

describe('balance warnings', () => {
  it('issues the level due once, as an event by the job, then emails it; running again changes nothing', async () => {
    const { db, clock } = await setUp();
    const vmId = await smallAccount(db, 'weekly@example.org');
    const mailer = keepingMailer();
    clock.set(at(26.9));
    const quiet = recording();
    assert.deepEqual(statuses(await runJobs(jobDeps(db, clock, mailer), quiet)), {
      reconcile: 'done',
      'balance-warnings': 'done',
      'warning-emails': 'done',
      drift: 'done',
      incidents: 'done',
      'incident-emails': 'done',
      receipts: 'done',
      'statement-emails': 'done',
    });
    assert.deepEqual(await warnings(db), [], '7.09 days left: not yet within a week');
    assert.equal(mailer.sent.length, 0);

    clock.set(at(28));
    const run = recording();
    await runJobs(jobDeps(db, clock, mailer), run);
    assert.deepEqual(await warnings(db), [{ level: 'runs-out-within-week', at: at(28).toISOString(), by: 'balance-warnings' }]);
    assert.deepEqual(subjects(mailer.to('weekly@example.org')), ['capsul: your credit runs out within a week']);
    const mail = mailer.sent[0]!.text;
    assert.match(mail, /runs out on 2031-04-03 23:45 UTC\. Your balance is \$1\.41\./);
    assert.ok(mail.includes(`${vmId}  f1-s  $7.16 a month`));
    assert.ok(mail.includes('https://capsul.test/console/account-balance'));
    assert.ok(run.lines.includes('warnings: weekly@example.org: runs-out-within-week issued (balance $1.41)'), run.lines.join('\n'));

    const events = await eventCount(db);
    const again = recording();
    await runJobs(jobDeps(db, clock, mailer), again);
    clock.set(at(28.5));
    await runJobs(jobDeps(db, clock, mailer), again);
    assert.equal(await eventCount(db), events, 'nothing more recorded');
    assert.equal(mailer.sent.length, 1, 'nothing more sent');
    assert.deepEqual(again.lines, []);
  });

  it('issues a level again after a top-up re-armed it', async () => {
    const { db, clock } = await setUp();
    const email = 'rearmed@example.org';
    await smallAccount(db, email);
    const mailer = keepingMailer();
    clock.set(at(28));
    const warningJobs = { jobs: ['balance-warnings', 'warning-emails'] as const };
    await runJobs(jobDeps(db, clock, mailer), recording(warningJobs));
    await db.ledger.recordPayment({ email, amountCents: 100, cause: operator });
    // $9.00 lasts 38.3 days: no level now; within a week again from day 31.3.
    await runJobs(jobDeps(db, clock, mailer), recording(warningJobs));
    assert.equal((await warnings(db)).length, 1);
    clock.set(at(32));
    await runJobs(jobDeps(db, clock, mailer), recording(warningJobs));
    assert.deepEqual(
      (await warnings(db)).map((w) => [w.level, w.at]),
      [
        ['runs-out-within-week', at(28).toISOString()],
        ['runs-out-within-week', at(32).toISOString()],
      ],
    );
    assert.deepEqual(subjects(mailer.to(email)), [
      'capsul: your credit runs out within a week',
      'capsul: your credit runs out within a week',
    ]);
  });

  it('keeps an email that fails from holding anything back, and sends it on a later round, once', async () => {
    const { db, clock } = await setUp();
    await smallAccount(db, 'bounce@example.org');
    const mailer = keepingMailer();
    clock.set(at(33.5));
    mailer.failNext(1);
    const jobs = { jobs: ['balance-warnings', 'warning-emails'] as const };
    const run = recording(jobs);
    const outcomes = await runJobs(jobDeps(db, clock, mailer), run);
    assert.deepEqual(statuses(outcomes), { 'balance-warnings': 'done', 'warning-emails': 'done' });
    assert.deepEqual(
      (await warnings(db)).map((w) => w.level),
      ['runs-out-within-day'],
      'the warning is issued whatever the mail server does',
    );
    assert.match(run.logged.join('\n'), /bounce@example\.org: the runs-out-within-day warning's email failed, tried again next round/);
    assert.equal(mailer.sent.length, 0);
    clock.advance(60_000);
    const retry = recording({ jobs: ['warning-emails'] });
    await runJobs(jobDeps(db, clock, mailer), retry);
    assert.deepEqual(subjects(mailer.to('bounce@example.org')), ['capsul: your credit runs out within a day']);
    assert.match(mailer.sent[0]!.text, /Your balance is \$/, 'the figures as of the warning');
    await runJobs(jobDeps(db, clock, mailer), recording(jobs));
    assert.equal(mailer.sent.length, 1, 'sent once');
    assert.equal((await warnings(db)).length, 1, 'issued once');
  });

  it('does not mail a warning more than two days old: its figures are out of date', async () => {
    const { db, clock } = await setUp();
    await smallAccount(db, 'late@example.org');
    const mailer = keepingMailer();
    clock.set(at(28));
    await runJobs(jobDeps(db, clock, mailer), recording({ jobs: ['balance-warnings'] }));
    assert.equal((await warnings(db)).length, 1);
    clock.set(at(30.1));
    await runJobs(jobDeps(db, clock, mailer), recording({ jobs: ['warning-emails'] }));
    assert.equal(mailer.sent.length, 0);
  });
});

describe('a top-up that lands while the job decides', () => {
  it('makes the job decide again on the new balance: no stale warning, no deletion', async () => {
    const { db, clock } = await setUp();
    const email = 'just-in-time@example.org';
    const vmId = await smallAccount(db, email);
    clock.set(at(80)); // -$10.82: deletion now
    const accountId = (await db.ledger.accountIdFor(email))!;
    // The job's first read of the account stream returns, then the customer's payment is recorded,
    // before the job appends what it decided on that read.
    let toppedUp = false;
    const pool = new Proxy(db.pool, {
      get(target, property) {
        if (property !== 'query') {
          const value = Reflect.get(target, property);
          return typeof value === 'function' ? value.bind(target) : value;
        }
        return async (sql: string, params?: unknown[]) => {
          const result = await target.query(sql, params);
          if (!toppedUp && /FROM emt_messages/.test(sql) && params?.[0] === `account-${accountId}`) {
            toppedUp = true;
            await db.ledger.recordPayment({ email, amountCents: 5000, cause: operator });
          }
          return result;
        };
      },
    });
    const mailer = keepingMailer();
    const run = recording({ jobs: ['balance-warnings'] });
    await runJobs(jobDeps(db, clock, mailer, { pool }), run);
    assert.ok(toppedUp);
    assert.deepEqual(await warnings(db), []);
    assert.equal((await db.pool.query('SELECT deleted FROM vms WHERE id = $1', [vmId])).rows[0].deleted, null);
    assert.equal(mailer.sent.length, 0);
    assert.deepEqual(run.lines, []);
    assert.equal(await db.ledger.balanceCents(email), 5000 - 1082);
  });
});

describe('a dry run', () => {
  it('prints each account, level and capsul, and changes nothing: no event, no email, no deletion', async () => {
    const { db, clock } = await setUp();
    const vmId = await smallAccount(db, 'preview@example.org');
    await db.ledger.recordPayment({ email: 'nothing-running@example.org', amountCents: 500, cause: operator });
    const mailer = keepingMailer();
    clock.set(at(80)); // $8.00 − 80 days of $7.16 a month: −$10.82
    const events = await eventCount(db);
    const run = recording({ dryRun: true });
    await runJobs(jobDeps(db, clock, mailer), run);
    assert.equal(await eventCount(db), events);
    assert.equal(mailer.sent.length, 0);
    assert.equal((await db.pool.query('SELECT deleted FROM vms WHERE id = $1', [vmId])).rows[0].deleted, null);
    const accountId = await db.ledger.accountIdFor('preview@example.org');
    assert.deepEqual(
      run.lines.filter((line) => line.startsWith('warnings:')),
      [
        `warnings: preview@example.org (account ${accountId}): deletion-now, balance -$10.82: would warn; would delete for nonpayment (the overdraft is reached)`,
        `warnings:   ${vmId} f1-s $7.16/month: would delete (nonpayment)`,
      ],
    );
  });

  it('evaluates as of a past instant: the balance folded from the events up to then, later ones ignored', async () => {
    const { db, clock } = await setUp();
    const email = 'past@example.org';
    const vmId = await smallAccount(db, email);
    clock.set(at(28));
    await runJobs(jobDeps(db, clock, keepingMailer()), recording({ jobs: ['balance-warnings'] }));
    clock.set(at(30));
    await db.ledger.recordPayment({ email, amountCents: 5000, cause: operator });
    clock.set(at(31));
    const now = recording({ dryRun: true, jobs: ['balance-warnings'] });
    await runJobs(jobDeps(db, clock, keepingMailer()), now);
    assert.deepEqual(now.lines, [], 'topped up: no level now');
    const before = recording({ dryRun: true, jobs: ['balance-warnings'], asOf: at(27.9) });
    await runJobs(jobDeps(db, clock, keepingMailer()), before);
    assert.match(before.lines[0]!, /^warnings: past@example\.org \(account [^)]+\): runs-out-within-week, balance \$1\.44: would warn$/);
    const after = recording({ dryRun: true, jobs: ['balance-warnings'], asOf: at(29) });
    await runJobs(jobDeps(db, clock, keepingMailer()), after);
    assert.match(after.lines[0]!, /runs-out-within-week, balance \$1\.18: warned already$/);
    assert.equal(after.lines[1], `warnings:   ${vmId} f1-s $7.16/month: runs on`);
  });

  it('evaluates as of a future instant: the capsuls running on as they are', async () => {
    const { db, clock } = await setUp();
    await smallAccount(db, 'future@example.org');
    const run = recording({ dryRun: true, jobs: ['balance-warnings'], asOf: at(35) });
    await runJobs(jobDeps(db, clock, keepingMailer()), run);
    // Run out: suspended first, deletion 14 days (GRACE_DAYS) on unless funds are added.
    assert.match(
      run.lines[0]!,
      /future@example\.org .*: out-of-funds, balance -\$0\.23: would warn; would suspend \(deletion after 2031-04-19 00:00 UTC unless funds are added\)$/,
    );
  });

  it('is the only way to evaluate another instant: acting as of one is refused, changing nothing', async () => {
    const { db, clock } = await setUp();
    await smallAccount(db, 'refused@example.org');
    const events = await eventCount(db);
    for (const asOf of [at(40), at(-1)]) {
      await assert.rejects(
        runJobs(jobDeps(db, clock, keepingMailer()), recording({ asOf })),
        /act only at the present instant; add --dry-run/,
      );
    }
    assert.equal(await eventCount(db), events);
  });
});

describe('several runners', () => {
  it("run each job once at a time: one holding a job's lock makes the other skip it", async () => {
    const { db, clock } = await setUp();
    await smallAccount(db, 'twice@example.org');
    clock.set(at(28));
    let release!: () => void;
    let entered!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const inReconcile = new Promise<void>((resolve) => (entered = resolve));
    const provider = fakeProvider('stripe', { gate, entered });
    const mailer = keepingMailer();
    const deps = jobDeps(db, clock, mailer, { providers: [provider] });
    const first = recording();
    const running = runJobs(deps, first);
    await inReconcile;
    const second = recording();
    // Whatever the second run says, the first is let go (else a failed assertion would leave it waiting).
    const outcomes = await runJobs(deps, second).finally(release);
    assert.deepEqual(statuses(outcomes), {
      reconcile: 'skipped',
      'balance-warnings': 'done',
      'warning-emails': 'done',
      drift: 'done',
      incidents: 'done',
      'incident-emails': 'done',
      receipts: 'done',
      'statement-emails': 'done',
    });
    assert.deepEqual(second.logged, ['reconcile: running in another process: skipped']);
    assert.deepEqual(statuses(await running), {
      reconcile: 'done',
      'balance-warnings': 'done',
      'warning-emails': 'done',
      drift: 'done',
      incidents: 'done',
      'incident-emails': 'done',
      receipts: 'done',
      'statement-emails': 'done',
    });
    assert.equal(provider.calls.length, 1);
    assert.equal((await warnings(db)).length, 1);
    assert.deepEqual(subjects(mailer.to('twice@example.org')), ['capsul: your credit runs out within a week']);
  });
});

describe('reconciliation', () => {
  it("asks every provider, with the run's instant and dry-run flag; one that fails keeps neither the others nor the later jobs from running", async () => {
    const { db, clock } = await setUp();
    const failing = fakeProvider('btcpay', { fail: 'BTCPay Server answered 502' });
    const working = fakeProvider('stripe');
    const run = recording();
    const outcomes = await runJobs(jobDeps(db, clock, keepingMailer(), { providers: [failing, working] }), run);
    assert.deepEqual(statuses(outcomes), {
      reconcile: 'failed',
      'balance-warnings': 'done',
      'warning-emails': 'done',
      drift: 'done',
      incidents: 'done',
      'incident-emails': 'done',
      receipts: 'done',
      'statement-emails': 'done',
    });
    assert.equal(outcomes[0]!.error, 'btcpay: BTCPay Server answered 502');
    assert.deepEqual(run.logged, ['reconcile: failed: btcpay: BTCPay Server answered 502']);
    assert.deepEqual(
      working.calls.map((c) => [c.now.toISOString(), c.dryRun]),
      [[t0.toISOString(), false]],
    );
    assert.ok(run.lines.includes('reconcile: stripe: settled nothing'));
    const dry = recording({ dryRun: true, asOf: at(-2), jobs: ['reconcile'] });
    await runJobs(jobDeps(db, clock, keepingMailer(), { providers: [working] }), dry);
    assert.deepEqual(
      working.calls.slice(1).map((c) => [c.now.toISOString(), c.dryRun]),
      [[at(-2).toISOString(), true]],
    );
  });
});

describe('the drift check', () => {
  it("compares each online host's last listing with the ledger, once per incident, and reports open incidents and offline hosts with capsuls", async () => {
    const { db, clock } = await setUp();
    const hosts = new Hosts({ pool: db.pool, now: clock.now });
    await hosts.add({ hostId: 'node-d', memoryMb: 4096, vcpus: 2, cause: operator });
    await db.pool.query(
      `INSERT INTO host_heartbeats VALUES ('node-d', $1, 4096, 2, '[{"vmId": "capsul-stray00001", "state": "running"}]', 'test')`,
      [t0.toISOString()],
    );
    const dry = recording({ dryRun: true, jobs: ['drift'] });
    await runJobs(jobDeps(db, clock, keepingMailer()), dry);
    assert.deepEqual(dry.lines, ['drift: host node-d: would compare its last listing (1 capsuls) with the ledger']);
    assert.deepEqual(await hosts.drift(), []);

    const run = recording({ jobs: ['drift'] });
    await runJobs(jobDeps(db, clock, keepingMailer()), run);
    assert.deepEqual(run.lines, [`drift: host node-d: capsul-stray00001 unexpected-on-host since ${t0.toISOString().slice(0, 19)}Z`]);
    const {
      rows: [detected],
    } = await db.pool.query(
      `SELECT message_metadata->'by' AS by FROM emt_messages WHERE message_type = 'DriftDetected' ORDER BY global_position DESC LIMIT 1`,
    );
    assert.deepEqual(detected.by, { kind: 'job', id: 'drift' }, 'the job names itself as the cause');
    const events = await eventCount(db);
    await runJobs(jobDeps(db, clock, keepingMailer()), recording({ jobs: ['drift'] }));
    assert.equal(await eventCount(db), events, 'an incident is recorded once');

    await db.ledger.recordPayment({ email: 'drift@example.org', amountCents: 5000, cause: operator });
    await db.ledger.createVm({ email: 'drift@example.org', size: 'f1-xs', os: 'debian12', sshPublicKeys: [sshKey], cause: operator });
    assert.equal(await placePending({ pool: db.pool, now: clock.now }), 1);
    clock.advance(60_000);
    const later = recording({ jobs: ['drift'] });
    await runJobs(jobDeps(db, clock, keepingMailer()), later);
    assert.equal(later.lines[0], `drift: host node-d is offline (last heartbeat ${t0.toISOString().slice(0, 19)}Z) with 1 capsuls`);
  });
});

describe('receipts', () => {
  it('sends one receipt per payment credited, with its amount and the balance, and none again', async () => {
    const { db, clock } = await setUp();
    const mailer = keepingMailer();
    const { paymentId } = await db.ledger.recordPayment({
      email: 'paid@example.org',
      amountCents: 2050,
      reference: 'bank-0001',
      cause: operator,
    });
    const dry = recording({ jobs: ['receipts'], dryRun: true });
    await runJobs(jobDeps(db, clock, mailer), dry);
    assert.deepEqual(dry.lines, [`receipts: payment ${paymentId} ($20.50) to paid@example.org: would send`]);
    assert.equal(mailer.sent.length, 0);
    const run = recording({ jobs: ['receipts'] });
    await runJobs(jobDeps(db, clock, mailer), run);
    assert.deepEqual(run.lines, [`receipts: payment ${paymentId} ($20.50) to paid@example.org: sent`]);
    assert.deepEqual(subjects(mailer.sent), [`capsul receipt: $20.50 received (payment ${paymentId})`]);
    assert.match(
      mailer.sent[0]!.text,
      /we received your payment of \$20\.50 on 2031-03-01 00:00 UTC\n\(bank transfer or cash, reference bank-0001\)/,
    );
    assert.match(mailer.sent[0]!.text, /Your balance is now \$20\.50\./);
    await runJobs(jobDeps(db, clock, mailer), recording({ jobs: ['receipts'] }));
    assert.equal(mailer.sent.length, 1);
  });

  it('sends each once when two senders run at the same time', async () => {
    const { db, clock } = await setUp();
    for (const email of ['r1@example.org', 'r2@example.org', 'r3@example.org']) {
      await db.ledger.recordPayment({ email, amountCents: 1000, cause: operator });
    }
    const sent: string[] = [];
    let release!: () => void;
    let entered!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const inFirstSend = new Promise<void>((resolve) => (entered = resolve));
    let first = true;
    const slowMailer = {
      outboxDir: null,
      async send(message: Message) {
        if (first) {
          first = false;
          entered();
          await gate; // holds payment 1's transaction open while the other sender runs
        }
        sent.push(message.to);
      },
    };
    const deps = jobDeps(db, clock, slowMailer);
    const one = sendReceipts(deps, { dryRun: false, report: () => {}, log: () => {} });
    await inFirstSend;
    const two = await sendReceipts(deps, { dryRun: false, report: () => {}, log: () => {} });
    assert.equal(two.sent, 2, 'the other sender skips the payment being sent');
    release();
    assert.equal((await one).sent, 1);
    assert.deepEqual(sent.sort(), ['r1@example.org', 'r2@example.org', 'r3@example.org']);
    assert.equal((await db.pool.query('SELECT count(*)::int AS n FROM payment_receipts')).rows[0].n, 3);
  });

  it('tries a receipt whose sending failed again next round, and skips invalidated and old payments', async () => {
    const { db, clock } = await setUp();
    const mailer = keepingMailer();
    await db.ledger.recordPayment({ email: 'old@example.org', amountCents: 1000, cause: operator });
    clock.set(at(8));
    const { paymentId: bounced } = await db.ledger.recordPayment({ email: 'bounced@example.org', amountCents: 1000, cause: operator });
    await db.ledger.invalidatePayment(bounced, { ...operator, reason: 'chargeback' });
    await db.ledger.recordPayment({ email: 'retry@example.org', amountCents: 1000, cause: operator });
    mailer.failNext(1);
    const run = recording({ jobs: ['receipts'] });
    await runJobs(jobDeps(db, clock, mailer), run);
    assert.equal(mailer.sent.length, 0);
    assert.match(run.logged[0]!, /^receipts: payment \d+ to retry@example\.org: not sent, tried again next round: connect ECONNREFUSED/);
    assert.equal(
      (await db.pool.query('SELECT count(*)::int AS n FROM payment_receipts')).rows[0].n,
      0,
      'the row went with the failed sending',
    );
    await runJobs(jobDeps(db, clock, mailer), recording({ jobs: ['receipts'] }));
    assert.deepEqual(
      mailer.sent.map((m) => m.to),
      ['retry@example.org'],
    );
  });
});
