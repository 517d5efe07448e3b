// The libvirt driver's pure parts: the files it writes for a capsul, how it reads virsh and ssh-keygen,
// what it accepts from the hub, and how a script's failure is worded.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { DriverError } from '../../src/spoke/driver.ts';
import { checkImageFile, checkSshPublicKey, checkVmId } from '../../src/spoke/drivers/arguments.ts';
import { cloudInitMetaData, cloudInitUserData, domainXml } from '../../src/spoke/drivers/libvirt-files.ts';
import { parseDomainList, parseDomainState, parseDomifaddr, parseFingerprints } from '../../src/spoke/drivers/libvirt-output.ts';
import { runScript } from '../../src/spoke/drivers/run-script.ts';

const vmId = 'capsul-a1b2c3d4e5';
const ed25519 = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl';

describe('domain XML and cloud-init seed', () => {
  it('escapes what it puts in the domain XML', () => {
    const xml = domainXml({ vmId, memoryMb: 512, vcpus: 1, diskPath: "/d/a&b'<c>.qcow2", seedPath: '/d/s.iso', network: 'default' });
    assert.match(xml, /<source file='\/d\/a&amp;b&apos;&lt;c&gt;\.qcow2'\/>/);
  });

  it('writes each SSH key as one double-quoted YAML scalar', () => {
    const key = `${ed25519} it's "me" \\ #not-a-comment`;
    assert.equal(
      cloudInitUserData({ sshPublicKeys: [key] }),
      `#cloud-config\nssh_authorized_keys:\n  - "${ed25519} it's \\"me\\" \\\\ #not-a-comment"\n`,
    );
  });

  it('names the instance and its host after the capsul', () => {
    assert.equal(cloudInitMetaData(vmId), `instance-id: "${vmId}"\nlocal-hostname: "${vmId}"\n`);
  });
});

describe('reading virsh and ssh-keygen', () => {
  it('maps every state virsh prints to what the hub knows', () => {
    const states = ['running', 'idle', 'in shutdown', 'shut off', 'no state', 'paused', 'pmsuspended', 'crashed'];
    assert.deepEqual(states.map(parseDomainState), ['running', 'running', 'running', 'stopped', 'stopped', 'paused', 'paused', 'crashed']);
  });

  it('refuses a state it does not know', () => {
    assert.throws(
      () => parseDomainState('dancing'),
      (error: unknown) => error instanceof DriverError && /unknown domain state "dancing"/.test(error.message),
    );
  });

  it('lists only capsul ids', () => {
    const printed = `${vmId} shut off\ncapsul-evil;rm running\ncapsul-f6g7h8i9j0 running\n\n`;
    assert.deepEqual(parseDomainList(printed), [
      { vmId, state: 'stopped' },
      { vmId: 'capsul-f6g7h8i9j0', state: 'running' },
    ]);
  });

  it('takes the first IPv4 and the first IPv6 that is not link-local from a lease table', () => {
    const table = [
      ' Name       MAC address          Protocol     Address',
      '-------------------------------------------------------------------------------',
      ' vnet0      52:54:00:8e:4a:11    ipv6         fe80::5054:ff:fe8e:4a11/64',
      ' -          -                    ipv6         2001:db8::45/64',
      ' -          -                    ipv4         192.168.122.45/24',
      ' -          -                    ipv4         192.168.122.46/24',
    ].join('\n');
    assert.deepEqual(parseDomifaddr(table), { ipv4: '192.168.122.45', ipv6: '2001:db8::45' });
  });

  it('reads fingerprints with their key types, skipping lines that are not fingerprints and repeats', () => {
    const printed = [
      '384 SHA256:A2K9NLUrvFjm1aGFc4GLGWzTrKkx2f4Tz+ZDbGk1wqU 192.0.2.10 (ECDSA)',
      '3072 SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s no comment (RSA)',
      '3072 SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s no comment (RSA)',
      '(stdin) is not a public key file.',
      '256 SHA256:short 192.0.2.10 (ED25519)',
    ].join('\n');
    assert.deepEqual(parseFingerprints(printed), [
      { type: 'ecdsa-sha2-nistp384', sha256: 'SHA256:A2K9NLUrvFjm1aGFc4GLGWzTrKkx2f4Tz+ZDbGk1wqU' },
      { type: 'ssh-rsa', sha256: 'SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s' },
    ]);
  });
});

describe('what a driver accepts', () => {
  it('accepts capsul ids and nothing that only looks like one', () => {
    assert.equal(checkVmId(vmId), vmId);
    for (const id of [`${vmId}\n`, ` ${vmId}`, 'capsul-a1b2c3d4e', 'capsul-a1b2c3d4e5f', 'capsul-A1B2C3D4E5', 42]) {
      assert.throws(() => checkVmId(id), DriverError);
    }
  });

  it('accepts the catalogue’s image file names', () => {
    for (const name of [
      'debian/debian-12-genericcloud-amd64.qcow2',
      'rocky/Rocky-9-GenericCloud-Base.latest.qcow2',
      'ubuntu/noble-server-cloudimg-amd64.img',
    ]) {
      assert.equal(checkImageFile(name), name);
    }
  });

  it('accepts SSH keys of every OpenSSH type, with or without a comment', () => {
    for (const key of [
      ed25519,
      `${ed25519} alice@example.org`,
      'ecdsa-sha2-nistp521 AAAAE2VjZHNh',
      'sk-ssh-ed25519@openssh.com AAAAGnNr',
      'ssh-rsa AAAAB3NzaC1yc2E= a b c',
    ]) {
      assert.equal(checkSshPublicKey(key), key);
    }
  });

  it('refuses SSH keys with control characters, other alphabets or no key data', () => {
    for (const key of [
      `${ed25519}\r`,
      `${ed25519} a\tb`,
      `${ed25519} ключ`,
      `${ed25519} \0`,
      'ssh-ed25519',
      'ssh-ed25519 $(x)',
      'rm -rf /',
    ]) {
      assert.throws(() => checkSshPublicKey(key), DriverError, JSON.stringify(key));
    }
  });
});

describe('running a script', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'capsul-run-script-test-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const script = (name: string, body: string) => {
    const file = path.join(dir, name);
    writeFileSync(file, `set -eu\n${body}\n`);
    return file;
  };
  const run = (file: string, args: string[] = []) =>
    runScript({ script: file, args, env: process.env, timeoutMs: 10_000, doing: 'testing' });

  it('hands each argument over as it is, whatever it holds', async () => {
    const file = script('echo.sh', 'for arg in "$@"; do printf "[%s]" "$arg"; done');
    assert.equal(await run(file, ['a b', '$(id)', '`id`', "'", '"', ';', '\n']), '[a b][$(id)][`id`][\']["][;][\n]');
  });

  it('names the exit status when a failing script says nothing', async () => {
    await assert.rejects(
      run(script('silent.sh', 'exit 3')),
      (error: unknown) => error instanceof DriverError && error.message === 'testing failed: exit status 3',
    );
  });

  it('gives up on a script that prints without end', async () => {
    await assert.rejects(
      run(script('chatty.sh', 'yes')),
      (error: unknown) => error instanceof DriverError && /printed more than \d+ bytes/.test(error.message),
    );
  });
});
