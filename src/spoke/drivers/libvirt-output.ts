// Reading what virsh and ssh-keygen print. Pure functions: anything unexpected is dropped or refused here,
// so nothing a guest or a foreign domain controls reaches the hub unchecked.
import { isIPv4, isIPv6 } from 'node:net';
import { DriverError } from '../driver.ts';
import { limits, type HostKeyFingerprint, type ObservedState } from '../protocol.ts';
import { quoted, vmIdPattern } from './arguments.ts';

/** as many as a report may carry */
const maxHostKeys = limits.maxHostKeysPerReport;

/** Every state `virsh domstate` can print (C locale), as the hub sees it. */
const domainStates: Record<string, ObservedState> = {
  running: 'running',
  idle: 'running', // blocked on I/O: a running guest
  'in shutdown': 'running', // still up while its shutdown is under way
  'shut off': 'stopped',
  'no state': 'stopped', // between define and start
  paused: 'paused',
  pmsuspended: 'paused',
  crashed: 'crashed',
};

export function parseDomainState(text: string): ObservedState {
  const state = domainStates[text.trim()];
  if (!state) throw new DriverError(`virsh printed an unknown domain state ${quoted(text.trim())}`);
  return state;
}

/** list.sh prints "<vm id> <state>" a line; domains that are not capsuls are none of our business. */
export function parseDomainList(text: string): { vmId: string; state: ObservedState }[] {
  return text.split('\n').flatMap((line) => {
    const space = line.indexOf(' ');
    const vmId = line.slice(0, space);
    if (space < 0 || !vmIdPattern.test(vmId)) return [];
    return [{ vmId, state: parseDomainState(line.slice(space + 1)) }];
  });
}

/**
 * `virsh domifaddr --source lease`:
 *  Name       MAC address          Protocol     Address
 * -------------------------------------------------------------------------------
 *  vnet0      52:54:00:8e:4a:11    ipv4         192.168.122.45/24
 */
export function parseDomifaddr(text: string): { ipv4: string | null; ipv6: string | null } {
  let ipv4: string | null = null;
  let ipv6: string | null = null;
  for (const line of text.split('\n')) {
    const [, , protocol, cidr] = line.trim().split(/\s+/);
    const address = cidr?.split('/')[0] ?? '';
    if (protocol === 'ipv4' && ipv4 === null && isIPv4(address)) ipv4 = address;
    if (protocol === 'ipv6' && ipv6 === null && isIPv6(address) && !/^fe[89ab]/i.test(address)) ipv6 = address;
  }
  return { ipv4, ipv6 };
}

/** `ssh-keygen -E sha256 -lf -`: "256 SHA256:<43 base64> 192.0.2.10 (ED25519)" a line. */
export function parseFingerprints(text: string): HostKeyFingerprint[] {
  const keys = new Map<string, HostKeyFingerprint>();
  for (const line of text.split('\n')) {
    const match = /^(\d+) (SHA256:[A-Za-z0-9+/]{43}) .*\(([A-Z0-9-]+)\)$/.exec(line.trim());
    if (!match) continue;
    const [, bits, sha256, label] = match as unknown as [string, string, string, string];
    keys.set(sha256, { type: keyType(label, bits), sha256 });
  }
  return [...keys.values()].slice(0, maxHostKeys);
}

/** ssh-keygen's label and size back to the key's type name, as an SSH public key line spells it. */
function keyType(label: string, bits: string): string {
  switch (label) {
    case 'ED25519':
      return 'ssh-ed25519';
    case 'RSA':
      return 'ssh-rsa';
    case 'ECDSA':
      return `ecdsa-sha2-nistp${bits}`;
    case 'ED25519-SK':
      return 'sk-ssh-ed25519@openssh.com';
    case 'ECDSA-SK':
      return 'sk-ecdsa-sha2-nistp256@openssh.com';
    case 'DSA':
      return 'ssh-dss';
    default:
      return label.toLowerCase();
  }
}
