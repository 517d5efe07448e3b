// Read model: an account's monthly statements, folded from its stream by the domain's statement
// function (src/domain/account/statement.ts) — the same fold, and so the same balance, as
// `capsul balance --as-of`. The hub's pages, the CLI and the statement emails all read here.
import { accountEventTypes, accountStream, type AccountEvent } from '../domain/account/events.ts';
import {
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

/** The closed months the account has a statement for, newest first. */
export async function accountStatementMonths(db: Queryable, accountId: string, now: Date): Promise<Month[]> {
  return statementMonths(await accountEvents(db, accountId), now.getTime());
}
