// Seeds a realistic ledger quickly: accounts with payments, invalidations and reinstatements, capsul
// creations and deletion requests on the account stream, and each capsul's operational life
// (placement, provisioning, observed states, start/stop requests, deletion) on its own stream.
// Appends carry several events each and go through the ledger's append (events and projection in one
// statement), so the live projection tables are written exactly as in production. Every stream's
// events are valid in order (a capsul's stream starts after its account asked for it; only recorded
// payments are invalidated, only invalidated ones reinstated), and each append names the stream
// version it expects.
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { accountStream, type AccountEvent, type Provider } from '../src/domain/account/events.ts';
import type { Actor, LedgerEvent } from '../src/domain/events.ts';
import { appendEvents } from '../src/ledger/append.ts';
import { currentEventVersion } from '../src/domain/upcast.ts';
import { vmStream, type ObservedState, type VmEvent } from '../src/domain/vm/events.ts';
import { newVmId } from '../src/ledger/ledger.ts';

export type SeededAccount = { accountId: string; email: string };
export type SeedResult = { events: number; appends: number; accounts: SeededAccount[]; byType: Map<string, number> };

type Append = { streamId: string; events: LedgerEvent[]; by: Actor };
type Catalogue = { sizes: { id: string; cents: number }[]; images: string[] };

const sshKey = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGd3Fq8n5yR7t0fB1xQx6hWlC6cR3r2M7sVtqyq3b2kP bench@capsul';
const hosts = ['spoke-1', 'spoke-2', 'spoke-3', 'spoke-4', 'spoke-5'];
const hourMs = 3_600_000;
const dayMs = 24 * hourMs;

/** A small deterministic PRNG (mulberry32): the same mix of events on every run. */
export class Rng {
  constructor(private state: number) {}
  next(): number {
    this.state = (this.state + 0x6d2b79f5) | 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)]!;
  }
}

export async function seedLedger(options: {
  pool: pg.Pool;
  targetEvents: number;
  workers: number;
  onProgress?: (events: number) => void;
}): Promise<SeedResult> {
  const { pool, targetEvents } = options;
  const catalogue = await readCatalogue(pool);
  const rng = new Rng(20261126);
  const startMs = Date.now() - 730 * dayMs;
  let planned = 0;
  let appended = 0;
  let appends = 0;
  let nextPaymentId = 1;
  const accounts: SeededAccount[] = [];
  const byType = new Map<string, number>();

  // Planning is synchronous and shared, so the event mix does not depend on how workers interleave.
  const nextPlan = (): Append[] | undefined => {
    if (planned >= targetEvents) return undefined;
    const plan = planAccount(rng, catalogue, startMs + rng.next() * 600 * dayMs, () => nextPaymentId++);
    accounts.push(plan.account);
    for (const append of plan.appends) {
      planned += append.events.length;
      for (const event of append.events) byType.set(event.type, (byType.get(event.type) ?? 0) + 1);
    }
    return plan.appends;
  };

  const worker = async () => {
    for (let plan = nextPlan(); plan; plan = nextPlan()) {
      const versions = new Map<string, bigint>();
      for (const append of plan) {
        const expected = versions.get(append.streamId) ?? 0n;
        const metadata = { by: append.by, eventVersion: currentEventVersion };
        const result = await appendEvents(pool, append.streamId, append.events, metadata, expected);
        if (!result.ok) throw new Error(`seed: unexpected version conflict on ${append.streamId}`);
        versions.set(append.streamId, result.nextVersion);
        appended += append.events.length;
        appends++;
        options.onProgress?.(appended);
      }
    }
  };
  await Promise.all(Array.from({ length: options.workers }, worker));
  // The ledger draws payment ids from this sequence: continue after the seeded ones.
  await pool.query(`SELECT setval('payment_ids', $1)`, [nextPaymentId - 1]);
  return { events: appended, appends, accounts, byType };
}

async function readCatalogue(pool: pg.Pool): Promise<Catalogue> {
  const sizes = await pool.query(`SELECT id, (dollars_per_month * 100)::int AS cents FROM vm_sizes ORDER BY dollars_per_month`);
  const images = await pool.query(`SELECT id FROM os_images WHERE NOT deprecated ORDER BY id`);
  return { sizes: sizes.rows, images: images.rows.map((r) => r.id) };
}

/** One account's whole life, as the appends that wrote it, in an order valid for every stream. */
function planAccount(
  rng: Rng,
  catalogue: Catalogue,
  openedMs: number,
  paymentId: () => number,
): { account: SeededAccount; appends: Append[] } {
  const accountId = randomUUID();
  const email = `bench-${accountId.slice(0, 13)}@example.org`;
  const stream = accountStream(accountId);
  const customer: Actor = { kind: 'customer', id: accountId };
  const operator: Actor = { kind: 'operator', id: 'bench' };
  const spoke: Actor = { kind: 'spoke', id: 'bench' };
  const appends: Append[] = [];
  let clock = openedMs;
  const at = (advanceMaxMs: number) => new Date((clock += 1000 + Math.floor(rng.next() * advanceMaxMs))).toISOString();
  // Several events per append, as a batch job would write them; 1–4 keeps a realistic spread.
  const pushChunked = (streamId: string, events: LedgerEvent[], by: Actor) => {
    for (let i = 0; i < events.length; ) {
      const size = rng.int(1, 4);
      appends.push({ streamId, events: events.slice(i, i + size), by });
      i += size;
    }
  };

  // Phase 1: the account opens with its first payment, more payments follow, capsuls are created.
  const phase1: AccountEvent[] = [{ type: 'AccountOpened', data: { accountId, email, at: new Date(clock).toISOString() } }];
  const payments: number[] = [];
  const payment = (): AccountEvent => {
    const id = paymentId();
    payments.push(id);
    const provider: Provider = rng.pick(['stripe', 'stripe', 'btcpay', 'manual']);
    const received = at(20 * dayMs);
    return {
      type: 'PaymentRecorded',
      data: {
        accountId,
        paymentId: id,
        amountCents: rng.pick([500, 1000, 1500, 2000, 5000, 10000]) + rng.int(0, 99),
        provider,
        reference: provider === 'manual' ? null : `${provider === 'stripe' ? 'cs' : 'btc'}_bench_${id}`,
        at: received,
        recordedAt: new Date(Date.parse(received) + rng.int(1, 120) * 1000).toISOString(),
      },
    };
  };
  for (let n = rng.int(1, 4); n > 0; n--) phase1.push(payment());
  const vmCount = rng.pick([0, 1, 1, 1, 2, 2, 3, 5]);
  const vms: { vmId: string; host: string; placed: boolean; deleted: boolean }[] = [];
  for (let n = 0; n < vmCount; n++) {
    const vmId = newVmId();
    const size = rng.pick(catalogue.sizes.slice(0, 4));
    vms.push({ vmId, host: rng.pick(hosts), placed: false, deleted: false });
    phase1.push({
      type: 'VmCreationRequested',
      data: {
        accountId,
        vmId,
        size: size.id,
        os: rng.pick(catalogue.images),
        sshPublicKeys: [sshKey],
        priceCentsPerMonth: size.cents,
        at: at(2 * dayMs),
      },
    });
  }
  pushChunked(stream, phase1, customer);

  // Phase 2: each capsul's life on its host.
  for (const vm of vms) {
    const events: VmEvent[] = [
      { type: 'VmPlaced', data: { vmId: vm.vmId, accountId, host: vm.host, operationId: randomUUID(), at: at(10_000) } },
    ];
    vm.placed = true;
    if (rng.chance(0.04)) {
      events.push({
        type: 'VmFailed',
        data: { vmId: vm.vmId, host: vm.host, error: 'qemu-img: disk full', operation: 'create', ...report(), at: at(60_000) },
      });
    } else {
      const octet = () => rng.int(1, 254);
      events.push({
        type: 'VmProvisioned',
        data: {
          vmId: vm.vmId,
          host: vm.host,
          ipv4: `10.${octet()}.${octet()}.${octet()}`,
          ipv6: rng.chance(0.6) ? `2001:db8::${octet().toString(16)}:${octet().toString(16)}` : null,
          sshHostKeys: [{ type: 'ssh-ed25519', sha256: `SHA256:${randomUUID().replaceAll('-', '')}` }],
          ...report(),
          at: at(120_000),
        },
      });
      events.push(observed(vm, 'running'));
      for (let n = rng.int(0, 4); n > 0; n--) {
        const stopped = rng.chance(0.5);
        if (stopped)
          events.push({
            type: 'VmStopRequested',
            data: { vmId: vm.vmId, host: vm.host, force: rng.chance(0.2), operationId: randomUUID(), at: at(30 * dayMs) },
          });
        events.push(observed(vm, stopped ? 'stopped' : rng.pick<ObservedState>(['running', 'running', 'crashed', 'paused'])));
        if (stopped && rng.chance(0.7)) {
          events.push({ type: 'VmStartRequested', data: { vmId: vm.vmId, host: vm.host, operationId: randomUUID(), at: at(5 * dayMs) } });
          events.push(observed(vm, 'running'));
        }
      }
    }
    pushChunked(vmStream(vm.vmId), events, spoke);
  }

  // Phase 3: corrections (chargebacks and their reversal), deletion requests, later payments.
  const phase3: AccountEvent[] = [];
  for (const id of payments) {
    if (!rng.chance(0.12)) continue;
    phase3.push({ type: 'PaymentInvalidated', data: { accountId, paymentId: id, at: at(10 * dayMs) } });
    if (rng.chance(0.35)) {
      phase3.push({ type: 'PaymentReinstated', data: { accountId, paymentId: id, at: at(10 * dayMs) } });
    }
  }
  for (const vm of vms) {
    if (!rng.chance(0.4)) continue;
    vm.deleted = true;
    phase3.push({ type: 'VmDeletionRequested', data: { accountId, vmId: vm.vmId, at: at(20 * dayMs) } });
  }
  for (let n = rng.int(0, 2); n > 0; n--) phase3.push(payment());
  pushChunked(stream, phase3, operator);

  // Phase 4: the hosts report the deletions.
  for (const vm of vms.filter((v) => v.deleted && v.placed)) {
    pushChunked(vmStream(vm.vmId), [{ type: 'VmDeleted', data: { vmId: vm.vmId, host: vm.host, ...report(), at: at(hourMs) } }], spoke);
  }
  return { account: { accountId, email }, appends };

  function observed(vm: { vmId: string; host: string }, state: ObservedState): VmEvent {
    return { type: 'VmStateObserved', data: { vmId: vm.vmId, host: vm.host, state, ...report(), at: at(3 * dayMs) } };
  }

  function report() {
    return { reportId: randomUUID(), operationId: null };
  }
}
