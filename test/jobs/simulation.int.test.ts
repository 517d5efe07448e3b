// Sixty days of one account, a day at a time: $20 of credit and three capsuls of different sizes.
// The jobs run once a day on a clock the test moves, mail goes through the SMTP mailer to a real SMTP
// server on loopback (smtp-server), and the hub's reactions run after each day. The warnings arrive in
// order, each once; the capsuls are deleted for nonpayment at the overdraft, through the ledger and
// then delete operations for their host; the final balance is exact to the cent and equals both the
// ledger's fold and the projections, before and after a full replay.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SMTPServer } from 'smtp-server';
import { monthMs } from '../../src/domain/shared/billing.ts';
import { runJobs } from '../../src/jobs/runner.ts';
import { scheduleDeletions, placePending } from '../../src/ledger/reactor.ts';
import { createMailer } from '../../src/mail/mailer.ts';
import { balanceAt } from '../../src/read/accounts.ts';
import { rebuildProjections, verifyProjections } from '../../src/projections/rebuild.ts';
import { operator, sshKey, testDatabase, type TestDatabase } from '../support/db.ts';
import { dayMs, jobDeps, manualClock, recording } from './support.ts';

// The mailer is set to require STARTTLS (MAIL_USE_TLS=starttls, the default); smtp-server offers it with its
// built-in self-signed certificate, which only this test process is told to accept.
process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';

type Captured = { from: string; to: string[]; subject: string; raw: string; tls: boolean };

const t0 = new Date('2031-03-01T00:00:00Z');
const at = (days: number) => new Date(t0.getTime() + days * dayMs);
const email = 'sixty@example.org';

let db: TestDatabase;
let smtp: SMTPServer;
let smtpPort: number;
let outboxDir: string;
const captured: Captured[] = [];

before(async () => {
  outboxDir = mkdtempSync(path.join(os.tmpdir(), 'capsul-sim-'));
  smtp = new SMTPServer({
    authOptional: true,
    logger: false,
    onData(stream, session, callback) {
      let raw = '';
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => (raw += chunk));
      stream.on('end', () => {
        // Kept before the server answers, so a sending has been captured once the mailer returns.
        const subject = /^Subject: (.*)$/m.exec(raw)?.[1] ?? '';
        const { mailFrom, rcptTo } = session.envelope;
        captured.push({ from: mailFrom ? mailFrom.address : '', to: rcptTo.map((r) => r.address), subject, raw, tls: session.secure });
        callback();
      });
    },
  });
  await new Promise<void>((resolve) => smtp.listen(0, '127.0.0.1', resolve));
  smtpPort = (smtp.server.address() as AddressInfo).port;
});

after(async () => {
  await db?.close();
  await new Promise<void>((resolve) => smtp.close(() => resolve()));
  rmSync(outboxDir, { recursive: true, force: true });
});

/** Undoes quoted-printable soft breaks and escapes, so the body reads as sent. */
const body = (raw: string) =>
  raw.replace(/=\r?\n/g, '').replace(/=([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));

describe('sixty days of an account that stops paying', () => {
  it('warns in order, each level once, deletes at the overdraft, and ends exact to the cent', async () => {
    const clock = manualClock(t0);
    db = await testDatabase({ now: clock.now });
    const mailer = createMailer({
      from: 'capsul <no-reply@capsul.test>',
      outboxDir,
      smtp: { host: '127.0.0.1', port: smtpPort, tls: 'starttls', user: undefined, password: undefined },
    });
    assert.equal(mailer.outboxDir, null, 'mail goes by SMTP');

    // Funded with $20: $30 paid, three capsuls created (a month of them needs $24.99), $10 refunded.
    const { paymentId } = await db.ledger.recordPayment({ email, amountCents: 3000, reference: 'sim-0001', cause: operator });
    const vmIds: string[] = [];
    for (const size of ['f1-xs', 'f1-s', 'f1-m']) {
      vmIds.push((await db.ledger.createVm({ email, size, os: 'debian12', sshPublicKeys: [sshKey], cause: operator })).vmId);
    }
    await db.ledger.recordRefund({ paymentId, totalRefundedCents: 1000, reference: 're-sim-0001', cause: operator });
    assert.equal(await db.ledger.balanceCents(email), 2000);
    await db.pool.query(`INSERT INTO host_heartbeats VALUES ('test-host', $1, 1000000, 1000, '[]', 'test')`, [t0.toISOString()]);
    assert.equal(await placePending({ pool: db.pool, now: clock.now }), 3);

    // $5.33 + $7.16 + $12.50 = $24.99 a month. Rounding half up, the balance shows $0.00 once the exact
    // charges reach $19.995: after 1999.5/2499 months, 24.356 days; and -$10.00 at 2999.5/2499 months,
    // 36.537 days. So: within a week from day 18, within a day from day 24, out of funds on day 25,
    // deletion within a week from day 30 (36.537 − 7), deletion on day 37.
    const rateCentsPerMonth = 533 + 716 + 1250;
    const issued: [number, string][] = [];
    const deps = jobDeps(db, clock, mailer);
    let eventsAfterDeletion = 0;
    for (let day = 1; day <= 60; day++) {
      clock.set(at(day));
      const run = recording();
      const outcomes = await runJobs(deps, run);
      assert.deepEqual(
        outcomes.filter((o) => o.status !== 'done'),
        [],
        `day ${day}: ${run.logged.join('; ')}`,
      );
      await scheduleDeletions({ pool: db.pool, now: clock.now }); // the hub's reactions
      const { rows } = await db.pool.query(
        `SELECT message_data->>'level' AS level FROM emt_messages WHERE message_type = 'BalanceWarningIssued' AND message_data->>'at' = $1`,
        [at(day).toISOString()],
      );
      for (const row of rows) issued.push([day, row.level]);
      if (day === 37) eventsAfterDeletion = (await db.pool.query('SELECT count(*)::int AS n FROM emt_messages')).rows[0].n;
    }
    assert.deepEqual(issued, [
      [18, 'runs-out-within-week'],
      [24, 'runs-out-within-day'],
      [25, 'out-of-funds'],
      [30, 'deletion-within-week'],
      [37, 'deletion-now'],
    ]);
    assert.equal(
      (await db.pool.query('SELECT count(*)::int AS n FROM emt_messages')).rows[0].n,
      eventsAfterDeletion,
      'nothing after the deletion',
    );

    // The emails, as the SMTP server received them: the receipt, then one per warning, in order, and
    // March's statement on 1 April (day 31): $20.00 less 31 days of $24.99 a month, rounded once.
    assert.deepEqual(
      captured.map((m) => [m.to.join(','), m.subject]),
      [
        [email, `capsul receipt: $30.00 received (payment ${paymentId})`],
        [email, 'capsul: your credit runs out within a week'],
        [email, 'capsul: your credit runs out within a day'],
        [email, 'capsul: you are out of funds'],
        [email, 'capsul: your capsuls are suspended'],
        [email, 'capsul: your capsuls will be deleted within a week'],
        [email, 'capsul statement for March 2031: closing balance -$5.45'],
        [email, 'capsul: your capsuls are being deleted for nonpayment'],
      ],
    );
    assert.ok(
      captured.every((m) => m.from === 'no-reply@capsul.test' && m.tls),
      'from the configured sender, over STARTTLS',
    );
    const deletionMail = body(captured.at(-1)!.raw);
    for (const vmId of vmIds) assert.ok(deletionMail.includes(vmId), `the deletion email names ${vmId}`);
    assert.match(body(captured[3]!.raw), /the balance is -\$0\.\d\d, and your\s+capsuls go on costing \$24\.99 a month/);

    // Deleted for nonpayment on day 37 through the ledger, then delete operations for their host.
    const { rows: deletions } = await db.pool.query(
      `SELECT message_data->>'vmId' AS vm_id, message_data ? 'reason' AS reason_in_data, message_data->>'at' AS at,
              message_metadata->'by'->>'id' AS by, message_metadata->>'reason' AS why
       FROM emt_messages WHERE message_type = 'VmDeletionRequested' ORDER BY message_data->>'vmId'`,
    );
    assert.deepEqual(
      deletions,
      [...vmIds].sort().map((vmId) => ({
        vm_id: vmId,
        reason_in_data: false,
        at: at(37).toISOString(),
        by: 'balance-warnings',
        why: 'nonpayment',
      })),
    );
    const { rows: operations } = await db.pool.query(`SELECT vm_id, host FROM operations WHERE kind = 'delete' ORDER BY vm_id`);
    assert.deepEqual(
      operations,
      [...vmIds].sort().map((vmId) => ({ vm_id: vmId, host: 'test-host' })),
    );

    // The balance: $20.00 less 37 days of $24.99 a month, the total rounded once, half up.
    const exactCentMs = BigInt(rateCentsPerMonth) * BigInt(37 * dayMs);
    const chargesCents = Number((exactCentMs * 2n + BigInt(monthMs)) / (2n * BigInt(monthMs)));
    assert.equal(chargesCents, 3038); // 2499 × 37 / 30.44 = 3037.55
    const end = at(60);
    const accountId = (await db.ledger.accountIdFor(email))!;
    assert.equal(await db.ledger.balanceCents(email, end), 2000 - chargesCents);
    assert.equal(await db.ledger.balanceCents(email, end), -1038);
    assert.equal(await balanceAt(db.pool, accountId, end), -1038);
    assert.deepEqual(await verifyProjections(db.pool), {
      matches: true,
      differences: { accounts: 0, payments: 0, vms: 0, hosts: 0, operations: 0, drift: 0, payment_holds: 0, account_events: 0 },
    });
    const { changed } = await rebuildProjections(db.admin);
    assert.ok(
      Object.values(changed).every((n) => n === 0),
      JSON.stringify(changed),
    );
    assert.equal(await balanceAt(db.pool, accountId, end), -1038);
  });
});
