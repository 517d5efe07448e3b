// The command path every adapter uses: load the stream, decide, append with the version we loaded.
// A concurrent append to the same stream makes ours fail; we then decide again on the new state.
import type pg from 'pg';
import type { Actor, LedgerEvent } from '../domain/events.ts';
import { lineOfText, maxActorIdLength, maxReasonLength } from '../domain/shared/text.ts';
import { currentEventVersion } from '../domain/upcast.ts';
import { loadStream } from '../db/event-store.ts';
import { appendEvents } from './append.ts';
import type { StreamCache } from './cache.ts';

export type Decider<S, C, E extends LedgerEvent> = {
  decide: (command: C, state: S) => E[];
  evolve: (state: S, event: E) => S;
  initialState: () => S;
};

export type Cause = { by: Actor; reason?: string };
export type CommandDeps = { pool: pg.Pool; cache?: StreamCache };

export class ConcurrencyError extends Error {}

const defaultMaxAttempts = 8;

export async function handleCommand<S, C, E extends LedgerEvent>(
  deps: CommandDeps,
  streamId: string,
  decider: Decider<S, C, E>,
  command: C,
  cause: Cause,
  options: {
    /** the version the user saw (a form): a change since then is reported, not retried */
    expectedVersion?: bigint;
    maxAttempts?: number;
  } = {},
): Promise<{ events: E[]; state: S; version: bigint }> {
  checkCause(cause);
  const maxAttempts = options.expectedVersion !== undefined ? 1 : (options.maxAttempts ?? defaultMaxAttempts);
  // A cached state is only trusted to append: the version check proves it current. A refusal or a
  // no-op decided on it is decided again on the stream as it is now.
  let cached = options.expectedVersion === undefined ? (deps.cache?.get(streamId) as Loaded<S> | undefined) : undefined;
  let conflicts = 0;
  while (true) {
    const fromCache = cached !== undefined;
    const current = cached ?? (await load(deps.pool, streamId, decider));
    cached = undefined;
    if (options.expectedVersion !== undefined && options.expectedVersion !== current.version) {
      throw new ConcurrencyError('this changed meanwhile: reload and try again');
    }
    let events: E[];
    try {
      events = decider.decide(command, current.state);
    } catch (error) {
      if (fromCache) continue;
      throw error;
    }
    if (events.length === 0) {
      if (fromCache) continue;
      return { events, state: current.state, version: current.version };
    }
    const metadata = { by: cause.by, ...(cause.reason ? { reason: cause.reason } : {}), eventVersion: currentEventVersion };
    const result = await appendEvents(deps.pool, streamId, events, metadata, current.version).catch((error) => {
      deps.cache?.delete(streamId);
      throw error;
    });
    if (result.ok) {
      const state = events.reduce(decider.evolve, current.state);
      deps.cache?.set(streamId, { version: result.nextVersion, state });
      return { events, state, version: result.nextVersion };
    }
    deps.cache?.delete(streamId);
    if (++conflicts >= maxAttempts) throw new ConcurrencyError('this changed meanwhile: reload and try again');
    await new Promise((resolve) => setTimeout(resolve, Math.random() * 10 * conflicts));
  }
}

type Loaded<S> = { version: bigint; state: S };

/** Who acted and why go into every event's metadata and are shown again: one line of visible text each. */
function checkCause(cause: Cause): void {
  lineOfText(cause.by.id, 'who acted', maxActorIdLength);
  if (cause.reason !== undefined) lineOfText(cause.reason, 'a reason', maxReasonLength);
}

/** A stream's events folded with the decider's `evolve`, and the stream's version. */
export async function load<S, C, E extends LedgerEvent>(pool: pg.Pool, streamId: string, decider: Decider<S, C, E>): Promise<Loaded<S>> {
  const stream = await loadStream(pool, streamId);
  const state = stream.events.reduce((s, stored) => decider.evolve(s, stored.event as E), decider.initialState());
  return { version: stream.version, state };
}
