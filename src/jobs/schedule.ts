// The jobs on a schedule in the hub (node-cron): reconciliation, balance warnings and the drift check
// every hour; the incidents, receipts, warning, incident and monthly statement emails every minute, receipts also soon
// after a payment. Several hubs may share a database: the
// hourly round runs only in the hub that holds the scheduler's advisory lock (the first to ask keeps
// it until it stops or its connection drops, then another takes over), so each hour's round runs
// once; the jobs' own locks keep `capsul cron-task` and the hubs from running a job twice at once.
import cron, { type ScheduledTask } from 'node-cron';
import type pg from 'pg';
import { Serial } from '../core/serial.ts';
import { advisoryLocks, takeAdvisoryLock, type SessionLock } from '../db/advisory-lock.ts';
import { runJobs, type JobDeps, type JobName } from './runner.ts';

export type ScheduleOptions = {
  /** cron expressions (UTC) */
  hourly?: string;
  receipts?: string;
  log: (line: string) => void;
};

export type Schedule = {
  /** a payment was credited: send its receipt soon rather than at the next minute */
  paymentsChanged(): void;
  stop(): Promise<void>;
};

const hourlyJobs: JobName[] = ['reconcile', 'balance-warnings', 'warning-emails', 'drift'];
/** Every minute: the incidents, and emails that are due or failed before (receipts, warnings, incidents for the operators). */
const mailJobs: JobName[] = ['receipts', 'warning-emails', 'incidents', 'incident-emails', 'statement-emails'];

export function startSchedule(deps: JobDeps, options: ScheduleOptions): Schedule {
  const { log } = options;
  const leadership = new Leadership(deps.pool);
  const run = (jobs: JobName[]) => runJobs(deps, { jobs, report: log, log }).then(() => {});
  const hourly = new Serial(
    'scheduled jobs',
    async () => {
      if (await leadership.hold()) await run(hourlyJobs);
    },
    log,
  );
  const receipts = new Serial('emails', () => run(mailJobs), log);
  const cronOptions = { timezone: 'UTC', noOverlap: true, logger: cronLogger(log) };
  const tasks: ScheduledTask[] = [
    cron.schedule(options.hourly ?? '7 * * * *', () => hourly.poke(), { ...cronOptions, name: 'capsul-hourly' }),
    cron.schedule(options.receipts ?? '* * * * *', () => receipts.poke(), { ...cronOptions, name: 'capsul-receipts' }),
  ];
  return {
    paymentsChanged: () => receipts.poke(),
    async stop() {
      for (const task of tasks) await task.destroy();
      await Promise.all([hourly.stop(), receipts.stop()]);
      await leadership.release();
    },
  };
}

/** The scheduler's advisory lock, kept on a connection of its own while this hub holds it. */
export class Leadership {
  private lock: SessionLock | undefined;

  constructor(private readonly pool: pg.Pool) {}

  /** Whether this hub leads: keeps the lock it has (checking the connection is alive) or tries to take it. */
  async hold(): Promise<boolean> {
    if (this.lock) {
      try {
        await this.lock.client.query('SELECT 1');
        return true;
      } catch {
        this.drop(); // the connection died, and the lock with it
      }
    }
    const lock = await takeAdvisoryLock(this.pool, advisoryLocks.schedulerLeadership, 'try');
    if (!lock) return false;
    lock.client.on('error', () => {
      if (this.lock === lock) this.drop();
    });
    this.lock = lock;
    return true;
  }

  async release(): Promise<void> {
    const lock = this.lock;
    this.lock = undefined;
    await lock?.release();
  }

  private drop(): void {
    this.lock?.discard();
    this.lock = undefined;
  }
}

function cronLogger(log: (line: string) => void) {
  const say = (message: string | Error) => log(`cron: ${message instanceof Error ? message.message : message}`);
  return { info: () => {}, debug: () => {}, warn: say, error: say };
}
