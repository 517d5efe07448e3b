// The monthly statement emails against a real database with a clock the tests move: the month just
// ended mailed once to each account with something in it, not to one whose customer opted out, tried
// again after the mail server refused, only in the first days of the next month, and a dry run that
// sends and writes nothing.
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { runJobs } from '../../src/jobs/runner.ts';
import { statementMonthDue } from '../../src/jobs/statement-emails.ts';
import { operator, sshKey, testDatabase, type TestDatabase } from '../support/db.ts';
import { jobDeps, keepingMailer, manualClock, recording, type Clock } from './support.ts';

let db: TestDatabase | undefined;
afterEach(async () => {
  await db?.close();
  db = undefined;
});

const alice = 'alice@example.org';
const bob = 'bob@example.org';
const carol = 'carol@example.org';
const provider = { name: 'Example Hosting Co-op', addressLines: ['1 Example Street'] };

/** alice: $20.00 and an f1-s from 25 October; carol: $5.00, and she opts out; bob: from 5 November. */
async function setUp(): Promise<{ db: TestDatabase; clock: Clock }> {
  const clock = manualClock(new Date('2026-10-20T12:00:00Z'));
  db = await testDatabase({ now: clock.now });
  await db.ledger.recordPayment({ email: alice, amountCents: 2000, cause: operator });
  await db.ledger.recordPayment({ email: carol, amountCents: 500, cause: operator });
  const carolId = (await db.ledger.accountIdFor(carol))!;
  await db.ledger.chooseStatementEmails(carol, false, { by: { kind: 'customer', id: carolId } });
  clock.set(new Date('2026-10-25T00:00:00Z'));
  await db.ledger.createVm({ email: alice, size: 'f1-s', os: 'debian12', sshPublicKeys: [sshKey], cause: operator });
  clock.set(new Date('2026-11-05T00:00:00Z'));
  await db.ledger.recordPayment({ email: bob, amountCents: 1234, cause: operator });
  return { db, clock };
}

const rows = async (db: TestDatabase) =>
  (await db.pool.query('SELECT month, outcome FROM statement_emails s JOIN accounts a ON a.id = s.account_id ORDER BY month, a.email'))
    .rows;

describe('statement emails', () => {
  it('mails the month just ended once to each account with something in it, not to one that opted out', async () => {
    const { db, clock } = await setUp();
    const mailer = keepingMailer();
    const deps = jobDeps(db, clock, mailer, { provider });
    clock.set(new Date('2026-11-01T00:01:00Z'));
    const run = recording({ jobs: ['statement-emails'] });
    await runJobs(deps, run);
    assert.equal(mailer.sent.length, 1);
    const [message] = mailer.to(alice);
    assert.equal(message!.subject, 'capsul statement for October 2026: closing balance $18.35');
    assert.match(message!.text, /^Example Hosting Co-op\n1 Example Street\n/m);
    assert.match(message!.text, /^2026-10-01 00:00 +Opening balance +\$0\.00$/m);
    assert.match(message!.text, /^2026-11-01 00:00 +Closing balance +\$18\.35$/m);
    assert.match(message!.text, /https:\/\/capsul\.test\/console\/statements\/2026-10\n/);
    assert.deepEqual(mailer.to(carol), [], 'carol chose not to receive them');
    assert.deepEqual(mailer.to(bob), [], "bob's account began in November");
    assert.deepEqual(await rows(db), [
      { month: '2026-10', outcome: 'sent' },
      { month: '2026-10', outcome: 'not-wanted' },
    ]);

    clock.set(new Date('2026-11-01T00:02:00Z'));
    await runJobs(deps, recording({ jobs: ['statement-emails'] }));
    assert.equal(mailer.sent.length, 1, 'once');
  });

  it('tries a refused sending again next round, skips a month with nothing in it, and sends nothing in a dry run', async () => {
    const { db, clock } = await setUp();
    const mailer = keepingMailer();
    const deps = jobDeps(db, clock, mailer, { provider });
    clock.set(new Date('2026-12-01T06:00:00Z'));
    const dry = recording({ dryRun: true, jobs: ['statement-emails'] });
    await runJobs(deps, dry);
    assert.deepEqual(dry.lines.sort(), [
      `statements: ${alice} 2026-11: would send`,
      `statements: ${bob} 2026-11: would send`,
      `statements: ${carol} 2026-11: empty, would not email`,
    ]);
    assert.deepEqual(await rows(db), []);
    assert.equal(mailer.sent.length, 0);

    mailer.failNext(1);
    const first = recording({ jobs: ['statement-emails'] });
    await runJobs(deps, first);
    assert.equal(mailer.sent.length, 1, 'one of the two got through');
    assert.match(first.logged.join('\n'), /not sent, tried again next round: connect ECONNREFUSED/);
    await runJobs(deps, recording({ jobs: ['statement-emails'] }));
    assert.deepEqual(mailer.sent.map((m) => m.to).sort(), [alice, bob]);
    assert.match(mailer.to(bob)[0]!.subject, /November 2026: closing balance \$12\.34/);
    assert.deepEqual((await rows(db)).map((r) => r.outcome).sort(), ['empty', 'sent', 'sent']);
  });

  it('sends a month only in the first 7 days after it ended', async () => {
    assert.equal(statementMonthDue(new Date('2026-12-01T00:00:00Z')), '2026-11');
    assert.equal(statementMonthDue(new Date('2026-12-07T23:59:59Z')), '2026-11');
    assert.equal(statementMonthDue(new Date('2026-12-08T00:00:00Z')), null);
    assert.equal(statementMonthDue(new Date('2027-01-03T00:00:00Z')), '2026-12');
    const { db, clock } = await setUp();
    const mailer = keepingMailer();
    clock.set(new Date('2026-12-08T00:00:00Z'));
    await runJobs(jobDeps(db, clock, mailer, { provider }), recording({ jobs: ['statement-emails'] }));
    assert.equal(mailer.sent.length, 0);
  });
});
