// runSpoke end to end against the fake hub: the simulated driver loaded by name runs a create; a
// refused token ends the process with one line and exit code 1.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { runSpoke } from '../../src/spoke/main.ts';
import { FakeDriver } from './fake-driver.ts';
import { FakeHub } from './fake-hub.ts';
import { fastTimings, newVmId, operation, tempDataDir, waitFor } from './support.ts';

let hub: FakeHub;
let data: ReturnType<typeof tempDataDir>;
beforeEach(async () => {
  hub = new FakeHub();
  await hub.up();
  data = tempDataDir();
});
afterEach(async () => {
  await hub.down();
  data.remove();
});

const env = () => ({
  HUB_URL: hub.url,
  SPOKE_HOST_ID: hub.hostId,
  SPOKE_HOST_TOKEN: hub.token,
  SPOKE_DRIVER: 'simulated',
  SPOKE_DATA_DIR: data.dir,
});

describe('runSpoke', () => {
  it('exits 1 with one line when the hub refuses the token, never logging the token', async () => {
    const lines: string[] = [];
    const wrongToken = 'wrong-token-0123456789abcdef';
    const code = await runSpoke({ ...env(), SPOKE_HOST_TOKEN: wrongToken }, (line) => lines.push(line), {
      handleSignals: false,
      driver: new FakeDriver(),
      agent: fastTimings,
    });
    assert.equal(code, 1);
    const refusals = lines.filter((line) => /refused/.test(line));
    assert.deepEqual(refusals, [
      "the hub refused this host's token (HTTP 401): stopping the spoke (check SPOKE_HOST_ID and SPOKE_HOST_TOKEN)",
    ]);
    assert.ok(lines.every((line) => !line.includes(wrongToken) && !line.includes(hub.token)));
  });

  it('loads the simulated driver by name, runs a create to running, and exits 0 once stopped', async () => {
    const lines: string[] = [];
    const stop = new AbortController();
    const exited = runSpoke(env(), (line) => lines.push(line), { handleSignals: false, signal: stop.signal, agent: fastTimings });
    const create = operation('create', newVmId());
    hub.addOperation(create);
    await waitFor('the create to be completed', () => hub.completed.has(create.id), 15_000);
    assert.deepEqual(
      hub.reportsFor(create.id).map((report) => report.type),
      ['provisioned', 'state'],
    );
    assert.match(hub.heartbeats[0]!.agentVersion, /^capsul-spoke\/\d+\.\d+\.\d+/);
    stop.abort();
    assert.equal(await exited, 0);
    assert.ok(
      lines.some((line) => line.includes('simulated driver')),
      'the simulated driver announces itself',
    );
    assert.equal(lines.at(-1), 'spoke stopped');
  });
});
