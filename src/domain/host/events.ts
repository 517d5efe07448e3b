// The host stream (`host-<id>`): a VM host registered by an operator, its token (stored hashed) and
// its removal. What a host reports about capsuls goes to each capsul's own stream.
import type { Event } from '@event-driven-io/emmett';

export type HostRegistered = Event<'HostRegistered', { hostId: string; memoryMb: number; vcpus: number; tokenHash: string; at: string }>;
export type HostTokenRotated = Event<'HostTokenRotated', { hostId: string; tokenHash: string; at: string }>;
export type HostRemoved = Event<'HostRemoved', { hostId: string; at: string }>;

export type HostEvent = HostRegistered | HostTokenRotated | HostRemoved;
export const hostEventTypes: HostEvent['type'][] = ['HostRegistered', 'HostTokenRotated', 'HostRemoved'];

export const hostStream = (hostId: string) => `host-${hostId}`;
export const hostIdPattern = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
