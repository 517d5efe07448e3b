// The host stream (`host-<id>`): a VM host registered by an operator, its token (stored hashed) and
// its removal. What a host reports about capsuls goes to each capsul's own stream.
import type { Event } from '@event-driven-io/emmett';

export type HostRegistered = Event<'HostRegistered', { hostId: string; memoryMb: number; vcpus: number; tokenHash: string; at: string }>;
export type HostTokenRotated = Event<'HostTokenRotated', { hostId: string; tokenHash: string; at: string }>;
export type HostRemoved = Event<'HostRemoved', { hostId: string; at: string }>;

/**
 * Drift: the host and the ledger disagree about a capsul. `unexpected-on-host`: the host runs a capsul
 * the ledger has deleted, or never placed there. `missing-from-host`: the ledger has a capsul running
 * on the host that the host does not list. Recorded once per incident; resolved when they agree again.
 */
export type DriftKind = 'unexpected-on-host' | 'missing-from-host';
export type DriftDetected = Event<'DriftDetected', { hostId: string; vmId: string; kind: DriftKind; at: string }>;
export type DriftResolved = Event<'DriftResolved', { hostId: string; vmId: string; kind: DriftKind; detectedAt: string; at: string }>;

export type HostEvent = HostRegistered | HostTokenRotated | HostRemoved | DriftDetected | DriftResolved;
export const hostEventTypes: HostEvent['type'][] = ['HostRegistered', 'HostTokenRotated', 'HostRemoved', 'DriftDetected', 'DriftResolved'];

export const hostStream = (hostId: string) => `host-${hostId}`;
export const hostIdPattern = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
