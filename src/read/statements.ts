// Read model: an account's monthly statements, folded from its stream by the domain's statement
// function (src/domain/account/statement.ts) — the same fold, and so the same balance, as
// `capsul balance --as-of`. The hub's pages, the CLI and the statement emails all read here.
import { accountEventTypes, accountStream, type AccountEvent } from '../domain/account/events.ts';
import {
  foldRecorded,
  isClosed,
  monthlyStatement,
  monthStartMs,
  nextMonth,
  statementMonths,
  type Month,
  type MonthlyStatement,
  type RecordedEvent,
} from '../domain/account/statement.ts';
import { invalid } from '../domain/shared/errors.ts';
import { loadStream } from '../db/event-store.ts';
import type { Queryable } from './rows.ts';

const accountTypes = new Set<string>(accountEventTypes);

/** The account's events with the instant each was recorded, in stream order. */
export async function accountEvents(db: Queryable, accountId: string): Promise<RecordedEvent[]> {
  const { events } = await loadStream(db, accountStream(accountId));
  return events
    .filter((stored) => accountTypes.has(stored.event.type))
    .map((stored) => ({ event: stored.event as AccountEvent, recordedAtMs: Date.parse(stored.recordedAt) }));
}

/** The one-line refusal for a month that is not over at `now`. */
export function openMonthRefusal(month: Month, now: Date): string | null {
  if (isClosed(month, now.getTime())) return null;
  const due = new Date(monthStartMs(nextMonth(month))).toISOString().slice(0, 10);
  return `${month} is not over yet: its statement is ready on ${due}`;
}

/** A closed month's statement, as the ledger stands at the time of reading; an open month is refused. */
export async function accountStatement(db: Queryable, accountId: string, month: Month, now: Date): Promise<MonthlyStatement> {
  const refusal = openMonthRefusal(month, now);
  if (refusal) throw invalid(refusal);
  return monthlyStatement(await accountEvents(db, accountId), month);
}

/** The account's months with a statement and whether they are emailed, from one read of its stream. */
export async function statementsOverview(db: Queryable, accountId: string, now: Date): Promise<{ months: Month[]; emailed: boolean }> {
  const events = await accountEvents(db, accountId);
  const state = foldRecorded(events);
  return { months: statementMonths(events, now.getTime(), state), emailed: state.statementEmails };
}

/**
 * Accounts opened before `month` ended whose statement for it has not been dealt with (mailed, or
 * found empty or not wanted: a statement_emails row), in pages by id, at most `limit`.
 */
export async function accountsAwaitingStatement(
  db: Queryable,
  month: Month,
  limit: number,
): Promise<{ accountId: string; email: string }[]> {
  const { rows } = await db.query(
    `SELECT a.id, a.email FROM accounts a
     WHERE a.created < $2 AND NOT EXISTS (SELECT 1 FROM statement_emails s WHERE s.account_id = a.id AND s.month = $1)
     ORDER BY a.id LIMIT $3`,
    [month, new Date(monthStartMs(nextMonth(month))).toISOString(), limit],
  );
  return rows.map((row) => ({ accountId: row.id, email: row.email }));
}
