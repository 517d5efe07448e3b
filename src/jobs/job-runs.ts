// The record of each scheduled job's last run (table job_runs, migration 17), which `capsul status`
// and the hub's metrics read (src/read/status.ts): when it ran, how it ended, failures in a row.
import type pg from 'pg';

export type JobRunRecord = { job: string; started: Date; finished: Date; error: string | undefined };

export async function recordJobRun(pool: pg.Pool, run: JobRunRecord): Promise<void> {
  await pool.query(
    `INSERT INTO job_runs (job, started, finished, outcome, error, failures)
     VALUES ($1, $2, $3, CASE WHEN $4::text IS NULL THEN 'done' ELSE 'failed' END, $4::text, CASE WHEN $4::text IS NULL THEN 0 ELSE 1 END)
     ON CONFLICT (job) DO UPDATE SET started = excluded.started, finished = excluded.finished, outcome = excluded.outcome,
       error = excluded.error, failures = CASE WHEN excluded.error IS NULL THEN 0 ELSE job_runs.failures + 1 END`,
    [run.job, run.started.toISOString(), run.finished.toISOString(), run.error?.slice(0, 1000) ?? null],
  );
}
