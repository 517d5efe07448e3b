// Capsuls kept in memory, for development, demos and tests. They move like real ones: defined at once,
// running after a provisioning delay, shut down after a short delay; addresses come from the
// documentation ranges (RFC 5737, RFC 3849) so a simulated capsul can never be mistaken for a real one.
// Given a state file, they also outlive the process, as a real host's VMs outlive the agent that made them.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { DriverError, type CapsulInfo, type Driver } from '../driver.ts';
import { observedStates, type CapsulSpec, type HostKeyFingerprint, type ObservedState } from '../protocol.ts';
import { writeFileAtomic } from '../files.ts';
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
  /**
   * Where the capsuls are kept between processes: loaded at construction, rewritten atomically after
   * every change. Without it they live in this process's memory only.
   */
  stateFile?: string;
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
  pending: { kind: PendingKind; timer: unknown; dueMs: number } | null;
  sshHostKeys: HostKeyFingerprint[];
};

type PendingKind = 'provisioning' | 'shutdown';

/** One capsul in the state file. */
type StoredCapsul = {
  vmId: string;
  spec: CapsulSpec;
  state: ObservedState;
  addressSlot: number;
  ipv4: string;
  ipv6: string;
  sshHostKeys: HostKeyFingerprint[];
  /** when a provisioning under way completes (clock time, ms) */
  readyAtMs?: number;
  /** when a clean shutdown under way completes (clock time, ms) */
  stoppedAtMs?: number;
};

type StateFileContents = { version: 1; capsuls: StoredCapsul[] };

export class SimulatedDriver implements Driver {
  readonly name = 'simulated';
  private readonly clock: TimerClock;
  private readonly provisionMs: number;
  private readonly stopMs: number;
  private readonly totalCapacity: { memoryMb: number; vcpus: number };
  private readonly capsuls = new Map<string, SimulatedCapsul>();
  private readonly stateFile: string | undefined;
  private stateDirMade = false;

  constructor(options: SimulatedDriverOptions = {}) {
    this.clock = options.clock ?? systemTimerClock;
    this.provisionMs = options.provisionMs ?? 2_000;
    this.stopMs = options.stopMs ?? 1_000;
    this.totalCapacity = { ...(options.capacity ?? { memoryMb: 16_384, vcpus: 8 }) };
    this.stateFile = options.stateFile;
    options.log?.(simulatedAnnouncement);
    if (this.stateFile) this.load(this.stateFile);
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
    const capsul: SimulatedCapsul = {
      spec: structuredClone(spec),
      addressSlot,
      state: 'stopped',
      pending: null,
      sshHostKeys: simulatedHostKeys(vmId),
    };
    this.capsuls.set(vmId, capsul);
    this.schedule(capsul, 'provisioning', this.clock.now() + this.provisionMs, 'running');
    this.save();
  }

  async start(vmId: string): Promise<void> {
    const capsul = this.existing(vmId);
    if (capsul.pending?.kind === 'provisioning') return; // it is about to run anyway
    this.cancelPending(capsul);
    capsul.state = 'running';
    this.save();
  }

  async stop(vmId: string): Promise<void> {
    const capsul = this.existing(vmId);
    if (capsul.pending?.kind === 'shutdown') return;
    if (capsul.state !== 'running') {
      this.cancelPending(capsul); // a shutdown request during boot: it never comes up
      this.save();
      return;
    }
    this.schedule(capsul, 'shutdown', this.clock.now() + this.stopMs, 'stopped');
    this.save();
  }

  async forceStop(vmId: string): Promise<void> {
    const capsul = this.existing(vmId);
    this.cancelPending(capsul);
    capsul.state = 'stopped';
    this.save();
  }

  async delete(vmId: string): Promise<void> {
    checkVmId(vmId);
    const capsul = this.capsuls.get(vmId);
    if (!capsul) return;
    this.cancelPending(capsul);
    this.capsuls.delete(vmId);
    this.save();
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
    return { vmId, state: capsul.state, ...addresses(capsul.addressSlot), sshHostKeys: capsul.sshHostKeys.map((key) => ({ ...key })) };
  }

  async capacity(): Promise<{ memoryMb: number; vcpus: number }> {
    return { ...this.totalCapacity };
  }

  /** For tests of what the spoke reports when a guest dies on its own. */
  crash(vmId: string): void {
    const capsul = this.existing(vmId);
    this.cancelPending(capsul);
    capsul.state = 'crashed';
    this.save();
  }

  private existing(vmId: string): SimulatedCapsul {
    const capsul = this.capsuls.get(checkVmId(vmId));
    if (!capsul) throw new DriverError(`there is no capsul ${vmId} on this host`);
    return capsul;
  }

  /** Moves `capsul` to `then` at clock time `dueMs`; the caller saves. */
  private schedule(capsul: SimulatedCapsul, kind: PendingKind, dueMs: number, then: ObservedState): void {
    this.cancelPending(capsul);
    const timer = this.clock.setTimeout(
      () => {
        capsul.pending = null;
        capsul.state = then;
        this.save();
      },
      Math.max(0, dueMs - this.clock.now()),
    );
    capsul.pending = { kind, timer, dueMs };
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

  /** Rewrites the state file, if there is one, with every capsul as it is now. */
  private save(): void {
    if (!this.stateFile) return;
    const capsuls: StoredCapsul[] = [...this.capsuls]
      .map(
        ([vmId, capsul]): StoredCapsul => ({
          vmId,
          spec: capsul.spec,
          state: capsul.state,
          addressSlot: capsul.addressSlot,
          ...addresses(capsul.addressSlot),
          sshHostKeys: capsul.sshHostKeys,
          ...(capsul.pending?.kind === 'provisioning' ? { readyAtMs: capsul.pending.dueMs } : {}),
          ...(capsul.pending?.kind === 'shutdown' ? { stoppedAtMs: capsul.pending.dueMs } : {}),
        }),
      )
      .sort(byVmId);
    const contents: StateFileContents = { version: 1, capsuls };
    if (!this.stateDirMade) {
      mkdirSync(path.dirname(this.stateFile), { recursive: true, mode: 0o700 });
      this.stateDirMade = true;
    }
    writeFileAtomic(this.stateFile, `${JSON.stringify(contents, null, 2)}\n`);
  }

  /** Reads the state file (none yet: no capsuls) and re-arms the transitions under way; those past due happen at once. */
  private load(file: string): void {
    if (!existsSync(file)) return;
    let contents: StateFileContents;
    try {
      contents = JSON.parse(readFileSync(file, 'utf8')) as StateFileContents;
    } catch (error) {
      throw new DriverError(`cannot read the simulated driver's state file ${file}: ${(error as Error).message}`);
    }
    if (contents?.version !== 1 || !Array.isArray(contents.capsuls)) {
      throw new DriverError(`the simulated driver's state file ${file} is not one it wrote (version 1 with a list of capsuls)`);
    }
    const usedSlots = new Set<number>();
    let changed = false;
    for (const stored of contents.capsuls) {
      const where = `the simulated driver's state file ${file}, capsul ${JSON.stringify(stored?.vmId)}`;
      try {
        checkVmId(stored.vmId);
        checkSpec(stored.spec);
      } catch (error) {
        throw new DriverError(`${where}: ${(error as Error).message}`);
      }
      if (this.capsuls.has(stored.vmId)) throw new DriverError(`${where}: listed twice`);
      if (!observedStates.includes(stored.state)) throw new DriverError(`${where}: unknown state ${JSON.stringify(stored.state)}`);
      const slot = stored.addressSlot;
      if (!Number.isInteger(slot) || slot < 0 || slot >= addressSlots || usedSlots.has(slot)) {
        throw new DriverError(`${where}: address slot ${JSON.stringify(slot)} is not a free simulated address`);
      }
      usedSlots.add(slot);
      const capsul: SimulatedCapsul = {
        spec: structuredClone(stored.spec),
        addressSlot: slot,
        state: stored.state,
        pending: null,
        sshHostKeys:
          Array.isArray(stored.sshHostKeys) && stored.sshHostKeys.length > 0
            ? structuredClone(stored.sshHostKeys)
            : simulatedHostKeys(stored.vmId),
      };
      this.capsuls.set(stored.vmId, capsul);
      const pending: [PendingKind, unknown, ObservedState] | null =
        stored.readyAtMs !== undefined
          ? ['provisioning', stored.readyAtMs, 'running']
          : stored.stoppedAtMs !== undefined
            ? ['shutdown', stored.stoppedAtMs, 'stopped']
            : null;
      if (!pending) continue;
      const [kind, dueMs, then] = pending;
      if (typeof dueMs !== 'number' || !Number.isFinite(dueMs))
        throw new DriverError(`${where}: ${kind} ends at ${JSON.stringify(dueMs)}, not a time`);
      if (dueMs > this.clock.now()) {
        this.schedule(capsul, kind, dueMs, then);
      } else {
        capsul.state = then; // it was due while no process was watching: it happened meanwhile
        changed = true;
      }
    }
    if (changed) this.save();
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
