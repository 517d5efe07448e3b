// Statement emails: each account's statement for the month just ended, mailed once, claimed by its
// statement_emails row (mail-once.ts: retried next round when the mail server refuses). An account
// with nothing in the month, or whose customer chose not to receive them (StatementEmailsChosen), gets
// a row saying so and no email. Only the month just ended, and only in the first days of the next:
// a new installation does not mail old months, and a statement reissued later is not sent again.
import type pg from 'pg';
import {
  monthlyStatement,
  monthOf,
  monthStartMs,
  nextMonth,
  previousMonth,
  foldRecorded,
  type Month,
} from '../domain/account/statement.ts';
import { advisoryLocks } from '../db/advisory-lock.ts';
import type { Mailer } from '../mail/mailer.ts';
import { renderMail } from '../mail/render.ts';
import { accountEvents, accountsAwaitingStatement } from '../read/statements.ts';
import { statementText, statementView, type Issuer } from '../statements/view.ts';
import type { JobRun } from './job.ts';
import { mailEach, sendOnce } from './mail-once.ts';

/** A month's statements go out within this long after it ended, or not at all. */
export const statementEmailWindowMs = 7 * 86_400_000;
const accountsPerRound = 100;

export type StatementEmailDeps = {
  pool: pg.Pool;
  mailer: Mailer;
  baseUrl: string;
  supportEmail: string;
  issuer: Issuer;
  now: () => Date;
};

type Due = {
  accountId: string;
  email: string;
  month: Month;
  outcome: 'sent' | 'empty' | 'not-wanted';
  text: string;
  closing: string;
  title: string;
};

/** The month whose statements are due at `now`: the one just ended, while within the window; else null. */
export function statementMonthDue(now: Date): Month | null {
  const month = previousMonth(monthOf(now.getTime()));
  return now.getTime() - monthStartMs(nextMonth(month)) < statementEmailWindowMs ? month : null;
}

export async function sendStatementEmails(deps: StatementEmailDeps, run: JobRun): Promise<{ sent: number }> {
  const now = run.asOf ?? deps.now();
  const month = statementMonthDue(now);
  if (month === null) return { sent: 0 };
  const due: Due[] = [];
  for (const account of await accountsAwaitingStatement(deps.pool, month, accountsPerRound)) {
    const events = await accountEvents(deps.pool, account.accountId);
    const state = foldRecorded(events);
    const statement = monthlyStatement(events, month, state);
    const outcome = statement.lines.length === 0 ? 'empty' : state.statementEmails ? 'sent' : 'not-wanted';
    const view = statementView(statement, account.email, deps.issuer);
    due.push({ ...account, month, outcome, text: statementText(view), closing: view.closing, title: view.title });
  }
  // Nothing to mail: recorded as dealt with, so later rounds do not look again.
  for (const item of due.filter((d) => d.outcome !== 'sent')) {
    if (run.dryRun) run.report(`statements: ${item.email} ${month}: ${item.outcome}, would not email`);
    else await record(deps, item).query(deps.pool);
  }
  const describe = (item: Due) => `statements: ${item.email} ${month}`;
  return mailEach(
    run,
    due.filter((d) => d.outcome === 'sent'),
    (item) => sendOne(deps, item),
    {
      wouldSend: (item) => `${describe(item)}: would send`,
      sent: (item) => `${describe(item)}: sent`,
      failed: (item, why) => `${describe(item)}: not sent, tried again next round: ${why}`,
    },
  );
}

function record(deps: StatementEmailDeps, item: Due) {
  const text = `INSERT INTO statement_emails (account_id, month, outcome, decided) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`;
  const values = [item.accountId, item.month, item.outcome, deps.now().toISOString()];
  return { text, values, query: (db: pg.Pool) => db.query(text, values) };
}

function sendOne(deps: StatementEmailDeps, item: Due): Promise<boolean> {
  const { text, values } = record(deps, item);
  const claim = { lock: advisoryLocks.statementEmail(`${item.accountId}/${item.month}`), record: { text, values } };
  return sendOnce(deps.pool, deps.mailer, claim, async () =>
    renderMail('statement', item.email, {
      email: item.email,
      title: item.title,
      closing: item.closing,
      text: item.text,
      url: `${deps.baseUrl}/console/statements/${item.month}`,
      balanceUrl: `${deps.baseUrl}/console/account-balance`,
      statementsUrl: `${deps.baseUrl}/console/statements`,
      supportEmail: deps.supportEmail,
    }),
  );
}
