// Capsuls as libvirt domains, driven through the small shell scripts in ../libvirt/ (an operator can read
// them and run them by hand). Every value is checked before a script sees it, scripts get their
// arguments as an argv array, SSH keys travel in a file, and every run has a time limit.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CapsulInfo, Driver } from '../driver.ts';
import type { CapsulSpec, HostKeyFingerprint, ObservedState } from '../protocol.ts';
import { checkImageFile, checkSpec, checkVmId, quoted } from './arguments.ts';
import { cloudInitMetaData, cloudInitUserData, domainXml } from './libvirt-files.ts';
import { parseDomainList, parseDomainState, parseDomifaddr, parseFingerprints } from './libvirt-output.ts';
import { runScript } from './run-script.ts';

export type LibvirtDriverOptions = {
  /** where create.sh and the others live; defaults to src/spoke/libvirt */
  scriptsDir?: string;
  /** holds the OS template images a spec's `imageFile` names */
  imageDir: string;
  /** where each capsul's disk overlay and cloud-init seed go */
  diskDir: string;
  /** the libvirt network capsuls join */
  network?: string;
  /** the virsh binary */
  virsh?: string;
  /** added to the scripts' environment, e.g. LIBVIRT_DEFAULT_URI */
  env?: Record<string, string>;
  /** what the host offers capsuls; defaults to its memory less 1 GiB for itself, and its CPUs */
  capacity?: { memoryMb: number; vcpus: number };
  timeoutsMs?: { create?: number; other?: number };
};

const defaultScriptsDir = fileURLToPath(new URL('../libvirt/', import.meta.url));
const hostReservedMemoryMb = 1024;
const safeName = /^[A-Za-z0-9_][A-Za-z0-9_.+-]*$/;
const safeAbsolutePath = /^(\/[A-Za-z0-9_.+@-]+)+\/?$/;

export class LibvirtDriver implements Driver {
  readonly name = 'libvirt';
  private readonly scriptsDir: string;
  private readonly imageDir: string;
  private readonly diskDir: string;
  private readonly network: string;
  private readonly env: NodeJS.ProcessEnv;
  private readonly totalCapacity: { memoryMb: number; vcpus: number };
  private readonly createTimeoutMs: number;
  private readonly timeoutMs: number;

  constructor(options: LibvirtDriverOptions) {
    this.scriptsDir = options.scriptsDir ?? defaultScriptsDir;
    this.imageDir = configPath('imageDir', options.imageDir);
    this.diskDir = configPath('diskDir', options.diskDir);
    this.network = configName('network', options.network ?? 'default');
    const virsh = options.virsh ?? 'virsh';
    if (!safeName.test(virsh) && !safeAbsolutePath.test(virsh)) throw new Error(`virsh ${quoted(virsh)} is not a program name or path`);
    this.env = { ...process.env, ...options.env, VIRSH: virsh };
    this.totalCapacity = options.capacity ?? {
      memoryMb: Math.max(0, Math.floor(os.totalmem() / 1_048_576) - hostReservedMemoryMb),
      vcpus: os.cpus().length,
    };
    this.createTimeoutMs = options.timeoutsMs?.create ?? 120_000;
    this.timeoutMs = options.timeoutsMs?.other ?? 30_000;
  }

  async create(vmId: string, spec: CapsulSpec): Promise<void> {
    checkVmId(vmId);
    checkSpec(spec);
    const template = path.join(this.imageDir, checkImageFile(spec.imageFile));
    const work = await mkdtemp(path.join(os.tmpdir(), 'capsul-create-'));
    try {
      const domain = {
        vmId,
        memoryMb: spec.memoryMb,
        vcpus: spec.vcpus,
        network: this.network,
        diskPath: path.join(this.diskDir, `${vmId}.qcow2`),
        seedPath: path.join(this.diskDir, `${vmId}-cidata.iso`),
      };
      await writeFile(path.join(work, 'user-data'), cloudInitUserData(spec), { mode: 0o600 });
      await writeFile(path.join(work, 'meta-data'), cloudInitMetaData(vmId), { mode: 0o600 });
      await writeFile(path.join(work, 'domain.xml'), domainXml(domain), { mode: 0o600 });
      await this.run('create.sh', [vmId, template, this.diskDir, work], `creating ${vmId}`, this.createTimeoutMs);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }

  async start(vmId: string): Promise<void> {
    await this.run('start.sh', [checkVmId(vmId)], `starting ${vmId}`);
  }

  async stop(vmId: string): Promise<void> {
    await this.run('stop.sh', [checkVmId(vmId)], `stopping ${vmId}`);
  }

  async forceStop(vmId: string): Promise<void> {
    await this.run('force-stop.sh', [checkVmId(vmId)], `force-stopping ${vmId}`);
  }

  async delete(vmId: string): Promise<void> {
    await this.run('destroy.sh', [checkVmId(vmId), this.diskDir], `deleting ${vmId}`);
  }

  async list(): Promise<{ vmId: string; state: ObservedState }[]> {
    return parseDomainList(await this.run('list.sh', [], 'listing capsuls'));
  }

  async inspect(vmId: string): Promise<CapsulInfo | null> {
    const printed = await this.run('state.sh', [checkVmId(vmId)], `inspecting ${vmId}`);
    if (printed.trim() === '') return null;
    const state = parseDomainState(printed);
    if (state !== 'running') return { vmId, state, ipv4: null, ipv6: null, sshHostKeys: [] };
    const { ipv4, ipv6 } = parseDomifaddr(await this.run('ip.sh', [vmId], `looking up the addresses of ${vmId}`));
    const sshHostKeys = await this.hostKeys(vmId, ipv4 ?? ipv6);
    return { vmId, state, ipv4, ipv6, sshHostKeys };
  }

  async capacity(): Promise<{ memoryMb: number; vcpus: number }> {
    return { ...this.totalCapacity };
  }

  private async hostKeys(vmId: string, ip: string | null): Promise<HostKeyFingerprint[]> {
    if (ip === null || isIP(ip) === 0) return []; // no lease yet: nothing to scan
    return parseFingerprints(await this.run('host-keys.sh', [ip], `scanning the SSH host keys of ${vmId}`));
  }

  private run(script: string, args: string[], doing: string, timeoutMs = this.timeoutMs): Promise<string> {
    return runScript({ script: path.join(this.scriptsDir, script), args, env: this.env, timeoutMs, doing });
  }
}

function configPath(setting: string, value: string): string {
  if (typeof value !== 'string' || !safeAbsolutePath.test(value)) {
    throw new Error(`libvirt driver: ${setting} ${quoted(value)} must be an absolute path of letters, digits and . _ + @ -`);
  }
  return value.replace(/\/$/, '');
}

function configName(setting: string, value: string): string {
  if (!safeName.test(value)) throw new Error(`libvirt driver: ${setting} ${quoted(value)} must be a name of letters, digits and . _ + -`);
  return value;
}
