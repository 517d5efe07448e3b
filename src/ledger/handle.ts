// The command path every adapter uses: load the stream, decide, append with the version we loaded.
// A concurrent append to the same stream makes ours fail; we then decide again on the new state.
import { isExpectedVersionConflictError } from '@event-driven-io/emmett';
import type { PostgresEventStore } from '@event-driven-io/emmett-postgresql';
import type pg from 'pg';
import type { Actor, LedgerEvent } from '../domain/events.ts';
import { currentEventVersion } from '../domain/upcast.ts';
import { loadStream } from '../projections/read.ts';

export type Decider<S, C, E extends LedgerEvent> = {
  decide: (command: C, state: S) => E[];
  evolve: (state: S, event: E) => S;
  initialState: () => S;
};

export type Cause = { by: Actor; reason?: string };

export class ConcurrencyError extends Error {}

const maxAttempts = 8;

export async function handleCommand<S, C, E extends LedgerEvent>(
  deps: { pool: pg.Pool; store: PostgresEventStore },
  streamId: string,
  decider: Decider<S, C, E>,
  command: C,
  cause: Cause,
  options: { expectedVersion?: bigint } = {},
): Promise<{ events: E[]; state: S; version: bigint }> {
  for (let attempt = 1; ; attempt++) {
    const stream = await loadStream(deps.pool, streamId);
    if (options.expectedVersion !== undefined && options.expectedVersion !== stream.version) {
      throw new ConcurrencyError('this changed meanwhile: reload and try again');
    }
    const state = stream.events.reduce((s, stored) => decider.evolve(s, stored.event as E), decider.initialState());
    const events = decider.decide(command, state);
    if (events.length === 0) return { events, state, version: stream.version };
    const metadata = { by: cause.by, ...(cause.reason ? { reason: cause.reason } : {}), eventVersion: currentEventVersion };
    try {
      const result = await deps.store.appendToStream(
        streamId,
        events.map((event) => ({ type: event.type, data: event.data as Record<string, unknown>, metadata })),
        { expectedStreamVersion: stream.version }, // 0n means "must be new", and emmett enforces it
      );
      return { events, state: events.reduce(decider.evolve, state), version: result.nextExpectedStreamVersion };
    } catch (error) {
      if (!isExpectedVersionConflictError(error)) throw error;
      if (options.expectedVersion !== undefined || attempt >= maxAttempts) {
        throw new ConcurrencyError('this changed meanwhile: reload and try again');
      }
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 10 * attempt));
    }
  }
}
