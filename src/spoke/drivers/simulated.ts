// Capsuls kept in memory, for development, demos and tests. They move like real ones: defined at once,
// running after a provisioning delay, shut down after a short delay; addresses come from the
// documentation ranges (RFC 5737, RFC 3849) so a simulated capsul can never be mistaken for a real one.
import { createHash } from 'node:crypto';
import { DriverError, type CapsulInfo, type Driver } from '../driver.ts';
import type { CapsulSpec, HostKeyFingerprint, ObservedState } from '../protocol.ts';
import { checkSpec, checkVmId } from './arguments.ts';
import { systemTimerClock, type TimerClock } from './manual-clock.ts';

export type SimulatedDriverOptions = {
  clock?: TimerClock;
  /** from create to running */
  provisionMs?: number;
  /** from a clean shutdown request to stopped */
  stopMs?: number;
  capacity?: { memoryMb: number; vcpus: number };
  /** called once, at construction, to announce that nothing here is real */
  log?: (line: string) => void;
};

export const simulatedAnnouncement = 'simulated driver: capsuls are not real virtual machines';

const ipv4Networks = ['192.0.2', '198.51.100', '203.0.113'];
const firstHostOctet = 2; // .1 is the gateway
const lastHostOctet = 254;
const hostsPerNetwork = lastHostOctet - firstHostOctet + 1;
const addressSlots = ipv4Networks.length * hostsPerNetwork;
const hostKeyTypes = ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ssh-rsa'];

type SimulatedCapsul = {
  spec: CapsulSpec;
  /** its addresses, held from creation to deletion as a DHCP lease would be */
  addressSlot: number;
  state: ObservedState;
  /** the provisioning or clean shutdown under way, if any */
  pending: { kind: 'provisioning' | 'shutdown'; timer: unknown } | null;
};

export class SimulatedDriver implements Driver {
  readonly name = 'simulated';
  private readonly clock: TimerClock;
  private readonly provisionMs: number;
  private readonly stopMs: number;
  private readonly totalCapacity: { memoryMb: number; vcpus: number };
  private readonly capsuls = new Map<string, SimulatedCapsul>();

  constructor(options: SimulatedDriverOptions = {}) {
    this.clock = options.clock ?? systemTimerClock;
    this.provisionMs = options.provisionMs ?? 2_000;
    this.stopMs = options.stopMs ?? 1_000;
    this.totalCapacity = { ...(options.capacity ?? { memoryMb: 16_384, vcpus: 8 }) };
    options.log?.(simulatedAnnouncement);
  }

  async create(vmId: string, spec: CapsulSpec): Promise<void> {
    checkVmId(vmId);
    checkSpec(spec);
    if (this.capsuls.has(vmId)) throw new DriverError(`capsul ${vmId} already exists on this host`);
    const freeMemoryMb = this.totalCapacity.memoryMb - this.usedMemoryMb();
    if (spec.memoryMb > freeMemoryMb) {
      throw new DriverError(
        `not enough memory for capsul ${vmId}: it needs ${spec.memoryMb} MB, ${freeMemoryMb} MB of ${this.totalCapacity.memoryMb} MB are free`,
      );
    }
    const addressSlot = this.freeAddressSlot();
    if (addressSlot === null) throw new DriverError(`no free address for capsul ${vmId}: all ${addressSlots} are in use`);
    const capsul: SimulatedCapsul = { spec: structuredClone(spec), addressSlot, state: 'stopped', pending: null };
    this.capsuls.set(vmId, capsul);
    this.schedule(capsul, 'provisioning', this.provisionMs, 'running');
  }

  async start(vmId: string): Promise<void> {
    const capsul = this.existing(vmId);
    if (capsul.pending?.kind === 'provisioning') return; // it is about to run anyway
    this.cancelPending(capsul);
    capsul.state = 'running';
  }

  async stop(vmId: string): Promise<void> {
    const capsul = this.existing(vmId);
    if (capsul.pending?.kind === 'shutdown') return;
    if (capsul.state !== 'running') {
      this.cancelPending(capsul); // a shutdown request during boot: it never comes up
      return;
    }
    this.schedule(capsul, 'shutdown', this.stopMs, 'stopped');
  }

  async forceStop(vmId: string): Promise<void> {
    const capsul = this.existing(vmId);
    this.cancelPending(capsul);
    capsul.state = 'stopped';
  }

  async delete(vmId: string): Promise<void> {
    checkVmId(vmId);
    const capsul = this.capsuls.get(vmId);
    if (!capsul) return;
    this.cancelPending(capsul);
    this.capsuls.delete(vmId);
  }

  async list(): Promise<{ vmId: string; state: ObservedState }[]> {
    return [...this.capsuls].map(([vmId, capsul]) => ({ vmId, state: capsul.state })).sort(byVmId);
  }

  async inspect(vmId: string): Promise<CapsulInfo | null> {
    checkVmId(vmId);
    const capsul = this.capsuls.get(vmId);
    if (!capsul) return null;
    // As with a real guest: no lease to read and no SSH server to scan unless it runs.
    if (capsul.state !== 'running') return { vmId, state: capsul.state, ipv4: null, ipv6: null, sshHostKeys: [] };
    return { vmId, state: capsul.state, ...addresses(capsul.addressSlot), sshHostKeys: simulatedHostKeys(vmId) };
  }

  async capacity(): Promise<{ memoryMb: number; vcpus: number }> {
    return { ...this.totalCapacity };
  }

  /** For tests of what the spoke reports when a guest dies on its own. */
  crash(vmId: string): void {
    const capsul = this.existing(vmId);
    this.cancelPending(capsul);
    capsul.state = 'crashed';
  }

  private existing(vmId: string): SimulatedCapsul {
    const capsul = this.capsuls.get(checkVmId(vmId));
    if (!capsul) throw new DriverError(`there is no capsul ${vmId} on this host`);
    return capsul;
  }

  private schedule(capsul: SimulatedCapsul, kind: 'provisioning' | 'shutdown', delayMs: number, then: ObservedState): void {
    this.cancelPending(capsul);
    const timer = this.clock.setTimeout(() => {
      capsul.pending = null;
      capsul.state = then;
    }, delayMs);
    capsul.pending = { kind, timer };
  }

  private cancelPending(capsul: SimulatedCapsul): void {
    if (capsul.pending) this.clock.clearTimeout(capsul.pending.timer);
    capsul.pending = null;
  }

  /** Stopped capsuls keep their memory: they may be started again at any time. */
  private usedMemoryMb(): number {
    let usedMb = 0;
    for (const capsul of this.capsuls.values()) usedMb += capsul.spec.memoryMb;
    return usedMb;
  }

  private freeAddressSlot(): number | null {
    const used = new Set([...this.capsuls.values()].map((capsul) => capsul.addressSlot));
    for (let slot = 0; slot < addressSlots; slot++) if (!used.has(slot)) return slot;
    return null;
  }
}

/** Slot 0 is 192.0.2.2 and 2001:db8:0:2::2; the IPv6 address repeats the IPv4 network's third octet and host octet. */
function addresses(slot: number): { ipv4: string; ipv6: string } {
  const network = ipv4Networks[Math.floor(slot / hostsPerNetwork)]!;
  const hostOctet = firstHostOctet + (slot % hostsPerNetwork);
  return { ipv4: `${network}.${hostOctet}`, ipv6: `2001:db8:0:${network.split('.')[2]}::${hostOctet}` };
}

/** Well-formed OpenSSH SHA256 fingerprints (43 base64 characters), the same for a capsul id every time. */
export function simulatedHostKeys(vmId: string): HostKeyFingerprint[] {
  return hostKeyTypes.map((type) => {
    const digest = createHash('sha256').update(`simulated ${vmId} ${type}`).digest('base64');
    return { type, sha256: `SHA256:${digest.replace(/=+$/, '')}` };
  });
}

function byVmId(a: { vmId: string }, b: { vmId: string }): number {
  return a.vmId < b.vmId ? -1 : a.vmId > b.vmId ? 1 : 0;
}
