// VM hosts: registration with a token shown once and stored hashed, rotation, removal, the list with
// online/offline and capacity, and the spoke's authentication.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { hostDecider } from '../domain/host/decider.ts';
import { hostStream } from '../domain/host/events.ts';
import { systemClock, type Clock } from '../core/clock.ts';
import type { Cause } from '../domain/events.ts';
import { handleCommand, type CommandDeps } from './handle.ts';
import { capsulCountOnHost, hostLoads, hostTokenHash, ledgerViewOfHost, openDrift } from '../read/hosts.ts';

/** A host whose last heartbeat is older than this is offline: nothing new is placed on it. */
export const onlineWithinMs = 30_000;

export type HostRow = {
  id: string;
  online: boolean;
  lastSeen: string | null;
  memoryMb: number;
  usedMemoryMb: number;
  freeMemoryMb: number;
  vcpus: number;
  capsuls: number;
};

export const hashToken = (token: string) => createHash('sha256').update(token, 'utf8').digest('hex');
const newToken = () => randomBytes(32).toString('base64url');

export class Hosts {
  /** `now`: the process's clock (src/ledger/services.ts); made alone (a test), the system clock. */
  constructor(private readonly deps: CommandDeps & { now?: Clock }) {}

  private now(): Date {
    return (this.deps.now ?? systemClock)();
  }

  async add(input: { hostId: string; memoryMb: number; vcpus: number; cause: Cause }): Promise<{ token: string }> {
    const token = newToken();
    await handleCommand(this.deps, hostStream(input.hostId), hostDecider, {
      type: 'RegisterHost',
      data: { hostId: input.hostId, memoryMb: input.memoryMb, vcpus: input.vcpus, tokenHash: hashToken(token) },
      metadata: { now: this.now(), cause: input.cause },
    });
    return { token };
  }

  async rotateToken(hostId: string, cause: Cause): Promise<{ token: string }> {
    const token = newToken();
    await handleCommand(this.deps, hostStream(hostId), hostDecider, {
      type: 'RotateHostToken',
      data: { hostId, tokenHash: hashToken(token) },
      metadata: { now: this.now(), cause: cause },
    });
    return { token };
  }

  async remove(hostId: string, cause: Cause): Promise<void> {
    // A vanished capsul counts until its deletion is confirmed: its incident is closed on this host.
    const capsulCount = await capsulCountOnHost(this.deps.pool, hostId);
    await handleCommand(this.deps, hostStream(hostId), hostDecider, {
      type: 'RemoveHost',
      data: { hostId, capsulCount },
      metadata: { now: this.now(), cause },
    });
  }

  /** Constant-time check of a spoke's token against the stored hash. */
  async authenticate(hostId: string, token: string): Promise<boolean> {
    const stored = await hostTokenHash(this.deps.pool, hostId);
    const presented = Buffer.from(hashToken(token), 'hex');
    const expected = Buffer.from(stored ?? '0'.repeat(64), 'hex');
    return timingSafeEqual(presented, expected) && stored !== null;
  }

  /**
   * Compares what a host lists with the ledger and records each new disagreement once (and its end).
   * A capsul with a delete operation under way is not missed; one being created is not unexpected; one
   * its host reported vanished is no longer the ledger's on that host, so listed again it is unexpected
   * (unless a delete asked of the host since is under way).
   */
  /** `cause`: who compared (the host's heartbeat, by default; the drift job names itself). */
  async checkDrift(hostId: string, seen: string[], cause: Cause = { by: { kind: 'spoke', id: hostId } }): Promise<void> {
    const { expected, known } = await ledgerViewOfHost(this.deps.pool, hostId, seen);
    await handleCommand(this.deps, hostStream(hostId), hostDecider, {
      type: 'CheckDrift',
      data: { hostId, seen, expected, known },
      metadata: { now: this.now(), cause },
    });
  }

  /** Open drift incidents (vanished capsuls among them), oldest first. */
  async drift(): Promise<{ host: string; vmId: string; kind: string; detected: string }[]> {
    return (await openDrift(this.deps.pool)).map((incident) => ({ ...incident, detected: isoSecond(incident.detected)! }));
  }

  async list(): Promise<HostRow[]> {
    const loads = await hostLoads(this.deps.pool, new Date(this.now().getTime() - onlineWithinMs));
    return loads.map(({ lastSeen, ...load }) => ({
      ...load,
      lastSeen: isoSecond(lastSeen),
      freeMemoryMb: load.memoryMb - load.usedMemoryMb,
    }));
  }
}

/** "2026-11-01T12:00:00Z": an instant to the second, as the CLI and the admin pages show hosts' times. */
const isoSecond = (at: Date | null) => (at === null ? null : `${at.toISOString().slice(0, 19)}Z`);
