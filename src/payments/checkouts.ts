// The checkouts capsul opened at a provider (Stripe sessions, BTCPay invoices), as provider_checkouts
// rows: recorded open, and counted so a customer cannot open them without end (each is a call to the
// provider).
import type pg from 'pg';
import type { Cents } from '../domain/shared/money.ts';
import type { ProviderId } from './provider.ts';

/** Unfinished checkouts one customer may have opened at one provider in the last day. */
export const maxOpenCheckoutsPerDay = 10;
const dayMs = 86_400_000;

/** How many checkouts of this provider the customer opened in the last day and left unfinished. */
export async function openCheckoutsToday(pool: pg.Pool, provider: ProviderId, email: string, now: Date): Promise<number> {
  const { rows } = await pool.query(
    `SELECT count(*)::int AS n FROM provider_checkouts WHERE provider = $1 AND email = $2 AND status = 'open' AND created > $3`,
    [provider, email, new Date(now.getTime() - dayMs).toISOString()],
  );
  return rows[0].n;
}

/** Records a checkout just opened at the provider, for the account and amount it was opened for. */
export async function recordCheckout(
  pool: pg.Pool,
  checkout: { provider: ProviderId; id: string; email: string; amountCents: Cents; now: Date },
): Promise<void> {
  await pool.query(
    `INSERT INTO provider_checkouts (provider, id, email, amount_cents, created, status, status_changed)
     VALUES ($1, $2, $3, $4, $5, 'open', $5) ON CONFLICT (provider, id) DO NOTHING`,
    [checkout.provider, checkout.id, checkout.email, checkout.amountCents, checkout.now.toISOString()],
  );
}

/** Where a checkout stands: open until paid (credited, or held for an operator), expired unpaid, or never to be paid. */
export type CheckoutStatus = 'open' | 'credited' | 'held' | 'expired' | 'invalid';

/** A customer's checkout as their pages show it. */
export type CheckoutRow = { id: string; email: string; amount_cents: string; created: Date; status: CheckoutStatus };

/** The customer's newest checkouts at this provider, newest first. */
export async function recentCheckouts(pool: pg.Pool, provider: ProviderId, email: string, limit: number): Promise<CheckoutRow[]> {
  const { rows } = await pool.query<CheckoutRow>(
    `SELECT id, email, amount_cents, created, status FROM provider_checkouts WHERE provider = $1 AND email = $2
     ORDER BY created DESC, id LIMIT $3`,
    [provider, email, limit],
  );
  return rows;
}

/** The customer's checkout with this id, or (no id) their newest; another customer's is none. */
export async function customersCheckout(
  pool: pg.Pool,
  provider: ProviderId,
  email: string,
  id: string | null,
): Promise<CheckoutRow | null> {
  const { rows } = await pool.query<CheckoutRow>(
    `SELECT id, email, amount_cents, created, status FROM provider_checkouts
      WHERE provider = $1 AND email = $2 AND ($3::text IS NULL OR id = $3) ORDER BY created DESC, id LIMIT 1`,
    [provider, email, id],
  );
  return rows[0] ?? null;
}
