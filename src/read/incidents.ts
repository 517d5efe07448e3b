// Read model: incidents (table `incidents`, migration 18), and what the incidents job looks at to open
// and clear them (src/jobs/incidents.ts): hosts' heartbeats, operations and placements waiting, the
// providers' webhook deliveries, the jobs' failures in a row, open drift. Instants as Dates.
import { centsFromNumeric, type Cents } from '../domain/shared/money.ts';
import type { Queryable } from './rows.ts';

export const incidentKinds = [
  'host-offline',
  'operations-waiting',
  'placement-waiting',
  'webhooks-failing',
  'job-failing',
  'drift',
  'vanished',
] as const;
export type IncidentKind = (typeof incidentKinds)[number];

export type Incident = {
  id: string;
  kind: IncidentKind;
  subject: string;
  opened: Date;
  cleared: Date | null;
  summary: string;
  details: string[];
  mailedOpen: Date | null;
  mailedClear: Date | null;
};

const incidentColumns = 'id::text AS id, kind, subject, opened, cleared, summary, details, mailed_open, mailed_clear';

function incidentOf(row: Record<string, unknown>): Incident {
  return {
    id: row.id as string,
    kind: row.kind as IncidentKind,
    subject: row.subject as string,
    opened: row.opened as Date,
    cleared: row.cleared as Date | null,
    summary: row.summary as string,
    details: row.details as string[],
    mailedOpen: row.mailed_open as Date | null,
    mailedClear: row.mailed_clear as Date | null,
  };
}

/** Open incidents, oldest first. */
export async function openIncidents(db: Queryable): Promise<Incident[]> {
  const { rows } = await db.query(`SELECT ${incidentColumns} FROM incidents WHERE cleared IS NULL ORDER BY opened, id`);
  return rows.map(incidentOf);
}

/** How many incidents are open. */
export async function countOpenIncidents(db: Queryable): Promise<number> {
  const { rows } = await db.query('SELECT count(*)::int AS n FROM incidents WHERE cleared IS NULL');
  return rows[0].n;
}

/** Incidents cleared, most recently opened first, at most `limit`; and whether there were more. */
export async function clearedIncidents(db: Queryable, limit: number): Promise<{ incidents: Incident[]; truncated: boolean }> {
  const { rows } = await db.query(
    `SELECT ${incidentColumns} FROM incidents WHERE cleared IS NOT NULL ORDER BY opened DESC, id DESC LIMIT ${Math.trunc(limit) + 1}`,
  );
  return { incidents: rows.slice(0, limit).map(incidentOf), truncated: rows.length > limit };
}

/** Open incidents counted by kind (every kind, zero included). */
export async function openIncidentsByKind(db: Queryable): Promise<Record<IncidentKind, number>> {
  const { rows } = await db.query('SELECT kind, count(*)::int AS n FROM incidents WHERE cleared IS NULL GROUP BY kind');
  const counts = Object.fromEntries(incidentKinds.map((kind) => [kind, 0])) as Record<IncidentKind, number>;
  for (const row of rows) counts[row.kind as IncidentKind] = row.n;
  return counts;
}

/**
 * What the operators have not been told yet, oldest first, at most `limit` of each: incidents open and
 * not mailed, and incidents mailed when they opened whose clearing is not (one cleared before anyone
 * was told of it needs no one any more).
 */
export async function unmailedIncidents(db: Queryable, limit: number): Promise<{ opened: Incident[]; cleared: Incident[] }> {
  const [opened, cleared] = await Promise.all([
    db.query(
      `SELECT ${incidentColumns} FROM incidents WHERE cleared IS NULL AND mailed_open IS NULL ORDER BY opened, id LIMIT ${Math.trunc(limit)}`,
    ),
    db.query(
      `SELECT ${incidentColumns} FROM incidents WHERE cleared IS NOT NULL AND mailed_open IS NOT NULL AND mailed_clear IS NULL
       ORDER BY cleared, id LIMIT ${Math.trunc(limit)}`,
    ),
  ]);
  return { opened: opened.rows.map(incidentOf), cleared: cleared.rows.map(incidentOf) };
}

/** How many emails about incidents the operators are owed (see unmailedIncidents). */
export async function countUnmailedIncidents(db: Queryable): Promise<number> {
  const { rows } = await db.query(
    `SELECT count(*)::int AS n FROM incidents
     WHERE (cleared IS NULL AND mailed_open IS NULL) OR (cleared IS NOT NULL AND mailed_open IS NOT NULL AND mailed_clear IS NULL)`,
  );
  return rows[0].n;
}

// ---- what the incidents job looks at

export type HostSeen = { id: string; registered: Date; lastSeen: Date | null; capsuls: number };
export type OperationsWaiting = { host: string; count: number; oldest: Date; kinds: string[] };
export type PlacementWaiting = { count: number; oldest: Date | null };
export type WebhookHealth = {
  provider: string;
  failures: number;
  lastFailed: Date | null;
  lastDone: Date | null;
  lastError: string | null;
};
export type JobHealth = { job: string; failures: number; error: string | null; finished: Date };
export type OpenDrift = {
  id: string;
  host: string;
  vmId: string;
  kind: string;
  detected: Date;
  /** the capsul's row, if the projection has it */
  email: string | null;
  size: string | null;
  priceCentsPerMonth: Cents | null;
  deletionRequestedAt: Date | null;
  chargesEndedAt: Date | null;
};

export type Observations = {
  hosts: HostSeen[];
  operations: OperationsWaiting[];
  placement: PlacementWaiting;
  webhooks: WebhookHealth[];
  jobs: JobHealth[];
  drift: OpenDrift[];
};

/** Everything the incidents job judges, read at one go; operations and placements count when older than `waitingSince`. */
export async function observations(db: Queryable, waitingSince: Date): Promise<Observations> {
  const since = waitingSince.toISOString();
  const [hosts, operations, placement, webhooks, jobs, drift] = await Promise.all([
    db.query(
      `SELECT h.id, h.registered, hb.last_seen,
              (SELECT count(*)::int FROM vms v WHERE v.host = h.id AND v.state NOT IN ('deleted', 'vanished')) AS capsuls
       FROM hosts h LEFT JOIN host_heartbeats hb ON hb.host_id = h.id WHERE h.removed IS NULL ORDER BY h.id`,
    ),
    db.query(
      `SELECT o.host, count(*)::int AS n, min(o.created) AS oldest, array_agg(DISTINCT o.kind ORDER BY o.kind) AS kinds
       FROM operations o JOIN hosts h ON h.id = o.host AND h.removed IS NULL
       WHERE o.completed IS NULL AND o.created < $1::timestamptz GROUP BY o.host ORDER BY o.host`,
      [since],
    ),
    db.query(
      `SELECT count(*)::int AS n, min(created) AS oldest FROM vms
       WHERE host IS NULL AND deleted IS NULL AND state = 'pending' AND created < $1::timestamptz`,
      [since],
    ),
    db.query('SELECT provider, failures, last_failed, last_done, last_error FROM webhook_deliveries ORDER BY provider'),
    db.query('SELECT job, failures, error, finished FROM job_runs ORDER BY job'),
    db.query(
      `SELECT d.id, d.host, d.vm_id, d.kind, d.detected, v.email, v.size, v.dollars_per_month::text AS price, v.deleted, v.accrual_ended
       FROM drift d LEFT JOIN vms v ON v.id = d.vm_id WHERE d.resolved IS NULL ORDER BY d.detected, d.id`,
    ),
  ]);
  return {
    hosts: hosts.rows.map((row) => ({ id: row.id, registered: row.registered, lastSeen: row.last_seen, capsuls: row.capsuls })),
    operations: operations.rows.map((row) => ({ host: row.host, count: row.n, oldest: row.oldest, kinds: row.kinds })),
    placement: { count: placement.rows[0].n, oldest: placement.rows[0].oldest },
    webhooks: webhooks.rows.map((row) => ({
      provider: row.provider,
      failures: row.failures,
      lastFailed: row.last_failed,
      lastDone: row.last_done,
      lastError: row.last_error,
    })),
    jobs: jobs.rows.map((row) => ({ job: row.job, failures: row.failures, error: row.error, finished: row.finished })),
    drift: drift.rows.map((row) => ({
      id: row.id,
      host: row.host,
      vmId: row.vm_id,
      kind: row.kind,
      detected: row.detected,
      email: row.email,
      size: row.size,
      priceCentsPerMonth: row.price === null ? null : centsFromNumeric(row.price),
      deletionRequestedAt: row.deleted,
      chargesEndedAt: row.accrual_ended,
    })),
  };
}
