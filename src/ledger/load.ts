// Loading a stream's state: from its snapshot (migration 23) when it has a usable one, then the events
// after it, folded with the decider's linear fold (src/domain/shared/fold.ts). So `balance`, commands and
// jobs cost what the recent events cost, not the stream's whole life.
//
// A snapshot is derived, never trusted as a fact: it is used only while the code's shape version wrote
// it, the event at its version is still the one it was taken after, and its state reads back in full
// (src/db/event-store.ts, src/domain/shared/snapshot.ts); otherwise the stream is folded from the start.
// What these checks cannot catch, a wrong state written under a right version, is in docs/architecture.md.
import { streamSnapshots } from '../core/metrics.ts';
import { loadStream, loadStreamFromSnapshot, writeSnapshot, type Queryable, type StoredEvent } from '../db/event-store.ts';
import type { LedgerEvent } from '../domain/events.ts';
import { SnapshotShapeError, type SnapshotCodec } from '../domain/shared/snapshot.ts';

export type Decider<S, C, E extends LedgerEvent> = {
  decide: (command: C, state: S) => E[];
  /** the decider's `evolve` over many events, in O(events) */
  fold: (state: S, events: Iterable<E>) => S;
  initialState: () => S;
  /** how its state is snapshotted; none: its streams (short ones) are always folded from the start */
  snapshot?: SnapshotCodec<S>;
};

/** A load that folded more events than this after the snapshot it began from (or the start) writes a new one. */
export const snapshotEvery = 500;

export type Loaded<S> = { version: bigint; state: S };

/** Where a load began: a snapshot (its version), or the first event (and why the stream's snapshot was not used). */
export type LoadStart = { from: 'snapshot'; version: bigint } | { from: 'start'; refused: string | null };

/** A stream's state and version: from its snapshot when usable, then the events after it; see above. */
export async function load<S, C, E extends LedgerEvent>(
  pool: Queryable,
  streamId: string,
  decider: Decider<S, C, E>,
  options: { inTransaction?: boolean } = {},
): Promise<Loaded<S> & { start: LoadStart }> {
  const codec = decider.snapshot;
  if (!codec) return { ...(await loadFromStart(pool, streamId, decider)), start: { from: 'start', refused: null } };
  const begun = await beginAt(pool, streamId, decider, codec);
  const state = decider.fold(begun.state, eventsOf<E>(begun.events));
  if (begun.events.length > snapshotEvery) {
    await keepSnapshot(pool, streamId, codec, state, begun.events.at(-1)!, options.inTransaction ?? false);
  }
  return { version: begun.version, state, start: begun.start };
}

/**
 * A stream's events folded from the first, whatever snapshot it has: what a load from a snapshot must
 * equal. With `seen`, only the events it keeps (the stream as the ledger knew it at an earlier time).
 */
export async function loadFromStart<S, C, E extends LedgerEvent>(
  pool: Queryable,
  streamId: string,
  decider: Decider<S, C, E>,
  seen: (stored: StoredEvent) => boolean = () => true,
): Promise<Loaded<S>> {
  const stream = await loadStream(pool, streamId);
  return { version: stream.version, state: decider.fold(decider.initialState(), eventsOf<E>(stream.events.filter(seen))) };
}

const eventsOf = <E>(stored: StoredEvent[]): E[] => stored.map((s) => s.event as E);

type Begun<S> = { state: S; events: StoredEvent[]; version: bigint; start: LoadStart };

/** The state to fold from and the events to fold: the snapshot's when it passes every check, else the start's. */
async function beginAt<S, C, E extends LedgerEvent>(
  pool: Queryable,
  streamId: string,
  decider: Decider<S, C, E>,
  codec: SnapshotCodec<S>,
): Promise<Begun<S>> {
  const read = await loadStreamFromSnapshot(pool, streamId, codec.shapeVersion);
  const snapshot = read.snapshot;
  const fromStart = (refused: string | null): Begun<S> => ({
    state: decider.initialState(),
    events: read.events,
    version: read.version,
    start: { from: 'start', refused },
  });
  if (snapshot === null) return fromStart(null);
  if (snapshot.refused !== null) {
    streamSnapshots.inc({ outcome: 'refused' });
    return fromStart(snapshot.refused);
  }
  try {
    const state = codec.decode(snapshot.state);
    streamSnapshots.inc({ outcome: 'used' });
    return { state, events: read.events, version: read.version, start: { from: 'snapshot', version: snapshot.version } };
  } catch (error) {
    if (!(error instanceof SnapshotShapeError)) throw error;
    streamSnapshots.inc({ outcome: 'refused' });
    // Only the events after it were read: read them all.
    const stream = await loadStream(pool, streamId);
    return {
      state: decider.initialState(),
      events: stream.events,
      version: stream.version,
      start: { from: 'start', refused: error.message },
    };
  }
}

/**
 * Best effort: a snapshot that cannot be written (a reader's connection, a full disk) fails no load.
 * In a transaction the write has a savepoint of its own, so its failure does not abort the rest.
 */
async function keepSnapshot<S>(
  pool: Queryable,
  streamId: string,
  codec: SnapshotCodec<S>,
  state: S,
  last: StoredEvent,
  inTransaction: boolean,
): Promise<void> {
  try {
    if (inTransaction) await pool.query('SAVEPOINT capsul_snapshot');
    try {
      await writeSnapshot(pool, {
        streamId,
        version: BigInt(last.streamPosition),
        messageId: last.messageId,
        shapeVersion: codec.shapeVersion,
        state: codec.encode(state),
      });
    } catch (error) {
      if (inTransaction) await pool.query('ROLLBACK TO SAVEPOINT capsul_snapshot');
      throw error;
    }
    if (inTransaction) await pool.query('RELEASE SAVEPOINT capsul_snapshot');
    streamSnapshots.inc({ outcome: 'written' });
  } catch {
    streamSnapshots.inc({ outcome: 'write_failed' });
  }
}
