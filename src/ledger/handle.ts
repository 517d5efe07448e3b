// The command path every adapter uses: load the stream, decide, append with the version we loaded.
// A concurrent append to the same stream makes ours fail; we then decide again on the new state.
import type pg from 'pg';
import { checkedCause, type CommandContext, type LedgerEvent } from '../domain/events.ts';
import { currentEventVersion } from '../domain/upcast.ts';
import { DomainError } from '../domain/shared/errors.ts';
import { commandRefusals, versionConflicts } from '../core/metrics.ts';
import { appendEvents } from './append.ts';
import { inTransaction } from '../db/transaction.ts';
import { StagedStreamCache, type StreamCache } from './cache.ts';
import { load, type Decider, type Loaded } from './load.ts';

export type CommandDeps = { pool: pg.Pool; cache?: StreamCache };

/** One transaction's connection and staged cache (handleTogether): the commands run on it commit together. */
export type Together = { pool: pg.PoolClient; cache: StagedStreamCache; inTransaction: true };

export class ConcurrencyError extends Error {}

const defaultMaxAttempts = 8;

/** The command's cause (its metadata's) goes into the metadata of every event it appends. */
export async function handleCommand<S, C extends { metadata: CommandContext }, E extends LedgerEvent>(
  deps: CommandDeps | Together,
  streamId: string,
  decider: Decider<S, C, E>,
  command: C,
  options: {
    /** the version the user saw (a form): a change since then is reported, not retried */
    expectedVersion?: bigint;
    maxAttempts?: number;
  } = {},
): Promise<{ events: E[]; state: S; version: bigint }> {
  const cause = checkedCause(command.metadata.cause);
  const maxAttempts = options.expectedVersion !== undefined ? 1 : (options.maxAttempts ?? defaultMaxAttempts);
  // A cached state is only trusted to append: the version check proves it current. A refusal or a
  // no-op decided on it is decided again on the stream as it is now.
  let cached = options.expectedVersion === undefined ? (deps.cache?.get(streamId) as Loaded<S> | undefined) : undefined;
  let conflicts = 0;
  while (true) {
    const fromCache = cached !== undefined;
    const current = cached ?? (await load(deps.pool, streamId, decider, { inTransaction: 'inTransaction' in deps }));
    cached = undefined;
    if (options.expectedVersion !== undefined && options.expectedVersion !== current.version) {
      throw new ConcurrencyError('this changed meanwhile: reload and try again');
    }
    let events: E[];
    try {
      events = decider.decide(command, current.state);
    } catch (error) {
      if (fromCache) continue;
      if (error instanceof DomainError) commandRefusals.inc({ code: error.code });
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
      const state = decider.fold(current.state, events);
      deps.cache?.set(streamId, { version: result.nextVersion, state });
      return { events, state, version: result.nextVersion };
    }
    deps.cache?.delete(streamId);
    versionConflicts.inc();
    if (++conflicts >= maxAttempts) throw new ConcurrencyError('this changed meanwhile: reload and try again');
    await new Promise((resolve) => setTimeout(resolve, Math.random() * 10 * conflicts));
  }
}

/**
 * Commands on several streams in one transaction, committed together: one commit (one WAL flush) for
 * all of them instead of one each, as for a spoke's batch of reports. Each command still decides on
 * its stream's state and appends with the version it loaded, retrying its own conflicts; an error
 * rolls every one back. The cache learns their new states only once they have committed. Commands on
 * several streams take their rows' locks one stream after another: run them in stream order, as
 * every transaction that locks several streams' rows does, so two such transactions never deadlock.
 */
export async function handleTogether<T>(deps: CommandDeps, work: (together: Together) => Promise<T>): Promise<T> {
  const cache = new StagedStreamCache(deps.cache);
  const result = await inTransaction(deps.pool, (client) => work({ pool: client, cache, inTransaction: true }));
  cache.commit();
  return result;
}
