// The simulated driver under a manual clock: capsuls become running after the provisioning delay with
// documentation-range addresses, stop and start like real ones, and what must be refused is refused.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { isIPv4, isIPv6 } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { DriverError } from '../../src/spoke/driver.ts';
import { ManualClock } from '../../src/spoke/drivers/manual-clock.ts';
import { SimulatedDriver, simulatedAnnouncement } from '../../src/spoke/drivers/simulated.ts';
import type { CapsulSpec } from '../../src/spoke/protocol.ts';

const provisionMs = 2_000;
const stopMs = 1_000;
const vmId = 'capsul-a1b2c3d4e5';
const otherVmId = 'capsul-f6g7h8i9j0';
const spec: CapsulSpec = {
  memoryMb: 1024,
  vcpus: 1,
  imageFile: 'debian/debian-12-genericcloud-amd64.qcow2',
  sshPublicKeys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@example.org'],
};

function setUp(options: { memoryMb?: number } = {}) {
  const clock = new ManualClock();
  const driver = new SimulatedDriver({ clock, provisionMs, stopMs, capacity: { memoryMb: options.memoryMb ?? 8192, vcpus: 4 } });
  return { clock, driver };
}

async function running(vmIdToRun = vmId) {
  const world = setUp();
  await world.driver.create(vmIdToRun, spec);
  world.clock.advance(provisionMs);
  return world;
}

/** Ids capsul-0000000000, capsul-0000000001, … */
const nthVmId = (n: number) => `capsul-${String(n).padStart(10, '0')}`;

const refusal = (pattern: RegExp) => (error: unknown) => error instanceof DriverError && pattern.test(error.message);

describe('SimulatedDriver', () => {
  it('announces once, when built, that its capsuls are not real', () => {
    const lines: string[] = [];
    new SimulatedDriver({ clock: new ManualClock(), log: (line) => lines.push(line) });
    assert.deepEqual(lines, [simulatedAnnouncement]);
    assert.match(simulatedAnnouncement, /not real virtual machines/);
  });

  it('has a created capsul defined but not yet running, without addresses', async () => {
    const { clock, driver } = setUp();
    await driver.create(vmId, spec);
    clock.advance(provisionMs - 1);
    assert.deepEqual(await driver.inspect(vmId), { vmId, state: 'stopped', ipv4: null, ipv6: null, sshHostKeys: [] });
  });

  it('runs a created capsul after the provisioning delay, with documentation-range addresses', async () => {
    const { driver } = await running();
    const info = await driver.inspect(vmId);
    assert.equal(info?.state, 'running');
    assert.ok(isIPv4(info.ipv4 ?? '') && info.ipv4!.startsWith('192.0.2.'), `ipv4 ${info.ipv4}`);
    assert.ok(isIPv6(info.ipv6 ?? '') && info.ipv6!.startsWith('2001:db8:'), `ipv6 ${info.ipv6}`);
  });

  it('gives a running capsul well-formed SHA256 host-key fingerprints, the same for the same id', async () => {
    const first = await (await running()).driver.inspect(vmId);
    const again = await (await running()).driver.inspect(vmId);
    assert.ok(first!.sshHostKeys.length > 0);
    for (const key of first!.sshHostKeys) assert.match(key.sha256, /^SHA256:[A-Za-z0-9+/]{43}$/);
    assert.deepEqual(
      first!.sshHostKeys.map((key) => key.type),
      ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ssh-rsa'],
    );
    assert.deepEqual(again!.sshHostKeys, first!.sshHostKeys);
  });

  it('gives different capsuls different host keys', async () => {
    const { clock, driver } = setUp();
    await driver.create(vmId, spec);
    await driver.create(otherVmId, spec);
    clock.advance(provisionMs);
    const [one, other] = [await driver.inspect(vmId), await driver.inspect(otherVmId)];
    assert.notDeepEqual(one!.sshHostKeys, other!.sshHostKeys);
  });

  it('never gives two live capsuls the same address, moving to the next documentation range when one is full', async () => {
    const clock = new ManualClock();
    const driver = new SimulatedDriver({ clock, provisionMs, capacity: { memoryMb: 1_000, vcpus: 4 } });
    const count = 300;
    for (let n = 0; n < count; n++) await driver.create(nthVmId(n), { ...spec, memoryMb: 1 });
    clock.advance(provisionMs);
    const infos = await Promise.all(Array.from({ length: count }, (_, n) => driver.inspect(nthVmId(n))));
    const ipv4s = infos.map((info) => info!.ipv4!);
    const ipv6s = infos.map((info) => info!.ipv6!);
    assert.equal(new Set(ipv4s).size, count);
    assert.equal(new Set(ipv6s).size, count);
    assert.ok(ipv4s.every((ip) => /^(192\.0\.2|198\.51\.100)\.\d+$/.test(ip) && isIPv4(ip)));
    assert.ok(ipv4s.some((ip) => ip.startsWith('198.51.100.')));
    assert.ok(ipv6s.every((ip) => isIPv6(ip) && ip.startsWith('2001:db8:')));
    assert.ok(
      ipv4s.every((ip) => !/\.(0|1|255)$/.test(ip)),
      'no network, gateway or broadcast address',
    );
  });

  it('hands a deleted capsul’s address to the next one, never to two at once', async () => {
    const { clock, driver } = await running();
    const freed = (await driver.inspect(vmId))!.ipv4;
    await driver.delete(vmId);
    await driver.create(otherVmId, spec);
    clock.advance(provisionMs);
    assert.equal((await driver.inspect(otherVmId))!.ipv4, freed);
  });

  it('refuses a create once every simulated address is taken', async () => {
    const driver = new SimulatedDriver({ clock: new ManualClock(), capacity: { memoryMb: 1_000, vcpus: 4 } });
    for (let n = 0; n < 759; n++) await driver.create(nthVmId(n), { ...spec, memoryMb: 1 });
    await assert.rejects(driver.create(nthVmId(759), { ...spec, memoryMb: 1 }), refusal(/no free address/));
  });

  it('keeps a capsul running until the clean shutdown delay has passed', async () => {
    const { clock, driver } = await running();
    await driver.stop(vmId);
    clock.advance(stopMs - 1);
    assert.equal((await driver.inspect(vmId))!.state, 'running');
  });

  it('stops a capsul after the clean shutdown delay, without addresses', async () => {
    const { clock, driver } = await running();
    await driver.stop(vmId);
    clock.advance(stopMs);
    assert.deepEqual(await driver.inspect(vmId), { vmId, state: 'stopped', ipv4: null, ipv6: null, sshHostKeys: [] });
  });

  it('starts a stopped capsul at once, with the addresses it had', async () => {
    const { driver } = await running();
    const before = await driver.inspect(vmId);
    await driver.forceStop(vmId);
    await driver.start(vmId);
    assert.deepEqual(await driver.inspect(vmId), before);
  });

  it('keeps a capsul running when it is started again during its shutdown', async () => {
    const { clock, driver } = await running();
    await driver.stop(vmId);
    await driver.start(vmId);
    clock.advance(stopMs);
    assert.equal((await driver.inspect(vmId))!.state, 'running');
  });

  it('stops a capsul at once on force-stop', async () => {
    const { driver } = await running();
    await driver.forceStop(vmId);
    assert.equal((await driver.inspect(vmId))!.state, 'stopped');
  });

  it('never runs a capsul force-stopped while it was provisioning', async () => {
    const { clock, driver } = setUp();
    await driver.create(vmId, spec);
    await driver.forceStop(vmId);
    clock.advance(provisionMs);
    assert.equal((await driver.inspect(vmId))!.state, 'stopped');
  });

  it('treats starting a running capsul as done', async () => {
    const { clock, driver } = await running();
    await driver.start(vmId);
    clock.advance(stopMs);
    assert.equal((await driver.inspect(vmId))!.state, 'running');
  });

  it('treats stopping a stopped capsul as done', async () => {
    const { clock, driver } = await running();
    await driver.forceStop(vmId);
    await driver.stop(vmId);
    clock.advance(stopMs);
    assert.equal((await driver.inspect(vmId))!.state, 'stopped');
  });

  it('deletes a capsul: gone from inspect and list, its timers cancelled', async () => {
    const { clock, driver } = setUp();
    await driver.create(vmId, spec);
    await driver.delete(vmId);
    assert.equal(await driver.inspect(vmId), null);
    assert.deepEqual(await driver.list(), []);
    assert.equal(clock.pendingTimers, 0);
  });

  it('succeeds in deleting a capsul that is not there', async () => {
    const { driver } = setUp();
    await driver.delete(vmId);
    assert.equal(await driver.inspect(vmId), null);
  });

  it('lists every capsul with its state', async () => {
    const { clock, driver } = await running();
    await driver.create(otherVmId, spec);
    clock.advance(0);
    assert.deepEqual(await driver.list(), [
      { vmId, state: 'running' },
      { vmId: otherVmId, state: 'stopped' },
    ]);
  });

  it('reports a crashed capsul as crashed', async () => {
    const { driver } = await running();
    driver.crash(vmId);
    assert.deepEqual(await driver.list(), [{ vmId, state: 'crashed' }]);
  });

  it('refuses to create a capsul that already exists', async () => {
    const { driver } = await running();
    await assert.rejects(driver.create(vmId, spec), refusal(/^capsul capsul-a1b2c3d4e5 already exists on this host$/));
  });

  for (const operation of ['start', 'stop', 'forceStop'] as const) {
    it(`refuses to ${operation} a capsul that is not there`, async () => {
      const { driver } = setUp();
      await assert.rejects(driver[operation](vmId), refusal(/^there is no capsul capsul-a1b2c3d4e5 on this host$/));
    });
  }

  it('answers null when asked about a capsul that is not there', async () => {
    const { driver } = setUp();
    assert.equal(await driver.inspect(vmId), null);
  });

  it('refuses a create that needs more memory than is free, saying how much is', async () => {
    const { driver } = setUp({ memoryMb: 2048 });
    await driver.create(vmId, { ...spec, memoryMb: 1536 });
    await assert.rejects(
      driver.create(otherVmId, { ...spec, memoryMb: 1024 }),
      refusal(/^not enough memory for capsul capsul-f6g7h8i9j0: it needs 1024 MB, 512 MB of 2048 MB are free$/),
    );
  });

  it('counts a stopped capsul’s memory as used', async () => {
    const { driver } = setUp({ memoryMb: 2048 });
    await driver.create(vmId, { ...spec, memoryMb: 2048 });
    await driver.forceStop(vmId);
    await assert.rejects(driver.create(otherVmId, { ...spec, memoryMb: 512 }), refusal(/not enough memory/));
  });

  it('frees a deleted capsul’s memory', async () => {
    const { driver } = setUp({ memoryMb: 2048 });
    await driver.create(vmId, { ...spec, memoryMb: 2048 });
    await driver.delete(vmId);
    await driver.create(otherVmId, { ...spec, memoryMb: 2048 });
    assert.deepEqual(
      (await driver.list()).map((vm) => vm.vmId),
      [otherVmId],
    );
  });

  it('offers the capacity it was given', async () => {
    const { driver } = setUp({ memoryMb: 2048 });
    await driver.create(vmId, spec);
    assert.deepEqual(await driver.capacity(), { memoryMb: 2048, vcpus: 4 });
  });

  it('refuses an id that is not a capsul id', async () => {
    const { driver } = setUp();
    await assert.rejects(driver.create('capsul-1; rm -rf /', spec), refusal(/is not a capsul id/));
    await assert.rejects(driver.delete('../capsul-a1b2c3d4e5'), refusal(/is not a capsul id/));
  });

  it('refuses a spec the libvirt driver would refuse', async () => {
    const { driver } = setUp();
    await assert.rejects(driver.create(vmId, { ...spec, imageFile: '../../etc/shadow' }), refusal(/is not an image file name/));
    await assert.rejects(driver.create(vmId, { ...spec, sshPublicKeys: [] }), refusal(/1 to 20 SSH public keys/));
    await assert.rejects(driver.create(vmId, { ...spec, memoryMb: 0 }), refusal(/is not between 1 and/));
    assert.deepEqual(await driver.list(), []);
  });
});

describe('SimulatedDriver with a state file', () => {
  const dirs: string[] = [];
  after(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  /**
   * A driver on its own state file. `crash()` abandons the driver with its clock, as kill -9 takes the
   * old process's timers with it, and builds the next one on a new clock that starts at the same time.
   */
  function durable(options: { memoryMb?: number } = {}) {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'capsul-simulated-'));
    dirs.push(dir);
    const stateFile = path.join(dir, 'simulated-capsuls.json');
    const build = (clock: ManualClock) =>
      new SimulatedDriver({ clock, provisionMs, stopMs, capacity: { memoryMb: options.memoryMb ?? 8192, vcpus: 4 }, stateFile });
    const world = {
      stateFile,
      clock: new ManualClock(1_700_000_000_000),
      driver: undefined as unknown as SimulatedDriver,
      stored: () => JSON.parse(readFileSync(stateFile, 'utf8')) as { capsuls: Record<string, unknown>[] },
      crash(downMs = 0) {
        world.clock = new ManualClock(world.clock.now() + downMs);
        world.driver = build(world.clock);
        return world.driver;
      },
    };
    world.driver = build(world.clock);
    return world;
  }

  it('starts empty when the state file is not there yet, and writes none until something changes', async () => {
    const { driver, stateFile } = durable();
    assert.deepEqual(await driver.list(), []);
    assert.equal(existsSync(stateFile), false);
  });

  it('keeps running capsuls, their addresses and host keys over a reload', async () => {
    const world = durable();
    await world.driver.create(vmId, spec);
    await world.driver.create(otherVmId, spec);
    world.clock.advance(provisionMs);
    const before = [await world.driver.inspect(vmId), await world.driver.inspect(otherVmId)];
    assert.equal(before[0]?.state, 'running');

    const reloaded = world.crash();
    assert.deepEqual([await reloaded.inspect(vmId), await reloaded.inspect(otherVmId)], before);
    assert.deepEqual(await reloaded.list(), [
      { vmId, state: 'running' },
      { vmId: otherVmId, state: 'running' },
    ]);
    assert.equal(world.clock.pendingTimers, 0, 'nothing under way, nothing re-armed');
  });

  it('runs a capsul still provisioning at the crash at its original ready time after a reload', async () => {
    const world = durable();
    const createdAt = world.clock.now();
    await world.driver.create(vmId, spec);
    world.clock.advance(provisionMs / 4);
    assert.equal(world.stored().capsuls[0]!.readyAtMs, createdAt + provisionMs, 'the absolute time it will be ready');

    const reloaded = world.crash(provisionMs / 4);
    assert.equal((await reloaded.inspect(vmId))?.state, 'stopped', 'still provisioning after the reload');
    world.clock.advance(provisionMs / 2 - 1);
    assert.equal((await reloaded.inspect(vmId))?.state, 'stopped', 'not a moment early');
    world.clock.advance(1);
    assert.equal(world.clock.now(), createdAt + provisionMs);
    const info = await reloaded.inspect(vmId);
    assert.equal(info?.state, 'running');
    assert.ok(info.ipv4?.startsWith('192.0.2.'), `ipv4 ${info.ipv4}`);
    assert.equal(world.stored().capsuls[0]!.state, 'running', 'the timed transition is saved too');
    assert.equal(world.stored().capsuls[0]!.readyAtMs, undefined);
  });

  it('applies a transition that fell due while no driver was running at once on reload', async () => {
    const world = durable();
    await world.driver.create(vmId, spec);
    await world.driver.create(otherVmId, spec);
    world.clock.advance(provisionMs);
    await world.driver.stop(otherVmId); // a clean shutdown under way
    await world.driver.create(nthVmId(3), spec);
    const reloaded = world.crash(provisionMs + stopMs);
    assert.deepEqual(await reloaded.list(), [
      { vmId: nthVmId(3), state: 'running' },
      { vmId, state: 'running' },
      { vmId: otherVmId, state: 'stopped' },
    ]);
    assert.equal(world.clock.pendingTimers, 0);
    assert.deepEqual(
      world.stored().capsuls.map((capsul) => capsul.state),
      ['running', 'running', 'stopped'],
      'and saved',
    );
  });

  it('re-arms a pending clean shutdown with the delay that was left', async () => {
    const world = durable();
    await world.driver.create(vmId, spec);
    world.clock.advance(provisionMs);
    await world.driver.stop(vmId);
    world.clock.advance(stopMs / 4);
    const reloaded = world.crash(stopMs / 4);
    world.clock.advance(stopMs / 2 - 1);
    assert.equal((await reloaded.inspect(vmId))?.state, 'running');
    world.clock.advance(1);
    assert.equal((await reloaded.inspect(vmId))?.state, 'stopped');
  });

  it('keeps deleted capsuls deleted, and force-stopped, started and crashed ones as they were', async () => {
    const world = durable();
    await world.driver.create(vmId, spec);
    await world.driver.create(otherVmId, spec);
    await world.driver.create(nthVmId(3), spec);
    world.clock.advance(provisionMs);
    await world.driver.delete(vmId);
    await world.driver.forceStop(otherVmId);
    world.driver.crash(nthVmId(3));
    const reloaded = world.crash();
    assert.equal(await reloaded.inspect(vmId), null);
    assert.deepEqual(await reloaded.list(), [
      { vmId: nthVmId(3), state: 'crashed' },
      { vmId: otherVmId, state: 'stopped' },
    ]);
    await reloaded.start(otherVmId);
    assert.deepEqual(await world.crash().list(), [
      { vmId: nthVmId(3), state: 'crashed' },
      { vmId: otherVmId, state: 'running' },
    ]);
  });

  it('keeps a capsul deleted while provisioning deleted, with no timer left to revive it', async () => {
    const world = durable();
    await world.driver.create(vmId, spec);
    await world.driver.delete(vmId);
    const reloaded = world.crash();
    world.clock.advance(provisionMs);
    assert.deepEqual(await reloaded.list(), []);
    assert.equal(world.clock.pendingTimers, 0);
  });

  it('keeps addresses unique across a reload, reusing only a deleted capsul’s', async () => {
    const world = durable({ memoryMb: 64 * 1024 });
    for (let n = 0; n < 5; n++) await world.driver.create(nthVmId(n), spec);
    await world.driver.delete(nthVmId(1));
    world.clock.advance(provisionMs);
    const reloaded = world.crash();
    for (let n = 5; n < 8; n++) await reloaded.create(nthVmId(n), spec);
    world.clock.advance(provisionMs);
    const ids = [0, 2, 3, 4, 5, 6, 7].map(nthVmId);
    const infos = await Promise.all(ids.map((id) => reloaded.inspect(id)));
    const ipv4s = infos.map((info) => info?.ipv4);
    const ipv6s = infos.map((info) => info?.ipv6);
    assert.equal(new Set(ipv4s).size, ids.length, `unique IPv4s: ${ipv4s.join(' ')}`);
    assert.equal(new Set(ipv6s).size, ids.length, `unique IPv6s: ${ipv6s.join(' ')}`);
    assert.deepEqual(ipv4s, ['192.0.2.2', '192.0.2.4', '192.0.2.5', '192.0.2.6', '192.0.2.3', '192.0.2.7', '192.0.2.8']);
    await assert.rejects(reloaded.create(nthVmId(0), spec), refusal(/already exists/));
  });

  it('counts reloaded capsuls’ memory as used', async () => {
    const world = durable({ memoryMb: 2048 });
    await world.driver.create(vmId, spec);
    await world.driver.create(otherVmId, spec);
    await assert.rejects(world.crash().create(nthVmId(3), spec), refusal(/not enough memory/));
  });

  it('refuses a state file it cannot read, naming it', () => {
    const { stateFile } = durable();
    const refusesFile = (error: unknown) => error instanceof DriverError && error.message.includes(stateFile);
    writeFileSync(stateFile, '{"version":1,"capsuls":[{"vmId":"nonsense"}]}');
    assert.throws(() => new SimulatedDriver({ clock: new ManualClock(), stateFile }), refusesFile);
    writeFileSync(stateFile, 'not json');
    assert.throws(() => new SimulatedDriver({ clock: new ManualClock(), stateFile }), refusesFile);
  });
});
