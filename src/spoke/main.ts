// `capsul spoke` / CAPSUL_MODE=spoke: the agent on a VM host, configured from the environment.
// Resolves with the exit code: 0 after SIGINT/SIGTERM (or options.signal) and a clean stop, 1 when the
// configuration is wrong, the spoke cannot start, or the hub refuses its token.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { SpokeAgent, type SpokeAgentOptions } from './agent.ts';
import type { Driver } from './driver.ts';
import { HubClient, parseHubUrls } from './hub-client.ts';

export type DriverName = 'simulated' | 'libvirt';

export type SpokeConfig = {
  /** one hub URL or several, comma-separated, as HUB_URL gives them */
  hubUrl: string;
  hostId: string;
  token: string;
  driver: DriverName;
  dataDir: string;
  /** libvirt only: OS templates and capsul disks */
  imageDir: string | null;
  diskDir: string | null;
};

export class SpokeConfigError extends Error {}

export type RunSpokeOptions = {
  /** aborting it stops the spoke as SIGINT/SIGTERM do (an in-process spoke, tests) */
  signal?: AbortSignal;
  /** listen for SIGINT and SIGTERM (default true) */
  handleSignals?: boolean;
  /** a ready driver instead of SPOKE_DRIVER's (tests) */
  driver?: Driver;
  /** loop timings and the like (tests) */
  agent?: Partial<Omit<SpokeAgentOptions, 'hub' | 'driver' | 'dataDir' | 'log'>>;
};

/** Same rule as the hub's host ids: 1 to 63 lowercase letters, digits and inner dashes. */
const hostIdPattern = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

export function readSpokeConfig(env: NodeJS.ProcessEnv): SpokeConfig {
  const hubUrlText = required(env, 'HUB_URL', 'the hub to dial, e.g. https://hub.example.org (or several, comma-separated)');
  try {
    parseHubUrls(hubUrlText);
  } catch (error) {
    throw new SpokeConfigError((error as Error).message);
  }
  const hostId = required(env, 'SPOKE_HOST_ID', 'the id this host was registered under (capsul add-host --id)');
  if (!hostIdPattern.test(hostId)) {
    throw new SpokeConfigError(`SPOKE_HOST_ID must be 1 to 63 lowercase letters, digits and inner dashes, not ${JSON.stringify(hostId)}`);
  }
  const token = env.SPOKE_HOST_TOKEN ?? '';
  if (token === '') throw new SpokeConfigError('SPOKE_HOST_TOKEN is not set: give the token capsul add-host printed for this host');
  if (!/^[\x21-\x7e]{1,512}$/.test(token)) {
    throw new SpokeConfigError('SPOKE_HOST_TOKEN must be the token as printed (no spaces or line breaks, at most 512 characters)');
  }
  const driver = required(env, 'SPOKE_DRIVER', 'libvirt or simulated');
  if (driver !== 'libvirt' && driver !== 'simulated')
    throw new SpokeConfigError(`SPOKE_DRIVER must be libvirt or simulated, not ${JSON.stringify(driver)}`);
  const dataDir = env.SPOKE_DATA_DIR?.trim() || path.join('.data', `spoke-${hostId}`);
  let imageDir: string | null = null;
  let diskDir: string | null = null;
  if (driver === 'libvirt') {
    imageDir = absoluteDir(env, 'SPOKE_IMAGE_DIR', 'the directory of OS template images');
    diskDir = absoluteDir(env, 'SPOKE_DISK_DIR', 'the directory for capsul disks');
  }
  return { hubUrl: hubUrlText.trim(), hostId, token, driver, dataDir, imageDir, diskDir };
}

function required(env: NodeJS.ProcessEnv, name: string, what: string): string {
  const value = env[name]?.trim();
  if (!value) throw new SpokeConfigError(`${name} is not set: ${what}`);
  return value;
}

function absoluteDir(env: NodeJS.ProcessEnv, name: string, what: string): string {
  const value = required(env, name, `${what} (needed by the libvirt driver)`);
  if (!path.isAbsolute(value)) throw new SpokeConfigError(`${name} must be an absolute path, not ${JSON.stringify(value)}`);
  return value;
}

/**
 * SPOKE_SIMULATED_PROVISION_MS: the simulated driver's delay from create to running, in milliseconds
 * (default 2000). For development and tests only: end-to-end tests set a short one. Unset → undefined.
 */
export function readSimulatedProvisionMs(env: NodeJS.ProcessEnv): number | undefined {
  const text = env.SPOKE_SIMULATED_PROVISION_MS?.trim();
  if (!text) return undefined;
  if (!/^\d{1,6}$/.test(text) || Number(text) > 600_000) {
    throw new SpokeConfigError(`SPOKE_SIMULATED_PROVISION_MS must be whole milliseconds from 0 to 600000, not ${JSON.stringify(text)}`);
  }
  return Number(text);
}

/** Loads the driver module only when asked for, so a libvirt host never loads the simulation and vice versa. */
export async function loadDriver(
  config: SpokeConfig,
  log: (line: string) => void,
  simulated: { provisionMs?: number } = {},
): Promise<Driver> {
  const [file, className, options] =
    config.driver === 'simulated'
      ? [
          './drivers/simulated.ts',
          'SimulatedDriver',
          { log, provisionMs: simulated.provisionMs, stateFile: path.join(config.dataDir, 'simulated-capsuls.json') },
        ]
      : ['./drivers/libvirt.ts', 'LibvirtDriver', { imageDir: config.imageDir, diskDir: config.diskDir }];
  let module: Record<string, unknown>;
  try {
    module = (await import(new URL(file, import.meta.url).href)) as Record<string, unknown>;
  } catch (error) {
    throw new SpokeConfigError(`cannot load the ${config.driver} driver: ${(error as Error).message.split('\n')[0]}`);
  }
  const DriverClass = module[className];
  if (typeof DriverClass !== 'function') throw new SpokeConfigError(`the ${config.driver} driver module has no ${className}`);
  return new (DriverClass as new (options: object) => Driver)(options);
}

export async function runSpoke(env: NodeJS.ProcessEnv, log: (line: string) => void, options: RunSpokeOptions = {}): Promise<number> {
  let config: SpokeConfig;
  let driver: Driver;
  let agent: SpokeAgent;
  try {
    config = readSpokeConfig(env);
    const simulated = config.driver === 'simulated' ? { provisionMs: readSimulatedProvisionMs(env) } : {};
    driver = options.driver ?? (await loadDriver(config, log, simulated));
    const hub = new HubClient({ hubUrl: config.hubUrl, hostId: config.hostId, token: config.token, log });
    const hubs =
      hub.hubUrls.length === 1 ? `hub ${hub.hubUrl}` : `hubs ${hub.hubUrls.join(', ')} (one at a time, failing over in this order)`;
    log(`spoke for host ${config.hostId}: ${hubs}, driver ${driver.name}`);
    agent = new SpokeAgent({ agentVersion: agentVersion(), ...options.agent, hub, driver, dataDir: config.dataDir, log });
    await agent.start();
  } catch (error) {
    log(`spoke cannot start: ${(error as Error).message}`);
    return 1;
  }

  const stop = () => void agent.stop();
  const signals = (options.handleSignals ?? true) ? (['SIGINT', 'SIGTERM'] as const) : [];
  const onSignal = (signal: NodeJS.Signals) => {
    log(`${signal}: stopping the spoke`);
    stop();
  };
  for (const signal of signals) process.on(signal, onSignal);
  if (options.signal?.aborted) stop();
  options.signal?.addEventListener('abort', stop, { once: true });
  try {
    const fatal = await agent.done;
    if (fatal) return 1; // the agent said why, in one line
    log('spoke stopped');
    return 0;
  } finally {
    for (const signal of signals) process.off(signal, onSignal);
    options.signal?.removeEventListener('abort', stop);
  }
}

function agentVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? `capsul-spoke/${pkg.version}` : 'unknown';
  } catch {
    return 'unknown';
  }
}
