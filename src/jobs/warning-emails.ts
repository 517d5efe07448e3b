// Warning emails, at least once: every BalanceWarningIssued event is mailed, and every AccountSuspended
// and AccountResumed (the customer told their capsuls stopped, and started again), claimed by its
// warning_emails row (mail-once.ts: retried next round when the mail server refuses). The email says
// what the account looked like when the warning was issued (its events folded as of then), whenever
// it is sent; one not sent within two days is dropped as out of date.
import type pg from 'pg';
import type { AccountEvent, WarningLevel } from '../domain/account/events.ts';
import { accountStream } from '../domain/account/events.ts';
import type { Cents } from '../domain/shared/money.ts';
import { dollars, utcMinute } from '../core/format.ts';
import type { Mailer } from '../mail/mailer.ts';
import { renderMail, type MailCapsul } from '../mail/render.ts';
import { advisoryLocks } from '../db/advisory-lock.ts';
import { loadStream, unmailedBalanceWarnings } from '../db/event-store.ts';
import type { JobRun } from './job.ts';
import { mailEach, sendOnce } from './mail-once.ts';
import { accountAsOf, evaluateAccount } from '../domain/account/policy.ts';

/** Warnings issued longer ago than this are not mailed any more: their figures are out of date. */
export const warningEmailWindowMs = 2 * 86_400_000;
const perRound = 100;

export type WarningEmailDeps = {
  pool: pg.Pool;
  mailer: Mailer;
  overdraftCents: Cents;
  baseUrl: string;
  supportEmail: string;
  now: () => Date;
};

type Pending = { position: string; accountId: string; level: WarningLevel | 'suspended' | 'resumed'; at: string; email: string };

export async function sendWarningEmails(deps: WarningEmailDeps, run: JobRun): Promise<{ sent: number }> {
  const pending = await pendingWarnings(deps.pool, run.asOf ?? deps.now());
  return mailEach(run, pending, (warning) => sendOne(deps, warning), {
    wouldSend: (warning) => `warnings: ${warning.email}: would email the ${what(warning)} of ${utcMinute(warning.at)}`,
    sent: (warning) => `warnings: ${warning.email}: ${what(warning)} emailed`,
    failed: (warning, why) => `warnings: ${warning.email}: the ${what(warning)}'s email failed, tried again next round: ${why}`,
  });
}

/** "deletion-now warning", "suspension", "resumption". */
const what = (warning: Pending) =>
  warning.level === 'suspended' ? 'suspension' : warning.level === 'resumed' ? 'resumption' : `${warning.level} warning`;

/** Warnings issued within the window (by the job's clock) and not mailed yet, oldest first. */
async function pendingWarnings(pool: pg.Pool, now: Date): Promise<Pending[]> {
  const rows = await unmailedBalanceWarnings(pool, { from: new Date(now.getTime() - warningEmailWindowMs), to: now, limit: perRound });
  return rows.map((row) => ({
    position: row.position,
    accountId: row.account_id,
    level: row.level as Pending['level'],
    at: row.at,
    email: row.email,
  }));
}

/** Sends one warning unless another sender has it or had it; true when this call sent it. */
function sendOne(deps: WarningEmailDeps, warning: Pending): Promise<boolean> {
  const claim = {
    lock: advisoryLocks.warningEmail(warning.position),
    record: {
      text: 'INSERT INTO warning_emails (event_position, account_id, level, sent) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING',
      values: [warning.position, warning.accountId, warning.level, deps.now().toISOString()],
    },
  };
  const template = warning.level === 'suspended' || warning.level === 'resumed' ? warning.level : (`warning-${warning.level}` as const);
  return sendOnce(deps.pool, deps.mailer, claim, async () => renderMail(template, warning.email, await mailData(deps, warning)));
}

/**
 * The figures as they stood when the warning was issued. At deletion-now the capsuls listed are the
 * ones running just before: the ones deleted for nonpayment with it.
 */
async function mailData(deps: WarningEmailDeps, warning: Pending) {
  const stream = await loadStream(deps.pool, accountStream(warning.accountId));
  const events = stream.events.map((stored) => stored.event as AccountEvent);
  const atMs = Date.parse(warning.at);
  const account = accountAsOf(events, atMs);
  const e = evaluateAccount(account, atMs, deps.overdraftCents);
  const listed =
    warning.level === 'deletion-now' ? evaluateAccount(accountAsOf(events, atMs - 1), atMs - 1, deps.overdraftCents).running : e.running;
  // A suspension's and a resumption's own capsuls: the ones it stopped, the ones it starts.
  const own = stream.events.find((stored) => stored.globalPosition === warning.position)?.event as AccountEvent | undefined;
  const named = own && 'vmIds' in own.data ? new Set(own.data.vmIds) : null;
  const shown = named === null ? listed : [...account.vms.values()].filter((vm) => named.has(vm.vmId));
  const capsuls: MailCapsul[] = shown.map((vm) => ({ id: vm.vmId, size: vm.size, pricePerMonth: dollars(vm.priceCentsPerMonth) }));
  const deleteAfterMs = account.suspension?.deleteAfterMs ?? null;
  return {
    email: warning.email,
    capsuls,
    balance: dollars(e.balanceCents),
    rate: dollars(e.rateCentsPerMonth),
    overdraft: dollars(deps.overdraftCents),
    runsOut: e.runsOutAtMs === null ? null : utcMinute(e.runsOutAtMs),
    reachesOverdraft: e.reachesOverdraftAtMs === null ? null : utcMinute(e.reachesOverdraftAtMs),
    /** suspended: when deletion comes unless funds are added */
    deleteAfter: deleteAfterMs === null ? null : utcMinute(deleteAfterMs),
    balanceUrl: `${deps.baseUrl}/console/account-balance`,
    supportEmail: deps.supportEmail,
  };
}
