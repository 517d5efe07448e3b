// Money a provider reported that capsul does not credit on its own (an amount that disagrees with the
// checkout, a payment for a checkout capsul never opened): held for an operator, who is emailed once per
// hold. A hold and its closing are events on the hold's own stream (src/domain/hold); payment_holds is
// their projection. Reported again (a redelivered webhook), a hold changes nothing.
import type pg from 'pg';
import { holdDecider } from '../domain/hold/decider.ts';
import { holdIdOf, holdStream, type HoldProvider } from '../domain/hold/events.ts';
import type { Cause } from '../domain/events.ts';
import { notFound } from '../domain/shared/errors.ts';
import { formatCents, type Cents } from '../domain/shared/money.ts';
import { escapeHidden, maxReasonLength } from '../domain/shared/text.ts';
import { handleCommand } from '../ledger/handle.ts';
import type { Mailer } from '../mail/mailer.ts';

export type Hold = {
  provider: HoldProvider;
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
  const { events } = await handleCommand(deps, holdStream(holdIdOf(hold.provider, hold.reference)), holdDecider, {
    type: 'HoldPayment',
    data: {
      provider: hold.provider,
      reference: hold.reference,
      email: hold.email,
      amountCents: hold.amountCents,
      expectedCents: hold.expectedCents,
    },
    // The provider's own job holds it, as it records payments; the reason is the provider's words, kept to one line.
    metadata: { now: deps.now(), cause: { by: { kind: 'job', id: hold.provider }, reason: asReason(hold.reason) } },
  });
  if (events.length === 0) return { new: false };
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
 * Closes a held payment that should not be credited (refunded at the provider, a duplicate), with who
 * and why (the cause must give a reason). A hold already credited (a payment recorded under its
 * reference) or closed is refused.
 */
export async function resolveHold(pool: pg.Pool, hold: { provider: string; reference: string; cause: Cause; now: Date }): Promise<void> {
  const { provider, reference } = hold;
  if (provider !== 'stripe' && provider !== 'btcpay') throw notFound(`there is no held ${provider} payment ${reference}`);
  const { rows } = await pool.query('SELECT id FROM payments WHERE reference = $1 ORDER BY id LIMIT 1', [reference]);
  await handleCommand({ pool }, holdStream(holdIdOf(provider, reference)), holdDecider, {
    type: 'ResolvePaymentHold',
    data: { provider, reference, creditedAsPaymentId: rows[0] ? Number(rows[0].id) : null },
    metadata: { now: hold.now, cause: hold.cause },
  });
}

/** A provider's words as a reason the ledger keeps: hidden characters shown as escapes, at most the limit. */
function asReason(text: string): string {
  const visible = escapeHidden(text.trim());
  const cut = visible.length > maxReasonLength ? `${visible.slice(0, maxReasonLength - 1)}…` : visible;
  return cut.toWellFormed() || 'held';
}
