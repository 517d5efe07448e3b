// A host in memory for spoke tests: capsuls boot after a few inspections, every call is counted, and
// any call can be made to fail or to hang (before or after it took effect).
import { DriverError, type CapsulInfo, type Driver } from '../../src/spoke/driver.ts';
import type { CapsulSpec, ObservedState } from '../../src/spoke/protocol.ts';

type Method = 'create' | 'start' | 'stop' | 'forceStop' | 'delete' | 'list' | 'inspect' | 'capacity';
type Capsul = { state: ObservedState; bootInspects: number; slot: number };

export class FakeDriver implements Driver {
  readonly name = 'simulated';
  readonly calls: { method: Method; vmId: string | null }[] = [];
  readonly capsuls = new Map<string, Capsul>();
  /** how many inspections a created or started capsul stays stopped before it runs */
  bootInspects = 2;
  capacityValue = { memoryMb: 8192, vcpus: 4 };
  private readonly failures = new Map<Method, string>();
  private readonly hangs = new Map<Method, 'before' | 'after'>();
  private readonly hung: (() => void)[] = [];
  private nextSlot = 10;

  /** The next call of `method` throws a DriverError with `message`. */
  failNext(method: Method, message: string): void {
    this.failures.set(method, message);
  }

  /** The next call of `method` never returns; `after` lets it take effect first. */
  hangNext(method: Method, when: 'before' | 'after'): void {
    this.hangs.set(method, when);
  }

  /** A capsul that was there before the spoke started. */
  add(vmId: string, state: ObservedState): void {
    this.capsuls.set(vmId, { state, bootInspects: 0, slot: this.nextSlot++ });
  }

  crash(vmId: string): void {
    this.capsuls.get(vmId)!.state = 'crashed';
  }

  count(method: Method, vmId?: string): number {
    return this.calls.filter((call) => call.method === method && (vmId === undefined || call.vmId === vmId)).length;
  }

  addresses(vmId: string): { ipv4: string; ipv6: string } {
    const slot = this.capsuls.get(vmId)!.slot;
    return { ipv4: `192.0.2.${slot}`, ipv6: `2001:db8::${slot}` };
  }

  create(vmId: string, spec: CapsulSpec): Promise<void> {
    return this.call('create', vmId, () => {
      if (this.capsuls.has(vmId)) throw new DriverError(`capsul ${vmId} already exists on this host`);
      if (spec.memoryMb > this.capacityValue.memoryMb) throw new DriverError(`not enough memory for capsul ${vmId}`);
      this.capsuls.set(vmId, { state: 'stopped', bootInspects: this.bootInspects, slot: this.nextSlot++ });
    });
  }

  start(vmId: string): Promise<void> {
    return this.call('start', vmId, () => {
      const capsul = this.existing(vmId);
      if (capsul.state !== 'running') capsul.bootInspects = this.bootInspects;
    });
  }

  stop(vmId: string): Promise<void> {
    return this.call('stop', vmId, () => {
      this.existing(vmId).state = 'stopped';
    });
  }

  forceStop(vmId: string): Promise<void> {
    return this.call('forceStop', vmId, () => {
      this.existing(vmId).state = 'stopped';
    });
  }

  delete(vmId: string): Promise<void> {
    return this.call('delete', vmId, () => {
      this.capsuls.delete(vmId);
    });
  }

  list(): Promise<{ vmId: string; state: ObservedState }[]> {
    return this.call('list', null, () => [...this.capsuls].map(([vmId, capsul]) => ({ vmId, state: capsul.state })));
  }

  inspect(vmId: string): Promise<CapsulInfo | null> {
    return this.call('inspect', vmId, () => {
      const capsul = this.capsuls.get(vmId);
      if (!capsul) return null;
      if (capsul.bootInspects > 0 && --capsul.bootInspects === 0) capsul.state = 'running';
      if (capsul.state !== 'running') return { vmId, state: capsul.state, ipv4: null, ipv6: null, sshHostKeys: [] };
      return { vmId, state: capsul.state, ...this.addresses(vmId), sshHostKeys: [{ type: 'ssh-ed25519', sha256: `SHA256:${vmId}` }] };
    });
  }

  capacity(): Promise<{ memoryMb: number; vcpus: number }> {
    return this.call('capacity', null, () => ({ ...this.capacityValue }));
  }

  /** Lets hung calls go on (their results go nowhere: the agent that made them has stopped). */
  releaseHung(): void {
    for (const release of this.hung.splice(0)) release();
  }

  private async call<T>(method: Method, vmId: string | null, effect: () => T): Promise<T> {
    this.calls.push({ method, vmId });
    const failure = this.failures.get(method);
    if (failure !== undefined) {
      this.failures.delete(method);
      throw new DriverError(failure);
    }
    const hang = this.hangs.get(method);
    if (hang) {
      this.hangs.delete(method);
      const result = hang === 'after' ? effect() : undefined;
      await new Promise<void>((resolve) => this.hung.push(resolve));
      return result as T;
    }
    return effect();
  }

  private existing(vmId: string): Capsul {
    const capsul = this.capsuls.get(vmId);
    if (!capsul) throw new DriverError(`there is no capsul ${vmId} on this host`);
    return capsul;
  }
}
