// The top-up limits an add-funds form takes now: the provider's configured ones, the smallest raised to
// a month of the cheapest capsul in the catalogue (read on each request, so a price a migration changes
// counts at once), and how the form shows them.
import type pg from 'pg';
import { dollars } from '../../core/format.ts';
import { formatCents } from '../../domain/shared/money.ts';
import { effectiveTopUpLimits, type TopUpLimits } from '../../payments/provider.ts';
import { cheapestMonth } from '../../read/catalogue.ts';

export type FormLimits = ReturnType<typeof effectiveTopUpLimits>;

export async function topUpLimitsNow(pool: pg.Pool, configured: TopUpLimits): Promise<FormLimits> {
  return effectiveTopUpLimits(configured, await cheapestMonth(pool));
}

/** The limits as the form's help and its input's bounds say them, and why the smallest is what it is. */
export function limitsView(limits: FormLimits) {
  return {
    min: dollars(limits.topUpMinCents),
    max: dollars(limits.topUpMaxCents),
    minDollars: formatCents(limits.topUpMinCents),
    maxDollars: formatCents(limits.topUpMaxCents),
    minWhy: limits.raisedFor === null ? null : `a month of the smallest capsul, ${limits.raisedFor}, so that you can create one`,
  };
}
