// The spoke agent against a fake hub over HTTP on 127.0.0.1 and a fake driver in memory: operations
// run at most once, reports survive the hub's absence and the spoke's restarts, refusals are clear.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { SpokeAgent } from '../../src/spoke/agent.ts';
import { abortableDelay } from '../../src/spoke/clock.ts';
import { TokenRefusedError } from '../../src/spoke/hub-client.ts';
import { textProblem } from '../../src/spoke/protocol-check.ts';
import type { Report } from '../../src/spoke/protocol.ts';
import { FakeDriver } from './fake-driver.ts';
import { FakeHub } from './fake-hub.ts';
import { clockStartMs, newAgent, newVmId, operation, outboxFiles, setAsideFiles, tempDataDir, waitFor, type TestAgent } from './support.ts';

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

let hub: FakeHub;
let driver: FakeDriver;
let data: ReturnType<typeof tempDataDir>;
let running: SpokeAgent[];

beforeEach(async () => {
  hub = new FakeHub();
  await hub.up();
  driver = new FakeDriver();
  data = tempDataDir();
  running = [];
});

afterEach(async () => {
  await Promise.all(running.map((agent) => agent.stop()));
  driver.releaseHung();
  await hub.down();
  data.remove();
});

async function startAgent(options: Parameters<typeof newAgent>[3] = {}): Promise<TestAgent> {
  const test = newAgent(hub, driver, data.dir, options);
  running.push(test.agent);
  await test.agent.start();
  return test;
}

const types = (reports: Report[]) => reports.map((report) => (report.type === 'state' ? `state ${report.state}` : report.type));

describe('spoke agent: operations', () => {
  it('creates a capsul and reports it provisioned, then running, with unique ids and observation times', async () => {
    await startAgent();
    const vmId = newVmId();
    const create = operation('create', vmId);
    hub.addOperation(create);
    await waitFor('the create to be completed', () => hub.completed.has(create.id));
    await waitFor('both reports', () => hub.reportsFor(create.id).length >= 2);

    const reports = hub.reportsFor(create.id);
    assert.deepEqual(types(reports), ['provisioned', 'state running']);
    const [provisioned] = reports;
    assert.equal(provisioned!.type, 'provisioned');
    if (provisioned!.type === 'provisioned') {
      assert.deepEqual({ ipv4: provisioned!.ipv4, ipv6: provisioned!.ipv6 }, driver.addresses(vmId));
      assert.deepEqual(provisioned!.sshHostKeys, [{ type: 'ssh-ed25519', sha256: `SHA256:${vmId}` }]);
    }
    for (const report of reports) {
      assert.match(report.id, uuidPattern);
      assert.equal(report.vmId, vmId);
      assert.ok(Date.parse(report.observedAt) >= clockStartMs, `observedAt ${report.observedAt} comes from the injected clock`);
    }
    assert.notEqual(reports[0]!.id, reports[1]!.id);
    assert.equal(driver.count('create', vmId), 1);
    await waitFor('an empty outbox', () => outboxFiles(data.dir).length === 0);
  });

  it('runs an operation once though the hub delivers it twice in a poll and again in every poll until it completes', async () => {
    hub.duplicateDeliveries = true;
    driver.bootInspects = 1_000_000; // it boots when the test says so
    await startAgent();
    const vmId = newVmId();
    const create = operation('create', vmId);
    hub.addOperation(create);
    await waitFor('four deliveries', () => (hub.deliveries.get(create.id) ?? 0) >= 4);
    driver.capsuls.get(vmId)!.bootInspects = 1;
    await waitFor('the create to be completed', () => hub.completed.has(create.id));
    assert.equal(driver.count('create', vmId), 1);
  });

  it('does not run a finished operation again when the hub delivers it after completion; it sends the same outcome again', async () => {
    const { lines } = await startAgent();
    const vmId = newVmId();
    const create = operation('create', vmId);
    hub.addOperation(create);
    await waitFor('the create to be completed', () => hub.completed.has(create.id));
    await waitFor('both reports', () => hub.reportsFor(create.id).length >= 2);
    const firstIds = hub.reportsFor(create.id).map((report) => report.id);

    hub.addOperation(create); // as if the hub had not recorded the outcome
    await waitFor('the outcome sent again', () => hub.reportsFor(create.id).length >= 4);
    assert.deepEqual(
      hub.reportsFor(create.id).map((report) => report.id),
      [...firstIds, ...firstIds],
    );
    assert.equal(driver.count('create', vmId), 1);
    assert.ok(lines.some((line) => line.includes('delivered again')));
  });

  it('runs an operation once across a restart with the same data dir', async () => {
    hub.reportsDown = true;
    const first = await startAgent();
    const vmId = newVmId();
    const create = operation('create', vmId);
    hub.addOperation(create);
    await waitFor('the outcome in the outbox', () => outboxFiles(data.dir).length === 2);
    const queued = outboxFiles(data.dir).map(
      (name) => (JSON.parse(readFileSync(path.join(data.dir, 'outbox', name), 'utf8')) as Report).id,
    );
    await first.agent.stop();

    const deliveredBefore = hub.deliveries.get(create.id)!;
    await startAgent(); // the hub still delivers the create: nothing told it the outcome yet
    await waitFor('the create delivered to the second agent', () => hub.deliveries.get(create.id)! > deliveredBefore);
    hub.reportsDown = false;
    await waitFor('the create to be completed', () => hub.completed.has(create.id));
    await waitFor('an empty outbox', () => outboxFiles(data.dir).length === 0);
    assert.deepEqual(new Set(hub.reportsFor(create.id).map((report) => report.id)), new Set(queued));
    assert.equal(driver.count('create', vmId), 1);
  });

  it('runs operations on one capsul in the order delivered: stop, start, force-stop, delete', async () => {
    const vmId = newVmId();
    driver.add(vmId, 'running');
    await startAgent();
    const steps = [operation('stop', vmId), operation('start', vmId), operation('force-stop', vmId), operation('delete', vmId)];
    for (const step of steps) hub.addOperation(step);
    await waitFor('all four to complete', () => steps.every((step) => hub.completed.has(step.id)));
    assert.deepEqual(
      steps.map((step) => types(hub.reportsFor(step.id))),
      [['state stopped'], ['provisioned', 'state running'], ['state stopped'], ['deleted']],
    );
    assert.deepEqual(
      driver.calls.filter((call) => call.method !== 'inspect' && call.vmId === vmId).map((call) => call.method),
      ['stop', 'start', 'forceStop', 'delete'],
    );
    assert.equal(driver.capsuls.has(vmId), false);
  });

  it('runs at most maxConcurrentOperations at a time; the next starts when one finishes', async () => {
    driver.bootInspects = 1_000_000; // created capsuls do not boot: each create keeps its slot while it watches
    await startAgent({ maxConcurrentOperations: 2, watchTimeoutMs: 60_000 });
    const creates = [newVmId(), newVmId(), newVmId()].map((vmId) => operation('create', vmId));
    for (const create of creates) hub.addOperation(create);
    await waitFor('two creates in the driver', () => driver.count('create') === 2);
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(driver.count('create'), 2, 'the third waits for a slot');
    const first = driver.calls.find((call) => call.method === 'create')!.vmId!;
    driver.capsuls.get(first)!.bootInspects = 1;
    await waitFor('the third create once the first is running', () => driver.count('create') === 3);
  });

  it("reports a driver failure as failed, with the driver's message, and does not retry it", async () => {
    driver.failNext('create', 'not enough memory for capsul: it needs 1024 MB, 512 MB are free');
    const { lines } = await startAgent();
    const vmId = newVmId();
    const create = operation('create', vmId);
    hub.addOperation(create);
    await waitFor('the create to be completed', () => hub.completed.has(create.id));
    const [failed] = hub.reportsFor(create.id);
    assert.equal(failed!.type, 'failed');
    if (failed!.type === 'failed') assert.equal(failed!.error, 'not enough memory for capsul: it needs 1024 MB, 512 MB are free');
    assert.equal(failed!.operationId, create.id);
    assert.equal(driver.count('create'), 1);
    assert.ok(lines.some((line) => line.includes(create.id) && line.includes('failed')));
  });

  it("cleans a driver's message of what the hub refuses before reporting it (controls, bidi, lone surrogates)", async () => {
    driver.failNext('create', 'qemu-img:\u0000 bad\r\n\u001b[31mdisk\u202e full\ud800\n\tat line 2');
    await startAgent();
    const create = operation('create', newVmId());
    hub.addOperation(create);
    await waitFor('the create to be completed', () => hub.completed.has(create.id));
    const failed = hub.reportsFor(create.id)[0]!;
    assert.ok(failed.type === 'failed');
    assert.equal(failed.error, 'qemu-img:\ufffd bad\n\ufffd[31mdisk\ufffd full\ufffd\n\tat line 2');
    assert.equal(textProblem(failed.error, true), null);
  });

  it('reports a stop of a capsul that is not on the host as failed', async () => {
    await startAgent();
    const stop = operation('stop', newVmId());
    hub.addOperation(stop);
    await waitFor('the stop to be completed', () => hub.completed.has(stop.id));
    assert.deepEqual(types(hub.reportsFor(stop.id)), ['failed']);
  });

  it('reports a malformed operation as failed without calling the driver', async () => {
    await startAgent();
    const vmId = newVmId();
    const create = { ...operation('create', vmId), spec: undefined };
    hub.addOperation(create);
    await waitFor('the create to be completed', () => hub.completed.has(create.id));
    const [failed] = hub.reportsFor(create.id);
    assert.equal(failed!.type, 'failed');
    if (failed!.type === 'failed') assert.match(failed!.error, /without a spec/);
    assert.equal(driver.count('create'), 0);
  });
});

describe('spoke agent: interrupted operations', () => {
  it('after a stop during a create the driver had carried out, watches the capsul instead of creating it again', async () => {
    driver.hangNext('create', 'after');
    const first = await startAgent();
    const vmId = newVmId();
    const create = operation('create', vmId);
    hub.addOperation(create);
    await waitFor('the create to reach the driver', () => driver.count('create', vmId) === 1);
    await first.agent.stop(); // the driver never answered: the journal says started, not called
    assert.ok(first.lines.some((line) => line.includes('still in the driver')));

    const second = await startAgent();
    await waitFor('the create to be completed', () => hub.completed.has(create.id));
    assert.deepEqual(types(hub.reportsFor(create.id)), ['provisioned', 'state running']);
    assert.equal(driver.count('create', vmId), 1);
    assert.ok(second.lines.some((line) => line.includes('interrupted by the last stop')));
  });

  it('after a stop during a create that left no capsul, reports it failed rather than running it again', async () => {
    driver.hangNext('create', 'before');
    const first = await startAgent();
    const vmId = newVmId();
    const create = operation('create', vmId);
    hub.addOperation(create);
    await waitFor('the create to reach the driver', () => driver.count('create', vmId) === 1);
    await first.agent.stop();

    await startAgent();
    await waitFor('the create to be completed', () => hub.completed.has(create.id));
    const [failed] = hub.reportsFor(create.id);
    assert.equal(failed!.type, 'failed');
    if (failed!.type === 'failed') assert.match(failed!.error, /interrupted by a spoke restart .* not on this host; not run again/);
    assert.equal(driver.count('create', vmId), 1);
    assert.equal(driver.capsuls.has(vmId), false);
  });

  it('after a stop while watching a create the driver accepted, resumes watching', async () => {
    driver.bootInspects = 1_000_000; // never boots while the first agent watches
    const first = await startAgent();
    const vmId = newVmId();
    const create = operation('create', vmId);
    hub.addOperation(create);
    await waitFor('the watch to begin', () => driver.count('inspect', vmId) > 2);
    await first.agent.stop();

    driver.capsuls.get(vmId)!.bootInspects = 1;
    const second = await startAgent();
    await waitFor('the create to be completed', () => hub.completed.has(create.id));
    assert.deepEqual(types(hub.reportsFor(create.id)), ['provisioned', 'state running']);
    assert.equal(driver.count('create', vmId), 1);
    assert.ok(second.lines.some((line) => line.includes('accepted by the driver before the last stop')));
  });

  it('refuses a second agent on the same data dir', async () => {
    await startAgent();
    const second = newAgent(hub, driver, data.dir);
    await assert.rejects(second.agent.start(), /in use by another spoke/);
  });
});

describe('spoke agent: reports and the outbox', () => {
  it('delivers reports made while the hub is down once it returns', async () => {
    const existing = newVmId();
    driver.add(existing, 'running');
    driver.bootInspects = 30;
    const { lines } = await startAgent();
    await waitFor('the first observation of the existing capsul', () => hub.received.some((report) => report.vmId === existing));
    await waitFor('an empty outbox', () => outboxFiles(data.dir).length === 0);
    const vmId = newVmId();
    const create = operation('create', vmId);
    hub.addOperation(create);
    await waitFor('the create to reach the driver', () => driver.count('create', vmId) === 1);
    await hub.down();
    driver.crash(existing);
    await waitFor('the outcome and the crash in the outbox', () => outboxFiles(data.dir).length === 3);

    await hub.up();
    await waitFor('the create to be completed', () => hub.completed.has(create.id));
    await waitFor('the crash reported', () =>
      hub.received.some((report) => report.vmId === existing && report.type === 'state' && report.state === 'crashed'),
    );
    await waitFor('an empty outbox', () => outboxFiles(data.dir).length === 0);
    assert.deepEqual(types(hub.reportsFor(create.id)), ['provisioned', 'state running']);
    assert.equal(lines.filter((line) => line.startsWith('hub unreachable')).length, 1, 'one line per outage, not one per retry');
    assert.equal(lines.filter((line) => line === 'hub reachable again').length, 1);
  });

  it('delivers reports made while the hub is down after it returns, across a restart of the agent', async () => {
    driver.bootInspects = 30;
    const first = await startAgent();
    const vmId = newVmId();
    const create = operation('create', vmId);
    hub.addOperation(create);
    await waitFor('the create to reach the driver', () => driver.count('create', vmId) === 1);
    await hub.down();
    await waitFor('the outcome in the outbox', () => outboxFiles(data.dir).length === 2);
    await first.agent.stop();

    await startAgent();
    await hub.up();
    await waitFor('the create to be completed', () => hub.completed.has(create.id));
    await waitFor('an empty outbox', () => outboxFiles(data.dir).length === 0);
    const reports = hub.reportsFor(create.id);
    assert.deepEqual(types(reports), ['provisioned', 'state running'], 'each report arrives once');
    assert.equal(driver.count('create', vmId), 1);
  });

  it('keeps reports in the outbox until the hub answers for them', async () => {
    hub.leaveReportsUnanswered = true;
    const { lines } = await startAgent();
    const vmId = newVmId();
    const create = operation('create', vmId);
    hub.addOperation(create);
    await waitFor('the reports sent at least twice', () => hub.reportsFor(create.id).length >= 4);
    assert.equal(outboxFiles(data.dir).length, 2);
    assert.ok(lines.includes('reports: the hub answered for 0 of 2 reports; the others are sent again'), lines.join('\n'));

    hub.leaveReportsUnanswered = false;
    await waitFor('an empty outbox', () => outboxFiles(data.dir).length === 0);
    assert.ok(hub.completed.has(create.id));
  });

  it('sets aside a report the hub refuses, with its reason, logged once, and delivers the ones queued behind it', async () => {
    const refused = newVmId();
    const [b, c] = [newVmId(), newVmId()];
    hub.refusedVms.add(refused);
    hub.reportsDown = true;
    driver.add(refused, 'running');
    driver.add(b, 'running');
    driver.add(c, 'stopped');
    const { lines } = await startAgent();
    await waitFor('three observations queued', () => outboxFiles(data.dir).length === 3);
    hub.reportsDown = false;
    await waitFor('an empty outbox', () => outboxFiles(data.dir).length === 0);
    assert.deepEqual(hub.reportBatches, [3], 'one batch, the refused report first');
    assert.deepEqual(
      hub.received.map((report) => report.vmId),
      [refused, b, c],
    );

    const [aside] = setAsideFiles(data.dir);
    const report = JSON.parse(readFileSync(path.join(data.dir, 'outbox-rejected', aside!), 'utf8')) as Report;
    assert.equal(report.vmId, refused);
    assert.match(
      readFileSync(path.join(data.dir, 'outbox-rejected', aside!.replace(/\.json$/, '.reason.txt')), 'utf8'),
      new RegExp(`is not on host ${hub.hostId}`),
    );
    const beats = hub.heartbeats.length;
    await waitFor('three more heartbeats', () => hub.heartbeats.length >= beats + 3);
    assert.equal(hub.received.filter((r) => r.vmId === refused).length, 1, 'never sent again');
    assert.equal(lines.filter((line) => line.includes('refused by the hub')).length, 1, lines.join('\n'));
  });

  it('splits a batch the hub refuses as malformed (400) and sets aside only the report it refuses alone', async () => {
    const poisoned = newVmId();
    const [a, b] = [newVmId(), newVmId()];
    hub.poisonVms.add(poisoned);
    hub.reportsDown = true;
    driver.add(a, 'running');
    driver.add(poisoned, 'running');
    driver.add(b, 'stopped');
    const { lines } = await startAgent();
    await waitFor('three observations queued', () => outboxFiles(data.dir).length === 3);
    hub.reportsDown = false;
    await waitFor('an empty outbox', () => outboxFiles(data.dir).length === 0);
    assert.deepEqual(hub.reportBatches, [3, 1, 1, 1], 'the batch, then its reports one by one, in order');
    assert.deepEqual(
      hub.received.map((report) => report.vmId),
      [a, b],
    );
    const aside = setAsideFiles(data.dir);
    assert.equal(aside.length, 1);
    assert.equal((JSON.parse(readFileSync(path.join(data.dir, 'outbox-rejected', aside[0]!), 'utf8')) as Report).vmId, poisoned);
    assert.match(
      readFileSync(path.join(data.dir, 'outbox-rejected', aside[0]!.replace(/\.json$/, '.reason.txt')), 'utf8'),
      /HTTP 400 \(malformed reports: /,
    );
    assert.equal(lines.filter((line) => line.includes('sending them one at a time')).length, 1);
    assert.ok(lines.some((line) => line.includes(`capsul ${poisoned}) refused by the hub, set aside`)));
  });

  it("keeps reports while the hub answers a status that says nothing about them (a proxy's 404), and delivers them after", async () => {
    hub.reportsStatus = 404;
    const vmId = newVmId();
    driver.add(vmId, 'running');
    await startAgent();
    await waitFor('the observation queued', () => outboxFiles(data.dir).length === 1);
    const beats = hub.heartbeats.length;
    await waitFor('three more heartbeats', () => hub.heartbeats.length >= beats + 3);
    assert.equal(outboxFiles(data.dir).length, 1);
    assert.deepEqual(setAsideFiles(data.dir), []);
    hub.reportsStatus = null;
    await waitFor('the observation delivered', () => hub.received.some((report) => report.vmId === vmId));
    await waitFor('an empty outbox', () => outboxFiles(data.dir).length === 0);
  });

  it("does not send an operation's refused outcome again when the hub delivers the operation again, and says so once", async () => {
    const vmId = newVmId();
    hub.refusedVms.add(vmId);
    const { lines } = await startAgent();
    const create = operation('create', vmId);
    hub.addOperation(create);
    await waitFor('the outcome set aside', () => setAsideFiles(data.dir).length === 2);
    const deliveries = hub.deliveries.get(create.id) ?? 0;
    await waitFor('three more deliveries', () => (hub.deliveries.get(create.id) ?? 0) >= deliveries + 3);
    assert.deepEqual(types(hub.reportsFor(create.id)), ['provisioned', 'state running'], 'sent once');
    assert.equal(lines.filter((line) => line.includes('the hub refused its outcome')).length, 1, lines.join('\n'));
    assert.equal(driver.count('create', vmId), 1);
    assert.equal(outboxFiles(data.dir).length, 0);
  });

  it('reports state changes seen outside operations: first sight, then a crash', async () => {
    const vmId = newVmId();
    driver.add(vmId, 'running');
    await startAgent();
    await waitFor('the first observation', () => hub.received.some((report) => report.vmId === vmId));
    driver.crash(vmId);
    await waitFor('the crash', () => hub.received.filter((report) => report.vmId === vmId).length === 2);
    const reports = hub.received.filter((report) => report.vmId === vmId);
    assert.deepEqual(types(reports), ['state running', 'state crashed']);
    assert.ok(reports.every((report) => report.operationId === null));
    assert.ok(Date.parse(reports[1]!.observedAt) >= Date.parse(reports[0]!.observedAt));
  });

  it('does not report a state again after a restart when it has not changed', async () => {
    const vmId = newVmId();
    driver.add(vmId, 'running');
    const first = await startAgent();
    await waitFor('the first observation', () => hub.received.some((report) => report.vmId === vmId));
    await first.agent.stop();
    await startAgent();
    const beats = hub.heartbeats.length;
    await waitFor('two more heartbeats', () => hub.heartbeats.length >= beats + 2);
    await waitFor('an empty outbox', () => outboxFiles(data.dir).length === 0);
    // The same report may arrive twice (stopped before the hub's answer); a new observation must not.
    assert.equal(new Set(hub.received.filter((report) => report.vmId === vmId).map((report) => report.id)).size, 1);
  });
});

describe('spoke agent: heartbeats, the token, stopping', () => {
  it('heartbeats carry the capacity, every capsul the driver lists and the agent version', async () => {
    const [a, b] = [newVmId(), newVmId()];
    driver.add(a, 'running');
    driver.add(b, 'stopped');
    await startAgent();
    await waitFor('a heartbeat', () => hub.heartbeats.length > 0);
    assert.deepEqual(hub.heartbeats[0], {
      capacity: { memoryMb: 8192, vcpus: 4 },
      vms: [
        { vmId: a, state: 'running' },
        { vmId: b, state: 'stopped' },
      ],
      agentVersion: 'capsul-spoke/test',
    });
    assert.ok(hub.seenAuth.every(({ authorization, host }) => authorization === `Bearer ${hub.token}` && host === hub.hostId));
  });

  it('leaves out of heartbeats and reports a listed name that is not a capsul id, saying so once', async () => {
    const vmId = newVmId();
    driver.add(vmId, 'running');
    driver.add('capsul-\u0000odd', 'running');
    const { lines } = await startAgent();
    await waitFor('three heartbeats', () => hub.heartbeats.length >= 3);
    assert.deepEqual(hub.heartbeats[0]!.vms, [{ vmId, state: 'running' }]);
    await waitFor('an empty outbox', () => outboxFiles(data.dir).length === 0);
    assert.deepEqual(
      hub.received.map((report) => report.vmId),
      [vmId],
    );
    assert.equal(lines.filter((line) => line.includes('not capsul ids')).length, 1);
  });

  it("says once that this host's clock is further from the hub's than the hub allows", async () => {
    const { lines } = await startAgent(); // the test clock runs in 2031
    await waitFor('three heartbeats', () => hub.heartbeats.length >= 3);
    const warnings = lines.filter((line) => line.startsWith("this host's clock is"));
    assert.equal(warnings.length, 1, lines.join('\n'));
    assert.match(warnings[0]!, /^this host's clock is \d+ s ahead of the hub's: the hub refuses reports observed more than 300 s ahead/);
  });

  it("says nothing about the clock when it agrees with the hub's", async () => {
    const { lines } = await startAgent({ clock: { nowMs: () => Date.now(), sleep: abortableDelay } });
    await waitFor('three heartbeats', () => hub.heartbeats.length >= 3);
    assert.equal(lines.filter((line) => line.includes('clock')).length, 0, lines.join('\n'));
  });

  it('stops with TokenRefusedError and one log line when the hub refuses the token, never logging it', async () => {
    hub.refuseToken = true;
    const { agent, lines } = await startAgent();
    const error = await agent.done;
    assert.ok(error instanceof TokenRefusedError);
    assert.equal(error.status, 401);
    const refusals = lines.filter((line) => line.includes('refused'));
    assert.equal(refusals.length, 1, lines.join('\n'));
    assert.match(refusals[0]!, /refused this host's token \(HTTP 401\)/);
    assert.ok(lines.every((line) => !line.includes(hub.token)));
  });

  it('stops promptly in the middle of a long poll and a long heartbeat interval', async () => {
    const { agent } = await startAgent({ pollWaitMs: 25_000, heartbeatIntervalMs: 15_000 });
    await waitFor('a poll under way', () => hub.seenAuth.length >= 2);
    await agent.stop();
    assert.equal(await agent.done, null);
  });
});
