// The capsul stream (`vm-<id>`) holds its operational life: placement, the operations asked of its host,
// and what the host reports. Money facts (creation with its price, deletion request) live on the
// account stream. An operation's id ties the request to the report that completes it; a report's id
// makes the same report sent twice change nothing.
import type { Event } from '@event-driven-io/emmett';

export type HostKeyFingerprint = { type: string; sha256: string };
export type ObservedState = 'running' | 'stopped' | 'crashed' | 'paused';
export const observedStates: ObservedState[] = ['running', 'stopped', 'crashed', 'paused'];

type Report = { reportId: string | null; operationId: string | null };

export type VmPlaced = Event<'VmPlaced', { vmId: string; accountId: string; host: string; operationId: string; at: string }>;
export type VmProvisioned = Event<
  'VmProvisioned',
  { vmId: string; host: string; ipv4: string | null; ipv6: string | null; sshHostKeys: HostKeyFingerprint[]; at: string } & Report
>;
export type VmStateObserved = Event<'VmStateObserved', { vmId: string; host: string; state: ObservedState; at: string } & Report>;
export type VmStartRequested = Event<'VmStartRequested', { vmId: string; host: string; operationId: string; at: string }>;
export type VmStopRequested = Event<'VmStopRequested', { vmId: string; host: string; force: boolean; operationId: string; at: string }>;
export type VmDeletionScheduled = Event<'VmDeletionScheduled', { vmId: string; host: string; operationId: string; at: string }>;
export type VmDeleted = Event<'VmDeleted', { vmId: string; host: string | null; at: string } & Report>;
/**
 * The host reported the capsul deleted though no deletion was ever asked of it: an incident, not a
 * deletion. `observedAt` is the host's own time in its report; `at`, when the ledger takes the capsul
 * to have gone, is that time kept between the last time the host reported it alive and when the hub
 * received the report (a host can neither see the future nor unsee what it reported). The operations
 * still open are cancelled (`cancelledOperationIds`): there is nothing left for them to act on.
 */
export type VmVanished = Event<
  'VmVanished',
  {
    vmId: string;
    host: string;
    reportId: string | null;
    observedAt: string;
    reportedAt: string;
    cancelledOperationIds: string[];
    at: string;
  }
>;
export type OperationKind = 'create' | 'start' | 'stop' | 'force-stop' | 'delete';
/** `operation`: the kind of operation that failed (null: a failure seen outside any operation). */
export type VmFailed = Event<
  'VmFailed',
  { vmId: string; host: string; error: string; operation: OperationKind | null; at: string } & Report
>;

export type VmEvent =
  | VmPlaced
  | VmProvisioned
  | VmStateObserved
  | VmStartRequested
  | VmStopRequested
  | VmDeletionScheduled
  | VmDeleted
  | VmVanished
  | VmFailed;

export const vmEventTypes: VmEvent['type'][] = [
  'VmPlaced',
  'VmProvisioned',
  'VmStateObserved',
  'VmStartRequested',
  'VmStopRequested',
  'VmDeletionScheduled',
  'VmDeleted',
  'VmVanished',
  'VmFailed',
];

export const vmStream = (vmId: string) => `vm-${vmId}`;
