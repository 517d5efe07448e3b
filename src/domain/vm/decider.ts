// Pure decisions over a capsul's operational stream. What the account stream knows (the capsul was
// requested, its deletion was requested) arrives in the command, loaded by the adapter.
import type { Command } from '@event-driven-io/emmett';
import { invalid, notFound, refused } from '../shared/errors.ts';
import { observedStates, type HostKeyFingerprint, type ObservedState, type VmEvent } from './events.ts';

export type Vm = {
  host: string | null;
  provisioned: boolean;
  state: ObservedState | 'pending' | 'creating' | 'deleted' | 'failed';
  /** when the host last reported a state: older or equally old reports are stale */
  lastObservedAtMs: number;
  provisionedAtMs: number;
};

export const initialVm = (): Vm => ({ host: null, provisioned: false, state: 'pending', lastObservedAtMs: 0, provisionedAtMs: 0 });

/** What the account stream says about the capsul, loaded by the adapter. */
export type VmContext = { accountId: string; deletionRequested: boolean };
type Meta = { now: Date };

export type PlaceVm = Command<'PlaceVm', { vmId: string; host: string; context: VmContext }, Meta>;
export type RecordProvisioned = Command<
  'RecordProvisioned',
  { vmId: string; host: string; ipv4: string | null; ipv6: string | null; sshHostKeys: HostKeyFingerprint[]; observedAt: Date },
  Meta
>;
export type ObserveState = Command<'ObserveState', { vmId: string; host: string; state: ObservedState; observedAt: Date }, Meta>;
export type RequestStart = Command<'RequestStart', { vmId: string; context: VmContext }, Meta>;
export type RequestStop = Command<'RequestStop', { vmId: string; force: boolean; context: VmContext }, Meta>;
export type ConfirmDeleted = Command<'ConfirmDeleted', { vmId: string; host: string | null; observedAt: Date }, Meta>;
export type RecordFailure = Command<'RecordFailure', { vmId: string; host: string; error: string; observedAt: Date }, Meta>;

export type VmCommand = PlaceVm | RecordProvisioned | ObserveState | RequestStart | RequestStop | ConfirmDeleted | RecordFailure;

export function evolveVm(state: Vm, event: VmEvent): Vm {
  switch (event.type) {
    case 'VmPlaced':
      return { ...state, host: event.data.host, state: 'creating' };
    case 'VmProvisioned':
      return { ...state, provisioned: true, provisionedAtMs: Date.parse(event.data.at) };
    case 'VmStateObserved':
      return { ...state, state: event.data.state, lastObservedAtMs: Date.parse(event.data.at) };
    case 'VmStartRequested':
    case 'VmStopRequested':
      return state;
    case 'VmDeleted':
      return { ...state, state: 'deleted' };
    case 'VmFailed':
      return { ...state, state: 'failed' };
    default: {
      const unknown: never = event;
      return unknown;
    }
  }
}

export function decideVm(command: VmCommand, state: Vm): VmEvent[] {
  const at = command.metadata!.now.toISOString();
  const { vmId } = command.data;
  switch (command.type) {
    case 'PlaceVm': {
      const { host, context } = command.data;
      if (state.host === host) return []; // placement repeated after a crash: already done
      if (state.host !== null) throw refused(`capsul ${vmId} is already placed on host ${state.host}`);
      if (context.deletionRequested) throw refused(`capsul ${vmId} is being deleted`);
      return [{ type: 'VmPlaced', data: { vmId, accountId: context.accountId, host, at } }];
    }
    case 'RecordProvisioned': {
      const d = command.data;
      requireHost(state, vmId, d.host);
      if (state.provisioned || state.state === 'deleted') return [];
      return [{
        type: 'VmProvisioned',
        data: { vmId, host: d.host, ipv4: d.ipv4, ipv6: d.ipv6, sshHostKeys: d.sshHostKeys, at: d.observedAt.toISOString() },
      }];
    }
    case 'ObserveState': {
      const d = command.data;
      requireHost(state, vmId, d.host);
      if (!observedStates.includes(d.state)) throw invalid(`${JSON.stringify(d.state)} is not a capsul state`);
      const observedAtMs = d.observedAt.getTime();
      // Not newer than the last state report, or older than the provisioning report: stale. A state
      // reported at the very instant of provisioning counts; a repeat of the current state changes nothing.
      const stale = observedAtMs <= state.lastObservedAtMs || observedAtMs < state.provisionedAtMs;
      if (state.state === 'deleted' || stale || state.state === d.state) return [];
      return [{ type: 'VmStateObserved', data: { vmId, host: d.host, state: d.state, at: d.observedAt.toISOString() } }];
    }
    case 'RequestStart':
    case 'RequestStop': {
      const { context } = command.data;
      if (state.host === null) throw refused(`capsul ${vmId} is not on a host yet`);
      if (context.deletionRequested || state.state === 'deleted') throw refused(`capsul ${vmId} is deleted`);
      return command.type === 'RequestStart'
        ? [{ type: 'VmStartRequested', data: { vmId, at } }]
        : [{ type: 'VmStopRequested', data: { vmId, force: command.data.force, at } }];
    }
    case 'ConfirmDeleted': {
      if (state.state === 'deleted') return [];
      // Without a host only a capsul that never reached one can be confirmed deleted.
      if (command.data.host !== null) requireHost(state, vmId, command.data.host);
      else if (state.host !== null) throw refused(`capsul ${vmId} is on host ${state.host}: only that host can confirm its deletion`);
      return [{ type: 'VmDeleted', data: { vmId, host: command.data.host, at: command.data.observedAt.toISOString() } }];
    }
    case 'RecordFailure': {
      const d = command.data;
      requireHost(state, vmId, d.host);
      if (state.state === 'deleted' || state.state === 'failed') return [];
      return [{ type: 'VmFailed', data: { vmId, host: d.host, error: d.error.slice(0, 2000), at: d.observedAt.toISOString() } }];
    }
    default: {
      const unknown: never = command;
      throw new Error(`unknown command ${(unknown as { type: string }).type}`);
    }
  }
}

function requireHost(state: Vm, vmId: string, host: string): void {
  if (state.host === null) throw notFound(`capsul ${vmId} is not placed on any host`);
  if (state.host !== host) throw refused(`capsul ${vmId} is placed on host ${state.host}, not ${host}`);
}

export const vmDecider = { decide: decideVm, evolve: evolveVm, initialState: initialVm };
