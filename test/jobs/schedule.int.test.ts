// The hub's schedule: one hub leads the hourly round at a time (an advisory lock on a connection of its
// own), another takes over when the leader's connection is gone; a payment's receipt goes out when
// asked, and stopping waits for the round under way.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Leadership, startSchedule } from '../../src/jobs/schedule.ts';
import { operator, testDatabase, type TestDatabase } from '../support/db.ts';
import { jobDeps, keepingMailer, manualClock } from './support.ts';

let db: TestDatabase;
before(async () => {
  db = await testDatabase();
});
after(() => db.close());

describe('leadership', () => {
  it('is held by one hub at a time, kept while its connection lives, and taken over once it is gone', async () => {
    const first = new Leadership(db.pool);
    const second = new Leadership(db.pool);
    assert.equal(await first.hold(), true);
    assert.equal(await first.hold(), true, 'kept');
    assert.equal(await second.hold(), false);
    await first.release();
    assert.equal(await second.hold(), true);
    // The leader's connection dies (a database restart, a network cut): the lock goes with it.
    const { rows } = await db.pool.query(
      `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 AND objid = 0 AND granted`,
      [0x63617073],
    );
    await db.admin.query('SELECT pg_terminate_backend($1)', [rows[0].pid]);
    await backendGone(rows[0].pid);
    assert.equal(await first.hold(), true, 'the first hub takes over');
    assert.equal(await second.hold(), false, 'the old leader notices its connection is gone');
    await first.release();
    await second.release();
  });
});

/** Termination is asynchronous: wait (bounded) until the backend has exited and its locks with it. */
async function backendGone(pid: number): Promise<void> {
  for (let attempt = 0; attempt < 1000; attempt++) {
    const { rows } = await db.pool.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid]);
    if (rows.length === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`backend ${pid} did not exit`);
}

describe('the schedule', () => {
  it('sends a receipt when told a payment was credited, and stops after the round under way', async () => {
    await db.ledger.recordPayment({ email: 'scheduled@example.org', amountCents: 1000, cause: operator });
    const clock = manualClock(new Date(Date.now() + 1000));
    const mailer = keepingMailer();
    const lines: string[] = [];
    const schedule = startSchedule(jobDeps(db, clock, mailer), {
      hourly: '0 0 1 1 *',
      receipts: '0 0 1 1 *',
      log: (line) => lines.push(line),
    });
    schedule.paymentsChanged();
    await schedule.stop();
    assert.deepEqual(
      mailer.sent.map((m) => m.to),
      ['scheduled@example.org'],
    );
    assert.match(lines.join('\n'), /receipts: payment \d+ \(\$10\.00\) to scheduled@example\.org: sent/);
    schedule.paymentsChanged(); // after stop: nothing
    assert.equal(mailer.sent.length, 1);
  });
});
