// Pure decisions over a capsul's operational stream. What the account stream knows (the capsul was
// requested, its deletion was requested) arrives in the command, loaded by the adapter; so do the
// ids of new operations and of reports. A host may delete only what it was asked to: its report of a
// deletion no delete operation asked for is recorded as the capsul vanishing (an incident), not as its
// deletion.
import type { Command } from '@event-driven-io/emmett';
import type { CommandContext } from '../events.ts';
import { invalid, notFound, refused } from '../shared/errors.ts';
import { observedStates, type HostKeyFingerprint, type ObservedState, type VmEvent } from './events.ts';
import { vmSnapshot } from './snapshot.ts';
import { addressesOf, alreadyReported, evolveVm, foldVm, initialVm, type Vm } from './state.ts';

/** What the account stream says about the capsul, loaded by the adapter. */
/** What the capsul's account says of it: its deletion asked, its account suspended for nonpayment (no start then). */
export type VmContext = { accountId: string; deletionRequested: boolean; suspended?: boolean };
type Meta = CommandContext;
type ReportIds = { reportId: string | null; operationId: string | null };

export type PlaceVm = Command<'PlaceVm', { vmId: string; host: string; operationId: string; context: VmContext }, Meta>;
export type RecordProvisioned = Command<
  'RecordProvisioned',
  { vmId: string; host: string; ipv4: string | null; ipv6: string | null; sshHostKeys: HostKeyFingerprint[]; observedAt: Date } & ReportIds,
  Meta
>;
export type ObserveState = Command<
  'ObserveState',
  { vmId: string; host: string; state: ObservedState; observedAt: Date } & ReportIds,
  Meta
>;
export type RequestStart = Command<'RequestStart', { vmId: string; operationId: string; context: VmContext }, Meta>;
export type RequestStop = Command<'RequestStop', { vmId: string; force: boolean; operationId: string; context: VmContext }, Meta>;
export type ScheduleDeletion = Command<'ScheduleDeletion', { vmId: string; operationId: string; context: VmContext }, Meta>;
export type ConfirmDeleted = Command<'ConfirmDeleted', { vmId: string; host: string | null; observedAt: Date } & ReportIds, Meta>;
export type RecordFailure = Command<'RecordFailure', { vmId: string; host: string; error: string; observedAt: Date } & ReportIds, Meta>;

export type VmCommand =
  | PlaceVm
  | RecordProvisioned
  | ObserveState
  | RequestStart
  | RequestStop
  | ScheduleDeletion
  | ConfirmDeleted
  | RecordFailure;

export const maxFailureLength = 2000;

/** Whether a report completes an operation still waiting for its outcome. */
const completesOperation = (state: Vm, operationId: string | null) => operationId !== null && state.openOperations.has(operationId);
/** Gone from its host, asked to or not: what the host reports of it afterwards changes nothing. */
const isGone = (state: Vm) => state.state === 'deleted' || state.state === 'vanished';

export function decideVm(command: VmCommand, state: Vm): VmEvent[] {
  const at = command.metadata!.now.toISOString();
  const { vmId } = command.data;
  switch (command.type) {
    case 'PlaceVm': {
      const { host, context, operationId } = command.data;
      if (state.host === host) return []; // placement repeated after a crash: already done
      if (state.host !== null) throw refused(`capsul ${vmId} is already placed on host ${state.host}`);
      if (context.deletionRequested || state.state === 'deleted') throw refused(`capsul ${vmId} is being deleted`);
      return [{ type: 'VmPlaced', data: { vmId, accountId: context.accountId, host, operationId, at } }];
    }
    case 'RecordProvisioned': {
      const d = command.data;
      requireHost(state, vmId, d.host);
      // Provisioned again with the same addresses and keys (a restart): nothing new.
      const same = state.provisioned && state.addresses === addressesOf(d);
      if (alreadyReported(state, d.reportId) || same || isGone(state)) return [];
      return [
        {
          type: 'VmProvisioned',
          data: {
            vmId,
            host: d.host,
            ipv4: d.ipv4,
            ipv6: d.ipv6,
            sshHostKeys: d.sshHostKeys,
            reportId: d.reportId,
            operationId: d.operationId,
            at: d.observedAt.toISOString(),
          },
        },
      ];
    }
    case 'ObserveState': {
      const d = command.data;
      requireHost(state, vmId, d.host);
      if (!observedStates.includes(d.state)) throw invalid(`${JSON.stringify(d.state)} is not a capsul state`);
      if (alreadyReported(state, d.reportId)) return [];
      const observedAtMs = d.observedAt.getTime();
      // Not newer than the last state report, or older than the provisioning report: stale. A state
      // reported at the very instant of provisioning counts; a repeat of the current state changes
      // nothing, unless it completes an operation.
      const stale = observedAtMs <= state.lastObservedAtMs || observedAtMs < state.provisionedAtMs;
      // A vanished capsul seen again stays vanished for the ledger: its host running it anyway is drift
      // (unexpected-on-host), for an operator to settle.
      if (isGone(state) || stale || (state.state === d.state && !completesOperation(state, d.operationId))) return [];
      return [
        {
          type: 'VmStateObserved',
          data: { vmId, host: d.host, state: d.state, reportId: d.reportId, operationId: d.operationId, at: d.observedAt.toISOString() },
        },
      ];
    }
    case 'RequestStart':
    case 'RequestStop': {
      const { context, operationId } = command.data;
      if (state.operationIds.has(operationId)) return []; // the same request again
      if (state.host === null) throw refused(`capsul ${vmId} is not on a host yet`);
      if (context.deletionRequested || state.state === 'deleted') throw refused(`capsul ${vmId} is deleted`);
      if (state.state === 'vanished') throw refused(`capsul ${vmId} vanished from its host`);
      if (command.type === 'RequestStart' && context.suspended)
        throw refused(`capsul ${vmId} is suspended for nonpayment: add funds and it starts again`);
      const host = state.host;
      return command.type === 'RequestStart'
        ? [{ type: 'VmStartRequested', data: { vmId, host, operationId, at } }]
        : [{ type: 'VmStopRequested', data: { vmId, host, force: command.data.force, operationId, at } }];
    }
    case 'ScheduleDeletion': {
      if (!command.data.context.deletionRequested) throw refused(`capsul ${vmId}: its deletion was not requested`);
      if (state.deletionScheduled || state.state === 'deleted') return [];
      if (state.host === null) throw refused(`capsul ${vmId} is on no host: confirm its deletion instead`);
      return [{ type: 'VmDeletionScheduled', data: { vmId, host: state.host, operationId: command.data.operationId, at } }];
    }
    case 'ConfirmDeleted': {
      const d = command.data;
      // Without a host only a capsul that never reached one can be confirmed deleted.
      if (d.host !== null) requireHost(state, vmId, d.host);
      else if (state.host !== null && state.state !== 'deleted') {
        throw refused(`capsul ${vmId} is on host ${state.host}: only that host can confirm its deletion`);
      }
      if (state.state === 'deleted' || alreadyReported(state, d.reportId)) return [];
      // A host deletes only what it was asked to: a deletion nobody asked of it is the capsul vanishing (once).
      if (d.host !== null && !state.deletionAsked)
        return state.state === 'vanished' ? [] : vanish(state, vmId, d.host, d, command.metadata!.now);
      return [
        {
          type: 'VmDeleted',
          data: { vmId, host: d.host, reportId: d.reportId, operationId: d.operationId, at: d.observedAt.toISOString() },
        },
      ];
    }
    case 'RecordFailure': {
      const d = command.data;
      requireHost(state, vmId, d.host);
      if (alreadyReported(state, d.reportId)) return [];
      // A vanished capsul's only operation can be the delete asked after it vanished: its failure counts.
      const settled = state.state === 'failed' || state.state === 'vanished';
      if (state.state === 'deleted' || (settled && !completesOperation(state, d.operationId))) return [];
      return [
        {
          type: 'VmFailed',
          data: {
            vmId,
            host: d.host,
            error: d.error.slice(0, maxFailureLength).toWellFormed(),
            operation: d.operationId === null ? null : (state.openOperations.get(d.operationId) ?? null),
            reportId: d.reportId,
            operationId: d.operationId,
            at: d.observedAt.toISOString(),
          },
        },
      ];
    }
    default: {
      const unknown: never = command;
      throw new Error(`unknown command ${(unknown as { type: string }).type}`);
    }
  }
}

/**
 * A deletion its host reports without having been asked: the capsul vanished. It is taken to have gone
 * at the host's observation time, but not before the host last reported it there (its own reports say
 * it still existed then) and not after the hub heard of it (a host's clock running ahead).
 */
function vanish(state: Vm, vmId: string, host: string, d: ConfirmDeleted['data'], now: Date): VmEvent[] {
  const observedMs = d.observedAt.getTime();
  if (Number.isNaN(observedMs)) throw invalid('the time the capsul was seen gone is not a valid time');
  const lastSeenMs = Math.max(state.lastObservedAtMs, state.provisionedAtMs);
  const atMs = Math.min(Math.max(observedMs, lastSeenMs), now.getTime());
  return [
    {
      type: 'VmVanished',
      data: {
        vmId,
        host,
        reportId: d.reportId,
        observedAt: d.observedAt.toISOString(),
        reportedAt: now.toISOString(),
        cancelledOperationIds: [...state.openOperations.keys()],
        at: new Date(atMs).toISOString(),
      },
    },
  ];
}

function requireHost(state: Vm, vmId: string, host: string): void {
  if (state.host === null) throw notFound(`capsul ${vmId} is not placed on any host`);
  if (state.host !== host) throw refused(`capsul ${vmId} is placed on host ${state.host}, not ${host}`);
}

export const vmDecider = { decide: decideVm, evolve: evolveVm, fold: foldVm, initialState: initialVm, snapshot: vmSnapshot };
