// The balance warnings job: every account with running capsuls is folded and the account's policy
// (src/domain/account/policy.ts) asked what it is due; a level not yet issued in this episode is issued
// as an event (warning-emails.ts mails it). Then nonpayment's step: at the suspension point the account
// is suspended (the reactions stop its capsuls), a top-up above it resumes it (the reactions usually
// get there first, within seconds), and past the grace or at the overdraft every running capsul's
// deletion is requested with reason "nonpayment" (the reactions send delete operations to the hosts).
// The decider checks each against the same policy at the command's instant. Decisions are appended against the account stream's version they were made on, so a
// top-up landing meanwhile makes the job decide again instead of warning or deleting on a stale balance.
import type pg from 'pg';
import { accountDecider, type AccountCommand } from '../domain/account/decider.ts';
import { accountStream, type AccountEvent } from '../domain/account/events.ts';
import type { VmState } from '../domain/account/state.ts';
import type { Cents } from '../domain/shared/money.ts';
import { dollars, utcMinute } from '../core/format.ts';
import type { Cause } from '../domain/events.ts';
import { ConcurrencyError, handleCommand } from '../ledger/handle.ts';
import { loadStream } from '../db/event-store.ts';
import { accountsAccruingAt } from '../read/accounts.ts';
import type { JobRun } from './job.ts';
import {
  accountAsOf,
  dayMs,
  evaluateAccount,
  type NonpaymentRules,
  type NonpaymentStep,
  nonpaymentStepOf,
  nonpaymentReason as nonpayment,
} from '../domain/account/policy.ts';
const cause: Cause = { by: { kind: 'job', id: 'balance-warnings' } };
/** Decisions on one account retried after a concurrent change, before it waits for the next run. */
const maxAttempts = 3;

export type BalanceWarningDeps = {
  pool: pg.Pool;
  overdraftCents: Cents;
  /** at or below it, an account's capsuls are suspended */
  suspensionPointCents: Cents;
  graceDays: number;
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

/** The rules of nonpayment from the configuration. */
export const nonpaymentRules = (
  deps: Pick<BalanceWarningDeps, 'overdraftCents' | 'suspensionPointCents' | 'graceDays'>,
): NonpaymentRules => ({
  suspensionPointCents: deps.suspensionPointCents,
  graceMs: deps.graceDays * dayMs,
  overdraftCents: deps.overdraftCents,
});

async function evaluate(deps: BalanceWarningDeps, accountId: string, atMs: number) {
  const stream = await loadStream(deps.pool, accountStream(accountId));
  const account = accountAsOf(
    stream.events.map((stored) => stored.event as AccountEvent),
    atMs,
  );
  return {
    version: stream.version,
    evaluation: evaluateAccount(account, atMs, deps.overdraftCents),
    step: nonpaymentStepOf(account, atMs, nonpaymentRules(deps)),
    suspended: account.suspension !== null,
  };
}

async function previewAccount(deps: BalanceWarningDeps, run: JobRun, candidate: Candidate) {
  const atMs = (run.asOf ?? deps.now()).getTime();
  const { evaluation: e, step, suspended } = await evaluate(deps, candidate.accountId, atMs);
  if (e.level === null && step === null) return { warned: false, deleted: 0 };
  const action = e.level === null ? 'no warning' : e.toIssue ? 'would warn' : 'warned already';
  run.report(
    `warnings: ${candidate.email} (account ${candidate.accountId}): ${e.level ?? 'no level'}, balance ${dollars(e.balanceCents)}: ${action}${stepLine(step, 'would')}`,
  );
  for (const vm of e.running) {
    const fate =
      step?.step === 'delete'
        ? `would delete (${nonpayment})`
        : step?.step === 'suspend'
          ? 'would stop (suspended)'
          : step?.step === 'resume'
            ? 'would start again'
            : suspended
              ? 'suspended (stopped)'
              : 'runs on';
    run.report(`warnings:   ${vm.vmId} ${vm.size} ${dollars(vm.priceCentsPerMonth)}/month: ${fate}`);
  }
  return { warned: e.toIssue !== null, deleted: step?.step === 'delete' ? e.running.length : 0 };
}

/** What nonpayment's step is, after the warning on a dry run's line ("; would suspend …"). */
function stepLine(step: NonpaymentStep, mood: 'would'): string {
  if (step === null) return '';
  switch (step.step) {
    case 'suspend':
      return `; ${mood} suspend (deletion after ${utcMinute(step.deleteAfterMs)} unless funds are added)`;
    case 'resume':
      return `; ${mood} resume`;
    case 'delete':
      return `; ${mood} delete for ${nonpayment} (${step.why === 'overdraft' ? 'the overdraft is reached' : 'the grace has ended'})`;
  }
}

async function checkAccount(deps: BalanceWarningDeps, run: JobRun, candidate: Candidate) {
  let warned = false;
  const deleted: VmState[] = [];
  for (let attempt = 1; ; attempt++) {
    // One instant per attempt: the commands are decided at the instant the policy was asked about.
    const now = deps.now();
    const { version, evaluation: e, step } = await evaluate(deps, candidate.accountId, now.getTime());
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
      if (step?.step === 'suspend') {
        const command = {
          type: 'SuspendAccount' as const,
          data: nonpaymentRules(deps),
          metadata: { now, cause: { ...cause, reason: nonpayment } },
        };
        if (await append(command)) {
          run.report(
            `warnings: ${candidate.email}: suspended, ${e.running.length} capsuls stopped (balance ${dollars(e.balanceCents)}; deletion after ${utcMinute(step.deleteAfterMs)} unless funds are added)`,
          );
        }
      }
      if (step?.step === 'resume') {
        if (await append({ type: 'ResumeAccount' as const, data: {}, metadata: { now, cause } })) {
          run.report(`warnings: ${candidate.email}: resumed (balance ${dollars(e.balanceCents)})`);
        }
      }
      if (step?.step === 'delete') {
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
