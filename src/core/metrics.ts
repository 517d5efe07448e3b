// The process's Prometheus counters, incremented where things happen deep in the code (the command
// path, the jobs, the payment webhooks). One registry per process, no business here: the hub merges it
// with its own (HTTP requests, what it reads from the database at scrape time) and serves both at
// /metrics (src/hub/metrics.ts; the list in docs/operations.md, "Monitoring").
import { Counter, Histogram, Registry } from 'prom-client';

export const processMetrics = new Registry();
const registers = [processMetrics];

export const eventsAppended = new Counter({
  name: 'capsul_events_appended_total',
  help: 'Events appended to the ledger, by event type (counted once the append committed).',
  labelNames: ['type'] as const,
  registers,
});

export const commandRefusals = new Counter({
  name: 'capsul_command_refusals_total',
  help: 'Commands the domain refused, by the refusal code (invalid, not_found, refused, insufficient_funds).',
  labelNames: ['code'] as const,
  registers,
});

export const versionConflicts = new Counter({
  name: 'capsul_command_version_conflicts_total',
  help: 'Appends that lost a race with another append to the same stream (each is decided again, or reported).',
  registers,
});

export const streamSnapshots = new Counter({
  name: 'capsul_stream_snapshots_total',
  help: 'Stream snapshots by outcome: used by a load, refused by its checks (folded from the start), written, write failed (best effort).',
  labelNames: ['outcome'] as const,
  registers,
});

export const jobRuns = new Counter({
  name: 'capsul_job_runs_total',
  help: 'Scheduled job runs by job and outcome (done, failed, skipped: running in another process).',
  labelNames: ['job', 'outcome'] as const,
  registers,
});

export const jobFailures = new Counter({
  name: 'capsul_job_failures_total',
  help: 'Scheduled job runs that failed, by job.',
  labelNames: ['job'] as const,
  registers,
});

export const jobDuration = new Histogram({
  name: 'capsul_job_duration_seconds',
  help: 'How long each scheduled job run took, by job (skipped runs not counted).',
  labelNames: ['job'] as const,
  buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300],
  registers,
});

export const webhookDeliveries = new Counter({
  name: 'capsul_webhook_deliveries_total',
  help: "Payment providers' webhook deliveries by provider and outcome (done, ignored, refused, retry).",
  labelNames: ['provider', 'outcome'] as const,
  registers,
});
