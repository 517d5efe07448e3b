// Pure decisions over a host's stream. The token arrives hashed: the domain never sees a secret.
import type { Command } from '@event-driven-io/emmett';
import type { CommandContext } from '../events.ts';
import { invalid, notFound, refused } from '../shared/errors.ts';
import { linearFold } from '../shared/fold.ts';
import { hostIdPattern, type DriftKind, type HostEvent } from './events.ts';

export type Host = {
  registered: boolean;
  removed: boolean;
  memoryMb: number;
  vcpus: number;
  tokenHash: string | null;
  /** open drift incidents, keyed `<kind> <vmId>` */
  drift: ReadonlyMap<string, { vmId: string; kind: DriftKind; detectedAt: string }>;
};
export const initialHost = (): Host => ({ registered: false, removed: false, memoryMb: 0, vcpus: 0, tokenHash: null, drift: new Map() });

type Meta = CommandContext;
export type RegisterHost = Command<'RegisterHost', { hostId: string; memoryMb: number; vcpus: number; tokenHash: string }, Meta>;
export type RotateHostToken = Command<'RotateHostToken', { hostId: string; tokenHash: string }, Meta>;
/** `capsulCount`: capsuls placed on the host and not yet deleted, counted by the adapter. */
export type RemoveHost = Command<'RemoveHost', { hostId: string; capsulCount: number }, Meta>;
/**
 * `seen`: the capsuls the host lists. `expected`: the capsuls the ledger has running on this host.
 * `known`: of the seen ones, those the ledger has on this host and not deleted.
 */
export type CheckDrift = Command<'CheckDrift', { hostId: string; seen: string[]; expected: string[]; known: string[] }, Meta>;
export type HostCommand = RegisterHost | RotateHostToken | RemoveHost | CheckDrift;

const maxMemoryMb = 64 * 1024 * 1024; // 64 TiB: a typo guard
const maxVcpus = 100_000;

/** The host being folded: its own drift map, changed in place (shared/fold.ts). */
type WorkingHost = Host & { drift: Map<string, { vmId: string; kind: DriftKind; detectedAt: string }> };

const workingCopy = (state: Host): WorkingHost => ({ ...state, drift: new Map(state.drift) });

function applyHost(state: WorkingHost, event: HostEvent): void {
  switch (event.type) {
    case 'HostRegistered':
      state.registered = true;
      state.removed = false;
      state.memoryMb = event.data.memoryMb;
      state.vcpus = event.data.vcpus;
      state.tokenHash = event.data.tokenHash;
      return;
    case 'HostTokenRotated':
      state.tokenHash = event.data.tokenHash;
      return;
    case 'HostRemoved':
      state.removed = true;
      state.tokenHash = null;
      return;
    case 'DriftDetected':
      state.drift.set(driftKey(event.data.kind, event.data.vmId), {
        vmId: event.data.vmId,
        kind: event.data.kind,
        detectedAt: event.data.at,
      });
      return;
    case 'DriftResolved':
      state.drift.delete(driftKey(event.data.kind, event.data.vmId));
      return;
    default: {
      const unknown: never = event;
      throw new Error(`no host event ${(unknown as { type: string }).type}`);
    }
  }
}

/** `foldHost(state, events)`: the host after `events`, in O(events); `evolveHost` for one event. */
export const { fold: foldHost, evolve: evolveHost } = linearFold(workingCopy, applyHost);

export function decideHost(command: HostCommand, state: Host): HostEvent[] {
  const at = command.metadata!.now.toISOString();
  const { hostId } = command.data;
  switch (command.type) {
    case 'RegisterHost': {
      const { memoryMb, vcpus, tokenHash } = command.data;
      if (!hostIdPattern.test(hostId)) {
        throw invalid(`${JSON.stringify(hostId)} is not a host id: use 1 to 63 lowercase letters, digits and inner dashes`);
      }
      if (!Number.isSafeInteger(memoryMb) || memoryMb <= 0 || memoryMb > maxMemoryMb) {
        throw invalid(`a host's memory is a whole number of MiB from 1 to ${maxMemoryMb}`);
      }
      if (!Number.isSafeInteger(vcpus) || vcpus <= 0 || vcpus > maxVcpus)
        throw invalid(`a host's vCPUs are a whole number from 1 to ${maxVcpus}`);
      requireTokenHash(tokenHash);
      if (state.registered && !state.removed) throw refused(`host ${hostId} is already registered`);
      if (state.removed) throw refused(`host ${hostId} was removed; register the machine under a new id`);
      return [{ type: 'HostRegistered', data: { hostId, memoryMb, vcpus, tokenHash, at } }];
    }
    case 'RotateHostToken':
      requireActive(state, hostId);
      requireTokenHash(command.data.tokenHash);
      return [{ type: 'HostTokenRotated', data: { hostId, tokenHash: command.data.tokenHash, at } }];
    case 'RemoveHost': {
      requireActive(state, hostId);
      const count = command.data.capsulCount;
      if (!Number.isSafeInteger(count) || count < 0) throw invalid('a capsul count is a whole number');
      if (count > 0) {
        throw refused(
          `host ${hostId} still has ${count === 1 ? '1 capsul: delete or move it' : `${count} capsuls: delete or move them`} first`,
        );
      }
      return [{ type: 'HostRemoved', data: { hostId, at } }];
    }
    case 'CheckDrift': {
      requireActive(state, hostId);
      const seen = new Set(command.data.seen);
      const known = new Set(command.data.known);
      const now = new Map<string, { vmId: string; kind: DriftKind }>();
      for (const vmId of seen) if (!known.has(vmId)) now.set(driftKey('unexpected-on-host', vmId), { vmId, kind: 'unexpected-on-host' });
      for (const vmId of command.data.expected)
        if (!seen.has(vmId)) now.set(driftKey('missing-from-host', vmId), { vmId, kind: 'missing-from-host' });
      const events: HostEvent[] = [];
      for (const [key, incident] of now)
        if (!state.drift.has(key)) events.push({ type: 'DriftDetected', data: { hostId, ...incident, at } });
      for (const [key, open] of state.drift) {
        if (!now.has(key))
          events.push({ type: 'DriftResolved', data: { hostId, vmId: open.vmId, kind: open.kind, detectedAt: open.detectedAt, at } });
      }
      return events;
    }
    default: {
      const unknown: never = command;
      throw new Error(`unknown command ${(unknown as { type: string }).type}`);
    }
  }
}

const driftKey = (kind: DriftKind, vmId: string) => `${kind} ${vmId}`;

/** The SHA-256 of the token, as 64 hex digits: the domain never sees the token itself. */
function requireTokenHash(tokenHash: string): void {
  if (!/^[0-9a-f]{64}$/.test(tokenHash)) throw invalid('a host token hash is 64 hex digits (SHA-256)');
}

function requireActive(state: Host, hostId: string): void {
  if (!state.registered || state.removed) throw notFound(`there is no host ${hostId}`);
}

export const hostDecider = { decide: decideHost, evolve: evolveHost, fold: foldHost, initialState: initialHost };
