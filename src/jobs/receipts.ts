// Receipts: one email for every payment credited, claimed by its payment_receipts row (mail-once.ts:
// at least once, retried next round when the mail server refuses).
import type pg from 'pg';
import type { Provider } from '../domain/account/events.ts';
import { dollars, utcMinute } from '../core/format.ts';
import { advisoryLocks } from '../db/advisory-lock.ts';
import type { Mailer } from '../mail/mailer.ts';
import { renderMail } from '../mail/render.ts';
import { balanceAt } from '../read/accounts.ts';
import { paymentsAwaitingReceipt, type PaymentRecord } from '../read/payments.ts';
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

export async function sendReceipts(deps: ReceiptDeps, run: JobRun): Promise<{ sent: number }> {
  const pending = await pendingReceipts(deps.pool, run.asOf ?? deps.now());
  const describe = (payment: PaymentRecord) => `receipts: payment ${payment.id} (${dollars(payment.amountCents)}) to ${payment.email}`;
  return mailEach(run, pending, (payment) => sendOne(deps, payment), {
    wouldSend: (payment) => `${describe(payment)}: would send`,
    sent: (payment) => `${describe(payment)}: sent`,
    failed: (payment, why) => `receipts: payment ${payment.id} to ${payment.email}: not sent, tried again next round: ${why}`,
  });
}

/** Valid payments recorded within the window, without a receipt, oldest first. */
function pendingReceipts(pool: pg.Pool, now: Date): Promise<PaymentRecord[]> {
  return paymentsAwaitingReceipt(pool, { from: new Date(now.getTime() - receiptWindowMs), to: now, limit: receiptsPerRound });
}

/** Sends one receipt unless another sender has it or had it; true when this call sent it. */
function sendOne(deps: ReceiptDeps, payment: PaymentRecord): Promise<boolean> {
  const claim = {
    lock: advisoryLocks.receiptEmail(String(payment.id)),
    record: {
      text: 'INSERT INTO payment_receipts (payment_id, sent) VALUES ($1, $2) ON CONFLICT DO NOTHING',
      values: [payment.id, deps.now().toISOString()],
    },
  };
  return sendOnce(deps.pool, deps.mailer, claim, async (db) => {
    const balanceCents = await balanceAt(db, payment.accountId, deps.now());
    return renderMail('receipt', payment.email, {
      email: payment.email,
      paymentId: payment.id,
      amount: dollars(payment.amountCents),
      received: utcMinute(payment.receivedAt),
      provider: providerNames[payment.provider] ?? payment.provider,
      reference: payment.reference,
      balance: dollars(balanceCents),
      balanceUrl: `${deps.baseUrl}/console/account-balance`,
      supportEmail: deps.supportEmail,
    });
  });
}
