// Pure decisions over a host's stream. The token arrives hashed: the domain never sees a secret.
import type { Command } from '@event-driven-io/emmett';
import { invalid, notFound, refused } from '../shared/errors.ts';
import { hostIdPattern, type HostEvent } from './events.ts';

export type Host = { registered: boolean; removed: boolean; memoryMb: number; vcpus: number; tokenHash: string | null };
export const initialHost = (): Host => ({ registered: false, removed: false, memoryMb: 0, vcpus: 0, tokenHash: null });

type Meta = { now: Date };
export type RegisterHost = Command<'RegisterHost', { hostId: string; memoryMb: number; vcpus: number; tokenHash: string }, Meta>;
export type RotateHostToken = Command<'RotateHostToken', { hostId: string; tokenHash: string }, Meta>;
/** `capsulCount`: capsuls placed on the host and not yet deleted, counted by the adapter. */
export type RemoveHost = Command<'RemoveHost', { hostId: string; capsulCount: number }, Meta>;
export type HostCommand = RegisterHost | RotateHostToken | RemoveHost;

const maxMemoryMb = 64 * 1024 * 1024; // 64 TiB: a typo guard
const maxVcpus = 100_000;

export function evolveHost(state: Host, event: HostEvent): Host {
  switch (event.type) {
    case 'HostRegistered':
      return { registered: true, removed: false, memoryMb: event.data.memoryMb, vcpus: event.data.vcpus, tokenHash: event.data.tokenHash };
    case 'HostTokenRotated':
      return { ...state, tokenHash: event.data.tokenHash };
    case 'HostRemoved':
      return { ...state, removed: true, tokenHash: null };
    default: {
      const unknown: never = event;
      return unknown;
    }
  }
}

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
      if (!Number.isSafeInteger(vcpus) || vcpus <= 0 || vcpus > maxVcpus) throw invalid(`a host's vCPUs are a whole number from 1 to ${maxVcpus}`);
      requireTokenHash(tokenHash);
      if (state.registered && !state.removed) throw refused(`host ${hostId} is already registered`);
      if (state.removed) throw refused(`host ${hostId} was removed; register the machine under a new id`);
      return [{ type: 'HostRegistered', data: { hostId, memoryMb, vcpus, tokenHash, at } }];
    }
    case 'RotateHostToken':
      requireActive(state, hostId);
      requireTokenHash(command.data.tokenHash);
      return [{ type: 'HostTokenRotated', data: { hostId, tokenHash: command.data.tokenHash, at } }];
    case 'RemoveHost':
      requireActive(state, hostId);
      const count = command.data.capsulCount;
      if (!Number.isSafeInteger(count) || count < 0) throw invalid('a capsul count is a whole number');
      if (count > 0) {
        throw refused(`host ${hostId} still has ${count === 1 ? '1 capsul: delete or move it' : `${count} capsuls: delete or move them`} first`);
      }
      return [{ type: 'HostRemoved', data: { hostId, at } }];
    default: {
      const unknown: never = command;
      throw new Error(`unknown command ${(unknown as { type: string }).type}`);
    }
  }
}

/** The SHA-256 of the token, as 64 hex digits: the domain never sees the token itself. */
function requireTokenHash(tokenHash: string): void {
  if (!/^[0-9a-f]{64}$/.test(tokenHash)) throw invalid('a host token hash is 64 hex digits (SHA-256)');
}

function requireActive(state: Host, hostId: string): void {
  if (!state.registered || state.removed) throw notFound(`there is no host ${hostId}`);
}

export const hostDecider = { decide: decideHost, evolve: evolveHost, initialState: initialHost };
