// Emails that go out at least once and, but for a crash at the wrong instant, once: the receipts and
// the balance warnings. Each email is claimed by a row (payment_receipts, warning_emails) written in
// a transaction that commits only once the mail server accepted the message, so a failed sending is
// tried again next round; a try-lock per email keeps a second sender (another hub, capsul cron-task)
// from waiting on the first: it finds the email taken or done and skips it.
import type pg from 'pg';
import { notTaken, withAdvisoryLock, type AdvisoryLockKey } from '../db/advisory-lock.ts';
import type { Mailer, Message } from '../mail/mailer.ts';
import type { JobRun } from './job.ts';

/** Failed sendings in one round before it stops (the mail server is probably down): the rest wait. */
const maxFailuresPerRound = 3;

export type Claim = {
  /** tried for the transaction (advisoryLocks.receiptEmail, …): a collision only defers one email to the next round */
  lock: AdvisoryLockKey;
  /** the INSERT … ON CONFLICT DO NOTHING of the row that records the email as sent */
  record: { text: string; values: unknown[] };
};

/** Sends the message unless another sender has it or had it; true when this call sent it. */
export async function sendOnce(
  pool: pg.Pool,
  mailer: Mailer,
  claim: Claim,
  message: (db: pg.PoolClient) => Promise<Message>,
): Promise<boolean> {
  const sent = await withAdvisoryLock(
    pool,
    claim.lock,
    async (db) => {
      // Sent already (or being sent by another sender, who holds the lock): nothing written, nothing sent.
      const { rowCount } = await db.query(claim.record.text, claim.record.values);
      if (rowCount === 0) return false;
      await mailer.send(await message(db));
      return true;
    },
    { mode: 'try', scope: 'transaction' },
  );
  return sent !== notTaken && sent;
}

/** What a round says about each email: would send (dry run), sent, or failed (tried again next round). */
export type MailLines<T> = { wouldSend(item: T): string; sent(item: T): string; failed(item: T, why: string): string };

/** Sends each pending email once (see sendOnce); a dry run only reports. */
export async function mailEach<T>(
  run: JobRun,
  pending: readonly T[],
  send: (item: T) => Promise<boolean>,
  lines: MailLines<T>,
): Promise<{ sent: number }> {
  let sent = 0;
  let failures = 0;
  for (const item of pending) {
    if (run.dryRun) {
      run.report(lines.wouldSend(item));
      continue;
    }
    try {
      if (await send(item)) {
        sent++;
        run.report(lines.sent(item));
      }
    } catch (error) {
      run.log(lines.failed(item, (error as Error).message));
      if (++failures >= maxFailuresPerRound) break;
    }
  }
  return { sent };
}
