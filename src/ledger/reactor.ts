// Reactions the hub runs after a fact on one stream that calls for a fact on another: placing a
// requested capsul on a host and turning a deletion request into a delete operation for its host (both
// account → capsul), and ending a vanished capsul's charges (capsul → account). Each reads what is still
// to do from the projections and appends what its decider decides, so running it again (after a crash
// between the two appends, or on several hubs at once) does nothing more.
import { systemClock, type Clock } from '../core/clock.ts';
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { advisoryLocks, notTaken, withAdvisoryLock } from '../db/advisory-lock.ts';
import { accountDecider } from '../domain/account/decider.ts';
import { accountStream } from '../domain/account/events.ts';
import { balanceCentsAt } from '../domain/account/state.ts';
import { vmDecider } from '../domain/vm/decider.ts';
import { vmStream } from '../domain/vm/events.ts';
import { DomainError } from '../domain/shared/errors.ts';
import { handleCommand, type CommandDeps } from './handle.ts';
import { load } from './load.ts';
import { onlineWithinMs } from './hosts.ts';
import {
  capsulsAwaitingPlacement,
  deletionsToSchedule,
  resumedStillStopped,
  suspendedAccountsPaidSince,
  suspendedStillRunning,
  vanishedStillCharged,
} from '../read/capsuls.ts';
import { hostWithRoom as hostWithRoomSince } from '../read/hosts.ts';

const hub = { by: { kind: 'job' as const, id: 'placement' } };
const billing = { by: { kind: 'job' as const, id: 'vanished' } };
const suspension = { by: { kind: 'job' as const, id: 'suspension' } };
const maxPerRound = 100;

/** `now`: the hub's clock; alone (a test), the system clock. */
export type ReactorDeps = CommandDeps & { now?: Clock; log?: (line: string) => void };

/** Places pending capsuls on online hosts with room; returns how many it placed. */
export async function placePending(deps: ReactorDeps): Promise<number> {
  // One placer at a time, so two placements never both take a host's last free memory.
  const placed = await withAdvisoryLock(deps.pool, advisoryLocks.placement, () => placeUnderLock(deps), { mode: 'try' });
  return placed === notTaken ? 0 : placed;
}

async function placeUnderLock(deps: ReactorDeps): Promise<number> {
  const now = (deps.now ?? systemClock)();
  const pending = await capsulsAwaitingPlacement(deps.pool, maxPerRound);
  let placed = 0;
  for (const vm of pending) {
    const host = await hostWithRoom(deps.pool, vm.memoryMb, now);
    if (!host) {
      deps.log?.(`capsul ${vm.id} waits: no online host has ${vm.memoryMb} MiB free`);
      break;
    }
    try {
      const { events } = await handleCommand(deps, vmStream(vm.id), vmDecider, {
        type: 'PlaceVm',
        data: { vmId: vm.id, host, operationId: randomUUID(), context: { accountId: vm.accountId, deletionRequested: false } },
        metadata: { now, cause: hub },
      });
      if (events.length > 0) placed++;
    } catch (error) {
      if (!(error instanceof DomainError)) throw error;
      deps.log?.(`capsul ${vm.id} not placed: ${error.message}`);
    }
  }
  return placed;
}

/** The online host with the most free memory that fits `memoryMb`, or null. */
export async function hostWithRoom(
  pool: pg.Pool,
  memoryMb: number,
  now: Date,
  options: { onlineOnly?: boolean } = {},
): Promise<string | null> {
  return hostWithRoomSince(pool, memoryMb, new Date(now.getTime() - onlineWithinMs), options.onlineOnly ?? true);
}

/** Turns deletion requests into delete operations (or, for a capsul on no host, into its deletion). */
export async function scheduleDeletions(deps: ReactorDeps): Promise<number> {
  const now = (deps.now ?? systemClock)();
  let scheduled = 0;
  for (const vm of await deletionsToSchedule(deps.pool, now, maxPerRound)) {
    const context = { accountId: vm.accountId, deletionRequested: true };
    const command =
      vm.host === null
        ? {
            type: 'ConfirmDeleted' as const,
            data: { vmId: vm.id, host: null, observedAt: now, reportId: null, operationId: null },
            metadata: { now, cause: hub },
          }
        : { type: 'ScheduleDeletion' as const, data: { vmId: vm.id, operationId: randomUUID(), context }, metadata: { now, cause: hub } };
    try {
      const { events } = await handleCommand(deps, vmStream(vm.id), vmDecider, command);
      if (events.length > 0) scheduled++;
    } catch (error) {
      if (!(error instanceof DomainError)) throw error;
      deps.log?.(`capsul ${vm.id}: deletion not scheduled: ${error.message}`);
    }
  }
  return scheduled;
}

/**
 * Ends the charges of capsuls that vanished from their host (VmVanished) on their account, at the
 * instant the host saw them gone; returns how many it ended. The instant comes from the capsul's own
 * stream, not from the projection.
 */
export async function endVanishedAccruals(deps: ReactorDeps): Promise<number> {
  const now = (deps.now ?? systemClock)();
  let ended = 0;
  for (const vm of await vanishedStillCharged(deps.pool, maxPerRound)) {
    const { state } = await load(deps.pool, vmStream(vm.id), vmDecider);
    if (!state.vanished) continue; // cannot happen: the projection follows the stream
    const { at, host, reportId } = state.vanished;
    try {
      const { events } = await handleCommand(deps, accountStream(vm.accountId), accountDecider, {
        type: 'EndVmAccrual',
        data: { vmId: vm.id, vanishedAt: new Date(at), host, reportId },
        metadata: { now, cause: billing },
      });
      if (events.length > 0) {
        ended++;
        deps.log?.(`capsul ${vm.id} vanished from host ${host}: its charges end at ${at}`);
      }
    } catch (error) {
      if (!(error instanceof DomainError)) throw error;
      deps.log?.(`capsul ${vm.id}: charges not ended: ${error.message}`);
    }
  }
  return ended;
}

/**
 * Suspension's reactions (docs/billing.md): a suspended account paid since is resumed when its balance
 * is back above the suspension point (within seconds of a top-up, not at the next hourly job); the
 * capsuls a suspension stopped that still run are asked to stop, and those a resumption is to start,
 * to start. Returns how many facts it appended.
 */
export async function suspensionReactions(deps: ReactorDeps): Promise<number> {
  const now = (deps.now ?? systemClock)();
  let done = 0;
  const attempt = async (what: string, work: () => Promise<{ events: unknown[] }>) => {
    try {
      if ((await work()).events.length > 0) done++;
    } catch (error) {
      if (!(error instanceof DomainError)) throw error;
      deps.log?.(`${what}: ${error.message}`);
    }
  };
  for (const accountId of await suspendedAccountsPaidSince(deps.pool, maxPerRound)) {
    const { state } = await load(deps.pool, accountStream(accountId), accountDecider);
    if (state.suspension === null || balanceCentsAt(state, now.getTime()) <= state.suspension.suspensionPointCents) continue;
    await attempt(`account ${accountId}: not resumed`, () =>
      handleCommand(deps, accountStream(accountId), accountDecider, {
        type: 'ResumeAccount',
        data: {},
        metadata: { now, cause: suspension },
      }),
    );
  }
  for (const vm of await suspendedStillRunning(deps.pool, maxPerRound)) {
    const context = { accountId: vm.accountId, deletionRequested: false, suspended: true };
    await attempt(`capsul ${vm.id}: not stopped for its suspension`, () =>
      handleCommand(deps, vmStream(vm.id), vmDecider, {
        type: 'RequestStop',
        data: { vmId: vm.id, force: false, operationId: randomUUID(), context },
        metadata: { now, cause: { ...suspension, reason: 'nonpayment' } },
      }),
    );
  }
  for (const vm of await resumedStillStopped(deps.pool, maxPerRound)) {
    const context = { accountId: vm.accountId, deletionRequested: false, suspended: false };
    await attempt(`capsul ${vm.id}: not started after its resumption`, () =>
      handleCommand(deps, vmStream(vm.id), vmDecider, {
        type: 'RequestStart',
        data: { vmId: vm.id, operationId: randomUUID(), context },
        metadata: { now, cause: suspension },
      }),
    );
  }
  return done;
}

/** One round of every reaction: money first. */
export async function react(deps: ReactorDeps): Promise<void> {
  await endVanishedAccruals(deps);
  await suspensionReactions(deps);
  await scheduleDeletions(deps);
  await placePending(deps);
}
