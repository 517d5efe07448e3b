// What a spoke asks of the machine it runs on. `simulated` keeps capsuls in memory (development,
// demos, tests); `libvirt` drives virsh, qemu-img and cloud-init through the shell scripts beside it.
import type { CapsulSpec, HostKeyFingerprint, ObservedState } from './protocol.ts';

export type CapsulInfo = {
  vmId: string;
  state: ObservedState;
  ipv4: string | null;
  ipv6: string | null;
  sshHostKeys: HostKeyFingerprint[];
};

export interface Driver {
  readonly name: 'simulated' | 'libvirt';
  /** Defines the capsul and starts it; resolves once the hypervisor accepted it (not once it runs). */
  create(vmId: string, spec: CapsulSpec): Promise<void>;
  start(vmId: string): Promise<void>;
  /** A clean shutdown request (ACPI). */
  stop(vmId: string): Promise<void>;
  /** Pulls the plug. */
  forceStop(vmId: string): Promise<void>;
  /** Stops it if needed and removes it with its disk. Deleting a capsul that is not there succeeds. */
  delete(vmId: string): Promise<void>;
  /** Every capsul on this host. */
  list(): Promise<{ vmId: string; state: ObservedState }[]>;
  /** One capsul's state, addresses and SSH host keys; null when it is not on this host. */
  inspect(vmId: string): Promise<CapsulInfo | null>;
  /** What the host offers. */
  capacity(): Promise<{ memoryMb: number; vcpus: number }>;
}

/** A driver's failure, worded for the operator; reported to the hub as a `failed` report. */
export class DriverError extends Error {}
