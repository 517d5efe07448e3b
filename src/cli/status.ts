// `capsul status`: one screen for an operator, from cron or a monitoring check: hosts, capsuls by state,
// pending operations, open incidents, the jobs' last runs, the schema version. Exit 0 when all is well,
// 1 with the reasons listed last when something needs attention (what, in `attention`).
import type pg from 'pg';
import { latestVersion, schemaVersion } from '../db/migrate.ts';
import { jobNames } from '../jobs/runner.ts';
import { onlineWithinMs } from '../ledger/hosts.ts';
import {
  awaitingPlacement,
  capsulsByState,
  type HostLoad,
  hostLoads,
  type LastJobRun,
  incidentsOpen,
  lastJobRuns,
  pendingOperations,
  type Waiting,
} from '../read/status.ts';
import type { Incident } from '../read/incidents.ts';
import type { AlertLimits } from '../config.ts';
import { plural } from '../core/format.ts';
import type { CommandSpec } from './context.ts';

const incidentsListed = 20;

export type Status = {
  at: string;
  schema: { version: number; expected: number };
  hosts: HostLoad[];
  capsuls: Record<string, number>;
  operations: Waiting;
  awaitingPlacement: Waiting;
  /** open incidents (the hub's incidents job opens and clears them each minute) */
  incidents: { count: number; first: Incident[] };
  jobs: (LastJobRun | { job: string; outcome: 'never run' })[];
  /** what needs attention, one line each; empty: all is well */
  attention: string[];
};

/** Everything `capsul status` shows; read only when the schema is this code's (otherwise the tables may differ). */
export async function readStatus(pool: pg.Pool, now: Date, alerts: Pick<AlertLimits, 'waitingMinutes'>): Promise<Status> {
  const schema = { version: await schemaVersion(pool), expected: latestVersion() };
  const empty: Waiting = { count: 0, oldestAgeSeconds: null };
  const status: Status = {
    at: now.toISOString(),
    schema,
    hosts: [],
    capsuls: {},
    operations: empty,
    awaitingPlacement: empty,
    incidents: { count: 0, first: [] },
    jobs: [],
    attention: [],
  };
  if (schema.version !== schema.expected) {
    status.attention.push(`the database is at schema version ${schema.version}, this code's is ${schema.expected}: run capsul migrate`);
    return status;
  }
  const [hosts, capsuls, operations, placement, incidents, runs] = await Promise.all([
    hostLoads(pool, new Date(now.getTime() - onlineWithinMs)),
    capsulsByState(pool),
    pendingOperations(pool, now),
    awaitingPlacement(pool, now),
    incidentsOpen(pool, incidentsListed),
    lastJobRuns(pool),
  ]);
  const jobs = jobNames.map((job) => runs.find((run) => run.job === job) ?? { job, outcome: 'never run' as const });
  Object.assign(status, { hosts, capsuls, operations, awaitingPlacement: placement, incidents, jobs });
  status.attention = attention(status, alerts.waitingMinutes * 60);
  return status;
}

function attention(status: Status, waitingSeconds: number): string[] {
  const reasons: string[] = [];
  for (const host of status.hosts) {
    if (!host.online && host.capsuls > 0) {
      reasons.push(`host ${host.id} is offline with ${plural(host.capsuls, 'capsul')} (last heartbeat ${instant(host.lastSeen)})`);
    }
  }
  const oldest = status.operations.oldestAgeSeconds;
  if (oldest !== null && oldest > waitingSeconds) {
    reasons.push(`an operation has waited ${age(oldest)} for its host (over ${waitingSeconds / 60} minutes)`);
  }
  if (status.incidents.count > 0) reasons.push(`${plural(status.incidents.count, 'open incident')}: listed above, and on /admin/incidents`);
  for (const run of status.jobs) {
    if (run.outcome === 'failed') {
      reasons.push(
        `job ${run.job} failed at ${instant(run.finished)}${run.failures > 1 ? ` (${run.failures} runs in a row)` : ''}: ${run.error}`,
      );
    }
  }
  return reasons;
}

export const statusCommands: Record<string, CommandSpec> = {
  status: {
    summary:
      'one screen for an operator: hosts, capsuls, pending operations, incidents, jobs, schema; exit 1 when something needs attention',
    usage: `capsul status [--json]

  Hosts (online or offline, capsuls, memory used/total, last heartbeat), capsuls by state, pending
  operations, open incidents (hosts offline, operations waiting, webhooks or jobs failing, drift,
  capsuls vanished: opened and cleared by the hub each minute), each job's last run, the schema
  version. Exits 0 when all is well and 1 when something needs attention, listed last, one line each:
  a host offline with capsuls, an operation waiting over ALERT_WAITING_MINUTES (default 10), an open
  incident, a job whose last run failed, a schema other than this code's. Reads only (as capsul_reader) and never migrates:
  usable from cron or a monitoring check. See docs/operations.md, "Monitoring".
  --json   the same as one JSON object (its "attention" lists the reasons)`,
    options: { json: { type: 'boolean' } },
    async run(ctx, v) {
      const { pool, now } = await ctx.connect('reader', { migrate: false });
      const status = await readStatus(pool, now(), ctx.config.alerts);
      if (v.json) ctx.out(JSON.stringify(status));
      else for (const line of screen(status)) ctx.out(line);
      return status.attention.length > 0 ? 1 : 0;
    },
  },
};

function screen(status: Status): string[] {
  const lines = [`capsul status at ${status.at}`, `schema: version ${status.schema.version} (this code: ${status.schema.expected})`];
  if (status.schema.version === status.schema.expected) {
    const online = status.hosts.filter((host) => host.online).length;
    lines.push('', `hosts: ${status.hosts.length} (${online} online, ${status.hosts.length - online} offline)`);
    for (const host of status.hosts) {
      lines.push(
        `  ${host.id}  ${host.online ? 'online' : 'offline'}  ${plural(host.capsuls, 'capsul')}  ` +
          `memory ${host.usedMemoryMb}/${host.memoryMb} MiB  last heartbeat ${instant(host.lastSeen)}`,
      );
    }
    const states = Object.entries(status.capsuls);
    lines.push(`capsuls: ${states.length === 0 ? 'none' : states.map(([state, n]) => `${state} ${n}`).join(', ')}`);
    lines.push(`operations pending: ${waiting(status.operations)}`);
    lines.push(`capsuls awaiting a host: ${waiting(status.awaitingPlacement)}`);
    lines.push(`incidents open: ${status.incidents.count}`);
    for (const incident of status.incidents.first) {
      lines.push(`  ${incident.kind}  since ${instant(incident.opened)}  ${incident.summary}`);
    }
    if (status.incidents.count > status.incidents.first.length)
      lines.push(`  … and ${status.incidents.count - status.incidents.first.length} more`);
    lines.push('jobs (last run):');
    const width = Math.max(...status.jobs.map((run) => run.job.length));
    for (const run of status.jobs) {
      const job = run.job.padEnd(width);
      if (run.outcome === 'never run') lines.push(`  ${job}  never run`);
      else lines.push(`  ${job}  ${run.outcome.padEnd(6)}  ${instant(run.finished)}${run.outcome === 'failed' ? `  ${run.error}` : ''}`);
    }
  }
  lines.push('');
  if (status.attention.length === 0) lines.push('all is well');
  else lines.push('needs attention:', ...status.attention.map((reason) => `  ${reason}`));
  return lines;
}

const waiting = (w: Waiting) => (w.count === 0 ? 'none' : `${w.count}, the oldest for ${age(w.oldestAgeSeconds ?? 0)}`);

/** An age for a person: 45s, 12m 5s, 3h 20m, 2d 4h. */
export function age(seconds: number): string {
  const s = Math.floor(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86_400)}d ${Math.floor((s % 86_400) / 3600)}h`;
}

/** An instant to the second, UTC. */
const instant = (at: Date | null) => (at === null ? 'never' : `${at.toISOString().slice(0, 19)}Z`);
