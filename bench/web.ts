// The customer pages under load, as browsers see them. One account with 50 capsuls and 500 payments is
// seeded into the ledger (events and projections written by the ledger's append, as seed.ts does: the
// `vms` and `payments` rows are the real ones); a session for its email is a row in `sessions` with
// the cookie signed by the hub's own cookie plugin, as the login step writes them (insertSession,
// setSessionCookie). The hub (buildHub, logger off) listens on a free loopback port in this process;
// autocannon runs in a worker thread, so the load generator does not share the hub's event loop.
// GET /health is the baseline; each page is asked for with the session cookie and `accept: text/html`.
// Every endpoint gets a warm-up, then slices of about a second each in turn; a single response that is
// not a 200 (a redirect to the login page measures nothing) fails the bench.
import { randomBytes, randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import type { FastifyInstance } from 'fastify';
import type pg from 'pg';
import { accountStream, type AccountEvent, type Provider } from '../src/domain/account/events.ts';
import type { Actor, LedgerEvent } from '../src/domain/events.ts';
import { currentEventVersion } from '../src/domain/upcast.ts';
import { vmStream, type VmEvent } from '../src/domain/vm/events.ts';
import { buildHub } from '../src/hub/app.ts';
import { sessionCookie, sessionIdleMs, sha256 } from '../src/hub/web/session.ts';
import { appendEvents } from '../src/ledger/append.ts';
import { Hosts } from '../src/ledger/hosts.ts';
import { Ledger, newVmId } from '../src/ledger/ledger.ts';
import { balanceAt } from '../src/read/accounts.ts';
import { Tally } from './measure.ts';
import { backendCpu, backendCpuSince } from './pgcpu.ts';
import { fmtInt } from './progress.ts';
import { Rng } from './seed.ts';

/** A seeded customer: how many capsuls (of them deleted, failed, stopped) and payments (of them invalidated). */
export type AccountShape = { capsuls: number; deleted: number; failed: number; stopped: number; payments: number; invalidated: number };
/** The customer of the page load. */
export const webShape: AccountShape = { capsuls: 50, deleted: 12, failed: 2, stopped: 5, payments: 500, invalidated: 8 };
export const webCapsuls = webShape.capsuls;
export const webPayments = webShape.payments;
const hosts = ['web-bench-1', 'web-bench-2'];
const hostMemoryMb = 256 * 1024;
const sshKey = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB7n0bq3cE4o4vQ2kRrLkJ3Sx1iYtCw0Vh9tY3mJdQx1 web-bench@capsul';
const minuteMs = 60_000;
const dayMs = 24 * 60 * minuteMs;

type Endpoint = { label: string; path: string; page: boolean; mustShow: (account: WebAccount) => string[] };
/** The baseline, asked for as a monitor would: no cookie. */
const health: Endpoint = { label: 'GET /health', path: '/health', page: false, mustShow: () => [] };
/** The customer pages, asked for as a logged-in browser would; what each must show before it is measured. */
export const webPages: Endpoint[] = [
  { label: 'GET /console', path: '/console', page: true, mustShow: (account) => account.listedVmIds },
  { label: 'GET /console/account-balance', path: '/console/account-balance', page: true, mustShow: () => [] },
];

/** A response that was not a 200, or a seeded account the projections disagree about: fails the bench. */
export class WebBenchError extends Error {}

// ── Seeding ──────────────────────────────────────────────────────────────────────────────────────

export type WebAccount = {
  accountId: string;
  email: string;
  events: number;
  balanceCents: number;
  /** the capsuls not deleted: the console lists them */
  listedVmIds: string[];
};

type Append = { streamId: string; events: LedgerEvent[]; by: Actor };
type PlannedVm = { vmId: string; host: string; createdMs: number; fate: 'running' | 'stopped' | 'failed' | 'deleted' };

/**
 * Two years of one customer: payments throughout, capsuls created over the first 18 months, then
 * deletions, chargebacks (a few reversed) and more payments; each capsul placed and provisioned on a
 * registered host, some stopped, a few failed. Streams are valid in order and append with the version
 * they expect. The balance folded from the stream must equal the one read from the projections.
 */
export async function seedWebAccount(pool: pg.Pool, shape: AccountShape = webShape): Promise<WebAccount> {
  const rng = new Rng(20261127);
  const accountId = randomUUID();
  const email = `web-bench-${accountId.slice(0, 8)}@example.org`;
  const customer: Actor = { kind: 'customer', id: accountId };
  const operator: Actor = { kind: 'operator', id: 'bench' };
  const spoke: Actor = { kind: 'spoke', id: 'bench' };
  const sizes = (await pool.query(`SELECT id, (dollars_per_month * 100)::int AS cents FROM vm_sizes ORDER BY dollars_per_month LIMIT 4`))
    .rows;
  const images = (await pool.query(`SELECT id FROM os_images WHERE NOT deprecated ORDER BY id`)).rows.map((r) => r.id as string);
  const { rows: ids } = await pool.query(`SELECT nextval('payment_ids')::int AS id FROM generate_series(1, $1::int)`, [shape.payments]);
  const paymentIds = ids.map((r) => r.id as number).sort((a, b) => a - b);
  const hostRegistry = new Hosts({ pool });
  // A second customer seeded into the same database finds the hosts registered.
  const { rows: registered } = await pool.query('SELECT id FROM hosts WHERE id = ANY($1)', [hosts]);
  for (const hostId of hosts.filter((id) => !registered.some((row) => row.id === id)))
    await hostRegistry.add({ hostId, memoryMb: hostMemoryMb, vcpus: 64, cause: { by: operator } });

  const nowMs = Date.now();
  const openedMs = nowMs - 730 * dayMs;
  const laterMs = nowMs - 180 * dayMs; // creations before, deletions and corrections after
  const iso = (ms: number) => new Date(ms).toISOString();
  const between = (fromMs: number, toMs: number) => Math.floor(fromMs + rng.next() * (toMs - fromMs));
  const appends: Append[] = [];
  const pushChunked = (streamId: string, events: LedgerEvent[], by: Actor) => {
    for (let i = 0; i < events.length; ) {
      const size = rng.int(1, 4);
      appends.push({ streamId, events: events.slice(i, i + size), by });
      i += size;
    }
  };
  const byTime = (a: AccountEvent, b: AccountEvent) => Date.parse(a.data.at) - Date.parse(b.data.at);
  let nextPayment = 0;
  const payment = (receivedMs: number): AccountEvent => {
    const paymentId = paymentIds[nextPayment++]!;
    const provider: Provider = rng.pick(['stripe', 'stripe', 'btcpay', 'manual']);
    return {
      type: 'PaymentRecorded',
      data: {
        accountId,
        paymentId,
        amountCents: rng.pick([1000, 2000, 2500, 5000]) + rng.int(0, 99),
        provider,
        reference: provider === 'manual' ? null : `${provider === 'stripe' ? 'cs' : 'btc'}_web_bench_${paymentId}`,
        at: iso(receivedMs),
        recordedAt: iso(receivedMs + rng.int(1, 120) * 1000),
      },
    };
  };

  // Phase 1: the account opens with its first payment; payments and capsul creations, in time order.
  const earlyPayments = Math.round(shape.payments * 0.8);
  const phase1: AccountEvent[] = [payment(openedMs)];
  for (let n = 1; n < earlyPayments; n++) phase1.push(payment(between(openedMs, laterMs)));
  const vms: PlannedVm[] = [];
  for (let n = 0; n < shape.capsuls; n++) {
    const fate =
      n < shape.deleted
        ? 'deleted'
        : n < shape.deleted + shape.failed
          ? 'failed'
          : n < shape.deleted + shape.failed + shape.stopped
            ? 'stopped'
            : 'running';
    const vm: PlannedVm = { vmId: newVmId(), host: rng.pick(hosts), createdMs: between(openedMs + dayMs, laterMs - 7 * dayMs), fate };
    vms.push(vm);
    const size = rng.pick(sizes);
    phase1.push({
      type: 'VmCreationRequested',
      data: {
        accountId,
        vmId: vm.vmId,
        size: size.id,
        os: rng.pick(images),
        sshPublicKeys: [sshKey],
        priceCentsPerMonth: size.cents,
        at: iso(vm.createdMs),
      },
    });
  }
  phase1.sort(byTime);
  pushChunked(accountStream(accountId), [{ type: 'AccountOpened', data: { accountId, email, at: iso(openedMs) } }, ...phase1], customer);

  // Phase 2: each capsul's life on its host.
  for (const vm of vms) pushChunked(vmStream(vm.vmId), vmLife(vm, accountId, rng, iso), spoke);

  // Phase 3: deletions, chargebacks (some reversed), later payments, in time order.
  const phase3: AccountEvent[] = [];
  const deletions = new Map<string, number>();
  for (const vm of vms.filter((v) => v.fate === 'deleted')) {
    const requestedMs = between(laterMs, nowMs - dayMs);
    deletions.set(vm.vmId, requestedMs);
    phase3.push({ type: 'VmDeletionRequested', data: { accountId, vmId: vm.vmId, at: iso(requestedMs) } });
  }
  for (let n = 0; n < shape.invalidated; n++) {
    const paymentId = paymentIds[n * 37]!;
    const invalidatedMs = between(laterMs, nowMs - 2 * dayMs);
    phase3.push({ type: 'PaymentInvalidated', data: { accountId, paymentId, at: iso(invalidatedMs) } });
    if (n % 3 === 0)
      phase3.push({
        type: 'PaymentReinstated',
        data: { accountId, paymentId, at: iso(invalidatedMs + dayMs) },
      });
  }
  while (nextPayment < shape.payments) phase3.push(payment(between(laterMs, nowMs - minuteMs)));
  phase3.sort(byTime);
  pushChunked(accountStream(accountId), phase3, operator);

  // Phase 4: the hosts delete what was asked.
  for (const vm of vms.filter((v) => v.fate === 'deleted')) {
    const requestedMs = deletions.get(vm.vmId)!;
    const operationId = randomUUID();
    pushChunked(
      vmStream(vm.vmId),
      [
        { type: 'VmDeletionScheduled', data: { vmId: vm.vmId, host: vm.host, operationId, at: iso(requestedMs + 1000) } },
        {
          type: 'VmDeleted',
          data: { vmId: vm.vmId, host: vm.host, reportId: randomUUID(), operationId, at: iso(requestedMs + 5 * minuteMs) },
        },
      ],
      spoke,
    );
  }

  const versions = new Map<string, bigint>();
  let events = 0;
  for (const append of appends) {
    const result = await appendEvents(
      pool,
      append.streamId,
      append.events,
      { by: append.by, eventVersion: currentEventVersion },
      versions.get(append.streamId) ?? 0n,
    );
    if (!result.ok) throw new Error(`web bench seed: unexpected version conflict on ${append.streamId}`);
    versions.set(append.streamId, result.nextVersion);
    events += append.events.length;
  }

  const balanceCents = await checkSeededAccount(pool, accountId, email, shape);
  const listedVmIds = vms.filter((vm) => vm.fate !== 'deleted').map((vm) => vm.vmId);
  return { accountId, email, events, balanceCents, listedVmIds };
}

/** A capsul's stream: placed, then failed, or provisioned and running (some stopped since). */
function vmLife(vm: PlannedVm, accountId: string, rng: Rng, iso: (ms: number) => string): VmEvent[] {
  const { vmId, host } = vm;
  const create = randomUUID();
  const events: VmEvent[] = [{ type: 'VmPlaced', data: { vmId, accountId, host, operationId: create, at: iso(vm.createdMs + 10_000) } }];
  if (vm.fate === 'failed') {
    events.push({
      type: 'VmFailed',
      data: {
        vmId,
        host,
        error: 'qemu-img: disk full',
        operation: 'create',
        reportId: randomUUID(),
        operationId: create,
        at: iso(vm.createdMs + minuteMs),
      },
    });
    return events;
  }
  const octet = () => rng.int(1, 254);
  events.push(
    {
      type: 'VmProvisioned',
      data: {
        vmId,
        host,
        ipv4: `10.${octet()}.${octet()}.${octet()}`,
        ipv6: `2001:db8::${octet().toString(16)}:${octet().toString(16)}`,
        sshHostKeys: [{ type: 'ssh-ed25519', sha256: `SHA256:${randomBytes(32).toString('base64').replace(/=+$/, '')}` }],
        reportId: randomUUID(),
        operationId: create,
        at: iso(vm.createdMs + 2 * minuteMs),
      },
    },
    {
      type: 'VmStateObserved',
      data: { vmId, host, state: 'running', reportId: randomUUID(), operationId: null, at: iso(vm.createdMs + 3 * minuteMs) },
    },
  );
  if (vm.fate === 'stopped') {
    const stop = randomUUID();
    const stoppedMs = vm.createdMs + rng.int(1, 6) * dayMs;
    events.push(
      { type: 'VmStopRequested', data: { vmId, host, force: false, operationId: stop, at: iso(stoppedMs) } },
      {
        type: 'VmStateObserved',
        data: { vmId, host, state: 'stopped', reportId: randomUUID(), operationId: stop, at: iso(stoppedMs + 20_000) },
      },
    );
  }
  return events;
}

/** The rows the pages read are there, and the projections' balance is the stream's own fold. */
async function checkSeededAccount(pool: pg.Pool, accountId: string, email: string, shape: AccountShape): Promise<number> {
  const { rows } = await pool.query(
    `SELECT (SELECT count(*)::int FROM vms WHERE account_id = $1) AS vms,
            (SELECT count(*)::int FROM vms WHERE account_id = $1 AND state = 'running' AND last_seen_ipv4 IS NOT NULL) AS running,
            (SELECT count(*)::int FROM payments WHERE account_id = $1) AS payments`,
    [accountId],
  );
  const counts = rows[0] as { vms: number; running: number; payments: number };
  const running = shape.capsuls - shape.deleted - shape.failed - shape.stopped;
  if (counts.vms !== shape.capsuls || counts.payments !== shape.payments || counts.running !== running) {
    throw new WebBenchError(
      `web bench seed: the projections hold ${counts.vms} capsuls (${counts.running} running with an IP) and ${counts.payments} payments ` +
        `for ${email}, not ${shape.capsuls} (${running}) and ${shape.payments}`,
    );
  }
  const now = new Date();
  const folded = await new Ledger({ pool }).balanceCents(email, now);
  const projected = await balanceAt(pool, accountId, now);
  if (folded !== projected) {
    throw new WebBenchError(
      `web bench seed: ${email}'s balance is ${folded} cents folded from its stream but ${projected} from the projections`,
    );
  }
  return folded;
}

// ── The hub, the session, the load ───────────────────────────────────────────────────────────────

export type WebHub = { app: FastifyInstance; url: string; close(): Promise<void> };

export async function startWebHub(pool: pg.Pool): Promise<WebHub> {
  const app = await buildHub({ pool, logger: false, secretKey: randomBytes(32).toString('hex') });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address();
  if (address === null || typeof address === 'string') throw new Error('the web bench hub has no TCP address');
  let closed: Promise<void> | undefined;
  return { app, url: `http://127.0.0.1:${address.port}`, close: () => (closed ??= app.close()) };
}

/** A logged-in browser's cookie header for `email`: a session row as insertSession writes it, signed by the hub. */
export async function sessionFor(hub: WebHub, pool: pg.Pool, email: string): Promise<string> {
  const id = randomBytes(32).toString('base64url');
  const now = new Date();
  await pool.query('INSERT INTO sessions (id_hash, email, created, last_seen, expires) VALUES ($1, $2, $3, $3, $4)', [
    sha256(id),
    email,
    now.toISOString(),
    new Date(now.getTime() + sessionIdleMs).toISOString(),
  ]);
  return `${sessionCookie}=${encodeURIComponent(hub.app.signCookie(id))}`;
}

export type EndpointLoad = { label: string; path: string; tally: Tally; p50Ms: number; p99Ms: number; maxMs: number };

/**
 * Every endpoint must answer 200 before any load (a 303 to the login page would mean the session was
 * refused) and show what it must (the console: the account's capsuls). Then a warm-up of each, then
 * slices of about a second of each in turn until each has run `seconds`, so background load on the
 * machine hits all of them alike. Latencies of all slices count.
 */
export async function loadEndpoints(options: {
  pool: pg.Pool;
  hub: WebHub;
  account: WebAccount;
  cookie: string;
  seconds: number;
  warmupSeconds: number;
  connections: number;
  onProgress?: (text: string) => void;
}): Promise<{ health: EndpointLoad; pages: EndpointLoad[] }> {
  const { pool, hub, cookie, connections } = options;
  const endpoints = [health, ...webPages].map((endpoint) => {
    const headers: Record<string, string> = endpoint.page ? { accept: 'text/html', cookie } : {};
    return { ...endpoint, url: `${hub.url}${endpoint.path}`, headers, tally: new Tally(endpoint.label), latencies: [] as Float64Array[] };
  });
  for (const endpoint of endpoints) {
    const response = await hub.app.inject({ method: 'GET', url: endpoint.path, headers: endpoint.headers });
    if (response.statusCode !== 200) {
      const where = response.headers.location ? ` → ${response.headers.location}` : '';
      throw new WebBenchError(`${endpoint.label} answered ${response.statusCode}${where} before the load, not 200: nothing to measure`);
    }
    const missing = endpoint.mustShow(options.account).filter((text) => !response.body.includes(text));
    if (missing.length > 0) {
      throw new WebBenchError(`${endpoint.label} does not show ${missing.length} of what it should (${missing.slice(0, 3).join(', ')}…)`);
    }
  }

  const generator = new LoadGenerator();
  try {
    for (const endpoint of endpoints) {
      await runChecked(generator, { ...endpoint, connections, seconds: options.warmupSeconds }, (responses) =>
        options.onProgress?.(`${endpoint.label} (warm-up): ${fmtInt(responses)} responses`),
      );
    }
    const slices = Math.max(1, Math.round(options.seconds));
    const sliceSeconds = options.seconds / slices;
    for (let slice = 1; slice <= slices; slice++) {
      for (const endpoint of endpoints) {
        const { tally } = endpoint;
        const pgBefore = await backendCpu(pool);
        const loopBefore = performance.eventLoopUtilization();
        const run = await runChecked(generator, { ...endpoint, connections, seconds: sliceSeconds }, (responses) =>
          options.onProgress?.(
            `${endpoint.label}: slice ${slice}/${slices}, ${fmtInt(responses)} responses` +
              (tally.operations ? `, ${fmtInt(tally.perSecond)}/s so far` : ''),
          ),
        );
        // The hub's CPU is its event loop's busy time: the load generator has its own thread.
        tally.nodeCpuMs += performance.eventLoopUtilization(loopBefore).active;
        const pgMs = backendCpuSince(pgBefore, await backendCpu(pool));
        tally.pgCpuMs = pgMs === undefined || tally.pgCpuMs === undefined ? undefined : tally.pgCpuMs + pgMs;
        tally.operations += run.latenciesMs.length;
        tally.seconds += run.seconds;
        tally.rounds++;
        endpoint.latencies.push(run.latenciesMs);
      }
    }
  } finally {
    await generator.close();
  }
  const [baseline, ...pages] = endpoints.map(({ label, path, tally, latencies }) => {
    const all = Float64Array.from(latencies.flatMap((part) => [...part])).sort();
    const at = (quantile: number) => all[Math.max(0, Math.ceil(quantile * all.length) - 1)] ?? Number.NaN;
    return { label, path, tally, p50Ms: at(0.5), p99Ms: at(0.99), maxMs: at(1) };
  });
  return { health: baseline!, pages };
}

/** One run; anything but 200s (a redirect, an error page, a refused or timed-out request) fails the bench. */
async function runChecked(
  generator: LoadGenerator,
  run: LoadRun & { label: string },
  onProgress: (responses: number) => void,
): Promise<LoadDone> {
  const done = await generator.run(run, onProgress);
  const statuses = Object.entries(done.statuses);
  if (statuses.some(([code]) => code !== '200') || done.errors > 0 || done.timeouts > 0 || done.latenciesMs.length === 0) {
    const answered = statuses.map(([code, count]) => `${fmtInt(count)} × ${code}`).join(', ') || 'no responses';
    throw new WebBenchError(`${run.label}: ${answered}, ${done.errors} errors, ${done.timeouts} timeouts: every response must be a 200`);
  }
  return done;
}

// ── The load generator: autocannon in a worker thread ────────────────────────────────────────────

type LoadRun = { url: string; headers: Record<string, string>; connections: number; seconds: number };
type LoadDone = { seconds: number; latenciesMs: Float64Array; statuses: Record<string, number>; errors: number; timeouts: number };
type FromWorker = { type: 'progress'; responses: number } | ({ type: 'done' } & LoadDone) | { type: 'failed'; message: string };

/**
 * The worker's side, for each LoadRun it is sent: autocannon, every response's latency at full
 * resolution (autocannon's own histogram keeps whole milliseconds) and status, progress every 100 ms,
 * then a FromWorker 'done'. Plain JavaScript: the TypeScript loader does not reach worker threads on Node 20.
 */
const loadWorkerSource = `
const { parentPort, workerData } = require('node:worker_threads');
const autocannon = require(workerData.autocannon);
parentPort.on('message', (run) => {
  const latencies = [];
  const statuses = {};
  const ticker = setInterval(() => parentPort.postMessage({ type: 'progress', responses: latencies.length }), 100);
  const tracker = autocannon({ url: run.url, headers: run.headers, connections: run.connections, duration: run.seconds });
  tracker.on('response', (_client, statusCode, _bytes, responseTimeMs) => {
    latencies.push(responseTimeMs);
    statuses[statusCode] = (statuses[statusCode] || 0) + 1;
  });
  tracker.then(
    (result) => {
      clearInterval(ticker);
      const latenciesMs = Float64Array.from(latencies);
      parentPort.postMessage(
        { type: 'done', seconds: result.duration, latenciesMs, statuses, errors: result.errors, timeouts: result.timeouts },
        [latenciesMs.buffer],
      );
    },
    (error) => {
      clearInterval(ticker);
      parentPort.postMessage({ type: 'failed', message: String(error && error.message) });
    },
  );
});
`;

/** One autocannon run at a time in a thread of its own, so the load generator does not share the hub's event loop. */
class LoadGenerator {
  private readonly worker = new Worker(loadWorkerSource, {
    eval: true,
    workerData: { autocannon: createRequire(import.meta.url).resolve('autocannon') },
  });
  private failure: Error | undefined;
  private waiting: ((message: FromWorker) => void) | undefined;

  constructor() {
    this.worker.on('message', (message: FromWorker) => this.waiting?.(message));
    this.worker.on('error', (error) => this.stop(error));
    this.worker.on('exit', (code) => this.stop(new Error(`the load generator thread exited (code ${code})`)));
  }

  run(run: LoadRun, onProgress: (responses: number) => void): Promise<LoadDone> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiting = (message) => {
        if (message.type === 'progress') return onProgress(message.responses);
        this.waiting = undefined;
        if (message.type === 'done') resolve(message);
        else reject(new Error(`the load generator failed: ${message.message}`));
      };
      const { url, headers, connections, seconds } = run;
      this.worker.postMessage({ url, headers, connections, seconds } satisfies LoadRun);
    });
  }

  async close(): Promise<void> {
    this.failure ??= new Error('the load generator was closed');
    await this.worker.terminate();
  }

  private stop(error: Error): void {
    this.failure ??= error;
    this.waiting?.({ type: 'failed', message: error.message });
  }
}
