// The capsul's state folded from its stream: enough to decide what its host's reports and the
// operations asked of it mean.
import { linearFold } from '../shared/fold.ts';
import type { HostKeyFingerprint, ObservedState, OperationKind, VmEvent } from './events.ts';

export type Vm = {
  host: string | null;
  provisioned: boolean;
  state: ObservedState | 'pending' | 'creating' | 'deleted' | 'vanished' | 'failed';
  /** when the host last reported a state: older or equally old reports are stale */
  lastObservedAtMs: number;
  provisionedAtMs: number;
  deletionScheduled: boolean;
  /** a delete operation was asked of the host at some point (even one that failed since) */
  deletionAsked: boolean;
  /** the host reported it gone unasked: when the ledger takes it to have gone, by which host and report */
  vanished: { at: string; host: string; reportId: string | null } | null;
  /** reports already recorded other than state reports (a capsul has a handful), remembered for good: the same report again changes nothing */
  reportIds: ReadonlySet<string>;
  /**
   * The ids of the last `rememberedStateReports` state reports recorded, oldest first. A capsul
   * reporting for years keeps these, not all of its reports: a state report sent again after that many
   * newer ones were recorded is stale (no newer than the last), which changes nothing, as a duplicate
   * does (docs/spoke-protocol.md).
   */
  recentStateReports: readonly string[];
  /** the addresses and host keys last reported, as one comparable text */
  addresses: string | null;
  /** every operation asked of the host, and those still waiting for their outcome (with their kind) */
  operationIds: ReadonlySet<string>;
  openOperations: ReadonlyMap<string, OperationKind>;
};

/** How many state reports' ids a capsul remembers (Vm.recentStateReports). */
export const rememberedStateReports = 100;

/** Whether the report was recorded before (a report without an id never was). */
export const alreadyReported = (state: Vm, reportId: string | null) =>
  reportId !== null && (state.reportIds.has(reportId) || state.recentStateReports.includes(reportId));

export const initialVm = (): Vm => ({
  host: null,
  provisioned: false,
  state: 'pending',
  lastObservedAtMs: 0,
  provisionedAtMs: 0,
  deletionScheduled: false,
  deletionAsked: false,
  vanished: null,
  addresses: null,
  reportIds: new Set(),
  recentStateReports: [],
  operationIds: new Set(),
  openOperations: new Map(),
});

/** The capsul being folded: its own collections, changed in place (shared/fold.ts). */
type WorkingVm = Vm & {
  reportIds: Set<string>;
  recentStateReports: string[];
  operationIds: Set<string>;
  openOperations: Map<string, OperationKind>;
};

const workingCopy = (state: Vm): WorkingVm => ({
  ...state,
  reportIds: new Set(state.reportIds),
  recentStateReports: [...state.recentStateReports],
  operationIds: new Set(state.operationIds),
  openOperations: new Map(state.openOperations),
});

function applyVm(state: WorkingVm, event: VmEvent): void {
  trackOperations(state, event);
  rememberReport(state, event);
  switch (event.type) {
    case 'VmPlaced':
      state.host = event.data.host;
      state.state = 'creating';
      return;
    case 'VmProvisioned':
      state.provisioned = true;
      state.provisionedAtMs = Date.parse(event.data.at);
      state.addresses = addressesOf(event.data);
      return;
    case 'VmStateObserved':
      state.state = event.data.state;
      state.lastObservedAtMs = Date.parse(event.data.at);
      return;
    case 'VmStartRequested':
    case 'VmStopRequested':
      return;
    case 'VmDeletionScheduled':
      state.deletionScheduled = true;
      state.deletionAsked = true;
      return;
    case 'VmDeleted':
      state.state = 'deleted';
      return;
    case 'VmVanished': {
      const { at, host, reportId } = event.data;
      state.state = 'vanished';
      state.vanished = { at, host, reportId };
      // Its open operations are cancelled with it: nothing is left for them to act on.
      state.openOperations.clear();
      return;
    }
    case 'VmFailed':
      // A failed create leaves no capsul; a failed stop or start leaves it as it was; a failed delete
      // leaves it to be scheduled again.
      if (event.data.operation === null || event.data.operation === 'create') state.state = 'failed';
      if (event.data.operation === 'delete') state.deletionScheduled = false;
      return;
    default: {
      const unknown: never = event;
      throw new Error(`no capsul event ${(unknown as { type: string }).type}`);
    }
  }
}

/**
 * `foldVm(state, events)`: the capsul after `events`, in O(events); `evolveVm` for one event. Every
 * place that folds a capsul stream folds with `foldVm`. Changing the state's shape or what an event does
 * to it: bump `vmSnapshot.shapeVersion` (snapshot.ts), or stored snapshots lie.
 */
export const { fold: foldVm, evolve: evolveVm } = linearFold(workingCopy, applyVm);

/**
 * Remembers the id of a report recorded: a state report's among the recent ones (forgetting the oldest
 * beyond rememberedStateReports), any other's for good.
 */
function rememberReport(state: WorkingVm, event: VmEvent): void {
  const reportId = 'reportId' in event.data ? event.data.reportId : null;
  if (!reportId) return;
  if (event.type !== 'VmStateObserved') {
    state.reportIds.add(reportId);
    return;
  }
  state.recentStateReports.push(reportId);
  if (state.recentStateReports.length > rememberedStateReports) state.recentStateReports.shift();
}

const requestedKind = (event: VmEvent): OperationKind | null => {
  switch (event.type) {
    case 'VmPlaced':
      return 'create';
    case 'VmStartRequested':
      return 'start';
    case 'VmStopRequested':
      return event.data.force ? 'force-stop' : 'stop';
    case 'VmDeletionScheduled':
      return 'delete';
    default:
      return null;
  }
};

/** Requests open operations; a report naming an open operation completes it. */
function trackOperations(state: WorkingVm, event: VmEvent): void {
  const { operationId } = event.data as { operationId?: string | null };
  if (!operationId) return;
  const kind = requestedKind(event);
  if (kind === null) {
    state.openOperations.delete(operationId);
    return;
  }
  state.operationIds.add(operationId);
  state.openOperations.set(operationId, kind);
}

/** The addresses and host keys a host reported, as one comparable text. */
export const addressesOf = (d: { ipv4: string | null; ipv6: string | null; sshHostKeys: HostKeyFingerprint[] }) =>
  JSON.stringify([d.ipv4, d.ipv6, d.sshHostKeys]);
