// The balance read from the projection tables (what pages and jobs use: no replay per request). It
// applies the same billing functions as the domain fold, so both agree at every instant the tables
// describe: now and later for the live tables, any past instant for tables built as of it.
import type pg from 'pg';
import { totalChargesCents } from '../domain/shared/billing.ts';
import { centsFromNumeric, type Cents } from '../domain/shared/money.ts';

type Queryable = Pick<pg.ClientBase, 'query'>;

export async function balanceFromProjections(db: Queryable, accountId: string, at: Date): Promise<Cents> {
  const payments = await db.query(
    `SELECT coalesce(sum(dollars - refunded_dollars), 0)::text AS paid FROM payments
     WHERE account_id = $1 AND NOT invalidated AND created <= $2`,
    [accountId, at.toISOString()],
  );
  const vms = await db.query(
    `SELECT dollars_per_month::text AS price,
            (extract(epoch FROM created) * 1000)::bigint::text AS created_ms,
            (extract(epoch FROM deleted) * 1000)::bigint::text AS deleted_ms
     FROM vms WHERE account_id = $1`,
    [accountId],
  );
  const accruals = vms.rows.map((row) => ({
    priceCentsPerMonth: centsFromNumeric(row.price),
    createdAtMs: Number(row.created_ms),
    deletionRequestedAtMs: row.deleted_ms === null ? null : Number(row.deleted_ms),
  }));
  return centsFromNumeric(payments.rows[0].paid) - totalChargesCents(accruals, at.getTime());
}
