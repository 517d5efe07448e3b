// The capsul stream (`vm-<id>`) holds its operational life: placement, what its host observes, and the
// start/stop requests. Money facts (creation with its price, deletion request) live on the account stream.
import type { Event } from '@event-driven-io/emmett';

export type HostKeyFingerprint = { type: string; sha256: string };
export type ObservedState = 'running' | 'stopped' | 'crashed' | 'paused';
export const observedStates: ObservedState[] = ['running', 'stopped', 'crashed', 'paused'];

export type VmPlaced = Event<'VmPlaced', { vmId: string; accountId: string; host: string; at: string }>;
export type VmProvisioned = Event<
  'VmProvisioned',
  { vmId: string; host: string; ipv4: string | null; ipv6: string | null; sshHostKeys: HostKeyFingerprint[]; at: string }
>;
export type VmStateObserved = Event<'VmStateObserved', { vmId: string; host: string; state: ObservedState; at: string }>;
export type VmStartRequested = Event<'VmStartRequested', { vmId: string; at: string }>;
export type VmStopRequested = Event<'VmStopRequested', { vmId: string; force: boolean; at: string }>;
export type VmDeleted = Event<'VmDeleted', { vmId: string; host: string | null; at: string }>;
export type VmFailed = Event<'VmFailed', { vmId: string; host: string; error: string; at: string }>;

export type VmEvent = VmPlaced | VmProvisioned | VmStateObserved | VmStartRequested | VmStopRequested | VmDeleted | VmFailed;

export const vmEventTypes: VmEvent['type'][] = [
  'VmPlaced', 'VmProvisioned', 'VmStateObserved', 'VmStartRequested', 'VmStopRequested', 'VmDeleted', 'VmFailed',
];

export const vmStream = (vmId: string) => `vm-${vmId}`;
