// Receipts: one email for every payment credited. Each is sent inside a transaction that first writes
// the payment's payment_receipts row: the row commits only once the mail server has accepted the
// message, so a failed sending is retried on the next round, and a second sender (another hub, a
// `capsul cron-task`) finds the payment taken or done and skips it.
import type pg from 'pg';
import type { Provider } from '../domain/account/events.ts';
import { centsFromNumeric } from '../domain/shared/money.ts';
import { dollars, utcMinute } from '../hub/web/format.ts';
import type { Mailer } from '../mail/mailer.ts';
import { renderMail } from '../mail/render.ts';
import { balanceFromProjections } from '../projections/balance.ts';
import type { JobRun } from './job.ts';

/** Payments recorded longer ago than this get no receipt (a new installation does not mail the past). */
export const receiptWindowMs = 7 * 86_400_000;
const receiptsPerRound = 100;
/** Failed sendings in one round before it stops (the mail server is probably down): the rest wait. */
const maxFailuresPerRound = 3;
/** pg_try_advisory_xact_lock(receiptLockSpace, payment id): one sender per payment at a time ("rcpt"). */
const receiptLockSpace = 0x72637074;

const providerNames: Record<Provider, string> = {
  manual: 'bank transfer or cash', stripe: 'card, through Stripe', btcpay: 'cryptocurrency, through BTCPay Server',
};

export type ReceiptDeps = { pool: pg.Pool; mailer: Mailer; baseUrl: string; supportEmail: string; now: () => Date };

type Pending = {
  id: number; email: string; account_id: string; dollars: string; provider: Provider; reference: string | null; created: string;
};

export async function sendReceipts(deps: ReceiptDeps, run: JobRun): Promise<{ sent: number }> {
  const now = run.asOf ?? deps.now();
  const pending = await pendingReceipts(deps.pool, now);
  let sent = 0;
  let failures = 0;
  for (const payment of pending) {
    const amount = dollars(centsFromNumeric(payment.dollars));
    if (run.dryRun) {
      run.report(`receipts: payment ${payment.id} (${amount}) to ${payment.email}: would send`);
      continue;
    }
    try {
      if (await sendOne(deps, payment)) {
        sent++;
        run.report(`receipts: payment ${payment.id} (${amount}) to ${payment.email}: sent`);
      }
    } catch (error) {
      run.log(`receipts: payment ${payment.id} to ${payment.email}: not sent, tried again next round: ${(error as Error).message}`);
      if (++failures >= maxFailuresPerRound) break;
    }
  }
  return { sent };
}

/** Valid payments recorded within the window, without a receipt, oldest first. */
async function pendingReceipts(pool: pg.Pool, now: Date): Promise<Pending[]> {
  const { rows } = await pool.query(
    `SELECT p.id::int AS id, p.email, p.account_id, p.dollars::text AS dollars, p.provider, p.reference,
            to_char(p.created AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS created
     FROM payments p
     WHERE NOT p.invalidated AND p.recorded > $1 AND p.recorded <= $2
       AND NOT EXISTS (SELECT 1 FROM payment_receipts r WHERE r.payment_id = p.id AND r.sent <= $2)
     ORDER BY p.recorded, p.id LIMIT ${receiptsPerRound}`,
    [new Date(now.getTime() - receiptWindowMs).toISOString(), now.toISOString()],
  );
  return rows;
}

/** Sends one receipt unless another sender has it or had it; true when this call sent it. */
async function sendOne(deps: ReceiptDeps, payment: Pending): Promise<boolean> {
  const client = await deps.pool.connect();
  try {
    await client.query('BEGIN');
    const { rows: lock } = await client.query('SELECT pg_try_advisory_xact_lock($1, $2) AS ok', [receiptLockSpace, payment.id]);
    const { rowCount } = lock[0].ok
      ? await client.query('INSERT INTO payment_receipts (payment_id, sent) VALUES ($1, $2) ON CONFLICT DO NOTHING', [payment.id, deps.now().toISOString()])
      : { rowCount: 0 };
    if (rowCount === 0) {
      await client.query('ROLLBACK');
      return false;
    }
    const now = deps.now();
    const balanceCents = await balanceFromProjections(client, payment.account_id, now);
    await deps.mailer.send(renderMail('receipt', payment.email, {
      email: payment.email,
      paymentId: payment.id,
      amount: dollars(centsFromNumeric(payment.dollars)),
      received: utcMinute(payment.created),
      provider: providerNames[payment.provider] ?? payment.provider,
      reference: payment.reference,
      balance: dollars(balanceCents),
      balanceUrl: `${deps.baseUrl}/console/account-balance`,
      supportEmail: deps.supportEmail,
    }));
    await client.query('COMMIT');
    return true;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}
