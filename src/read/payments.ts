// Read model: payments, from the `payments` projection (one row per payment recorded, with its
// invalidation and refunds as they stand). Who a payment or a provider's reference belongs to, the
// operators' list, and the payments still owed a receipt. Amounts in cents, instants as Dates.
import type { Provider } from '../domain/account/events.ts';
import { centsFromNumeric, type Cents } from '../domain/shared/money.ts';
import type { Queryable } from './rows.ts';

/** The account payment `paymentId` was credited to, or null when there is no such payment. */
export async function accountOfPayment(db: Queryable, paymentId: number): Promise<string | null> {
  const { rows } = await db.query('SELECT account_id FROM payments WHERE id = $1', [paymentId]);
  return rows[0]?.account_id ?? null;
}

/** The payment recorded under a provider's reference (references are unique), or null. */
export async function paymentByReference(db: Queryable, reference: string): Promise<{ id: number; email: string } | null> {
  const { rows } = await db.query('SELECT id, email FROM payments WHERE reference = $1', [reference]);
  return rows[0] ? { id: Number(rows[0].id), email: rows[0].email } : null;
}

export type PaymentRecord = {
  id: number;
  accountId: string;
  email: string;
  amountCents: Cents;
  refundedCents: Cents;
  provider: Provider;
  reference: string | null;
  receivedAt: Date;
  recordedAt: Date;
  invalidated: boolean;
  invalidatedAt: Date | null;
  invalidationReason: string | null;
};

const paymentColumns = `id, account_id, email, dollars::text AS dollars, refunded_dollars::text AS refunded, provider, reference,
  created, recorded, invalidated, invalidated_at, invalidation_reason`;

function paymentOf(row: Record<string, unknown>): PaymentRecord {
  return {
    id: Number(row.id),
    accountId: row.account_id as string,
    email: row.email as string,
    amountCents: centsFromNumeric(row.dollars as string),
    refundedCents: centsFromNumeric(row.refunded as string),
    provider: row.provider as Provider,
    reference: row.reference as string | null,
    receivedAt: row.created as Date,
    recordedAt: row.recorded as Date,
    invalidated: row.invalidated as boolean,
    invalidatedAt: row.invalidated_at as Date | null,
    invalidationReason: row.invalidation_reason as string | null,
  };
}

/** The newest payments first (received, then id), of one email or ('' ) of everyone, at most `limit`. */
export async function newestPayments(db: Queryable, filter: { email: string; limit: number }): Promise<PaymentRecord[]> {
  const { rows } = await db.query(
    `SELECT ${paymentColumns} FROM payments WHERE ($1 = '' OR email = $1) ORDER BY created DESC, id DESC LIMIT $2`,
    [filter.email, filter.limit],
  );
  return rows.map(paymentOf);
}

export async function paymentById(db: Queryable, paymentId: number): Promise<PaymentRecord | null> {
  const { rows } = await db.query(`SELECT ${paymentColumns} FROM payments WHERE id = $1`, [paymentId]);
  return rows[0] ? paymentOf(rows[0]) : null;
}

/** Valid payments recorded within (from, to] with no receipt sent by `to`, oldest first, at most `limit`. */
export async function paymentsAwaitingReceipt(db: Queryable, window: { from: Date; to: Date; limit: number }): Promise<PaymentRecord[]> {
  const { rows } = await db.query(
    `SELECT ${paymentColumns} FROM payments p
     WHERE NOT p.invalidated AND p.recorded > $1 AND p.recorded <= $2
       AND NOT EXISTS (SELECT 1 FROM payment_receipts r WHERE r.payment_id = p.id AND r.sent <= $2)
     ORDER BY p.recorded, p.id LIMIT ${Math.trunc(window.limit)}`,
    [window.from.toISOString(), window.to.toISOString()],
  );
  return rows.map(paymentOf);
}
