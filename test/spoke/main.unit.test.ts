// The spoke's configuration: each variable checked, each mistake named in one line.
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { loadDriver, readSpokeConfig, runSpoke, SpokeConfigError } from '../../src/spoke/main.ts';

const valid = {
  HUB_URL: 'https://hub.example.org',
  SPOKE_HOST_ID: 'host-a',
  SPOKE_HOST_TOKEN: 'token-0123456789abcdefghij',
  SPOKE_DRIVER: 'simulated',
};

describe('spoke configuration', () => {
  it('reads a valid configuration, with the data dir named after the host by default', () => {
    assert.deepEqual(readSpokeConfig(valid), {
      hubUrl: 'https://hub.example.org',
      hostId: 'host-a',
      token: valid.SPOKE_HOST_TOKEN,
      driver: 'simulated',
      dataDir: path.join('.data', 'spoke-host-a'),
      imageDir: null,
      diskDir: null,
    });
    assert.equal(readSpokeConfig({ ...valid, SPOKE_DATA_DIR: '/var/lib/capsul-spoke' }).dataDir, '/var/lib/capsul-spoke');
  });

  it('reads the libvirt directories', () => {
    const config = readSpokeConfig({ ...valid, SPOKE_DRIVER: 'libvirt', SPOKE_IMAGE_DIR: '/tank/img', SPOKE_DISK_DIR: '/tank/vm' });
    assert.deepEqual([config.driver, config.imageDir, config.diskDir], ['libvirt', '/tank/img', '/tank/vm']);
  });

  for (const [change, message] of [
    [{ HUB_URL: undefined }, /^HUB_URL is not set/],
    [{ HUB_URL: 'http://hub.example.org' }, /^HUB_URL must use https \(plain http only to 127\.0\.0\.0\/8, ::1 or localhost\)/],
    [{ HUB_URL: 'http://192.168.1.10:3000' }, /^HUB_URL must use https/],
    [
      { HUB_URL: 'https://hub-a.example.org,,https://hub-b.example.org' },
      /^HUB_URL must be one hub URL or several separated by commas, with none empty/,
    ],
    [{ HUB_URL: 'https://hub-a.example.org,https://hub-a.example.org' }, /^HUB_URL lists https:\/\/hub-a\.example\.org\/ twice/],
    [{ HUB_URL: 'https://hub-a.example.org,http://hub-b.example.org' }, /^HUB_URL must use https/],
    [{ SPOKE_HOST_ID: '' }, /^SPOKE_HOST_ID is not set/],
    [{ SPOKE_HOST_ID: 'Host_A' }, /^SPOKE_HOST_ID must be 1 to 63 lowercase letters, digits and inner dashes, not "Host_A"/],
    [{ SPOKE_HOST_ID: '../etc' }, /^SPOKE_HOST_ID must be/],
    [{ SPOKE_HOST_TOKEN: undefined }, /^SPOKE_HOST_TOKEN is not set/],
    [{ SPOKE_HOST_TOKEN: 'two words' }, /^SPOKE_HOST_TOKEN must be the token as printed/],
    [{ SPOKE_DRIVER: undefined }, /^SPOKE_DRIVER is not set: libvirt or simulated/],
    [{ SPOKE_DRIVER: 'qemu' }, /^SPOKE_DRIVER must be libvirt or simulated, not "qemu"/],
    [{ SPOKE_DRIVER: 'libvirt', SPOKE_DISK_DIR: '/tank/vm' }, /^SPOKE_IMAGE_DIR is not set/],
    [{ SPOKE_DRIVER: 'libvirt', SPOKE_IMAGE_DIR: 'img', SPOKE_DISK_DIR: '/tank/vm' }, /^SPOKE_IMAGE_DIR must be an absolute path/],
  ] as const) {
    it(`refuses ${JSON.stringify(change)}`, () => {
      assert.throws(
        () => readSpokeConfig({ ...valid, ...change }),
        (error: Error) => error instanceof SpokeConfigError && message.test(error.message) && !error.message.includes('\n'),
      );
    });
  }

  it('never repeats a refused token in its message', () => {
    const token = 'secret with space';
    assert.throws(
      () => readSpokeConfig({ ...valid, SPOKE_HOST_TOKEN: token }),
      (error: Error) => !error.message.includes(token),
    );
  });

  it('loads each driver by name, the simulated one announcing itself', async () => {
    const lines: string[] = [];
    const simulated = await loadDriver(readSpokeConfig(valid), (line) => lines.push(line));
    assert.equal(simulated.name, 'simulated');
    assert.equal(lines.length, 1);
    const libvirt = await loadDriver(
      readSpokeConfig({ ...valid, SPOKE_DRIVER: 'libvirt', SPOKE_IMAGE_DIR: '/tank/img', SPOKE_DISK_DIR: '/tank/vm' }),
      () => {},
    );
    assert.equal(libvirt.name, 'libvirt');
  });

  it('runSpoke refuses an http HUB_URL to another machine in one line and exits 1', async () => {
    const lines: string[] = [];
    const code = await runSpoke({ ...valid, HUB_URL: 'http://hub.example.org' }, (line) => lines.push(line), { handleSignals: false });
    assert.equal(code, 1);
    assert.deepEqual(lines, [
      'spoke cannot start: HUB_URL must use https (plain http only to 127.0.0.0/8, ::1 or localhost), not http://hub.example.org',
    ]);
  });
});
