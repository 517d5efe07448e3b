// Folding long streams (issue 14): an account with many payments and a capsul with many reports. The
// fold must be linear (20k events cost at most 12× what 2k cost: the old evolve copied its Maps and Sets
// per event and took 42 s for 20k payments), and a long stream must load from its snapshot for much less
// than a fold from its first event.
import { randomUUID } from 'node:crypto';
import { deepStrictEqual } from 'node:assert/strict';
import type pg from 'pg';
import { accountDecider } from '../src/domain/account/decider.ts';
import { accountStream, type AccountEvent } from '../src/domain/account/events.ts';
import type { Actor, LedgerEvent } from '../src/domain/events.ts';
import { currentEventVersion } from '../src/domain/upcast.ts';
import { vmDecider } from '../src/domain/vm/decider.ts';
import { vmStream, type VmEvent } from '../src/domain/vm/events.ts';
import { appendEvents } from '../src/ledger/append.ts';
import { load, loadFromStart, snapshotEvery, type Decider } from '../src/ledger/load.ts';
import { alternatePasses, type Tally } from './measure.ts';
import type { Rng } from './seed.ts';

export const longEvents = 20_000;
export const shortEvents = 2_000;
/** Events appended after the snapshot before loads are measured: recent ones, fewer than snapshotEvery. */
export const recentEvents = 250;

const hourMs = 3_600_000;
const iso = (ms: number) => new Date(ms).toISOString();

/** An account's life: payments, now and then one invalidated (taking effect before the last), reinstated, refunded, and its capsul. */
export function accountHistory(accountId: string, vmId: string, count: number, startMs: number, rng: Rng): AccountEvent[] {
  const events: AccountEvent[] = [
    { type: 'AccountOpened', data: { accountId, email: `fold-${accountId.slice(0, 13)}@example.org`, at: iso(startMs) } },
    {
      type: 'VmCreationRequested',
      data: { accountId, vmId, size: 'f1-xs', os: 'debian12', sshPublicKeys: [], priceCentsPerMonth: 500, at: iso(startMs + 1000) },
    },
  ];
  const paid: number[] = [];
  for (let i = events.length; i < count; i++) {
    const atMs = startMs + i * hourMs;
    const earlier = paid.length > 0 ? paid[rng.int(0, paid.length - 1)]! : undefined;
    const roll = rng.next();
    if (earlier !== undefined && roll < 0.05) {
      events.push({ type: 'PaymentInvalidated', data: { accountId, paymentId: earlier, at: iso(atMs - rng.int(0, 30) * 24 * hourMs) } });
    } else if (earlier !== undefined && roll < 0.07) {
      events.push({ type: 'PaymentReinstated', data: { accountId, paymentId: earlier, at: iso(atMs) } });
    } else if (earlier !== undefined && roll < 0.09) {
      events.push({
        type: 'PaymentRefunded',
        data: { accountId, paymentId: earlier, totalRefundedCents: 100, reference: null, at: iso(atMs) },
      });
    } else {
      const paymentId = nextPaymentId++;
      paid.push(paymentId);
      const reference = rng.chance(0.5) ? `cs_fold_${paymentId}` : null;
      events.push({
        type: 'PaymentRecorded',
        data: {
          accountId,
          paymentId,
          amountCents: 500 + rng.int(0, 9500),
          provider: reference ? 'stripe' : 'manual',
          reference,
          at: iso(atMs),
          recordedAt: iso(atMs),
        },
      });
    }
  }
  return events;
}
let nextPaymentId = 2_000_000_000;

/** A capsul's life on its host: placed, provisioned, then state reports (each its own report id), stops and starts asked now and then. */
export function capsulHistory(accountId: string, vmId: string, count: number, startMs: number, rng: Rng, first = 0): VmEvent[] {
  const host = 'spoke-fold';
  const events: VmEvent[] =
    first === 0
      ? [
          { type: 'VmPlaced', data: { vmId, accountId, host, operationId: randomUUID(), at: iso(startMs) } },
          {
            type: 'VmProvisioned',
            data: {
              vmId,
              host,
              ipv4: '10.0.0.2',
              ipv6: null,
              sshHostKeys: [],
              reportId: randomUUID(),
              operationId: null,
              at: iso(startMs + 1000),
            },
          },
        ]
      : [];
  let open: string | null = null;
  for (let i = first + events.length; i < first + count; i++) {
    const at = iso(startMs + i * 60_000);
    if (open === null && rng.chance(0.01)) {
      open = randomUUID();
      events.push({ type: 'VmStopRequested', data: { vmId, host, force: false, operationId: open, at } });
    } else {
      events.push({
        type: 'VmStateObserved',
        data: { vmId, host, state: open ? 'stopped' : 'running', reportId: randomUUID(), operationId: open, at },
      });
      open = null;
    }
  }
  return events;
}

/** Folds per pass, so that a pass of either stream folds about the same number of events. */
const passes = { long: 2, short: 20 };

/**
 * In memory: the decider's fold of a 20k-event stream versus a 2k-event one, alternating passes, after a
 * warm-up of both sides (as comparePair gives the other comparisons): the first passes of either side pay
 * for compiling the fold and for promoting the just-built histories, which only one warm fold of the long
 * side used to absorb.
 */
export async function measureFold<S, E extends LedgerEvent>(options: {
  pool: pg.Pool;
  seconds: number;
  warmupSeconds: number;
  label: string;
  decider: Decider<S, unknown, E>;
  long: E[];
  short: E[];
}): Promise<[Tally, Tally]> {
  const { decider } = options;
  const fold = (events: E[], times: number) => async () => {
    for (let i = 0; i < times; i++) decider.fold(decider.initialState(), events);
    return times;
  };
  const sides = (seconds: number) =>
    alternatePasses({
      pool: options.pool,
      seconds,
      a: { label: `fold ${options.label}, ${fmtK(options.long.length)} events`, run: fold(options.long, passes.long) },
      b: { label: `fold ${options.label}, ${fmtK(options.short.length)} events`, run: fold(options.short, passes.short) },
    });
  await sides(options.warmupSeconds);
  return sides(options.seconds);
}

const fmtK = (n: number) => `${Math.round(n / 1000)}k`;

export type LongStreams = { account: { streamId: string }; capsul: { streamId: string } };

/**
 * One account of `longEvents` events, and its capsul's stream of as many, appended in batches (with their
 * projections) by `pool`; then a load of each (which writes its snapshot) and `recentEvents` more events.
 */
export async function seedLongStreams(pool: pg.Pool, rng: Rng): Promise<LongStreams & { events: number }> {
  const accountId = randomUUID();
  const vmId = `capsul-${randomUUID().replaceAll('-', '').slice(0, 10)}`;
  const startMs = Date.now() - 3 * 365 * 24 * hourMs;
  const account = accountStream(accountId);
  const capsul = vmStream(vmId);
  const history = accountHistory(accountId, vmId, longEvents + recentEvents, startMs, rng);
  const reports = capsulHistory(accountId, vmId, longEvents + recentEvents, startMs, rng);
  const by: Actor = { kind: 'operator', id: 'bench' };
  const versions = new Map<string, bigint>();
  const append = async (streamId: string, events: LedgerEvent[]) => {
    for (let i = 0; i < events.length; i += 500) {
      const result = await appendEvents(
        pool,
        streamId,
        events.slice(i, i + 500),
        { by, eventVersion: currentEventVersion },
        versions.get(streamId) ?? 0n,
      );
      if (!result.ok) throw new Error(`bench: unexpected version conflict on ${streamId}`);
      versions.set(streamId, result.nextVersion);
    }
  };
  await append(account, history.slice(0, longEvents));
  await append(capsul, reports.slice(0, longEvents));
  for (const [streamId, decider] of [
    [account, accountDecider],
    [capsul, vmDecider],
  ] as const) {
    const first = await load(pool, streamId, decider as Decider<unknown, unknown, LedgerEvent>);
    if (first.start.from !== 'start') throw new Error(`bench: ${streamId} had a snapshot before its first load`);
  }
  await append(account, history.slice(longEvents));
  await append(capsul, reports.slice(longEvents));
  return { account: { streamId: account }, capsul: { streamId: capsul }, events: history.length + reports.length };
}

/** A long stream loaded from its snapshot (+ the recent events) versus from its first event, alternating passes. */
export async function measureSnapshotLoad<S>(options: {
  pool: pg.Pool;
  seconds: number;
  label: string;
  streamId: string;
  decider: Decider<S, unknown, LedgerEvent>;
}): Promise<[Tally, Tally]> {
  const { pool, streamId, decider } = options;
  const viaSnapshot = await load(pool, streamId, decider);
  if (viaSnapshot.start.from !== 'snapshot') throw new Error(`bench: ${streamId} did not load from its snapshot`);
  if (viaSnapshot.version - viaSnapshot.start.version >= BigInt(snapshotEvery)) throw new Error('bench: too many recent events');
  deepStrictEqual(
    viaSnapshot.state,
    (await loadFromStart(pool, streamId, decider)).state,
    `bench: ${streamId} from its snapshot differs from a fold from the start`,
  );
  const times = (run: () => Promise<unknown>, n: number) => async () => {
    for (let i = 0; i < n; i++) await run();
    return n;
  };
  return alternatePasses({
    pool,
    seconds: options.seconds,
    a: { label: `load ${options.label} from its snapshot + ${recentEvents} events`, run: times(() => load(pool, streamId, decider), 5) },
    b: { label: `load ${options.label} from its first event`, run: times(() => loadFromStart(pool, streamId, decider), 1) },
  });
}
