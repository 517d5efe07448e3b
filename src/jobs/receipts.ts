// Receipts: one email for every payment credited, claimed by its payment_receipts row (mail-once.ts:
// at least once, retried next round when the mail server refuses).
import type pg from 'pg';
import type { Provider } from '../domain/account/events.ts';
import { centsFromNumeric } from '../domain/shared/money.ts';
import { dollars, utcMinute } from '../core/format.ts';
import { advisoryLocks } from '../db/advisory-lock.ts';
import type { Mailer } from '../mail/mailer.ts';
import { renderMail } from '../mail/render.ts';
import { balanceFromProjections } from '../projections/balance.ts';
import type { JobRun } from './job.ts';
import { mailEach, sendOnce } from './mail-once.ts';

/** Payments recorded longer ago than this get no receipt (a new installation does not mail the past). */
export const receiptWindowMs = 7 * 86_400_000;
const receiptsPerRound = 100;

const providerNames: Record<Provider, string> = {
  manual: 'bank transfer or cash',
  stripe: 'card, through Stripe',
  btcpay: 'cryptocurrency, through BTCPay Server',
};

export type ReceiptDeps = { pool: pg.Pool; mailer: Mailer; baseUrl: string; supportEmail: string; now: () => Date };

type Pending = {
  id: number;
  email: string;
  account_id: string;
  dollars: string;
  provider: Provider;
  reference: string | null;
  created: string;
};

export async function sendReceipts(deps: ReceiptDeps, run: JobRun): Promise<{ sent: number }> {
  const pending = await pendingReceipts(deps.pool, run.asOf ?? deps.now());
  const describe = (payment: Pending) =>
    `receipts: payment ${payment.id} (${dollars(centsFromNumeric(payment.dollars))}) to ${payment.email}`;
  return mailEach(run, pending, (payment) => sendOne(deps, payment), {
    wouldSend: (payment) => `${describe(payment)}: would send`,
    sent: (payment) => `${describe(payment)}: sent`,
    failed: (payment, why) => `receipts: payment ${payment.id} to ${payment.email}: not sent, tried again next round: ${why}`,
  });
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
function sendOne(deps: ReceiptDeps, payment: Pending): Promise<boolean> {
  const claim = {
    lock: advisoryLocks.receiptEmail(String(payment.id)),
    record: {
      text: 'INSERT INTO payment_receipts (payment_id, sent) VALUES ($1, $2) ON CONFLICT DO NOTHING',
      values: [payment.id, deps.now().toISOString()],
    },
  };
  return sendOnce(deps.pool, deps.mailer, claim, async (db) => {
    const balanceCents = await balanceFromProjections(db, payment.account_id, deps.now());
    return renderMail('receipt', payment.email, {
      email: payment.email,
      paymentId: payment.id,
      amount: dollars(centsFromNumeric(payment.dollars)),
      received: utcMinute(payment.created),
      provider: providerNames[payment.provider] ?? payment.provider,
      reference: payment.reference,
      balance: dollars(balanceCents),
      balanceUrl: `${deps.baseUrl}/console/account-balance`,
      supportEmail: deps.supportEmail,
    });
  });
}
