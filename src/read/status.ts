// What an operator watches, read from the database in one place: the hub's scrape-time metrics
// (src/hub/metrics.ts) and `capsul status` (src/cli/status.ts) both ask here; hosts and drift are
// src/read/hosts.ts's, incidents src/read/incidents.ts's. Ages are in seconds at the instant the caller passes; instants are Dates.
import { checkpointsReach, countUnmailedBalanceWarnings, sealedTreeSize } from '../db/event-store.ts';
import { countUnmailedIncidents, type Incident, openIncidents, openIncidentsByKind } from './incidents.ts';
import type { Queryable } from './rows.ts';

export { type HostLoad, hostLoads } from './hosts.ts';
export { openIncidentsByKind };

/** Capsuls not deleted, counted by state (pending, running, stopped, failed, vanished …). */
export async function capsulsByState(db: Queryable): Promise<Record<string, number>> {
  const { rows } = await db.query(`SELECT state, count(*)::int AS n FROM vms WHERE state <> 'deleted' GROUP BY state ORDER BY state`);
  return Object.fromEntries(rows.map((row) => [row.state, row.n]));
}

export type Waiting = { count: number; oldestAgeSeconds: number | null };

/** Operations sent to hosts and not reported yet: how many, and how long the oldest has waited. */
export async function pendingOperations(db: Queryable, now: Date): Promise<Waiting> {
  const { rows } = await db.query(
    `SELECT count(*)::int AS n, extract(epoch FROM $1::timestamptz - min(created))::float8 AS oldest FROM operations WHERE completed IS NULL`,
    [now.toISOString()],
  );
  return { count: rows[0].n, oldestAgeSeconds: rows[0].oldest };
}

/** Capsuls requested and not placed on a host yet (what the reaction loop owes). */
export async function awaitingPlacement(db: Queryable, now: Date): Promise<Waiting> {
  const { rows } = await db.query(
    `SELECT count(*)::int AS n, extract(epoch FROM $1::timestamptz - min(created))::float8 AS oldest
     FROM vms WHERE host IS NULL AND deleted IS NULL AND state = 'pending'`,
    [now.toISOString()],
  );
  return { count: rows[0].n, oldestAgeSeconds: rows[0].oldest };
}

/** Open incidents (src/jobs/incidents.ts opens and clears them), oldest first: how many, and the first `limit`. */
export async function incidentsOpen(db: Queryable, limit: number): Promise<{ count: number; first: Incident[] }> {
  const open = await openIncidents(db);
  return { count: open.length, first: open.slice(0, limit) };
}

export type LastJobRun = {
  job: string;
  started: Date;
  finished: Date;
  outcome: 'done' | 'failed';
  error: string | null;
  /** failed runs in a row, up to the last */
  failures: number;
};

/** Each scheduled job's last run that acted (src/jobs/job-runs.ts records them). */
export async function lastJobRuns(db: Queryable): Promise<LastJobRun[]> {
  const { rows } = await db.query('SELECT job, started, finished, outcome, error, failures FROM job_runs ORDER BY job');
  return rows.map((row) => ({ ...row }) as LastJobRun);
}

export type EmailsPending = { receipts: number; warnings: number; incidents: number };

/**
 * The emails the jobs still owe, each within its job's window: receipts for payments credited, balance
 * warnings issued, incidents for the operators (only when there are operators to tell).
 */
export async function emailsPending(
  db: Queryable,
  window: { now: Date; receiptsSince: Date; warningsSince: Date; operatorsToTell: boolean },
): Promise<EmailsPending> {
  const { rows } = await db.query(
    `SELECT count(*)::int AS receipts FROM payments p
     WHERE NOT p.invalidated AND p.recorded > $1 AND p.recorded <= $2
       AND NOT EXISTS (SELECT 1 FROM payment_receipts r WHERE r.payment_id = p.id)`,
    [window.receiptsSince.toISOString(), window.now.toISOString()],
  );
  const warnings = await countUnmailedBalanceWarnings(db, { from: window.warningsSince, to: window.now });
  const incidents = window.operatorsToTell ? await countUnmailedIncidents(db) : 0;
  return { receipts: rows[0].receipts, warnings, incidents };
}

export type SignedLogStatus = { treeSize: number; checkpointedTreeSize: number; lastCheckpointAgeSeconds: number | null };

/** The signed log (docs/audit.md): events sealed, the largest tree a checkpoint signs, the newest checkpoint's age. */
export async function signedLogStatus(db: Queryable, now: Date): Promise<SignedLogStatus> {
  const [treeSize, checkpoints] = await Promise.all([sealedTreeSize(db), checkpointsReach(db)]);
  const signed = checkpoints.lastSigned;
  return {
    treeSize,
    checkpointedTreeSize: checkpoints.treeSize,
    lastCheckpointAgeSeconds: signed === null ? null : (now.getTime() - signed.getTime()) / 1000,
  };
}
