// The balance read from the projection tables (what pages and jobs use: no replay per request). It
// applies the same billing functions as the domain fold, so both agree at every instant the tables
// describe: now and later for the live tables, any past instant for tables built as of it.
import type pg from 'pg';
import { totalChargesCents, type Accrual } from '../domain/shared/billing.ts';
import { centsFromNumeric, type Cents } from '../domain/shared/money.ts';

type Queryable = Pick<pg.ClientBase, 'query'>;

export type ProjectedBalance = {
  /** valid payments received by then, less refunds */
  paidCents: Cents;
  /** every capsul of the account, deleted and vanished ones too (their charges stay) */
  accruals: Accrual[];
  balanceCents: Cents;
};

/** Several accounts' balances at `at`, from two queries whatever their number; an unknown id has none. */
export async function balancesFromProjections(
  db: Queryable,
  accountIds: readonly string[],
  at: Date,
): Promise<Map<string, ProjectedBalance>> {
  const payments = await db.query(
    `SELECT account_id, sum(dollars - refunded_dollars)::text AS paid FROM payments
     WHERE account_id = ANY($1::text[]) AND NOT invalidated AND created <= $2 GROUP BY account_id`,
    [accountIds, at.toISOString()],
  );
  const vms = await db.query(
    `SELECT account_id, dollars_per_month::text AS price,
            (extract(epoch FROM created) * 1000)::bigint::text AS created_ms,
            (extract(epoch FROM deleted) * 1000)::bigint::text AS deleted_ms,
            (extract(epoch FROM accrual_ended) * 1000)::bigint::text AS accrual_ended_ms
     FROM vms WHERE account_id = ANY($1::text[])`,
    [accountIds],
  );
  const balances = new Map<string, ProjectedBalance>(accountIds.map((id) => [id, { paidCents: 0, accruals: [], balanceCents: 0 }]));
  for (const row of payments.rows) balances.get(row.account_id)!.paidCents = centsFromNumeric(row.paid);
  for (const row of vms.rows) {
    balances.get(row.account_id)!.accruals.push({
      priceCentsPerMonth: centsFromNumeric(row.price),
      createdAtMs: Number(row.created_ms),
      deletionRequestedAtMs: row.deleted_ms === null ? null : Number(row.deleted_ms),
      vanishedAtMs: row.accrual_ended_ms === null ? null : Number(row.accrual_ended_ms),
    });
  }
  for (const balance of balances.values()) balance.balanceCents = balance.paidCents - totalChargesCents(balance.accruals, at.getTime());
  return balances;
}

export async function balanceFromProjections(db: Queryable, accountId: string, at: Date): Promise<Cents> {
  return (await balancesFromProjections(db, [accountId], at)).get(accountId)!.balanceCents;
}
