// Money a provider reported that capsul does not credit on its own (an amount that disagrees with the
// checkout, a payment for a checkout capsul never opened): kept in payment_holds for an operator, who
// is emailed once per hold. Reported again (a redelivered webhook), it changes nothing.
import type pg from 'pg';
import { notFound, refused } from '../domain/shared/errors.ts';
import { formatCents, type Cents } from '../domain/shared/money.ts';
import { lineOfText, maxReasonLength } from '../domain/shared/text.ts';
import type { Mailer } from '../mail/mailer.ts';
import type { ProviderId } from './provider.ts';

export type Hold = {
  provider: ProviderId;
  /** the provider's id for the money (payment intent, invoice) */
  reference: string;
  email: string | null;
  amountCents: Cents;
  expectedCents: Cents | null;
  reason: string;
};

export async function holdPayment(
  deps: { pool: pg.Pool; mailer: Mailer; adminEmails: readonly string[]; now: () => Date; log?: (line: string) => void },
  hold: Hold,
): Promise<{ new: boolean }> {
  const { rowCount } = await deps.pool.query(
    `INSERT INTO payment_holds (provider, reference, email, amount_cents, expected_cents, reason, held)
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (provider, reference) DO NOTHING`,
    [hold.provider, hold.reference, hold.email, hold.amountCents, hold.expectedCents, hold.reason, deps.now().toISOString()],
  );
  if (rowCount === 0) return { new: false };
  const expected = hold.expectedCents === null ? '' : ` (the checkout asked for $${formatCents(hold.expectedCents)})`;
  const line = `${hold.provider} payment ${hold.reference} of $${formatCents(hold.amountCents)}${expected} for ${hold.email ?? 'an unknown account'} is held, not credited: ${hold.reason}`;
  deps.log?.(line);
  for (const to of deps.adminEmails) {
    await deps.mailer.send({
      to,
      subject: `capsul: a ${hold.provider} payment is held for you to look at`,
      text: `${line}.\n\nIf it should count, record it with capsul record-payment --reference ${hold.reference} (and the account's email and the amount);\n/admin/payments lists held payments and shows this one as recorded from then on.\n`,
    });
  }
  return { new: true };
}

/**
 * Closes a held payment that should not be credited (refunded at the provider, a duplicate), with
 * who and why. A hold already credited (a payment recorded under its reference) or closed is refused.
 */
export async function resolveHold(
  pool: pg.Pool,
  hold: { provider: string; reference: string; by: string; reason: string; now: Date },
): Promise<void> {
  const reason = lineOfText(hold.reason, 'a reason', maxReasonLength);
  const { rows } = await pool.query(
    `SELECT h.resolved IS NOT NULL AS resolved, p.id AS payment_id FROM payment_holds h
     LEFT JOIN payments p ON p.reference = h.reference WHERE h.provider = $1 AND h.reference = $2`,
    [hold.provider, hold.reference],
  );
  if (!rows[0]) throw notFound(`there is no held ${hold.provider} payment ${hold.reference}`);
  if (rows[0].payment_id !== null)
    throw refused(`held payment ${hold.reference} was recorded as payment ${rows[0].payment_id}: nothing to close`);
  const { rowCount } = await pool.query(
    `UPDATE payment_holds SET resolved = $3, resolved_by = $4, resolution = $5
     WHERE provider = $1 AND reference = $2 AND resolved IS NULL`,
    [hold.provider, hold.reference, hold.now.toISOString(), hold.by, reason],
  );
  if (rowCount === 0) throw refused(`held payment ${hold.reference} is closed already`);
}
