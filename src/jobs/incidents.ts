// The incidents job: every minute, what the service looks like now (src/read/incidents.ts) against the
// rules (incident-rules.ts): an incident opens when its condition begins and clears when it ends, one
// row each (table incidents). It runs under its job lock, one process at a time; the unique index on
// open incidents keeps a second opening of one condition out all the same. The emails are
// incident-emails.ts's.
import type pg from 'pg';
import type { AlertLimits } from '../config.ts';
import type { Clock } from '../core/clock.ts';
import { observations, openIncidents } from '../read/incidents.ts';
import { conditionsAt, reconcile } from './incident-rules.ts';
import type { JobRun } from './job.ts';

export type IncidentDeps = { pool: pg.Pool; now: Clock; alerts: AlertLimits };

export async function watchIncidents(deps: IncidentDeps, run: JobRun): Promise<{ opened: number; cleared: number }> {
  const now = run.asOf ?? deps.now();
  const waitingSince = new Date(now.getTime() - deps.alerts.waitingMinutes * 60_000);
  const [seen, open] = await Promise.all([observations(deps.pool, waitingSince), openIncidents(deps.pool)]);
  const changes = reconcile(open, conditionsAt(now, seen, deps.alerts));
  let opened = 0;
  for (const condition of changes.open) {
    if (run.dryRun) {
      run.report(`incidents: would open: ${condition.summary}`);
      continue;
    }
    const { rowCount } = await deps.pool.query(
      `INSERT INTO incidents (kind, subject, opened, summary, details) VALUES ($1, $2, $3, $4, $5::jsonb)
       ON CONFLICT (kind, subject) WHERE cleared IS NULL DO NOTHING`,
      [condition.kind, condition.subject, now.toISOString(), condition.summary, JSON.stringify(condition.details)],
    );
    if (rowCount === 1) {
      opened++;
      run.report(`incidents: opened: ${condition.summary}`);
    }
  }
  let cleared = 0;
  for (const incident of changes.clear) {
    if (run.dryRun) {
      run.report(`incidents: would clear: ${incident.summary}`);
      continue;
    }
    const { rowCount } = await deps.pool.query('UPDATE incidents SET cleared = $2 WHERE id = $1 AND cleared IS NULL', [
      incident.id,
      now.toISOString(),
    ]);
    if (rowCount === 1) {
      cleared++;
      run.report(`incidents: cleared: ${incident.summary}`);
    }
  }
  return { opened, cleared };
}
