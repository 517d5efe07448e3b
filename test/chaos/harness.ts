// Chaos: the hub, two spokes and the database as real processes under load (CLI payments, signed
// Stripe webhooks, capsul creates and deletes, the spokes' own reports), each killed with SIGKILL at
// seeded random moments and started again. Afterwards, with everything running and quiet, what the
// harness was told (acknowledged) is compared with what the ledger holds: nothing lost, nothing
// phantom, nothing twice, projections equal to a replay, every capsul where its host says it is.
// Used by test/chaos/chaos.e2e.test.ts (a short run) and test/chaos/main.ts (`npm run chaos`).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type pg from 'pg';
import { createPool } from '../../src/db/database.ts';
import { freePort } from '../../src/db/embedded.ts';
import { migrate } from '../../src/db/migrate.ts';
import { Hosts } from '../../src/ledger/hosts.ts';
import { Ledger } from '../../src/ledger/ledger.ts';
import { recordCheckout } from '../../src/payments/checkouts.ts';
import { verifyProjections } from '../../src/projections/rebuild.ts';
import { signedDelivery, startFakeStripe, type FakeStripe } from '../payments/fake-stripe.ts';
import { operator, sshKey } from '../support/db.ts';
import { simulatedCapsuls } from '../support/fleet.ts';
import { projectRoot } from '../support/processes.ts';
import { track, trackDir, untrackDir } from './groups.ts';
import { createCluster, type Cluster } from './postgres.ts';

export { killEverythingNow } from './groups.ts';

export type ChaosOptions = {
  seed: number;
  /** how long load and faults run; the quiet period comes after */
  loadMs: number;
  /** hubs behind the spokes' HUB_URL (more than one needs HUB_URL lists in src/spoke/hub-client.ts) */
  hubs?: number;
  /** concurrent load generators */
  workers?: number;
  /** time between faults: drawn uniformly from this range */
  faultEveryMs?: [number, number];
  log?: (line: string) => void;
};

export const processKinds = ['hub', 'spoke', 'database'] as const;
export type ProcessKind = (typeof processKinds)[number];
export const operationKinds = ['payment', 'webhook', 'create', 'delete'] as const;
export type OperationKind = (typeof operationKinds)[number];

export type OperationFigures = {
  attempted: number;
  acknowledged: number;
  unknown: number;
  /** unknown at first, acknowledged when tried again after the faults (same reference / redelivery) */
  ackedOnRetry: number;
  recorded: number;
  lost: number;
  phantom: number;
  duplicates: number;
};

export type ChaosReport = {
  seed: number;
  hubs: number;
  loadMs: number;
  operations: Record<OperationKind, OperationFigures>;
  kills: Record<ProcessKind, number>;
  /** exits nobody asked for (crashes), by kind */
  unexpectedExits: Record<ProcessKind, number>;
  /**
   * Operations failed because their spoke was killed between journaling them and the driver's answer:
   * run at most once, never again (docs/spoke-protocol.md). A failed create fails its capsul; a failed
   * delete is scheduled again.
   */
  interrupted: { creates: number; others: number };
  convergeMs: number | null;
  projectionsMatch: boolean;
  /** `capsul audit verify` over the signed log the hub kept while it was being killed */
  auditVerified: boolean;
  /** every violation found, one line each: empty when the run passed */
  problems: string[];
};

/** How long the quiet period may take to converge; never asserted as a duration. */
const convergeLimitMs = 240_000;
const cliTimeoutMs = 90_000;
const startLimitMs = 120_000;
const requestTimeoutMs = 10_000;
const provisionMs = 500;
const accounts = 4;
/** the simulated driver's capacity (src/spoke/drivers/simulated.ts): 32 capsuls of f1-xs (512 MiB) */
const hostSize = { memoryMb: 16_384, vcpus: 8 };
/** creates give way to deletes above this many capsuls (of 64 places): a full host refuses, which is not chaos */
const maxLiveCapsuls = 40;
const hostIds = ['alpha', 'beta'] as const;
const stripeProviderStart = '2020-01-01';

type Operation = {
  kind: OperationKind;
  /** the reference (payments), the capsul's reason (creates, deletes): how it is found in the ledger */
  key: string;
  email: string;
  outcome: 'acknowledged' | 'unknown';
  ackedOnRetry?: boolean;
  vmId?: string;
  /** webhooks: the signed event, redelivered until acknowledged */
  event?: object;
  dollars?: string;
};

export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const chaos = new Chaos(options);
  try {
    return await chaos.run();
  } finally {
    await chaos.shutdown();
  }
}

class Chaos {
  private readonly random: () => number;
  private readonly log: (line: string) => void;
  private readonly hubs: number;
  private readonly scratch = mkdtempSync(path.join(os.tmpdir(), 'capsul-chaos-'));
  private readonly members: Member[] = [];
  private readonly operations: Operation[] = [];
  private readonly kills = zero(processKinds);
  private readonly unexpectedExits = zero(processKinds);
  private readonly problems: string[] = [];
  private readonly hubPorts: number[] = [];
  private cluster!: Cluster;
  private pool!: pg.Pool;
  private stripe!: FakeStripe;
  private supervising = false;
  private supervisor: NodeJS.Timeout | undefined;
  private counter = 0;
  private readonly runId: string;

  constructor(private readonly options: ChaosOptions) {
    this.random = mulberry32(options.seed);
    this.log = options.log ?? (() => {});
    this.hubs = options.hubs ?? 1;
    this.runId = `chaos-${options.seed}`;
    trackDir(this.scratch);
  }

  async run(): Promise<ChaosReport> {
    await this.setUp();
    this.log(
      `chaos: seed ${this.options.seed}, ${this.hubs} hub(s), 2 spokes, database on port ${this.cluster.port}; load for ${Math.round(this.options.loadMs / 1000)} s`,
    );
    const loadEnds = Date.now() + this.options.loadMs;
    const workers = Array.from({ length: this.options.workers ?? 3 }, (_, i) => this.worker(i, loadEnds));
    const faults = this.faults(loadEnds);
    const progress = setInterval(() => this.log(this.progressLine(loadEnds)), 5000);
    await Promise.all([...workers, faults]);
    clearInterval(progress);

    this.log('chaos: load and faults stopped; waiting for everything to run again and converge');
    const quietStart = Date.now();
    await this.allRunning();
    await this.retryUnknownPayments();
    const converged = await this.converge();
    const convergeMs = converged ? Date.now() - quietStart : null;
    if (!converged) this.problems.push(`not converged within ${convergeLimitMs / 1000} s: ${this.lastDivergence}`);
    const { figures: operations, interrupted } = await this.count();
    const projectionsMatch = await this.projectionsMatch();
    const auditVerified = await this.auditVerified();
    return {
      seed: this.options.seed,
      hubs: this.hubs,
      loadMs: this.options.loadMs,
      operations,
      kills: this.kills,
      unexpectedExits: this.unexpectedExits,
      interrupted,
      convergeMs,
      projectionsMatch,
      auditVerified,
      problems: this.problems,
    };
  }

  // ── setting up ─────────────────────────────────────────────────────────────────────────────────

  private async setUp(): Promise<void> {
    this.cluster = await createCluster({ dir: this.scratch, port: await freePort() });
    await this.cluster.start();
    this.pool = createPool(this.cluster.url, 6);
    this.pool.on('error', () => {}); // the database is killed on purpose
    await migrate(this.pool);
    const ledger = new Ledger({ pool: this.pool });
    const hosts = new Hosts({ pool: this.pool });
    const tokens: Record<string, string> = {};
    // Registered with what the simulated driver has: the hub places within it, the driver holds it to it.
    for (const hostId of hostIds) tokens[hostId] = (await hosts.add({ hostId, ...hostSize, cause: operator })).token;
    for (let i = 0; i < accounts; i++) {
      await ledger.recordPayment({
        email: this.email(i),
        amountCents: 1_000_000,
        reference: `${this.runId}-funding-${i}`,
        cause: operator,
      });
    }
    this.stripe = await startFakeStripe({ now: () => new Date() });

    this.members.push(new DatabaseMember(this.cluster));
    for (let i = 0; i < this.hubs; i++) {
      const port = await freePort();
      this.hubPorts.push(port);
      this.members.push(
        new NodeMember(
          `hub${this.hubs > 1 ? i + 1 : ''}`,
          'hub',
          ['serve'],
          this.env({
            CAPSUL_MODE: 'hub',
            PORT: String(port),
            HOST: '127.0.0.1',
            LOG_LEVEL: 'warn',
            CAPSUL_DATA_DIR: path.join(this.scratch, `hub-${i}`),
            STRIPE_SECRET_KEY: this.stripe.config.secretKey,
            STRIPE_WEBHOOK_SECRET: this.stripe.config.webhookSecret,
            STRIPE_API_BASE: this.stripe.config.apiBase!,
            PROVIDER_START_DATE: stripeProviderStart,
            AUDIT_KEY_FILE: this.auditKeyFile(),
            AUDIT_CHECKPOINT_SECONDS: '2',
          }),
          'capsul hub running at',
        ),
      );
    }
    const hubUrl = this.hubPorts.map((port) => `http://127.0.0.1:${port}`).join(',');
    for (const hostId of hostIds) {
      this.members.push(
        new NodeMember(
          `spoke ${hostId}`,
          'spoke',
          ['spoke'],
          this.env({
            HUB_URL: hubUrl,
            SPOKE_HOST_ID: hostId,
            SPOKE_HOST_TOKEN: tokens[hostId]!,
            SPOKE_DRIVER: 'simulated',
            SPOKE_DATA_DIR: this.spokeDir(hostId),
            SPOKE_SIMULATED_PROVISION_MS: String(provisionMs),
            CAPSUL_DATA_DIR: path.join(this.scratch, `spoke-${hostId}-capsul`),
          }),
        ),
      );
    }
    for (const member of this.members.slice(1)) await member.start();
    this.supervising = true;
    this.supervisor = setInterval(() => void this.supervise(), 500);
  }

  private env(extra: Record<string, string>): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: this.cluster.url, ...extra };
    delete env.NODE_TEST_CONTEXT;
    delete env.NODE_OPTIONS;
    delete env.DATABASE_APP_URL;
    delete env.DATABASE_READER_URL;
    return env;
  }

  private email(i: number): string {
    return `chaos-${i}@example.org`;
  }

  /** one signing key for every hub (docs/audit.md: several hubs share the key file) */
  private auditKeyFile(): string {
    return path.join(this.scratch, 'audit', 'log.key');
  }

  private spokeDir(hostId: string): string {
    return path.join(this.scratch, `spoke-${hostId}`);
  }

  /** Starts again whatever died without being killed by the faults (a crash), and counts it. */
  private async supervise(): Promise<void> {
    for (const member of this.members) {
      if (!this.supervising || member.busy || member.running()) continue;
      this.unexpectedExits[member.kind]++;
      this.problems.push(`${member.name} exited on its own: ${member.tail().split('\n').slice(-3).join(' | ')}`);
      this.log(`chaos: ${member.name} exited on its own; starting it again`);
      await member.start().catch((error) => this.log(`chaos: ${member.name} did not start: ${(error as Error).message}`));
    }
  }

  async shutdown(): Promise<void> {
    this.supervising = false;
    clearInterval(this.supervisor);
    for (const member of [...this.members].reverse()) await member.killHard().catch(() => {});
    await this.pool?.end().catch(() => {});
    await this.stripe?.close().catch(() => {});
    rmSync(this.scratch, { recursive: true, force: true });
    untrackDir(this.scratch);
  }

  // ── faults ─────────────────────────────────────────────────────────────────────────────────────

  private async faults(loadEnds: number): Promise<void> {
    const [minMs, maxMs] = this.options.faultEveryMs ?? [4000, 10_000];
    let bag: ProcessKind[] = [];
    for (;;) {
      await sleep(minMs + this.random() * (maxMs - minMs));
      if (Date.now() >= loadEnds) return;
      // Each kind in turn, in a shuffled order: every kind is killed about as often.
      if (bag.length === 0) bag = shuffle([...processKinds], this.random);
      const kind = bag.pop()!;
      const candidates = this.members.filter((member) => member.kind === kind);
      const victim = candidates[Math.floor(this.random() * candidates.length)]!;
      const downMs = 200 + this.random() * 2800;
      victim.busy = true;
      try {
        await victim.killHard();
        this.kills[kind]++;
        this.log(`chaos: kill -9 ${victim.name}; back in ${(downMs / 1000).toFixed(1)} s`);
        await sleep(downMs);
        await victim.start().catch((error) => this.log(`chaos: ${victim.name} did not start again: ${(error as Error).message}`));
      } finally {
        victim.busy = false;
      }
    }
  }

  private async allRunning(): Promise<void> {
    const deadline = Date.now() + startLimitMs;
    while (!this.members.every((member) => member.running() && !member.busy)) {
      if (Date.now() > deadline) {
        this.problems.push(`not all processes running ${startLimitMs / 1000} s after the faults stopped`);
        return;
      }
      await sleep(250);
    }
  }

  // ── load ───────────────────────────────────────────────────────────────────────────────────────

  private async worker(index: number, loadEnds: number): Promise<void> {
    while (Date.now() < loadEnds) {
      const draw = this.random();
      const email = this.email(Math.floor(this.random() * accounts));
      const n = ++this.counter;
      if (draw < 0.25) await this.cliPayment(email, n);
      else if (draw < 0.55) await this.webhookPayment(email, n);
      else if (draw < 0.85 && this.live() < maxLiveCapsuls) await this.create(email, n);
      else if (this.deletable().length > 0) await this.delete(n);
      else if (this.live() < maxLiveCapsuls) await this.create(email, n);
      else await this.delete(n);
      await sleep(50 + this.random() * 300 + index);
    }
  }

  private async cliPayment(email: string, n: number): Promise<void> {
    const dollars = (1 + Math.floor(this.random() * 5000) / 100).toFixed(2);
    const op: Operation = { kind: 'payment', key: `${this.runId}-p${n}`, email, outcome: 'unknown', dollars };
    this.operations.push(op);
    const run = await runCli(
      ['record-payment', '--email', email, '--dollars', dollars, '--reference', op.key, '--by', 'chaos'],
      this.cliEnv(),
    );
    if (run.code === 0 && /^\d+\n$/.test(run.stdout)) op.outcome = 'acknowledged';
  }

  private async webhookPayment(email: string, _n: number): Promise<void> {
    const amountCents = 500 + Math.floor(this.random() * 5000);
    const session = await this.openCheckout(email, amountCents);
    if (!session) return; // no checkout opened: the customer was never sent to pay
    const event = this.stripe.pay(session, { at: new Date() });
    const intent = this.stripe.sessions.get(session)!.payment_intent!;
    const op: Operation = { kind: 'webhook', key: intent, email, outcome: 'unknown', event };
    this.operations.push(op);
    // Stripe retries until it gets a 2xx, and now and then delivers twice at once.
    for (let attempt = 0; attempt < 4 && op.outcome === 'unknown'; attempt++) {
      const copies = this.random() < 0.2 ? 2 : 1;
      const answers = await Promise.all(Array.from({ length: copies }, () => this.deliver(event)));
      if (answers.some((ok) => ok)) op.outcome = 'acknowledged';
      else await sleep(500 + this.random() * 1500);
    }
  }

  /**
   * What the hub's card form does before sending the customer to Stripe: a Checkout Session at
   * (fake) Stripe, recorded open in provider_checkouts. Done here rather than through a logged-in web
   * session; the part under test is the webhook, where exactly once matters.
   */
  private async openCheckout(email: string, amountCents: number): Promise<string | undefined> {
    const body = new URLSearchParams({
      mode: 'payment',
      success_url: 'http://capsul.test/payment/stripe/success',
      customer_email: email,
      'line_items[0][quantity]': '1',
      'line_items[0][price_data][currency]': 'usd',
      'line_items[0][price_data][unit_amount]': String(amountCents),
      'line_items[0][price_data][product_data][name]': 'capsul account credit',
      'metadata[capsul_email]': email,
    });
    const response = await fetch(`${this.stripe.config.apiBase}/v1/checkout/sessions`, {
      method: 'POST',
      body,
      headers: { authorization: `Bearer ${this.stripe.config.secretKey}`, 'content-type': 'application/x-www-form-urlencoded' },
    });
    const session = (await response.json()) as { id: string };
    try {
      await recordCheckout(this.pool, { provider: 'stripe', id: session.id, email, amountCents, now: new Date() });
      return session.id;
    } catch {
      return undefined; // the database is down: the customer's form would have failed too
    }
  }

  private async deliver(event: object): Promise<boolean> {
    const port = this.hubPorts[Math.floor(this.random() * this.hubPorts.length)]!;
    const signed = signedDelivery(event, { at: new Date(), secret: this.stripe.config.webhookSecret });
    try {
      const response = await fetch(`http://127.0.0.1:${port}/payment/stripe/webhook`, {
        method: 'POST',
        body: signed.body,
        signal: AbortSignal.timeout(requestTimeoutMs),
        headers: { 'content-type': 'application/json; charset=utf-8', 'stripe-signature': signed.signature },
      });
      await response.arrayBuffer();
      return response.status >= 200 && response.status < 300;
    } catch {
      return false;
    }
  }

  private async create(email: string, n: number): Promise<void> {
    const op: Operation = { kind: 'create', key: `${this.runId}-c${n}`, email, outcome: 'unknown' };
    this.operations.push(op);
    const run = await runCli(
      ['create-vm', '--email', email, '--size', 'f1-xs', '--os', 'debian12', '--ssh-key', sshKey, '--reason', op.key, '--by', 'chaos'],
      this.cliEnv(),
    );
    const vmId = /^(capsul-[a-z0-9]+)\n$/.exec(run.stdout)?.[1];
    if (run.code === 0 && vmId) {
      op.outcome = 'acknowledged';
      op.vmId = vmId;
    }
  }

  /** capsuls that may be running: every create tried, less the deletes acknowledged */
  private live(): number {
    const creates = this.operations.filter((op) => op.kind === 'create').length;
    return creates - this.operations.filter((op) => op.kind === 'delete' && op.outcome === 'acknowledged').length;
  }

  private deletable(): Operation[] {
    const deleted = new Set(this.operations.filter((op) => op.kind === 'delete').map((op) => op.vmId));
    return this.operations.filter((op) => op.kind === 'create' && op.vmId && !deleted.has(op.vmId));
  }

  private async delete(n: number): Promise<void> {
    const candidates = this.deletable();
    const target = candidates[Math.floor(this.random() * candidates.length)]!;
    const op: Operation = { kind: 'delete', key: `${this.runId}-d${n}`, email: target.email, outcome: 'unknown', vmId: target.vmId };
    this.operations.push(op);
    // Unanswered, the operator asks again (a capsul already being deleted is an answer too).
    for (let attempt = 0; attempt < 5 && op.outcome === 'unknown'; attempt++) {
      const run = await runCli(['delete-vm', target.vmId!, '--reason', op.key, '--by', 'chaos'], this.cliEnv());
      if (run.code === 0) {
        op.outcome = 'acknowledged';
        op.ackedOnRetry = attempt > 0;
      } else await sleep(1000);
    }
  }

  private cliEnv(): NodeJS.ProcessEnv {
    return this.env({ CAPSUL_DATA_DIR: path.join(this.scratch, 'cli') });
  }

  /** After the faults: an operator records an unanswered payment again, Stripe redelivers its events. */
  private async retryUnknownPayments(): Promise<void> {
    const unknown = this.operations.filter((op) => op.outcome === 'unknown' && (op.kind === 'payment' || op.kind === 'webhook')).length;
    this.log(`chaos: trying ${unknown} unanswered payments again (same reference, or the same event redelivered)`);
    for (const op of this.operations) {
      if (op.outcome !== 'unknown' || (op.kind !== 'payment' && op.kind !== 'webhook')) continue;
      for (let attempt = 0; attempt < 5 && op.outcome === 'unknown'; attempt++) {
        const ok =
          op.kind === 'webhook'
            ? await this.deliver(op.event!)
            : (
                await runCli(
                  ['record-payment', '--email', op.email, '--dollars', op.dollars!, '--reference', op.key, '--by', 'chaos'],
                  this.cliEnv(),
                )
              ).code === 0;
        if (ok) {
          op.outcome = 'acknowledged';
          op.ackedOnRetry = true;
        } else await sleep(1000);
      }
    }
  }

  private progressLine(loadEnds: number): string {
    const acked = this.operations.filter((op) => op.outcome === 'acknowledged').length;
    const left = Math.max(0, Math.round((loadEnds - Date.now()) / 1000));
    const kills = processKinds.map((kind) => `${kind} ${this.kills[kind]}`).join(', ');
    return `chaos: ${left} s left; ${this.operations.length} operations (${acked} acknowledged); kills: ${kills}`;
  }

  // ── convergence and the count ──────────────────────────────────────────────────────────────────

  private lastDivergence = '';
  private lastSaidMs = 0;

  private async converge(): Promise<boolean> {
    const deadline = Date.now() + convergeLimitMs;
    for (;;) {
      const divergence = await this.divergence().catch((error) => `the database: ${(error as Error).message}`);
      if (!divergence) return true;
      if (Date.now() - this.lastSaidMs > 5000) {
        this.lastSaidMs = Date.now();
        this.log(`chaos: converging: ${divergence}`);
      }
      this.lastDivergence = divergence;
      if (Date.now() > deadline) return false;
      await sleep(500);
    }
  }

  /** What still differs between the ledger and the hosts, or '' once they agree. */
  private async divergence(): Promise<string> {
    const open = (await this.pool.query(`SELECT count(*)::int AS n FROM operations WHERE completed IS NULL`)).rows[0].n as number;
    if (open > 0) return `${open} operations not completed`;
    const { rows } = await this.pool.query<{ id: string; host: string | null; state: string; deletion: boolean }>(
      `SELECT v.id, v.host, v.state,
              EXISTS (SELECT 1 FROM emt_messages m WHERE m.message_type = 'VmDeletionRequested' AND m.message_data->>'vmId' = v.id) AS deletion
       FROM vms v ORDER BY v.id`,
    );
    const onHosts = new Map<string, { host: string; state: string }[]>();
    for (const hostId of hostIds) {
      for (const capsul of simulatedCapsuls(this.spokeDir(hostId)))
        onHosts.set(capsul.vmId, [...(onHosts.get(capsul.vmId) ?? []), { host: hostId, state: capsul.state }]);
    }
    for (const vm of rows) {
      const held = onHosts.get(vm.id) ?? [];
      onHosts.delete(vm.id);
      if (vm.state === 'failed') {
        if (held.length > 0) return `${vm.id}: hub says failed, hosts hold ${JSON.stringify(held)}`;
      } else if (vm.deletion) {
        if (vm.state !== 'deleted' || held.length > 0)
          return `${vm.id}: deletion requested, hub says ${vm.state}, hosts hold ${JSON.stringify(held)}`;
      } else if (vm.state !== 'running' || held.length !== 1 || held[0]!.host !== vm.host || held[0]!.state !== 'running') {
        return `${vm.id}: hub says ${vm.state} on ${vm.host}, hosts hold ${JSON.stringify(held)}`;
      }
    }
    if (onHosts.size > 0) return `hosts hold capsuls the hub does not know: ${[...onHosts.keys()].join(', ')}`;
    return '';
  }

  private async count(): Promise<{ figures: Record<OperationKind, OperationFigures>; interrupted: ChaosReport['interrupted'] }> {
    const interrupted = { creates: 0, others: 0 };
    const figures = Object.fromEntries(
      operationKinds.map((kind) => {
        const ops = this.operations.filter((op) => op.kind === kind);
        const acknowledged = ops.filter((op) => op.outcome === 'acknowledged' && !op.ackedOnRetry).length;
        const ackedOnRetry = ops.filter((op) => op.ackedOnRetry).length;
        return [
          kind,
          {
            attempted: ops.length,
            acknowledged,
            unknown: ops.length - acknowledged,
            ackedOnRetry,
            recorded: 0,
            lost: 0,
            phantom: 0,
            duplicates: 0,
          },
        ];
      }),
    ) as Record<OperationKind, OperationFigures>;

    // Payments: one PaymentRecorded per reference, whoever recorded it.
    const payments = await this.keyedEvents('PaymentRecorded', `message_data->>'reference'`);
    this.countKeyed(figures, ['payment', 'webhook'], payments, (key) => key.startsWith(`${this.runId}-funding-`));
    // Creates and deletes: found by the reason the harness gave each (no idempotency key: an unknown
    // one may be there once or not at all, never twice).
    this.countKeyed(figures, ['create'], await this.keyedEvents('VmCreationRequested', `message_metadata->>'reason'`));
    const deletions = await this.keyedEvents('VmDeletionRequested', `message_metadata->>'reason'`);
    this.countKeyed(figures, ['delete'], deletions);

    // The capsul an acknowledged create printed is the one recorded for it; an acknowledged delete's capsul is deleted.
    const created = await this.pool.query<{ key: string; vmId: string }>(
      `SELECT message_metadata->>'reason' AS key, message_data->>'vmId' AS "vmId" FROM emt_messages WHERE message_type = 'VmCreationRequested'`,
    );
    const vmOf = new Map(created.rows.map((row) => [row.key, row.vmId]));
    for (const op of this.operations.filter((o) => o.kind === 'create' && o.outcome === 'acknowledged')) {
      if (vmOf.has(op.key) && vmOf.get(op.key) !== op.vmId)
        this.problems.push(`create ${op.key}: printed ${op.vmId}, recorded ${vmOf.get(op.key)}`);
    }
    const deletionsOf = new Set(
      (
        await this.pool.query<{ vmId: string }>(
          `SELECT message_data->>'vmId' AS "vmId" FROM emt_messages WHERE message_type = 'VmDeletionRequested'`,
        )
      ).rows.map((row) => row.vmId),
    );
    for (const op of this.operations.filter((o) => o.kind === 'delete' && o.outcome === 'acknowledged')) {
      if (!deletionsOf.has(op.vmId!)) this.problems.push(`delete ${op.key}: acknowledged, and no deletion of ${op.vmId} is recorded`);
    }
    // Each capsul placed, provisioned and given a create operation once (never created on two hosts).
    const failures = await this.pool.query<{ vmId: string; error: string; operation: string }>(
      `SELECT message_data->>'vmId' AS "vmId", message_data->>'error' AS error, message_data->>'operation' AS operation
       FROM emt_messages WHERE message_type = 'VmFailed'`,
    );
    for (const { vmId, error, operation } of failures.rows) {
      // The spoke runs an operation at most once (docs/spoke-protocol.md): killed between its journal
      // and the driver's answer, with nothing to show for it on the host, the operation failed.
      if (/^interrupted by a spoke restart before the driver confirmed it/.test(error))
        interrupted[operation === 'create' ? 'creates' : 'others']++;
      else this.problems.push(`${vmId} failed: ${error}`);
    }
    const once = await this.pool.query<{
      id: string;
      placed: number;
      provisioned: number;
      creates: number;
      failed: number;
      vanished: number;
    }>(
      `SELECT v.id,
              (SELECT count(*)::int FROM emt_messages m WHERE m.stream_id = 'vm-' || v.id AND m.message_type = 'VmPlaced') AS placed,
              (SELECT count(*)::int FROM emt_messages m WHERE m.stream_id = 'vm-' || v.id AND m.message_type = 'VmProvisioned') AS provisioned,
              (SELECT count(*)::int FROM emt_messages m WHERE m.stream_id = 'vm-' || v.id AND m.message_type = 'VmFailed') AS failed,
              (SELECT count(*)::int FROM emt_messages m WHERE m.stream_id = 'vm-' || v.id AND m.message_type = 'VmVanished') AS vanished,
              (SELECT count(*)::int FROM operations o WHERE o.vm_id = v.id AND o.kind = 'create') AS creates
       FROM vms v`,
    );
    for (const row of once.rows) {
      if (row.placed > 1 || row.provisioned > 1 || row.creates > 1) {
        figures.create.duplicates++;
        this.problems.push(`${row.id}: placed ${row.placed}, provisioned ${row.provisioned}, create operations ${row.creates}`);
      }
      if (row.vanished > 0) this.problems.push(`${row.id}: vanished from its host ${row.vanished} time(s)`);
    }
    return { figures, interrupted };
  }

  private async keyedEvents(type: string, keyExpression: string): Promise<Map<string, number>> {
    const { rows } = await this.pool.query<{ key: string | null; n: number }>(
      `SELECT ${keyExpression} AS key, count(*)::int AS n FROM emt_messages WHERE message_type = $1 GROUP BY 1`,
      [type],
    );
    return new Map(rows.map((row) => [row.key ?? '(none)', row.n]));
  }

  private countKeyed(
    figures: Record<OperationKind, OperationFigures>,
    kinds: OperationKind[],
    recorded: Map<string, number>,
    setUp: (key: string) => boolean = () => false,
  ): void {
    const attempted = new Map(this.operations.filter((op) => kinds.includes(op.kind)).map((op) => [op.key, op]));
    for (const [key, n] of recorded) {
      const op = attempted.get(key);
      if (!op) {
        if (setUp(key)) continue;
        figures[kinds[0]!].phantom += n;
        this.problems.push(`phantom: ${n} recorded under ${key}, which was never attempted`);
        continue;
      }
      figures[op.kind].recorded++;
      if (n > 1) {
        figures[op.kind].duplicates += n - 1;
        this.problems.push(`duplicate: ${op.kind} ${key} recorded ${n} times`);
      }
    }
    for (const op of attempted.values()) {
      if (op.outcome === 'acknowledged' && !recorded.has(op.key)) {
        figures[op.kind].lost++;
        this.problems.push(`lost: ${op.kind} ${op.key} was acknowledged and is not in the ledger`);
      }
    }
  }

  private async auditVerified(): Promise<boolean> {
    const run = await runCli(
      ['audit', 'verify'],
      this.env({ CAPSUL_DATA_DIR: path.join(this.scratch, 'cli'), AUDIT_KEY_FILE: this.auditKeyFile() }),
    );
    if (run.code !== 0)
      this.problems.push(`capsul audit verify exited ${run.code}: ${(run.stdout + run.stderr).trim().split('\n').slice(-3).join(' | ')}`);
    return run.code === 0;
  }

  private async projectionsMatch(): Promise<boolean> {
    const { matches, differences } = await verifyProjections(this.pool);
    if (!matches) this.problems.push(`projections differ from a replay: ${JSON.stringify(differences)}`);
    return matches;
  }
}

// ── the processes ────────────────────────────────────────────────────────────────────────────────

interface Member {
  readonly name: string;
  readonly kind: ProcessKind;
  /** being killed or started by the harness: not a crash */
  busy: boolean;
  start(): Promise<void>;
  killHard(): Promise<void>;
  running(): boolean;
  tail(): string;
}

class DatabaseMember implements Member {
  readonly name = 'database';
  readonly kind = 'database';
  busy = false;
  constructor(private readonly cluster: Cluster) {}
  async start(): Promise<void> {
    this.busy = true;
    try {
      await this.cluster.start();
    } finally {
      this.busy = false;
    }
  }
  killHard = () => this.cluster.killHard();
  running = () => this.cluster.running();
  tail = () => this.cluster.tail();
}

/** `node bin/capsul.js …` in a process group of its own, so that kill -9 takes everything it started. */
class NodeMember implements Member {
  busy = false;
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private lines: string[] = [];

  constructor(
    readonly name: string,
    readonly kind: ProcessKind,
    private readonly args: string[],
    private readonly env: NodeJS.ProcessEnv,
    private readonly readyText?: string,
  ) {}

  async start(): Promise<void> {
    this.busy = true;
    try {
      const child = spawn(process.execPath, ['bin/capsul.js', ...this.args], {
        cwd: projectRoot,
        env: this.env,
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      this.child = child;
      track(child);
      this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
      let ready: () => void = () => {};
      const isReady = new Promise<void>((resolve) => (ready = resolve));
      const keep = (chunk: Buffer) => {
        const text = chunk.toString();
        if (!this.readyText || text.includes(this.readyText)) ready();
        this.lines.push(...text.split('\n').filter(Boolean));
        if (this.lines.length > 60) this.lines.splice(0, this.lines.length - 60);
      };
      child.stdout!.on('data', keep);
      child.stderr!.on('data', keep);
      if (!this.readyText) return;
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<string>((resolve) => (timer = setTimeout(() => resolve('late'), startLimitMs)));
      const outcome = await Promise.race([isReady.then(() => 'ready'), this.exited.then(() => 'exited'), late]);
      clearTimeout(timer);
      if (outcome !== 'ready')
        throw new Error(
          `${this.name} ${outcome === 'late' ? `not ready within ${startLimitMs} ms` : 'exited while starting'}: ${this.tail()}`,
        );
    } finally {
      this.busy = false;
    }
  }

  async killHard(): Promise<void> {
    if (!this.child || !this.running()) return;
    try {
      process.kill(-this.child.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
    await this.exited;
  }

  running(): boolean {
    return Boolean(this.child && this.child.exitCode === null && this.child.signalCode === null);
  }

  tail(): string {
    return this.lines.join('\n');
  }
}

type Run = { code: number | null; stdout: string; stderr: string };

/** One `capsul` command, bounded; a command that outlives its bound is killed (its outcome unknown). */
function runCli(args: string[], env: NodeJS.ProcessEnv): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['bin/capsul.js', ...args], {
      cwd: projectRoot,
      env,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    track(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // gone
      }
    }, cliTimeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

// ── figures ──────────────────────────────────────────────────────────────────────────────────────

export function formatReport(report: ChaosReport): string {
  const columns = ['attempted', 'acknowledged', 'unknown', 'ackedOnRetry', 'recorded', 'lost', 'phantom', 'duplicates'] as const;
  const header = ['operation', 'attempted', 'acked', 'unknown', 'acked on retry', 'recorded', 'lost', 'phantom', 'duplicates'];
  const rows = operationKinds.map((kind) => [
    kind === 'payment' ? 'payment (CLI)' : kind === 'webhook' ? 'payment (Stripe webhook)' : `${kind} capsul (CLI)`,
    ...columns.map((column) => String(report.operations[kind][column])),
  ]);
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) =>
    `| ${cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join(' | ')} |`;
  const kills = processKinds.map((kind) => `${kind} ${report.kills[kind]}`).join(', ');
  const exits = processKinds.map((kind) => `${kind} ${report.unexpectedExits[kind]}`).join(', ');
  return [
    `seed ${report.seed}, ${report.hubs} hub(s), 2 spokes, load for ${Math.round(report.loadMs / 1000)} s`,
    line(header),
    `|${widths.map((w, i) => (i === 0 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`,
    ...rows.map(line),
    '',
    `kill -9: ${kills}; exits on their own: ${exits}`,
    `operations failed because their spoke was killed mid-operation (run at most once, by design): ` +
      `${report.interrupted.creates} creates (the capsul failed), ${report.interrupted.others} others (a delete is scheduled again)`,
    `converged ${report.convergeMs === null ? 'NEVER' : `${(report.convergeMs / 1000).toFixed(1)} s after the faults stopped`}; ` +
      `projections ${report.projectionsMatch ? 'equal' : 'DIFFER from'} a replay; audit log ${report.auditVerified ? 'verifies' : 'does NOT verify'}`,
    report.problems.length === 0
      ? 'problems: none'
      : `problems (${report.problems.length}):\n${report.problems.map((p) => `  - ${p}`).join('\n')}`,
  ].join('\n');
}

// ── small helpers ────────────────────────────────────────────────────────────────────────────────

function zero<K extends string>(keys: readonly K[]): Record<K, number> {
  return Object.fromEntries(keys.map((key) => [key, 0])) as Record<K, number>;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A small seeded generator: the same CHAOS_SEED draws the same operations and faults (not the same timings). */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function shuffle<T>(items: T[], random: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}
