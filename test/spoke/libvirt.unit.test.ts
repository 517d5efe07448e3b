// The libvirt driver against fake virsh, qemu-img, cloud-localds/genisoimage, ssh-keyscan and ssh-keygen
// placed first on PATH: each records its arguments, so the tests see the exact commands that would run,
// that nothing a customer typed can reach a shell, and that failures surface as DriverErrors.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DriverError } from '../../src/spoke/driver.ts';
import { LibvirtDriver, type LibvirtDriverOptions } from '../../src/spoke/drivers/libvirt.ts';
import type { CapsulSpec } from '../../src/spoke/protocol.ts';

const fakesDir = fileURLToPath(new URL('./fakes/', import.meta.url));
const scriptsDir = fileURLToPath(new URL('../../src/spoke/libvirt/', import.meta.url));
const root = mkdtempSync(path.join(os.tmpdir(), 'capsul-libvirt-test-'));
after(() => execFileSync('rm', ['-rf', root]));

const vmId = 'capsul-a1b2c3d4e5';
const otherVmId = 'capsul-f6g7h8i9j0';
const imageFile = 'debian/debian-12-genericcloud-amd64.qcow2';
const aliceKey = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@example.org';
const spec: CapsulSpec = { memoryMb: 1024, vcpus: 2, imageFile, sshPublicKeys: [aliceKey] };
const leaseTable = ` Name       MAC address          Protocol     Address
-------------------------------------------------------------------------------
 vnet3      52:54:00:8e:4a:11    ipv4         192.168.122.45/24
 -          -                    ipv6         2001:db8:7::45/64
`;

type Fakes = {
  /** which seed tool is on PATH */
  seedTool?: 'cloud-localds' | 'genisoimage';
  /** FAKE_VIRSH_FAIL, FAKE_VIRSH_ERROR, FAKE_SLEEP_S */
  env?: Record<string, string>;
  timeoutsMs?: LibvirtDriverOptions['timeoutsMs'];
};

let worlds = 0;

/** A fresh temp dir with the fakes on PATH, an image dir holding the template, an empty disk dir. */
function fakeHost(fakes: Fakes = {}) {
  const dir = path.join(root, `host-${++worlds}`);
  const bin = path.join(dir, 'bin');
  const imageDir = path.join(dir, 'images');
  const diskDir = path.join(dir, 'disks');
  for (const sub of [bin, path.join(dir, 'domains'), path.join(imageDir, 'debian'), diskDir]) mkdirSync(sub, { recursive: true });
  writeFileSync(path.join(imageDir, imageFile), '');
  writeFileSync(path.join(dir, 'domifaddr'), leaseTable);
  copyFileSync(path.join(fakesDir, 'record.sh'), path.join(dir, 'record.sh'));
  const seedTool = fakes.seedTool ?? 'cloud-localds';
  for (const fake of ['virsh', 'qemu-img', seedTool, 'ssh-keyscan', 'ssh-keygen']) {
    copyFileSync(path.join(fakesDir, fake), path.join(bin, fake));
  }
  const driver = new LibvirtDriver({
    imageDir,
    diskDir,
    network: 'capsuls',
    capacity: { memoryMb: 4096, vcpus: 4 },
    timeoutsMs: fakes.timeoutsMs,
    env: { PATH: `${bin}:${process.env.PATH}`, FAKE_DIR: dir, ...fakes.env },
  });
  const domain = (id: string, state: string) => writeFileSync(path.join(dir, 'domains', id), state);
  return {
    dir,
    imageDir,
    diskDir,
    driver,
    domain,
    commands: () => commands(dir),
    file: (name: string) => readFileSync(path.join(dir, name), 'utf8'),
  };
}

/** The recorded invocations, as argv arrays; temp paths shown as <host> and <work>. */
function commands(dir: string): string[][] {
  const log = path.join(dir, 'log');
  if (!existsSync(log)) return [];
  const work = new RegExp(`^${os.tmpdir().replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/capsul-create-[^/]+`);
  const invocations: string[][] = [];
  for (const line of readFileSync(log, 'utf8').split('\n').slice(0, -1)) {
    if (line.startsWith('--- ')) invocations.push([line.slice(4)]);
    else invocations.at(-1)!.push(line.replace(work, '<work>').replaceAll(dir, '<host>'));
  }
  return invocations;
}

/** The work dir create.sh was handed, as the fakes saw it. */
function workDirOf(dir: string): string {
  const define = readFileSync(path.join(dir, 'log'), 'utf8')
    .split('\n')
    .find((line) => line.endsWith('/domain.xml'))!;
  return path.dirname(define);
}

const failsWith = (pattern: RegExp) => (error: unknown) => {
  assert.ok(error instanceof DriverError, `expected a DriverError, got ${error}`);
  assert.match(error.message, pattern);
  return true;
};

describe('LibvirtDriver: create', () => {
  it('overlays the template, writes a cloud-init seed, defines the domain and starts it', async () => {
    const host = fakeHost();
    await host.driver.create(vmId, spec);
    assert.deepEqual(host.commands(), [
      ['virsh', 'domstate', vmId],
      ['qemu-img', 'create', '-f', 'qcow2', '-F', 'qcow2', '-b', `<host>/images/${imageFile}`, `<host>/disks/${vmId}.qcow2`],
      ['cloud-localds', `<host>/disks/${vmId}-cidata.iso`, '<work>/user-data', '<work>/meta-data'],
      ['virsh', 'define', '<work>/domain.xml'],
      ['virsh', 'start', vmId],
    ]);
  });

  it('puts the SSH keys in the seed’s user-data and the capsul id in its meta-data', async () => {
    const host = fakeHost();
    await host.driver.create(vmId, { ...spec, sshPublicKeys: [aliceKey, aliceKey.replace('alice', 'bob')] });
    assert.equal(
      host.file('user-data.seen'),
      `#cloud-config\nssh_authorized_keys:\n  - "${aliceKey}"\n  - "${aliceKey.replace('alice', 'bob')}"\n`,
    );
    assert.equal(host.file('meta-data.seen'), `instance-id: "${vmId}"\nlocal-hostname: "${vmId}"\n`);
  });

  it('defines a domain with the spec’s memory and vcpus, its disk, its seed and the configured network', async () => {
    const host = fakeHost();
    await host.driver.create(vmId, spec);
    const xml = host.file('defined.xml');
    assert.match(xml, new RegExp(`<name>${vmId}</name>`));
    assert.match(xml, /<memory unit='MiB'>1024<\/memory>/);
    assert.match(xml, /<vcpu>2<\/vcpu>/);
    assert.match(xml, new RegExp(`<source file='${host.diskDir}/${vmId}.qcow2'/>`));
    assert.match(xml, new RegExp(`<source file='${host.diskDir}/${vmId}-cidata.iso'/>`));
    assert.match(xml, /<source network='capsuls'\/>/);
  });

  it('removes its temporary files once done', async () => {
    const host = fakeHost();
    await host.driver.create(vmId, spec);
    assert.equal(existsSync(workDirOf(host.dir)), false);
  });

  it('makes the seed with genisoimage when cloud-localds is not installed', async (t) => {
    const onPath = (process.env.PATH ?? '').split(':').some((dir) => existsSync(path.join(dir, 'cloud-localds')));
    if (onPath) return t.skip('this machine has a real cloud-localds on PATH');
    const host = fakeHost({ seedTool: 'genisoimage' });
    await host.driver.create(vmId, spec);
    assert.deepEqual(host.commands()[2], [
      'genisoimage',
      '-quiet',
      '-output',
      `<host>/disks/${vmId}-cidata.iso`,
      '-volid',
      'cidata',
      '-joliet',
      '-rock',
      '<work>/user-data',
      '<work>/meta-data',
    ]);
  });

  it('refuses a capsul that already exists, touching nothing', async () => {
    const host = fakeHost();
    host.domain(vmId, 'shut off');
    await assert.rejects(
      host.driver.create(vmId, spec),
      failsWith(/^creating capsul-a1b2c3d4e5 failed: capsul capsul-a1b2c3d4e5 already exists$/),
    );
    assert.deepEqual(host.commands(), [['virsh', 'domstate', vmId]]);
  });

  it('refuses an image that is not in the image directory', async () => {
    const host = fakeHost();
    await assert.rejects(
      host.driver.create(vmId, { ...spec, imageFile: 'debian/missing.qcow2' }),
      failsWith(/there is no template image .*\/images\/debian\/missing\.qcow2$/),
    );
  });

  it('undoes a create whose start fails, leaving no domain, disk or seed, and says why', async () => {
    const host = fakeHost({
      env: {
        FAKE_VIRSH_FAIL: 'start',
        FAKE_VIRSH_ERROR: `error: Failed to start domain '${vmId}'\nerror: internal error: process exited while connecting to monitor`,
      },
    });
    await assert.rejects(
      host.driver.create(vmId, spec),
      failsWith(/^creating capsul-a1b2c3d4e5 failed: error: internal error: process exited while connecting to monitor$/),
    );
    assert.deepEqual(host.commands().slice(-3), [
      ['virsh', 'start', vmId],
      ['virsh', 'destroy', vmId],
      ['virsh', 'undefine', '--nvram', vmId],
    ]);
    assert.deepEqual(readdirSync(host.diskDir), []);
  });

  it('undoes a create that runs out of time', async () => {
    // long enough to reach `virsh start` on a loaded machine: the undo of a defined domain is the point
    const host = fakeHost({ env: { FAKE_SLEEP_S: '60', FAKE_SLEEP_ON: 'start' }, timeoutsMs: { create: 2_000 } });
    await assert.rejects(host.driver.create(vmId, spec), failsWith(/^creating capsul-a1b2c3d4e5 failed: timed out after 2 s$/));
    assert.deepEqual(host.commands().slice(-2), [
      ['virsh', 'destroy', vmId],
      ['virsh', 'undefine', '--nvram', vmId],
    ]);
    assert.deepEqual(readdirSync(host.diskDir), []);
  });

  it('removes the disk and seed of a create whose define fails, but never undefines a domain it did not define', async () => {
    const host = fakeHost({ env: { FAKE_VIRSH_FAIL: 'define', FAKE_VIRSH_ERROR: 'error: operation failed: domain already exists' } });
    await assert.rejects(host.driver.create(vmId, spec), failsWith(/domain already exists$/));
    assert.deepEqual(host.commands().at(-1), ['virsh', 'define', '<work>/domain.xml']);
    assert.deepEqual(readdirSync(host.diskDir), []);
  });
});

describe('LibvirtDriver: start, stop, force-stop, delete', () => {
  it('starts with virsh start', async () => {
    const host = fakeHost();
    await host.driver.start(vmId);
    assert.deepEqual(host.commands(), [['virsh', 'start', vmId]]);
  });

  it('treats starting a capsul that runs already as done', async () => {
    const host = fakeHost({ env: { FAKE_VIRSH_FAIL: 'start', FAKE_VIRSH_ERROR: 'error: Domain is already active' } });
    await host.driver.start(vmId);
  });

  it('stops with a clean virsh shutdown', async () => {
    const host = fakeHost();
    await host.driver.stop(vmId);
    assert.deepEqual(host.commands(), [['virsh', 'shutdown', vmId]]);
  });

  it('treats stopping a stopped capsul as done', async () => {
    const error = `error: Failed to shutdown domain '${vmId}'\nerror: Requested operation is not valid: domain is not running`;
    const host = fakeHost({ env: { FAKE_VIRSH_FAIL: 'shutdown', FAKE_VIRSH_ERROR: error } });
    await host.driver.stop(vmId);
  });

  it('force-stops with virsh destroy', async () => {
    const host = fakeHost();
    await host.driver.forceStop(vmId);
    assert.deepEqual(host.commands(), [['virsh', 'destroy', vmId]]);
  });

  it('deletes a running capsul: destroy, undefine with its nvram, then its disk and seed', async () => {
    const host = fakeHost();
    host.domain(vmId, 'running');
    writeFileSync(path.join(host.diskDir, `${vmId}.qcow2`), '');
    writeFileSync(path.join(host.diskDir, `${vmId}-cidata.iso`), '');
    writeFileSync(path.join(host.diskDir, `${otherVmId}.qcow2`), '');
    await host.driver.delete(vmId);
    assert.deepEqual(host.commands(), [
      ['virsh', 'domstate', vmId],
      ['virsh', 'destroy', vmId],
      ['virsh', 'undefine', '--nvram', vmId],
    ]);
    assert.deepEqual(readdirSync(host.diskDir), [`${otherVmId}.qcow2`]);
  });

  it('deletes a stopped capsul without destroying it', async () => {
    const host = fakeHost();
    host.domain(vmId, 'shut off');
    await host.driver.delete(vmId);
    assert.deepEqual(host.commands(), [
      ['virsh', 'domstate', vmId],
      ['virsh', 'undefine', '--nvram', vmId],
    ]);
  });

  it('deletes a capsul that stopped meanwhile (destroy says "not running")', async () => {
    const error = `error: Failed to destroy domain '${vmId}'\nerror: Requested operation is not valid: domain is not running`;
    const host = fakeHost({ env: { FAKE_VIRSH_FAIL: 'destroy', FAKE_VIRSH_ERROR: error } });
    host.domain(vmId, 'running');
    await host.driver.delete(vmId);
    assert.deepEqual(host.commands().at(-1), ['virsh', 'undefine', '--nvram', vmId]);
  });

  it('succeeds in deleting a capsul that is not there, removing leftover files', async () => {
    const host = fakeHost();
    writeFileSync(path.join(host.diskDir, `${vmId}.qcow2`), '');
    await host.driver.delete(vmId);
    assert.deepEqual(host.commands(), [['virsh', 'domstate', vmId]]);
    assert.deepEqual(readdirSync(host.diskDir), []);
  });

  it('never takes a hypervisor it cannot reach for a capsul that is not there', async () => {
    const error =
      "error: failed to connect to the hypervisor\nerror: Failed to connect socket to '/var/run/libvirt/libvirt-sock': No such file or directory";
    const host = fakeHost({ env: { FAKE_VIRSH_FAIL: 'domstate', FAKE_VIRSH_ERROR: error } });
    await assert.rejects(host.driver.delete(vmId), failsWith(/^deleting capsul-a1b2c3d4e5 failed: error: Failed to connect socket/));
    await assert.rejects(host.driver.inspect(vmId), failsWith(/Failed to connect socket/));
  });

  it('turns a failing virsh into a DriverError carrying its last line on stderr', async () => {
    const error = `error: Failed to start domain '${vmId}'\nerror: Cannot access storage file '/var/lib/capsul/${vmId}.qcow2': Permission denied`;
    const host = fakeHost({ env: { FAKE_VIRSH_FAIL: 'start', FAKE_VIRSH_ERROR: error } });
    await assert.rejects(
      host.driver.start(vmId),
      failsWith(
        /^starting capsul-a1b2c3d4e5 failed: error: Cannot access storage file '\/var\/lib\/capsul\/capsul-a1b2c3d4e5\.qcow2': Permission denied$/,
      ),
    );
  });

  it('gives up on a script that hangs, with a DriverError saying so', async () => {
    // The promise settles only once every process holding the script's output is gone: the hung fake too.
    const host = fakeHost({ env: { FAKE_SLEEP_S: '60' }, timeoutsMs: { other: 200 } });
    await assert.rejects(host.driver.stop(vmId), failsWith(/^stopping capsul-a1b2c3d4e5 failed: timed out after 0.2 s$/));
  });
});

describe('LibvirtDriver: list and inspect', () => {
  it('lists capsul domains with their states, leaving other domains alone', async () => {
    const host = fakeHost();
    host.domain(vmId, 'running');
    host.domain(otherVmId, 'shut off');
    host.domain('windows-build-box', 'running');
    assert.deepEqual(await host.driver.list(), [
      { vmId, state: 'running' },
      { vmId: otherVmId, state: 'stopped' },
    ]);
    assert.deepEqual(host.commands(), [
      ['virsh', 'list', '--all', '--name'],
      ['virsh', 'domstate', vmId],
      ['virsh', 'domstate', otherVmId],
    ]);
  });

  it('inspects a running capsul: its state, leased addresses and SSH host-key fingerprints', async () => {
    const host = fakeHost();
    host.domain(vmId, 'running');
    assert.deepEqual(await host.driver.inspect(vmId), {
      vmId,
      state: 'running',
      ipv4: '192.168.122.45',
      ipv6: '2001:db8:7::45',
      sshHostKeys: [
        { type: 'ssh-ed25519', sha256: 'SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s' },
        { type: 'ecdsa-sha2-nistp256', sha256: 'SHA256:A2K9NLUrvFjm1aGFc4GLGWzTrKkx2f4Tz+ZDbGk1wqU' },
      ],
    });
    assert.deepEqual(host.commands(), [
      ['virsh', 'domstate', vmId],
      ['virsh', 'domifaddr', vmId, '--source', 'lease'],
      ['ssh-keyscan', '-T', '5', '--', '192.168.122.45'],
      ['ssh-keygen', '-E', 'sha256', '-lf', '-'],
    ]);
  });

  it('pipes what ssh-keyscan found into ssh-keygen', async () => {
    const host = fakeHost();
    host.domain(vmId, 'running');
    await host.driver.inspect(vmId);
    assert.match(host.file('ssh-keygen.stdin'), /^192\.168\.122\.45 ssh-ed25519 AAAA\S+\n192\.168\.122\.45 ecdsa-sha2-nistp256 AAAA\S+\n$/);
  });

  it('inspects a stopped capsul without looking for addresses or keys', async () => {
    const host = fakeHost();
    host.domain(vmId, 'shut off');
    assert.deepEqual(await host.driver.inspect(vmId), { vmId, state: 'stopped', ipv4: null, ipv6: null, sshHostKeys: [] });
    assert.deepEqual(host.commands(), [['virsh', 'domstate', vmId]]);
  });

  it('answers null for a capsul that is not there', async () => {
    const host = fakeHost();
    assert.equal(await host.driver.inspect(vmId), null);
  });

  it('scans no keys while the capsul has no lease yet', async () => {
    const host = fakeHost();
    host.domain(vmId, 'running');
    writeFileSync(path.join(host.dir, 'domifaddr'), leaseTable.split('\n').slice(0, 2).join('\n'));
    assert.deepEqual(await host.driver.inspect(vmId), { vmId, state: 'running', ipv4: null, ipv6: null, sshHostKeys: [] });
    assert.equal(host.commands().length, 2);
  });

  it('ignores a lease table entry that is not an address, never passing it on', async () => {
    const host = fakeHost();
    host.domain(vmId, 'running');
    writeFileSync(
      path.join(host.dir, 'domifaddr'),
      `${leaseTable.split('\n').slice(0, 2).join('\n')}\n vnet3 52:54:00:8e:4a:11 ipv4 $(touch${path.join(host.dir, 'pwned')})/24\n`,
    );
    assert.equal((await host.driver.inspect(vmId))!.ipv4, null);
    assert.equal(
      host.commands().some(([program]) => program === 'ssh-keyscan'),
      false,
    );
  });
});

describe('LibvirtDriver: nothing reaches a shell', () => {
  const nastyIds = [
    'capsul-a1b2c3d4e5; rm -rf /',
    'capsul-$(touch pwned)',
    'capsul-`touch pwned`',
    "capsul-a1b2'c3d4e",
    'capsul-a1b2"c3d4e',
    'capsul-a1b2c3d4e5\ntouch pwned',
    '--help',
    '../capsul-a1b2c3d4e5',
    'CAPSUL-A1B2C3D4E5',
    '',
  ];
  const operations = {
    create: (driver: LibvirtDriver, id: string) => driver.create(id, spec),
    start: (driver: LibvirtDriver, id: string) => driver.start(id),
    stop: (driver: LibvirtDriver, id: string) => driver.stop(id),
    forceStop: (driver: LibvirtDriver, id: string) => driver.forceStop(id),
    delete: (driver: LibvirtDriver, id: string) => driver.delete(id),
    inspect: (driver: LibvirtDriver, id: string) => driver.inspect(id),
  };

  for (const [name, operation] of Object.entries(operations)) {
    it(`refuses a capsul id that is not one before running anything (${name})`, async () => {
      const host = fakeHost();
      for (const id of nastyIds) await assert.rejects(operation(host.driver, id), failsWith(/is not a capsul id/));
      assert.deepEqual(host.commands(), []);
    });
  }

  it('writes SSH keys full of shell syntax to the seed as inert text, never onto a command line', async () => {
    const host = fakeHost();
    const pwned = path.join(host.dir, 'pwned');
    const blob = 'AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl';
    const keys = [
      `ssh-ed25519 ${blob} $(touch ${pwned})`,
      `ssh-ed25519 ${blob} \`touch ${pwned}\``,
      `ssh-ed25519 ${blob} x; touch ${pwned}; rm -rf /`,
      `ssh-ed25519 ${blob} it's "quoted" \\ & | > ${pwned}`,
    ];
    await host.driver.create(vmId, { ...spec, sshPublicKeys: keys });
    assert.equal(
      host.file('user-data.seen'),
      `#cloud-config\nssh_authorized_keys:\n${keys.map((key) => `  - ${JSON.stringify(key)}\n`).join('')}`,
    );
    assert.equal(existsSync(pwned), false);
    assert.equal(
      host
        .commands()
        .flat()
        .some((arg) => arg.includes(blob)),
      false,
    );
  });

  it('refuses an SSH key spread over several lines before running anything', async () => {
    const host = fakeHost();
    const key = `${aliceKey}\nruncmd: [touch /tmp/pwned]`;
    await assert.rejects(host.driver.create(vmId, { ...spec, sshPublicKeys: [key] }), failsWith(/is not an SSH public key on one line/));
    assert.deepEqual(host.commands(), []);
  });

  it('refuses an image file name that could leave the image directory or read as an option', async () => {
    const host = fakeHost();
    for (const name of [
      '../../etc/shadow',
      '/etc/shadow',
      'debian/../../x.qcow2',
      '-o.qcow2',
      'debian//x',
      '$(touch pwned).qcow2',
      'a b.qcow2',
    ]) {
      await assert.rejects(host.driver.create(vmId, { ...spec, imageFile: name }), failsWith(/is not an image file name/));
    }
    assert.deepEqual(host.commands(), []);
  });
});

describe('LibvirtDriver: configuration', () => {
  it('refuses a relative disk directory', () => {
    assert.throws(
      () => new LibvirtDriver({ imageDir: '/var/lib/capsul/images', diskDir: 'disks' }),
      /diskDir "disks" must be an absolute path/,
    );
  });

  it('refuses a network name that is not a plain name', () => {
    assert.throws(() => new LibvirtDriver({ imageDir: '/i', diskDir: '/d', network: "x' /><evil" }), /network .* must be a name/);
  });

  it('offers the capacity it was given', async () => {
    const driver = new LibvirtDriver({ imageDir: '/i', diskDir: '/d', capacity: { memoryMb: 65_536, vcpus: 16 } });
    assert.deepEqual(await driver.capacity(), { memoryMb: 65_536, vcpus: 16 });
  });

  it('ships scripts that a POSIX shell parses', () => {
    for (const script of readdirSync(scriptsDir).filter((name) => name.endsWith('.sh'))) {
      execFileSync('/bin/sh', ['-n', path.join(scriptsDir, script)]);
    }
  });
});
