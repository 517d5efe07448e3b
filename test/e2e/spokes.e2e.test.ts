// The hub and two spokes as separate processes (`node bin/capsul.js serve` with CAPSUL_MODE=hub, and
// `node bin/capsul.js spoke` twice, simulated driver) over HTTP on loopback, against a database of the
// test's own. The tests run in order on the same processes, each starting from where the last one left
// the hosts: spread by capacity, full hosts refused, a wrong token, a spoke killed with SIGKILL while
// the hub has not heard how its operations ended, a spoke killed with SIGKILL while its (simulated,
// but durable) driver is still provisioning, the hub restarted while spokes report. Beta reaches
// the hub through a gate in this process that can hold its reports back, so "not heard yet" is a fact
// the test arranges rather than a race it hopes to win.
// Duplicated, reordered, stale and malformed reports, and a host reporting another host's capsul, are
// covered over HTTP in test/hub/spoke-api.int.test.ts.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { freePort } from '../../src/db/embedded.ts';
import { Hosts } from '../../src/ledger/hosts.ts';
import { operator, sshKey, testDatabase, type TestDatabase } from '../support/db.ts';
import {
  bounded as boundedWait,
  capsulFacts,
  childEnv,
  countBy,
  killHard as killProcess,
  launch as launchCapsul,
  outboxReports,
  outputTails as tailsOf,
  readJournal,
  simulatedCapsuls,
  stopHard as stopProcess,
  waitFor as waitUntil,
  type CapsulFacts,
  type Launched,
} from '../support/fleet.ts';
import { isAlive, runCapsul } from '../support/processes.ts';

/** Every wait in this file is bounded by this; none asserts how long anything took. */
const waitLimitMs = 90_000;
/** The simulated driver's create-to-running delay (2 s by default): shorter keeps the file quick. */
const provisionMs = 500;
/** For the test that kills a spoke while its driver provisions: long enough that the kill lands first. */
const slowProvisionMs = 8_000;
const sizeId = 'f1-s'; // 1024 MiB
// 14 + 6 slots of f1-s: 20 capsuls fill both hosts exactly, so the spread is forced to 14 and 6.
const hostSpecs = { alpha: { memoryMb: 14 * 1024, vcpus: 8 }, beta: { memoryMb: 6 * 1024, vcpus: 4 } } as const;
type HostId = keyof typeof hostSpecs;

let db: TestDatabase;
let scratchDir: string;
let hubPort: number;
let gate: ReportGate;
let hub: Launched;
const spokes = {} as Record<HostId, Launched>;
const tokens = {} as Record<HostId, string>;
const dataDirs = {} as Record<HostId, string>;
const launched: Launched[] = [];

before(async () => {
  db = await testDatabase({ host: false });
  scratchDir = mkdtempSync(path.join(os.tmpdir(), 'capsul-spokes-e2e-'));
  const hosts = new Hosts({ pool: db.pool });
  for (const hostId of Object.keys(hostSpecs) as HostId[]) {
    tokens[hostId] = (await hosts.add({ hostId, ...hostSpecs[hostId], cause: operator })).token;
    dataDirs[hostId] = path.join(scratchDir, `spoke-${hostId}`);
  }
  hubPort = await freePort();
  gate = await ReportGate.open(hubPort);
  hub = await startHub();
  spokes.alpha = await startSpoke('alpha');
  spokes.beta = await startSpoke('beta');
});

after(async () => {
  // Runs even when a test failed: nothing this file started may outlive it.
  await Promise.all(launched.map((proc) => stopHard(proc)));
  for (const proc of launched) assert.equal(isAlive(proc.child.pid!), false, `${proc.name} (pid ${proc.child.pid}) is still alive`);
  await gate?.close();
  await db?.close();
  if (scratchDir) rmSync(scratchDir, { recursive: true, force: true });
});
// Belt and braces for a runner that exits without after hooks (a timeout, an interrupt).
process.once('exit', () => {
  for (const proc of launched) if (proc.child.exitCode === null && proc.child.signalCode === null) proc.child.kill('SIGKILL');
});

/** Each capsul runs on `host` with an IPv4, placed, created and provisioned exactly once, never failed. */
async function assertCreatedOnce(vmIds: string[], host: string): Promise<void> {
  const facts = await waitFor(`the ${vmIds.length} capsuls running with an IPv4`, async () => {
    const rows = await capsulFacts(db.pool, vmIds);
    return rows.every((row) => row.state === 'running' && row.ipv4 !== null) && rows;
  });
  for (const row of facts) {
    assert.equal(row.host, host);
    assert.deepEqual(onceFacts(row), { placed: 1, creates: 1, createsCompleted: 1, provisioned: 1, failed: 0 }, row.id);
  }
  assert.deepEqual(
    (await operationsOf(vmIds, 'create')).map((op) => [op.completed, op.outcome]),
    Array(vmIds.length).fill([true, 'running']),
  );
}

describe('hub and two spokes as separate processes', () => {
  it(
    'spreads 20 capsuls by capacity over two hosts; each is placed and created once and runs with an IPv4',
    withOutput(async () => {
      const vmIds = await createCapsuls('spread@example.org', 20);

      const facts = await waitFor('20 capsuls running with an IPv4', async () => {
        const rows = await capsulFacts(db.pool, vmIds);
        return rows.every((row) => row.state === 'running' && row.ipv4 !== null) && rows;
      });
      for (const row of facts) {
        assert.match(row.ipv4!, /^\d{1,3}(\.\d{1,3}){3}$/, row.id);
        assert.deepEqual(onceFacts(row), { placed: 1, creates: 1, createsCompleted: 1, provisioned: 1, failed: 0 }, row.id);
      }
      const perHost = countBy(facts.map((row) => row.host!));
      assert.deepEqual(perHost, { alpha: 14, beta: 6 }, 'both hosts used, neither beyond its memory');
      for (const host of await new Hosts({ pool: db.pool }).list()) {
        assert.ok(host.usedMemoryMb <= host.memoryMb, `${host.id} uses ${host.usedMemoryMb} of ${host.memoryMb} MiB`);
      }

      // What the spokes themselves list: every capsul on the host the ledger placed it on, once, nowhere else.
      const listed = await waitFor('both heartbeats to list all 20 capsuls', async () => {
        const beats = await heartbeats();
        return Object.values(beats).flat().length >= vmIds.length && beats;
      });
      for (const row of facts) {
        assert.deepEqual(hostsListing(listed, row.id), [row.host], `${row.id} is listed by its host only, once`);
      }
    }),
  );

  it(
    'refuses a new capsul up front with a clear message while both hosts are full',
    withOutput(async () => {
      requireRunning();
      const free = (await new Hosts({ pool: db.pool }).list()).map((host) => [host.id, host.freeMemoryMb]);
      assert.deepEqual(
        free,
        [
          ['alpha', 0],
          ['beta', 0],
        ],
        'the previous test filled both hosts',
      );
      const before = await count('SELECT count(*)::int AS n FROM vms');
      await db.ledger.recordPayment({ email: 'full@example.org', amountCents: 10_000, cause: operator });
      await assert.rejects(
        db.ledger.createVm({ email: 'full@example.org', size: sizeId, os: 'debian12', sshPublicKeys: [sshKey], cause: operator }),
        /no host has room for a f1-s \(1024 MiB\) right now: choose a smaller size or try again later$/,
      );
      await assert.rejects(
        db.ledger.createVm({ email: 'full@example.org', size: 'f1-xs', os: 'debian12', sshPublicKeys: [sshKey], cause: operator }),
        /no host has room for a f1-xs \(512 MiB\) right now/,
      );
      assert.equal(await count('SELECT count(*)::int AS n FROM vms'), before, 'a refused capsul leaves nothing behind');
    }),
  );

  it(
    'a spoke started with a wrong token exits non-zero with one line naming the refusal',
    withOutput(async () => {
      requireRunning();
      const wrongToken = 'W'.repeat(43);
      const proc = launch(
        'spoke alpha (wrong token)',
        ['spoke'],
        spokeEnv('alpha', { SPOKE_HOST_TOKEN: wrongToken, SPOKE_DATA_DIR: path.join(scratchDir, 'wrong-token') }),
      );
      assert.equal(await bounded(`${proc.name} to exit`, proc.exited), 1);
      const lines = proc.output().trimEnd().split('\n');
      const refusal =
        "capsul spoke: the hub refused this host's token (HTTP 401): stopping the spoke (check SPOKE_HOST_ID and SPOKE_HOST_TOKEN)";
      assert.deepEqual(
        lines.filter((line) => /refused/i.test(line)),
        [refusal],
      );
      assert.equal(lines.at(-1), refusal, 'its last word');
      assert.ok(!proc.output().includes(wrongToken), 'the token is never printed');
      assert.ok(isAlive(spokes.alpha.child.pid!), 'the real alpha spoke is untouched');
    }),
  );

  it(
    'SIGKILL of a spoke whose operations the hub has not heard the end of: after a restart each completes once',
    withOutput(async () => {
      requireRunning();
      // Room on beta: three of its capsuls go.
      const beforeKill = await capsulFacts(db.pool, await capsulsOn('beta'));
      const freed = beforeKill.slice(0, 3).map((row) => row.id);
      for (const vmId of freed) await db.ledger.deleteVm(vmId, { ...operator, reason: 'room for the next test' });
      await waitFor('three capsuls on beta deleted', async () =>
        (await capsulFacts(db.pool, freed)).every((row) => row.state === 'deleted'),
      );

      // Beta's reports stop reaching the hub (503): its outcomes can only wait in its outbox.
      gate.holdReports = true;
      const { vmIds, creates } = await threeCreatesOnBeta('killed@example.org');
      const createIds = creates.map((op) => op.id);
      // The spoke journals an outcome, then puts its reports in the outbox: wait for the latter.
      await waitFor("the three outcomes in beta's outbox", async () => {
        const queued = outboxReports(dataDirs.beta).filter((report) => createIds.includes(report.operationId ?? ''));
        return queued.length === 6;
      });
      const queued = outboxReports(dataDirs.beta).filter((report) => createIds.includes(report.operationId ?? ''));
      assert.deepEqual(countBy(queued.map((report) => report.type)), { provisioned: 3, state: 3 });
      assert.deepEqual(
        createIds.filter((id) => !readJournal(dataDirs.beta).finished.includes(id)),
        [],
        'journaled as finished',
      );
      await waitFor('beta to try to report them', async () => gate.heldReports > 0);
      assert.deepEqual(
        (await operationsOf(vmIds, 'create')).map((op) => op.completed),
        [false, false, false],
        'the hub has not heard',
      );

      await killHard(spokes.beta);
      gate.holdReports = false;
      const restartedAt = new Date();
      spokes.beta = await startSpoke('beta');

      await assertCreatedOnce(vmIds, 'beta');

      // Ran once: the journal, which both beta processes share, started each operation once and never
      // again after the restart, although the hub delivered them again.
      const journal = readJournal(dataDirs.beta);
      const betaLog = launched
        .filter((proc) => proc.name === 'spoke beta')
        .map((proc) => proc.output())
        .join('');
      for (const [i, id] of createIds.entries()) {
        assert.equal(journal.started.filter((started) => started === id).length, 1, `operation ${id} started once`);
        // The line the spoke writes just before it calls the driver for a new operation.
        const driverCalls = betaLog
          .split('\n')
          .filter((line) => line === `capsul spoke: operation ${id}: create capsul ${creates[i]!.vmId}`);
        assert.equal(driverCalls.length, 1, `operation ${id} reached the driver once over both beta processes`);
      }
      await waitFor('an empty outbox on beta', async () => outboxReports(dataDirs.beta).length === 0);
      // No capsul twice on a host. (The simulated driver keeps its capsuls in the data dir, so a rerun create
      // would be refused as already existing and show above as a VmFailed.)
      const listed = await waitFor('a heartbeat from the restarted beta', async () => {
        const { rows } = await db.pool.query(`SELECT 1 FROM host_heartbeats WHERE host_id = 'beta' AND last_seen > $1`, [restartedAt]);
        return rows.length === 1 && heartbeats();
      });
      for (const vmId of vmIds) assert.ok(hostsListing(listed, vmId).length <= 1 && !hostsListing(listed, vmId).includes('alpha'), vmId);
      assert.equal(new Set(listed.beta ?? []).size, (listed.beta ?? []).length, 'beta lists no capsul twice');
    }),
  );

  it(
    'SIGKILL of a spoke while its driver is still provisioning: the capsuls outlive it and each create completes once',
    withOutput(async () => {
      requireRunning();
      // Room on beta again: three of its capsuls go.
      const freed = (await capsulsOn('beta')).slice(0, 3);
      for (const vmId of freed) await db.ledger.deleteVm(vmId, { ...operator, reason: 'room for the next test' });
      await waitFor('three capsuls on beta deleted', async () =>
        (await capsulFacts(db.pool, freed)).every((row) => row.state === 'deleted'),
      );

      // A beta whose capsuls take long enough to provision that the kill certainly lands while they do.
      await killHard(spokes.beta);
      const slowBeta = await startSpoke('beta', { SPOKE_SIMULATED_PROVISION_MS: String(slowProvisionMs) });
      spokes.beta = slowBeta;
      const { vmIds, creates } = await threeCreatesOnBeta('provisioning@example.org');
      const createIds = creates.map((op) => op.id);
      const driverCall = (i: number) => `capsul spoke: operation ${createIds[i]}: create capsul ${creates[i]!.vmId}`;
      // In the driver's hands: beta called it for each, and the driver saved each capsul as provisioning.
      await waitFor('beta to hand the three creates to its driver', async () => {
        const lines = slowBeta.output().split('\n');
        const saved = simulatedCapsuls(dataDirs.beta).filter((capsul) => vmIds.includes(capsul.vmId));
        return createIds.every((_, i) => lines.includes(driverCall(i))) && saved.length === vmIds.length;
      });
      const provisioning = simulatedCapsuls(dataDirs.beta).filter((capsul) => vmIds.includes(capsul.vmId));
      const killedAt = Date.now();
      assert.ok(
        provisioning.every((capsul) => capsul.readyAtMs !== undefined && capsul.readyAtMs > killedAt),
        `all three still provisioning at the kill: ${JSON.stringify(provisioning)}`,
      );
      await killHard(slowBeta);
      assert.deepEqual(
        createIds.filter((id) => readJournal(dataDirs.beta).finished.includes(id)),
        [],
        'none finished before the kill',
      );
      assert.deepEqual(
        (await operationsOf(vmIds, 'create')).map((op) => op.completed),
        [false, false, false],
        'the hub has not heard',
      );

      // The same data dir and token; the provisioning delay left is the driver's to keep, not the new process's.
      const restartedAt = new Date();
      spokes.beta = await startSpoke('beta');
      const restarted = spokes.beta;

      await assertCreatedOnce(vmIds, 'beta');

      // Run once: started once in the journal, handed to the driver once, and watched to its end after the restart.
      const journal = readJournal(dataDirs.beta);
      const restartedLines = restarted.output().split('\n');
      for (const [i, id] of createIds.entries()) {
        assert.equal(journal.started.filter((started) => started === id).length, 1, `operation ${id} started once`);
        assert.equal(
          slowBeta
            .output()
            .split('\n')
            .filter((line) => line === driverCall(i)).length,
          1,
          `operation ${id} reached the driver once`,
        );
        assert.ok(!restartedLines.includes(driverCall(i)), `operation ${id} did not reach the driver again after the restart`);
        assert.ok(
          restartedLines.some(
            (line) => line.startsWith(`capsul spoke: operation ${id}: create capsul ${creates[i]!.vmId}`) && line.endsWith('watching it'),
          ),
          `operation ${id} watched after the restart`,
        );
      }
      await waitFor('an empty outbox on beta', async () => outboxReports(dataDirs.beta).length === 0);

      // The restarted beta lists what the killed one had made, each capsul once: no create ran twice.
      const listed = await waitFor('a heartbeat from the restarted beta', async () => {
        const { rows } = await db.pool.query(`SELECT 1 FROM host_heartbeats WHERE host_id = 'beta' AND last_seen > $1`, [restartedAt]);
        return rows.length === 1 && heartbeats();
      });
      for (const vmId of vmIds) assert.deepEqual(hostsListing(listed, vmId), ['beta'], `${vmId} is listed by beta only, once`);
      assert.deepEqual(
        [...(listed.beta ?? [])].sort(),
        (await capsulsOn('beta')).sort(),
        'beta lists exactly the capsuls the ledger placed on it',
      );
    }),
  );

  it(
    'restarting the hub while spokes report deletions loses and doubles no report',
    withOutput(async () => {
      requireRunning();
      const vmIds = (await db.pool.query(`SELECT id FROM vms WHERE state <> 'deleted' ORDER BY id`)).rows.map((row) => row.id as string);
      assert.equal(vmIds.length, 20, 'the previous tests left both hosts full');
      const deletedBefore = await count(`SELECT count(*)::int AS n FROM emt_messages WHERE message_type = 'VmDeleted'`);

      // Beta's reports are held so that some are certainly outstanding when the hub goes down.
      gate.holdReports = true;
      for (const vmId of vmIds) await db.ledger.deleteVm(vmId, { ...operator, reason: 'end of the test' });
      const betaDeletes = await waitFor("beta's delete operations assigned", async () => {
        const ops = (await operationsOf(vmIds, 'delete')).filter((op) => op.host === 'beta');
        return ops.length === 6 && ops.map((op) => op.id);
      });
      await waitFor("beta's six outcomes in its outbox", async () => {
        const outstanding = outboxReports(dataDirs.beta).filter((report) => betaDeletes.includes(report.operationId ?? ''));
        return outstanding.length === 6;
      });
      const outstanding = outboxReports(dataDirs.beta).filter((report) => betaDeletes.includes(report.operationId ?? ''));
      assert.deepEqual(countBy(outstanding.map((report) => report.type)), { deleted: 6 });
      await waitFor('a first deletion reported by alpha', async () =>
        (await capsulFacts(db.pool, vmIds)).some((row) => row.state === 'deleted'),
      );

      hub.child.kill('SIGTERM');
      gate.holdReports = false; // beta's retries now meet the hub going down, then the new one
      assert.equal(await bounded('the hub to exit after SIGTERM', hub.exited), 0);
      hub = await startHub();

      const facts = await waitFor('every capsul deleted', async () => {
        const rows = await capsulFacts(db.pool, vmIds);
        return rows.every((row) => row.state === 'deleted') && rows;
      });
      for (const row of facts) assert.deepEqual([row.deletedEvents, row.deletes], [1, 1], `${row.id}: one delete operation, one VmDeleted`);
      assert.equal(
        (await count(`SELECT count(*)::int AS n FROM emt_messages WHERE message_type = 'VmDeleted'`)) - deletedBefore,
        vmIds.length,
        'as many VmDeleted events as capsuls deleted',
      );
      const deletes = await operationsOf(vmIds, 'delete');
      assert.ok(
        deletes.every((op) => op.completed && op.outcome === 'deleted'),
        'every delete operation completed',
      );
      for (const hostId of ['alpha', 'beta'] as const) {
        await waitFor(`an empty outbox on ${hostId}`, async () => outboxReports(dataDirs[hostId]).length === 0);
      }

      const verify = await runCapsul(['rebuild-projections', '--verify'], { ...db.env, CAPSUL_DATA_DIR: scratchDir }, waitLimitMs);
      assert.equal(verify.code, 0, verify.stderr);
      assert.match(verify.stdout, /projections match the events/);
    }),
  );
});

// ── processes ─────────────────────────────────────────────────────────────────────────────────────

/** `node bin/capsul.js <args>`, remembered so that the after hook can end it whatever happened. */
function launch(name: string, args: string[], env: NodeJS.ProcessEnv): Launched {
  const proc = launchCapsul(name, args, env);
  launched.push(proc);
  return proc;
}

function baseEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  // The children are programs, not test files; DATABASE_URL is set only where meant.
  return childEnv({ CAPSUL_DATA_DIR: scratchDir, ...extra });
}

function spokeEnv(hostId: HostId, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  // Beta dials the hub through the gate, so the test can hold its reports back.
  const port = hostId === 'beta' ? gate.port : hubPort;
  return baseEnv({
    HUB_URL: `http://127.0.0.1:${port}`,
    SPOKE_HOST_ID: hostId,
    SPOKE_HOST_TOKEN: tokens[hostId],
    SPOKE_DRIVER: 'simulated',
    SPOKE_DATA_DIR: dataDirs[hostId],
    SPOKE_SIMULATED_PROVISION_MS: String(provisionMs),
    ...extra,
  });
}

async function startHub(): Promise<Launched> {
  const proc = launch(
    'hub',
    ['serve'],
    baseEnv({ CAPSUL_MODE: 'hub', ...db.env, PORT: String(hubPort), HOST: '127.0.0.1', LOG_LEVEL: 'warn' }),
  );
  await waitFor('the hub to listen', async () => {
    if (proc.child.exitCode !== null) throw new Error(`the hub exited with ${proc.child.exitCode}:\n${proc.output()}`);
    return proc.output().includes('capsul hub running at');
  });
  return proc;
}

/** Starts a spoke and waits for its first heartbeat. */
async function startSpoke(hostId: HostId, extra: Record<string, string> = {}): Promise<Launched> {
  const startedAt = new Date();
  const proc = launch(`spoke ${hostId}`, ['spoke'], spokeEnv(hostId, extra));
  await waitFor(`spoke ${hostId}'s first heartbeat`, async () => {
    if (proc.child.exitCode !== null) throw new Error(`spoke ${hostId} exited with ${proc.child.exitCode}:\n${proc.output()}`);
    const { rows } = await db.pool.query('SELECT 1 FROM host_heartbeats WHERE host_id = $1 AND last_seen >= $2', [hostId, startedAt]);
    return rows.length === 1;
  });
  return proc;
}

/** Each test starts where the previous one left the processes: fail at once, not after a long wait. */
function requireRunning(): void {
  for (const proc of [hub, spokes.alpha, spokes.beta]) {
    assert.ok(
      proc && proc.child.exitCode === null && proc.child.signalCode === null,
      `${proc?.name ?? 'a process'} is not running (an earlier test failed?)`,
    );
  }
}

const killHard = (proc: Launched) => killProcess(proc, waitLimitMs);
const stopHard = (proc: Launched) => stopProcess(proc, waitLimitMs);

// ── waiting ───────────────────────────────────────────────────────────────────────────────────────

function waitFor<T>(what: string, probe: () => Promise<T | false | undefined>, timeoutMs = waitLimitMs): Promise<T> {
  return waitUntil(what, probe, timeoutMs);
}

function bounded<T>(what: string, promise: Promise<T>, timeoutMs = waitLimitMs): Promise<T> {
  return boundedWait(what, promise, timeoutMs);
}

/** A failing test's error carries the last lines of every process: that is where an e2e failure is read. */
function withOutput(body: () => Promise<void>): () => Promise<void> {
  return async () => {
    try {
      await body();
    } catch (error) {
      if (error instanceof Error) error.message += `\n${outputTails()}`;
      throw error;
    }
  };
}

function outputTails(): string {
  return tailsOf(launched);
}

// ── the ledger and the spokes' files ──────────────────────────────────────────────────────────────

/** Three new capsuls for `email` and their create operations, each assigned to beta (alpha being full). */
async function threeCreatesOnBeta(email: string): Promise<{ vmIds: string[]; creates: OperationRow[] }> {
  const vmIds = await createCapsuls(email, 3);
  const creates = await waitFor('the three create operations assigned', async () => {
    const ops = await operationsOf(vmIds, 'create');
    return ops.length === vmIds.length && ops;
  });
  assert.deepEqual(
    creates.map((op) => op.host),
    ['beta', 'beta', 'beta'],
    'alpha is full',
  );
  return { vmIds, creates };
}

async function createCapsuls(email: string, n: number): Promise<string[]> {
  await db.ledger.recordPayment({ email, amountCents: 100_000, cause: operator });
  const vmIds: string[] = [];
  for (let i = 0; i < n; i++) {
    vmIds.push((await db.ledger.createVm({ email, size: sizeId, os: 'debian12', sshPublicKeys: [sshKey], cause: operator })).vmId);
  }
  return vmIds.sort();
}

const onceFacts = ({ placed, creates, createsCompleted, provisioned, failed }: CapsulFacts) => ({
  placed,
  creates,
  createsCompleted,
  provisioned,
  failed,
});

async function capsulsOn(hostId: HostId): Promise<string[]> {
  const { rows } = await db.pool.query(`SELECT id FROM vms WHERE host = $1 AND state <> 'deleted' ORDER BY id`, [hostId]);
  return rows.map((row) => row.id as string);
}

type OperationRow = { id: string; vmId: string; host: string; completed: boolean; outcome: string | null };

async function operationsOf(vmIds: string[], kind: 'create' | 'delete'): Promise<OperationRow[]> {
  const { rows } = await db.pool.query(
    `SELECT id, vm_id AS "vmId", host, completed IS NOT NULL AS completed, outcome FROM operations
     WHERE vm_id = ANY($1::text[]) AND kind = $2 ORDER BY vm_id, created`,
    [vmIds, kind],
  );
  return rows as OperationRow[];
}

/** Each host's last heartbeat: the capsul ids it listed. */
async function heartbeats(): Promise<Record<string, string[]>> {
  const { rows } = await db.pool.query('SELECT host_id, vms FROM host_heartbeats ORDER BY host_id');
  return Object.fromEntries(rows.map((row) => [row.host_id, (row.vms as { vmId: string }[]).map((vm) => vm.vmId)]));
}

/** The hosts whose heartbeat lists `vmId`, once per listing. */
function hostsListing(beats: Record<string, string[]>, vmId: string): string[] {
  return Object.entries(beats).flatMap(([hostId, vms]) => vms.filter((id) => id === vmId).map(() => hostId));
}

async function count(sql: string): Promise<number> {
  return (await db.pool.query(sql)).rows[0].n as number;
}

// ── the gate between beta and the hub ─────────────────────────────────────────────────────────────

/** Forwards beta's requests to the hub; while `holdReports` is set, answers its reports 503 instead. */
class ReportGate {
  holdReports = false;
  heldReports = 0;

  private constructor(
    private readonly server: http.Server,
    readonly port: number,
  ) {}

  static async open(hubPort: number): Promise<ReportGate> {
    let gate: ReportGate | undefined;
    const server = http.createServer((request, response) => {
      if (gate!.holdReports && request.method === 'POST' && request.url?.endsWith('/reports')) {
        gate!.heldReports++;
        request.resume();
        response.writeHead(503, { 'content-type': 'application/json' }).end('{"error":"held back by the test"}');
        return;
      }
      const upstream = http.request(
        { host: '127.0.0.1', port: hubPort, method: request.method, path: request.url, headers: request.headers },
        (answer) => {
          response.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(response);
        },
      );
      // The hub is down: beta sees what it would see without the gate, a connection that fails.
      upstream.on('error', () => request.socket.destroy());
      response.on('close', () => upstream.destroy());
      request.pipe(upstream);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    gate = new ReportGate(server, (server.address() as AddressInfo).port);
    return gate;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }
}
