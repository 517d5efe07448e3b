// Read model: accounts and their balances, from the projection tables `accounts`, `payments` and `vms`
// (no replay per request). Who an email is, which accounts have capsuls accruing, and the balance:
// `balancesAt` is the one balance read, and the balance page's statement is built on its parts (the
// same payments sum, the same accrual columns, the same arithmetic), with a cache checked against the
// account stream's version. The arithmetic is the domain's billing functions, so the projections and
// the domain fold agree at every instant: `balancesAt` reads each payment and capsul as it was at the
// instant asked, from the projections' row history (migration 21).
import { accountStream, type Provider } from '../domain/account/events.ts';
import { totalChargesCents, type Accrual } from '../domain/shared/billing.ts';
import { centsFromNumeric, type Cents } from '../domain/shared/money.ts';
import { streamVersion, streamVersionExpression } from '../db/event-store.ts';
import { epochMs, msOrNull, type Queryable } from './rows.ts';

// ---- accounts ---------------------------------------------------------------------------------

/** The account an (already canonical) email opened, or null. */
export async function accountIdByEmail(db: Queryable, email: string): Promise<string | null> {
  const { rows } = await db.query('SELECT id FROM accounts WHERE email = $1', [email]);
  return rows[0]?.id ?? null;
}

export type AccountRow = {
  id: string;
  email: string;
  createdAt: Date;
  /** suspended for nonpayment: since when, and when deletion comes unless funds are added */
  suspension: { since: Date; deleteAfter: Date } | null;
};

/** The newest accounts first, at most `limit`. */
export async function newestAccounts(db: Queryable, limit: number): Promise<AccountRow[]> {
  const { rows } = await db.query('SELECT id, email, created, suspended, delete_after FROM accounts ORDER BY created DESC, id LIMIT $1', [
    limit,
  ]);
  return rows.map((row) => ({
    id: row.id,
    email: row.email,
    createdAt: row.created,
    suspension: row.suspended === null ? null : { since: row.suspended, deleteAfter: row.delete_after },
  }));
}

const accountsPerPage = 500;

/** Accounts with a capsul accruing at `at`, in pages by id (bounded memory whatever their number). */
export async function* accountsAccruingAt(db: Queryable, at: Date): AsyncGenerator<{ accountId: string; email: string }> {
  let after = '';
  for (;;) {
    const { rows } = await db.query(
      `SELECT a.id, a.email FROM accounts a
       WHERE a.id > $2 AND EXISTS (SELECT 1 FROM vms v WHERE v.account_id = a.id AND v.created <= $1 AND (v.deleted IS NULL OR v.deleted > $1)
                                     AND (v.accrual_ended IS NULL OR v.accrual_ended > $1))
       ORDER BY a.id LIMIT ${accountsPerPage}`,
      [at.toISOString(), after],
    );
    for (const row of rows) yield { accountId: row.id, email: row.email };
    if (rows.length < accountsPerPage) return;
    after = rows.at(-1)!.id;
  }
}

// ---- the balance ------------------------------------------------------------------------------

/** What a balance is made of: valid payments received by then less refunds, and every capsul's accrual. */
export type Funds = {
  /** valid payments received by then, less refunds */
  paidCents: Cents;
  /** every capsul of the account, deleted and vanished ones too (their charges stay) */
  accruals: Accrual[];
};

export type Balance = Funds & { balanceCents: Cents };

/** The balance at `atMs`: the payments counted less every capsul's charge so far, rounded once. */
export const balanceOfFunds = (funds: Funds, atMs: number): Cents => funds.paidCents - totalChargesCents(funds.accruals, atMs);

/** The payments counted at `$at` (a parameter), as text: valid, received by then, less refunds. */
const paidSql = (at: string, of = '') =>
  `coalesce(sum(${of}dollars - ${of}refunded_dollars) FILTER (WHERE NOT ${of}invalidated AND ${of}created <= ${at}), 0)::text`;

/** A capsul's accrual, read from `vms`: its captured price, creation, deletion request and end of billing. */
const accrualColumns = (of = '') => `${of}dollars_per_month::text AS price, ${epochMs(`${of}created`)} AS created_ms,
  ${epochMs(`${of}deleted`)} AS deleted_ms, ${epochMs(`${of}accrual_ended`)} AS vanished_ms`;

function accrualOf(row: Record<string, string | null>): Accrual {
  return {
    priceCentsPerMonth: centsFromNumeric(row.price!),
    createdAtMs: Number(row.created_ms),
    deletionRequestedAtMs: msOrNull(row.deleted_ms),
    vanishedAtMs: msOrNull(row.vanished_ms),
  };
}

/**
 * Each `table` row of the accounts `$1` as it was at `$2` (effective time), aliased `v`. As the ledger
 * knows it now: through the live table's account index, then one probe per row of the index of current
 * versions by where they end (schema_migrations/21_up_row_history.sql). As it knew it at `$3`: the
 * history's versions holding at both instants (an auditor's question, through the as-of index).
 */
function versionsAt(table: 'payments' | 'vms', known: boolean): string {
  if (known) return `${table}_history v WHERE v.account_id = ANY($1::text[]) AND v.valid @> $2::timestamptz AND v.known @> $3::timestamptz`;
  const end = `coalesce(upper(h.valid), 'infinity'::timestamptz)`;
  return `${table} r JOIN LATERAL (
      SELECT * FROM ${table}_history h WHERE h.id = r.id AND upper_inf(h.known) AND ${end} > $2::timestamptz ORDER BY ${end} LIMIT 1
    ) v ON lower(v.valid) <= $2::timestamptz
    WHERE r.account_id = ANY($1::text[])`;
}

/**
 * Several accounts' balances at `at`, past or future, from two queries whatever their number; an
 * unknown id has none. Each payment and capsul is read as it was at `at` (a payment invalidated later
 * still counts; one received later does not), as the ledger knows it now or, with `knownAt`, knew it then.
 */
export async function balancesAt(db: Queryable, accountIds: readonly string[], at: Date, knownAt?: Date): Promise<Map<string, Balance>> {
  const params = [accountIds, at.toISOString(), ...(knownAt ? [knownAt.toISOString()] : [])];
  const known = knownAt !== undefined;
  const payments = await db.query(
    `SELECT v.account_id, ${paidSql('$2', 'v.')} AS paid FROM ${versionsAt('payments', known)} GROUP BY v.account_id`,
    params,
  );
  const vms = await db.query(`SELECT v.account_id, ${accrualColumns('v.')} FROM ${versionsAt('vms', known)}`, params);
  const funds = new Map<string, Funds>(accountIds.map((id) => [id, { paidCents: 0, accruals: [] }]));
  for (const row of payments.rows) funds.get(row.account_id)!.paidCents = centsFromNumeric(row.paid);
  for (const row of vms.rows) funds.get(row.account_id)!.accruals.push(accrualOf(row));
  return new Map([...funds].map(([id, f]) => [id, { ...f, balanceCents: balanceOfFunds(f, at.getTime()) }]));
}

/** One account's balance at `at`, past or future (0 for an account with nothing in it); see balancesAt. */
export async function balanceAt(db: Queryable, accountId: string, at: Date): Promise<Cents> {
  return (await balancesAt(db, [accountId], at)).get(accountId)!.balanceCents;
}

// ---- the balance page's statement -------------------------------------------------------------

/** A payment as the customer's balance page lists it: not why an operator corrected it (that is the operators'). */
export type StatementPayment = {
  id: number;
  receivedAtMs: number;
  amountCents: Cents;
  provider: Provider;
  reference: string | null;
  invalidatedAtMs: number | null;
  refundedCents: Cents;
};
export type StatementCapsul = { id: string; size: string; accrual: Accrual };
export type Statement = Balance & { payments: StatementPayment[]; paymentCount: number; capsuls: StatementCapsul[] };

export const emptyStatement: Statement = { payments: [], paymentCount: 0, capsuls: [], paidCents: 0, accruals: [], balanceCents: 0 };

/** Payments listed unless the customer asks for all of them: the page stays quick for old accounts. */
export const paymentsListed = 25;

// A named (prepared) statement: planned once per connection, not on every page view.
const statementSql = `
  SELECT
    (SELECT coalesce(json_agg(p), '[]') FROM (
       SELECT id, ${epochMs('created')} AS received_ms, dollars::text AS dollars, provider, reference,
              ${epochMs('invalidated_at')} AS invalidated_ms, refunded_dollars::text AS refunded
       FROM payments WHERE account_id = $1 ORDER BY created DESC, id DESC LIMIT $2) p) AS payments,
    totals.payment_count, totals.paid, totals.next_payment_ms,
    ${streamVersionExpression('$4')} AS version,
    (SELECT coalesce(json_agg(v), '[]') FROM (
       SELECT id, size, ${accrualColumns()} FROM vms WHERE account_id = $1 ORDER BY created DESC, id) v) AS vms
  FROM (SELECT count(*)::int AS payment_count, ${paidSql('$3')} AS paid,
               ${epochMs('min(created) FILTER (WHERE NOT invalidated AND created > $3)')} AS next_payment_ms
        FROM payments WHERE account_id = $1) totals`;

type CachedStatement = Statement & { version: string; validUntilMs: number };

/**
 * The account's payments (the newest, or all), its capsuls and its balance, in one statement: one
 * snapshot, one round trip, the balance computed by `balanceOfFunds` as `balancesAt` computes it.
 */
async function statementOf(db: Queryable, accountId: string, now: Date, allPayments: boolean): Promise<CachedStatement> {
  const {
    rows: [row],
  } = await db.query({
    name: 'balance-page',
    text: statementSql,
    values: [accountId, allPayments ? null : paymentsListed, now.toISOString(), accountStream(accountId)],
  });
  const capsuls: StatementCapsul[] = row.vms.map((vm: Record<string, string | null>) => ({
    id: vm.id,
    size: vm.size,
    accrual: accrualOf(vm),
  }));
  const funds: Funds = { paidCents: centsFromNumeric(row.paid), accruals: capsuls.map((capsul) => capsul.accrual) };
  return {
    version: row.version ?? '0',
    // A payment received after now (within the clock skew allowed) counts from then: reread at that instant.
    validUntilMs: row.next_payment_ms === null ? Number.POSITIVE_INFINITY : Number(row.next_payment_ms),
    payments: row.payments.map((payment: Record<string, string | null>) => ({
      id: Number(payment.id),
      receivedAtMs: Number(payment.received_ms),
      amountCents: centsFromNumeric(payment.dollars!),
      provider: payment.provider,
      reference: payment.reference,
      invalidatedAtMs: msOrNull(payment.invalidated_ms),
      refundedCents: centsFromNumeric(payment.refunded!),
    })),
    paymentCount: row.payment_count,
    capsuls,
    ...funds,
    balanceCents: balanceOfFunds(funds, now.getTime()),
  };
}

/**
 * Statements read before, by account id. Everything the balance page reads is a function of the
 * account's stream alone: payments, their corrections and refunds, and each capsul's creation and
 * deletion request are all account events, projected in the statement that appends them. So rows
 * read once serve again while the stream's version is unchanged, checked by one indexed lookup; only
 * the charges are computed anew, for now. The owner (the hub) chooses its size (an LruMap).
 */
export type StatementCache = {
  get(accountId: string): CachedStatement | undefined;
  set(accountId: string, statement: CachedStatement): void;
};

/** The balance page's statement at `now`: the newest payments from `cache` while the account is unchanged, or all of them. */
export async function balanceStatement(
  db: Queryable,
  cache: StatementCache,
  accountId: string,
  now: Date,
  options: { allPayments: boolean },
): Promise<Statement> {
  if (options.allPayments) return statementOf(db, accountId, now, true);
  const cached = cache.get(accountId);
  if (cached && now.getTime() < cached.validUntilMs) {
    if ((await streamVersion(db, accountStream(accountId))).toString() === cached.version) {
      return { ...cached, balanceCents: balanceOfFunds(cached, now.getTime()) };
    }
  }
  const statement = await statementOf(db, accountId, now, false);
  cache.set(accountId, statement);
  return statement;
}
