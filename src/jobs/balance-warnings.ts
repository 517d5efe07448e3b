// The balance warnings job: every account with running capsuls is folded and the account's policy
// (src/domain/account/policy.ts) asked what it is due; a level not yet issued in this episode is issued
// as an event (warning-emails.ts mails it); at deletion-now every running capsul's deletion is requested
// with reason "nonpayment" (the reactor then sends delete operations to the hosts). The decider checks
// both against the same policy at the command's instant. Decisions are appended against the account stream's version they were made on, so a
// top-up landing meanwhile makes the job decide again instead of warning or deleting on a stale balance.
import type pg from 'pg';
import { accountDecider, type AccountCommand } from '../domain/account/decider.ts';
import { accountStream, type AccountEvent } from '../domain/account/events.ts';
import type { VmState } from '../domain/account/state.ts';
import type { Cents } from '../domain/shared/money.ts';
import { dollars } from '../core/format.ts';
import type { Cause } from '../domain/events.ts';
import { ConcurrencyError, handleCommand } from '../ledger/handle.ts';
import { loadStream } from '../db/event-store.ts';
import { accountsAccruingAt } from '../read/accounts.ts';
import type { JobRun } from './job.ts';
import { accountAsOf, evaluateAccount, nonpaymentReason as nonpayment } from '../domain/account/policy.ts';
const cause: Cause = { by: { kind: 'job', id: 'balance-warnings' } };
/** Decisions on one account retried after a concurrent change, before it waits for the next run. */
const maxAttempts = 3;

export type BalanceWarningDeps = {
  pool: pg.Pool;
  overdraftCents: Cents;
  baseUrl: string;
  supportEmail: string;
  now: () => Date;
  /** after capsuls' deletion was requested: let the reactor schedule their delete operations now */
  afterDeletions?: () => void;
};

export type BalanceWarningOutcome = { accounts: number; warned: number; deleted: number };

export async function runBalanceWarnings(deps: BalanceWarningDeps, run: JobRun): Promise<BalanceWarningOutcome> {
  if (run.asOf && !run.dryRun) throw new Error('balance warnings act only at the present instant: evaluating another instant is a dry run');
  const outcome: BalanceWarningOutcome = { accounts: 0, warned: 0, deleted: 0 };
  const failed: string[] = [];
  const candidatesAt = run.asOf ?? deps.now();
  for await (const account of accountsAccruingAt(deps.pool, candidatesAt)) {
    outcome.accounts++;
    try {
      const done = run.dryRun ? await previewAccount(deps, run, account) : await checkAccount(deps, run, account);
      outcome.warned += done.warned ? 1 : 0;
      outcome.deleted += done.deleted;
    } catch (error) {
      // One account's trouble must not keep the others from their warnings (or deletions).
      run.log(`warnings: ${account.email}: failed: ${(error as Error).message}`);
      failed.push(account.email);
    }
  }
  if (deps.afterDeletions && outcome.deleted > 0) deps.afterDeletions();
  if (failed.length > 0) throw new Error(`${failed.length} of ${outcome.accounts} accounts failed: ${failed.slice(0, 5).join(', ')}`);
  return outcome;
}

type Candidate = { accountId: string; email: string };

async function evaluate(deps: BalanceWarningDeps, accountId: string, atMs: number) {
  const stream = await loadStream(deps.pool, accountStream(accountId));
  const account = accountAsOf(
    stream.events.map((stored) => stored.event as AccountEvent),
    atMs,
  );
  return { version: stream.version, evaluation: evaluateAccount(account, atMs, deps.overdraftCents) };
}

async function previewAccount(deps: BalanceWarningDeps, run: JobRun, candidate: Candidate) {
  const atMs = (run.asOf ?? deps.now()).getTime();
  const { evaluation: e } = await evaluate(deps, candidate.accountId, atMs);
  if (e.level === null) return { warned: false, deleted: 0 };
  const action = e.toIssue ? 'would warn' : 'warned already';
  run.report(`warnings: ${candidate.email} (account ${candidate.accountId}): ${e.level}, balance ${dollars(e.balanceCents)}: ${action}`);
  for (const vm of e.running) {
    const fate = e.level === 'deletion-now' ? `would delete (${nonpayment})` : 'runs on';
    run.report(`warnings:   ${vm.vmId} ${vm.size} ${dollars(vm.priceCentsPerMonth)}/month: ${fate}`);
  }
  return { warned: e.toIssue !== null, deleted: e.level === 'deletion-now' ? e.running.length : 0 };
}

async function checkAccount(deps: BalanceWarningDeps, run: JobRun, candidate: Candidate) {
  let warned = false;
  const deleted: VmState[] = [];
  for (let attempt = 1; ; attempt++) {
    // One instant per attempt: the commands are decided at the instant the policy was asked about.
    const now = deps.now();
    const { version, evaluation: e } = await evaluate(deps, candidate.accountId, now.getTime());
    try {
      let expectedVersion = version;
      const append = async (command: AccountCommand) => {
        const result = await handleCommand(deps, accountStream(candidate.accountId), accountDecider, command, { expectedVersion });
        expectedVersion = result.version;
        return result.events.length > 0;
      };
      if (e.toIssue) {
        const level = e.toIssue;
        const command = {
          type: 'IssueBalanceWarning' as const,
          data: { level, overdraftCents: deps.overdraftCents },
          metadata: { now, cause },
        };
        if (await append(command)) {
          warned = true;
          run.report(`warnings: ${candidate.email}: ${level} issued (balance ${dollars(e.balanceCents)})`);
        }
      }
      if (e.level === 'deletion-now') {
        for (const vm of e.running) {
          const command = {
            type: 'RequestVmDeletion' as const,
            data: { vmId: vm.vmId, overdraftCents: deps.overdraftCents },
            metadata: { now, cause: { ...cause, reason: nonpayment } },
          };
          if (await append(command)) {
            deleted.push(vm);
            run.report(`warnings: ${candidate.email}: ${vm.vmId} deletion requested (${nonpayment})`);
          }
        }
      }
      break;
    } catch (error) {
      if (!(error instanceof ConcurrencyError)) throw error;
      if (attempt >= maxAttempts) {
        run.log(`warnings: ${candidate.email}: the account kept changing; it is checked again next run`);
        break;
      }
    }
  }
  return { warned, deleted: deleted.length };
}
