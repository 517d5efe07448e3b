// Runs the scheduled jobs once, in order: payment providers' reconciliation first (so money a missed
// webhook would have credited counts before balances are judged), balance warnings, their emails, the
// drift check, the incidents (opened and cleared) and the operators' emails about them, receipts, the
// monthly statements. Each job runs under its own PostgreSQL advisory lock: a job another process is
// running is skipped, never run twice at once. Every job is safe to run again: a second run finds nothing more.
import type { Clock } from '../core/clock.ts';
import type { StreamCache } from '../ledger/cache.ts';
import type { Hosts } from '../ledger/hosts.ts';
import type pg from 'pg';
import type { AlertLimits, Config, ProviderIdentity } from '../config.ts';
import { advisoryLocks, notTaken, withAdvisoryLock } from '../db/advisory-lock.ts';
import type { Cents } from '../domain/shared/money.ts';
import { jobDuration, jobFailures, jobRuns } from '../core/metrics.ts';
import type { Mailer } from '../mail/mailer.ts';
import type { PaymentProvider } from '../payments/provider.ts';
import { runBalanceWarnings } from './balance-warnings.ts';
import { checkDrift } from './drift.ts';
import { sendIncidentEmails } from './incident-emails.ts';
import { watchIncidents } from './incidents.ts';
import type { JobRun } from './job.ts';
import { recordJobRun } from './job-runs.ts';
import { sendReceipts } from './receipts.ts';
import { sendStatementEmails } from './statement-emails.ts';
import { sendWarningEmails } from './warning-emails.ts';

export const jobNames = [
  'reconcile',
  'balance-warnings',
  'warning-emails',
  'drift',
  'incidents',
  'incident-emails',
  'receipts',
  'statement-emails',
] as const;
export type JobName = (typeof jobNames)[number];

/** The configuration's part of JobDeps. */
type JobSettings =
  | 'overdraftCents'
  | 'suspensionPointCents'
  | 'graceDays'
  | 'baseUrl'
  | 'supportEmail'
  | 'opsEmails'
  | 'alerts'
  | 'provider';

/** JobDeps from the configuration's settings and the process's services. */
export function jobDeps(config: Pick<Config, JobSettings>, services: Omit<JobDeps, JobSettings>): JobDeps {
  const { overdraftCents, suspensionPointCents, graceDays, baseUrl, supportEmail, opsEmails, alerts, provider } = config;
  return { ...services, overdraftCents, suspensionPointCents, graceDays, baseUrl, supportEmail, opsEmails, alerts, provider };
}

/** `pool`, `now`, `hosts` and `cache`: the process's own (src/ledger/services.ts), handed down. */
export type JobDeps = {
  pool: pg.Pool;
  hosts: Hosts;
  /** the process's cache of folded streams, which the jobs' commands append through */
  cache?: StreamCache;
  mailer: Mailer;
  providers: readonly PaymentProvider[];
  /** zero or negative: at or below this balance an account's capsuls are deleted */
  overdraftCents: Cents;
  /** at or below this balance (above the overdraft) an account's capsuls are suspended */
  suspensionPointCents: Cents;
  /** days a suspended account has before deletion for nonpayment */
  graceDays: number;
  baseUrl: string;
  supportEmail: string;
  /** the operators (OPS_EMAILS, or ADMIN_EMAILS), told of incidents; none: no one is told */
  opsEmails?: readonly string[];
  /** when a condition becomes an incident */
  alerts: AlertLimits;
  /** who issues the monthly statements (PROVIDER_NAME, PROVIDER_ADDRESS); default: capsul, no address */
  provider?: ProviderIdentity;
  now: Clock;
  /** after capsuls' deletion was requested: let the reactor schedule their delete operations now */
  afterDeletions?: () => void;
};

export type RunOptions = {
  /** evaluate as of this instant: only with dryRun (see asOfRefusal) */
  asOf?: Date;
  dryRun?: boolean;
  /** default: all, in jobNames order */
  jobs?: readonly JobName[];
  report: (line: string) => void;
  log: (line: string) => void;
};

export type JobOutcome = { job: JobName; status: 'done' | 'skipped' | 'failed'; error?: string };

/**
 * Why evaluating as of `asOf` may not act, or null when it may. A run that acts is stamped with the
 * clock's time: deciding it on another instant's balance would warn or delete on figures that are not
 * the account's now (a top-up since, charges still to come), so any other instant is a dry run.
 */
export function asOfRefusal(asOf: Date | undefined, now: Date, dryRun: boolean): string | null {
  if (asOf === undefined || dryRun) return null;
  const when = asOf.getTime() > now.getTime() ? 'in the future' : 'in the past';
  return `--now ${asOf.toISOString()} is ${when}: the jobs act only at the present instant; add --dry-run to see what they would do then`;
}

export async function runJobs(deps: JobDeps, options: RunOptions): Promise<JobOutcome[]> {
  const dryRun = options.dryRun ?? false;
  const refusal = asOfRefusal(options.asOf, deps.now(), dryRun);
  if (refusal) throw new Error(refusal);
  const run: JobRun = { asOf: options.asOf, dryRun, report: options.report, log: options.log };
  const outcomes: JobOutcome[] = [];
  for (const job of jobNames.filter((name) => !options.jobs || options.jobs.includes(name))) {
    const outcome = await runOne(deps, job, run);
    if (outcome.status === 'skipped') options.log(`${job}: running in another process: skipped`);
    if (outcome.status === 'failed') options.log(`${job}: failed: ${outcome.error}`);
    outcomes.push(outcome);
  }
  return outcomes;
}

/** One job, under its lock unless a dry run; counted in the metrics, and recorded when it acted. */
async function runOne(deps: JobDeps, job: JobName, run: JobRun): Promise<JobOutcome> {
  const started = deps.now();
  const startedMs = performance.now();
  let outcome: JobOutcome;
  try {
    // A dry run changes nothing, so it needs no lock and waits for no one.
    let ran = true;
    if (run.dryRun) await runJob(deps, job, run);
    else ran = (await withAdvisoryLock(deps.pool, advisoryLocks.jobs[job], () => runJob(deps, job, run), { mode: 'try' })) !== notTaken;
    outcome = { job, status: ran ? 'done' : 'skipped' };
  } catch (error) {
    outcome = { job, status: 'failed', error: (error as Error).message ?? String(error) };
  }
  jobRuns.inc({ job, outcome: outcome.status });
  if (outcome.status === 'skipped') return outcome;
  jobDuration.observe({ job }, (performance.now() - startedMs) / 1000);
  if (outcome.status === 'failed') jobFailures.inc({ job });
  if (!run.dryRun) {
    const finished = deps.now();
    await recordJobRun(deps.pool, { job, started, finished, error: outcome.error }).catch((error) =>
      run.log(`${job}: its run could not be recorded: ${(error as Error).message}`),
    );
  }
  return outcome;
}

async function runJob(deps: JobDeps, job: JobName, run: JobRun): Promise<void> {
  switch (job) {
    case 'reconcile':
      return reconcile(deps, run);
    case 'balance-warnings':
      await runBalanceWarnings(deps, run);
      return;
    case 'warning-emails':
      await sendWarningEmails(deps, run);
      return;
    case 'drift':
      await checkDrift(deps, run);
      return;
    case 'incidents':
      await watchIncidents(deps, run);
      return;
    case 'incident-emails':
      await sendIncidentEmails(deps, run);
      return;
    case 'receipts':
      await sendReceipts(deps, run);
      return;
    case 'statement-emails':
      await sendStatementEmails({ ...deps, issuer: deps.provider ?? { name: 'capsul', addressLines: [] } }, run);
      return;
    default: {
      const unknown: never = job;
      throw new Error(`unknown job ${unknown}`);
    }
  }
}

/** Each provider in turn; one that fails does not keep the others from running. */
async function reconcile(deps: JobDeps, run: JobRun): Promise<void> {
  const failed: string[] = [];
  for (const provider of deps.providers) {
    try {
      await provider.reconcile({
        now: run.asOf ?? deps.now(),
        dryRun: run.dryRun,
        log: (line) => run.report(`reconcile: ${provider.id}: ${line}`),
      });
    } catch (error) {
      failed.push(`${provider.id}: ${(error as Error).message}`);
    }
  }
  if (failed.length > 0) throw new Error(failed.join('; '));
}
