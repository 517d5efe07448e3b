// The hub's report ingestion, measured as a spoke sees it: the hub (buildHub, wired as server.ts wires
// it: info-level request log, the reaction loop poked after every report request) listens on a free
// loopback port in this process; hosts registered and heartbeating through the spoke API; capsuls
// created through the Ledger (payment, then creation) and placed by the reactor's placePending, so
// every host has its own set; then each spoke posts batches of `state` reports with the real HubClient.
// Every report alternates its capsul between running and stopped with a later observedAt, so each is
// accepted and becomes exactly one VmStateObserved event; anything else fails the bench.
import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import type { PostgresEventStore } from '@event-driven-io/emmett-postgresql';
import type { FastifyInstance } from 'fastify';
import type pg from 'pg';
import { countEventsOfType } from '../src/db/event-store.ts';
import type { Actor } from '../src/domain/events.ts';
import { currentEventVersion } from '../src/domain/upcast.ts';
import { vmStream } from '../src/domain/vm/events.ts';
import { buildHub } from '../src/hub/app.ts';
import { ReactorLoop } from '../src/hub/reactor-loop.ts';
import { createStreamCache } from '../src/ledger/cache.ts';
import { Hosts } from '../src/ledger/hosts.ts';
import { Ledger, newVmId } from '../src/ledger/ledger.ts';
import { placePending } from '../src/ledger/reactor.ts';
import { HubClient } from '../src/spoke/hub-client.ts';
import type { ObservedState, Report } from '../src/spoke/protocol.ts';
import type { Op } from './measure.ts';

/** Reports per request: the real agent sends its outbox oldest first, up to 100 at a time; a busy host has a few dozen. */
export const reportsPerRequest = 16;
export const capsulsPerHost = 100;
const capsulsPerAccount = 10;
const hostMemoryMb = 1024 * 1024;
const capsulSize = { id: 'f1-xs', cents: 533 };
const capsulOs = 'debian12';
const sshKey = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl bench@capsul';
const operator: Actor = { kind: 'operator', id: 'bench' };

/** A report the hub did not accept, or an accepted count that does not match the events: fails the bench. */
export class IngestionError extends Error {}

export type RunningHub = { app: FastifyInstance; url: string; close(): Promise<void> };

/** buildHub on 127.0.0.1:<free port>, with the reaction loop poked after reports as in server.ts. */
export async function startHub(pool: pg.Pool): Promise<RunningHub> {
  const reactions = new ReactorLoop({ pool, cache: createStreamCache() });
  // The production log level, written nowhere: the serialisation is paid, the terminal stays clean.
  const discard = new Writable({ write: (_chunk, _encoding, done) => done() });
  const app = await buildHub({ pool, logger: { level: 'info', stream: discard }, afterReports: () => reactions.poke() });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address();
  if (address === null || typeof address === 'string') throw new Error('the bench hub has no TCP address');
  reactions.start();
  let closed: Promise<void> | undefined;
  return {
    app,
    url: `http://127.0.0.1:${address.port}`,
    close: () =>
      (closed ??= (async () => {
        await reactions.stop();
        await app.close();
      })()),
  };
}

type StateReport = Extract<Report, { type: 'state' }>;

/** One spoke: its host, its client, its capsuls, and what it last reported about each. */
export class BenchSpoke {
  private next = 0;
  readonly last = new Map<string, { state: ObservedState | null; atMs: number }>();

  /** `client` may be swapped for one talking to another hub on the same database (the statement trace). */
  constructor(
    readonly hostId: string,
    readonly token: string,
    public client: HubClient,
    readonly vmIds: string[],
  ) {
    for (const vmId of vmIds) this.last.set(vmId, { state: null, atMs: 0 });
  }

  /** The next `size` capsuls in turn, each flipped between running and stopped, observed later than before. */
  batch(size: number): StateReport[] {
    const reports: StateReport[] = [];
    for (let i = 0; i < size; i++) {
      const vmId = this.vmIds[this.next++ % this.vmIds.length]!;
      const last = this.last.get(vmId)!;
      const state: ObservedState = last.state === 'running' ? 'stopped' : 'running';
      const atMs = Math.max(Date.now(), last.atMs + 1);
      this.last.set(vmId, { state, atMs });
      reports.push({ id: randomUUID(), vmId, operationId: null, observedAt: new Date(atMs).toISOString(), type: 'state', state });
    }
    return reports;
  }
}

/**
 * Registers `count` hosts and heartbeats them through `hubUrl`, creates `capsulsPerHost` capsuls per
 * host through the Ledger and places them, and returns one spoke per host with the capsuls placed on it.
 */
export async function prepareSpokes(options: {
  pool: pg.Pool;
  hubUrl: string;
  count: number;
  onProgress?: (text: string) => void;
}): Promise<BenchSpoke[]> {
  const { pool, hubUrl, count } = options;
  const hosts = new Hosts({ pool });
  const registered: { hostId: string; token: string; client: HubClient }[] = [];
  for (let n = 1; n <= count; n++) {
    const hostId = `bench-hub-${n}`;
    const { token } = await hosts.add({ hostId, memoryMb: hostMemoryMb, vcpus: 256, cause: { by: operator } });
    const client = new HubClient({ hubUrl, hostId, token });
    await client.heartbeat({ capacity: { memoryMb: hostMemoryMb, vcpus: 256 }, vms: [], agentVersion: 'capsul-bench' });
    registered.push({ hostId, token, client });
  }

  // Accounts of ten capsuls each, paid for a month of them; created by `count` workers at once.
  const ledger = new Ledger({ pool });
  const total = count * capsulsPerHost;
  const accounts = Math.ceil(total / capsulsPerAccount);
  const vmIds: string[] = [];
  let nextAccount = 0;
  const worker = async () => {
    for (let a = nextAccount++; a < accounts; a = nextAccount++) {
      const email = `hub-bench-${a}-${randomUUID().slice(0, 8)}@example.org`;
      await ledger.recordPayment({
        email,
        amountCents: capsulSize.cents * capsulsPerAccount + 100,
        provider: 'manual',
        cause: { by: operator },
      });
      for (let c = 0; c < capsulsPerAccount && vmIds.length < total; c++) {
        const { vmId } = await ledger.createVm({
          email,
          size: capsulSize.id,
          os: capsulOs,
          sshPublicKeys: [sshKey],
          cause: { by: operator },
        });
        vmIds.push(vmId);
        options.onProgress?.(`hub bench: ${vmIds.length} / ${total} capsuls created`);
      }
    }
  };
  await Promise.all(Array.from({ length: count }, worker));

  // The reactor places them (most free memory first, so evenly); the hub's own loop may hold the lock.
  for (let round = 0; ; round++) {
    const { rows } = await pool.query(`SELECT count(*)::int AS n FROM vms WHERE id = ANY($1::text[]) AND host IS NULL`, [vmIds]);
    if (rows[0].n === 0) break;
    if (round >= 200) throw new Error(`hub bench: ${rows[0].n} capsuls still unplaced after ${round} placement rounds`);
    const placed = await placePending({ pool });
    options.onProgress?.(`hub bench: placing capsuls, ${rows[0].n} waiting, ${placed} placed this round`);
    if (placed === 0) await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const { rows } = await pool.query(`SELECT id, host, state FROM vms WHERE id = ANY($1::text[]) ORDER BY id`, [vmIds]);
  const byHost = new Map<string, string[]>(registered.map((h) => [h.hostId, []]));
  for (const row of rows as { id: string; host: string; state: string }[]) {
    if (row.state !== 'creating') throw new Error(`hub bench: capsul ${row.id} is ${row.state} after placement, not creating`);
    const list = byHost.get(row.host);
    if (!list) throw new Error(`hub bench: capsul ${row.id} was placed on ${row.host}, not on a bench host`);
    list.push(row.id);
  }
  return registered.map(({ hostId, token, client }) => {
    const mine = byHost.get(hostId)!;
    if (mine.length === 0) throw new Error(`hub bench: no capsul was placed on ${hostId}`);
    return new BenchSpoke(hostId, token, client, mine);
  });
}

/** What the spokes were told, to compare with what the store holds. */
export class IngestionCount {
  accepted = 0;
  requests = 0;
}

/** Worker w posts the next batch of spoke w's reports; every report must come back accepted. */
export function postReportsOp(spokes: BenchSpoke[], count: IngestionCount, size = reportsPerRequest): Op {
  return async (worker) => {
    const spoke = spokes[worker % spokes.length]!;
    const reports = spoke.batch(size);
    const results = await spoke.client.postReports(reports);
    count.requests++;
    const byId = new Map(results.map((r) => [r.id, r]));
    for (const report of reports) {
      const result = byId.get(report.id);
      if (result?.status !== 'accepted') {
        throw new IngestionError(
          `the hub answered ${result ? `${result.status}${result.error ? ` (${result.error})` : ''}` : 'nothing'} ` +
            `for report ${report.id} (${report.state} of ${report.vmId} at ${report.observedAt}) from ${spoke.hostId}`,
        );
      }
    }
    if (results.length !== reports.length)
      throw new IngestionError(`the hub answered ${results.length} results for ${reports.length} reports`);
    count.accepted += reports.length;
  };
}

/** emmett's appendToStream of one VmStateObserved to a fresh capsul stream: no read, no projection. */
export function rawObservedOp(rawStore: PostgresEventStore): Op {
  const metadata = { by: { kind: 'spoke', id: 'bench-raw' }, eventVersion: currentEventVersion };
  return async (_worker, iteration) => {
    const vmId = newVmId();
    await rawStore.appendToStream(
      vmStream(vmId),
      [
        {
          type: 'VmStateObserved',
          data: {
            vmId,
            host: 'bench-raw',
            state: iteration % 2 === 0 ? 'running' : 'stopped',
            reportId: randomUUID(),
            operationId: null,
            at: new Date().toISOString(),
          },
          metadata,
        },
      ],
      { expectedStreamVersion: 0n },
    );
  };
}

/**
 * The store must hold exactly one VmStateObserved per accepted report on the spokes' capsuls, and the
 * vms projection must show each capsul in the state last reported.
 */
export async function verifyIngestion(pool: pg.Pool, spokes: BenchSpoke[], count: IngestionCount): Promise<{ events: number }> {
  const vmIds = spokes.flatMap((s) => s.vmIds);
  const events = await countEventsOfType(pool, 'VmStateObserved', vmIds.map(vmStream));
  if (events !== count.accepted) {
    throw new IngestionError(`the hub accepted ${count.accepted} reports but appended ${events} VmStateObserved events`);
  }
  const { rows: states } = await pool.query(`SELECT id, state FROM vms WHERE id = ANY($1::text[])`, [vmIds]);
  const projected = new Map((states as { id: string; state: string }[]).map((r) => [r.id, r.state]));
  for (const spoke of spokes) {
    for (const [vmId, last] of spoke.last) {
      const expected = last.state ?? 'creating';
      if (projected.get(vmId) !== expected) {
        throw new IngestionError(`capsul ${vmId}: the vms projection says ${projected.get(vmId)}, the last report said ${expected}`);
      }
    }
  }
  return { events };
}
