// GET /metrics, in the Prometheus text format, for an operator's Prometheus: only when METRICS_TOKEN is
// set, and only to a request bearing it; any other request gets the same 404 as an unknown address.
// The hub's own metrics live in a registry per hub (several hubs in one process, in tests): the HTTP
// requests, and gauges read from the database at each scrape (src/read/status.ts); the process's counters
// (src/core/metrics.ts) are merged in. The list is in docs/operations.md, "Monitoring".
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type pg from 'pg';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Clock } from '../core/clock.ts';
import { processMetrics } from '../core/metrics.ts';
import { receiptWindowMs } from '../jobs/receipts.ts';
import { warningEmailWindowMs } from '../jobs/warning-emails.ts';
import { onlineWithinMs } from '../ledger/hosts.ts';
import {
  awaitingPlacement,
  capsulsByState,
  emailsPending,
  hostLoads,
  openIncidentsByKind,
  pendingOperations,
  signedLogStatus,
} from '../read/status.ts';

export type MetricsDeps = {
  /** METRICS_TOKEN; unset: no /metrics at all */
  token: string | undefined;
  pool: pg.Pool;
  now: Clock;
  /** whether there are operators to tell of incidents (OPS_EMAILS, or ADMIN_EMAILS): otherwise no incident email is owed */
  operatorsToTell: boolean;
};

/** Counts every request the hub answers; serves /metrics when a token is configured. Install before the routes. */
export function installMetrics(app: FastifyInstance, deps: MetricsDeps): void {
  const registry = new Registry();
  const requests = new Counter({
    name: 'capsul_http_requests_total',
    help: 'HTTP requests answered, by route pattern (none: no route matched), method and status.',
    labelNames: ['route', 'method', 'status'] as const,
    registers: [registry],
  });
  const latency = new Histogram({
    name: 'capsul_http_request_duration_seconds',
    help: 'How long the hub took to answer, by route pattern and method.',
    labelNames: ['route', 'method'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  app.addHook('onResponse', async (request, reply) => {
    // The route's pattern, never the address: ids and tokens in addresses never become labels.
    const labels = { route: request.routeOptions.url ?? 'none', method: request.method };
    requests.inc({ ...labels, status: String(reply.statusCode) });
    latency.observe(labels, reply.elapsedTime / 1000);
  });
  if (deps.token === undefined) return;
  databaseGauges(registry, deps);
  const expected = digest(deps.token);
  const bearer = (request: FastifyRequest) => /^Bearer (\S+)$/.exec(request.headers.authorization ?? '')?.[1];
  app.get('/metrics', { logLevel: 'warn' }, async (request, reply) => {
    const presented = bearer(request);
    // Compared as digests, in constant time whatever the length presented.
    if (presented === undefined || !timingSafeEqual(digest(presented), expected)) return reply.callNotFound();
    const merged = Registry.merge([processMetrics, registry]);
    return reply.type(merged.contentType).send(await merged.metrics());
  });
}

const digest = (text: string) => createHash('sha256').update(text, 'utf8').digest();

/** Gauges read from the database when scraped: one read of everything per scrape, shared by the gauges. */
function databaseGauges(registry: Registry, deps: MetricsDeps): void {
  let pending: Promise<Snapshot> | undefined;
  const snapshot = () => {
    pending ??= readSnapshot(deps).finally(() => {
      pending = undefined;
    });
    return pending;
  };
  const gauge = <L extends string>(
    name: string,
    help: string,
    labelNames: readonly L[],
    set: (gauge: Gauge<L>, snapshot: Snapshot) => void,
  ) =>
    new Gauge<L>({
      name,
      help,
      labelNames,
      registers: [registry],
      async collect() {
        this.reset();
        set(this, await snapshot());
      },
    });
  gauge('capsul_oldest_unplaced_capsul_age_seconds', 'Age of the oldest capsul waiting for a host (0: none waits).', [], (g, s) =>
    g.set(s.unplaced.oldestAgeSeconds ?? 0),
  );
  gauge('capsul_unplaced_capsuls', 'Capsuls requested and not placed on a host yet.', [], (g, s) => g.set(s.unplaced.count));
  gauge(
    'capsul_oldest_pending_operation_age_seconds',
    'Age of the oldest operation a host has not reported on yet (0: none pending).',
    [],
    (g, s) => g.set(s.operations.oldestAgeSeconds ?? 0),
  );
  gauge('capsul_pending_operations', 'Operations sent to hosts and not reported yet.', [], (g, s) => g.set(s.operations.count));
  gauge('capsul_hosts', 'Registered hosts by status (online: a heartbeat within the last 30 s).', ['status'], (g, s) => {
    const online = s.hosts.filter((host) => host.online).length;
    g.set({ status: 'online' }, online);
    g.set({ status: 'offline' }, s.hosts.length - online);
  });
  gauge('capsul_hosts_offline_with_capsuls', 'Offline hosts that hold capsuls.', [], (g, s) =>
    g.set(s.hosts.filter((host) => !host.online && host.capsuls > 0).length),
  );
  gauge('capsul_host_memory_bytes', "Each host's memory for capsuls.", ['host'], (g, s) => {
    for (const host of s.hosts) g.set({ host: host.id }, host.memoryMb * mebibyte);
  });
  gauge('capsul_host_memory_used_bytes', "Memory of each host's capsuls.", ['host'], (g, s) => {
    for (const host of s.hosts) g.set({ host: host.id }, host.usedMemoryMb * mebibyte);
  });
  gauge('capsul_host_online', 'Whether each host is online (1) or offline (0).', ['host'], (g, s) => {
    for (const host of s.hosts) g.set({ host: host.id }, host.online ? 1 : 0);
  });
  gauge('capsul_capsuls', 'Capsuls not deleted, by state.', ['state'], (g, s) => {
    for (const [state, count] of Object.entries(s.capsuls)) g.set({ state }, count);
  });
  gauge('capsul_emails_pending', 'Emails the jobs still owe, by kind (receipt, warning, incident).', ['kind'], (g, s) => {
    g.set({ kind: 'receipt' }, s.emails.receipts);
    g.set({ kind: 'warning' }, s.emails.warnings);
    g.set({ kind: 'incident' }, s.emails.incidents);
  });
  gauge('capsul_incidents_open', 'Open incidents by kind (docs/operations.md, "Alerts").', ['kind'], (g, s) => {
    for (const [kind, count] of Object.entries(s.incidents)) g.set({ kind }, count);
  });
  gauge('capsul_log_tree_size', 'Events sealed into the signed log.', [], (g, s) => g.set(s.log.treeSize));
  gauge(
    'capsul_log_checkpointed_tree_size',
    'Events covered by a signed checkpoint (the largest tree one signs; 0: none signed).',
    [],
    (g, s) => g.set(s.log.checkpointedTreeSize),
  );
  gauge('capsul_log_checkpoint_age_seconds', 'Age of the newest signed checkpoint (0: none signed yet).', [], (g, s) =>
    g.set(s.log.lastCheckpointAgeSeconds ?? 0),
  );
  gauge('capsul_db_pool_connections', "The hub's database pool, by state (total, idle, waiting: requests queued).", ['state'], (g) => {
    g.set({ state: 'total' }, deps.pool.totalCount);
    g.set({ state: 'idle' }, deps.pool.idleCount);
    g.set({ state: 'waiting' }, deps.pool.waitingCount);
  });
}

const mebibyte = 1024 * 1024;

type Snapshot = Awaited<ReturnType<typeof readSnapshot>>;

async function readSnapshot(deps: MetricsDeps) {
  const now = deps.now();
  const [unplaced, operations, hosts, capsuls, emails, log, incidents] = await Promise.all([
    awaitingPlacement(deps.pool, now),
    pendingOperations(deps.pool, now),
    hostLoads(deps.pool, new Date(now.getTime() - onlineWithinMs)),
    capsulsByState(deps.pool),
    emailsPending(deps.pool, {
      now,
      receiptsSince: new Date(now.getTime() - receiptWindowMs),
      warningsSince: new Date(now.getTime() - warningEmailWindowMs),
      operatorsToTell: deps.operatorsToTell,
    }),
    signedLogStatus(deps.pool, now),
    openIncidentsByKind(deps.pool),
  ]);
  return { unplaced, operations, hosts, capsuls, emails, log, incidents };
}
