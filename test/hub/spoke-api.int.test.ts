// The spoke API over HTTP against a real database: authentication, heartbeats, placement, operations,
// and reports (accepted, duplicate, stale, refused, malformed).
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildHub } from '../../src/hub/app.ts';
import { Hosts } from '../../src/ledger/hosts.ts';
import { placePending, scheduleDeletions } from '../../src/ledger/reactor.ts';
import { rememberedStateReports } from '../../src/domain/vm/state.ts';
import { verifyProjections } from '../../src/projections/rebuild.ts';
import type { Heartbeat, Operation, Report } from '../../src/spoke/protocol.ts';
import { operator, projectionsMatch, sshKey, testDatabase, type TestDatabase } from '../support/db.ts';

let db: TestDatabase;
let hub: FastifyInstance;
let hosts: Hosts;
const tokens: Record<string, string> = {};

before(async () => {
  db = await testDatabase({ host: false });
  hosts = new Hosts({ pool: db.pool });
  tokens.alpha = (await hosts.add({ hostId: 'alpha', memoryMb: 4096, vcpus: 4, cause: operator })).token;
  tokens.beta = (await hosts.add({ hostId: 'beta', memoryMb: 1024, vcpus: 2, cause: operator })).token;
  hub = await buildHub({ pool: db.pool });
});
after(async () => {
  await hub.close();
  await db.close();
});

const headers = (host: string, token = tokens[host]!) => ({ 'x-capsul-host': host, authorization: `Bearer ${token}` });
const beat = (vms: Heartbeat['vms'] = []): Heartbeat => ({ capacity: { memoryMb: 4096, vcpus: 4 }, vms, agentVersion: 'test' });
const heartbeat = (host: string, vms: Heartbeat['vms'] = []) =>
  hub.inject({ method: 'POST', url: '/spoke/v1/heartbeat', headers: headers(host), payload: beat(vms) });
const operations = async (host: string) =>
  (await hub.inject({ method: 'GET', url: '/spoke/v1/operations?waitMs=0', headers: headers(host) })).json().operations as Operation[];
const report = (host: string, reports: Report[]) =>
  hub.inject({ method: 'POST', url: '/spoke/v1/reports', headers: headers(host), payload: { reports } });
const reportBase = (vmId: string, operationId: string | null, observedAt = new Date()) => ({
  id: randomUUID(),
  vmId,
  operationId,
  observedAt: observedAt.toISOString(),
});

async function newCapsul(email: string): Promise<string> {
  await db.ledger.recordPayment({ email, amountCents: 10_000, cause: operator });
  return (await db.ledger.createVm({ email, size: 'f1-s', os: 'debian12', sshPublicKeys: [sshKey], cause: operator })).vmId;
}

describe('spoke API authentication', () => {
  it("refuses a missing, wrong or other host's token with 401", async () => {
    for (const h of [
      {},
      headers('alpha', 'x'.repeat(43)),
      { 'x-capsul-host': 'alpha', authorization: `Bearer ${tokens.beta}` },
      headers('nosuchhost', tokens.alpha),
    ]) {
      const response = await hub.inject({ method: 'POST', url: '/spoke/v1/heartbeat', headers: h, payload: beat() });
      assert.equal(response.statusCode, 401);
      assert.deepEqual(response.json(), { error: 'unknown host or wrong token' });
    }
  });

  it('refuses the old token after a rotation', async () => {
    const { token } = await hosts.add({ hostId: 'gamma', memoryMb: 512, vcpus: 1, cause: operator });
    const rotated = await hosts.rotateToken('gamma', operator);
    assert.equal(
      (await hub.inject({ method: 'POST', url: '/spoke/v1/heartbeat', headers: headers('gamma', token), payload: beat() })).statusCode,
      401,
    );
    assert.equal(
      (await hub.inject({ method: 'POST', url: '/spoke/v1/heartbeat', headers: headers('gamma', rotated.token), payload: beat() }))
        .statusCode,
      200,
    );
  });
});

describe('heartbeats and placement', () => {
  it('records a heartbeat and shows the host online', async () => {
    const response = await heartbeat('alpha');
    assert.equal(response.statusCode, 200);
    assert.ok(Date.parse(response.json().serverTime));
    const alpha = (await hosts.list()).find((h) => h.id === 'alpha')!;
    assert.equal(alpha.online, true);
    assert.equal((await hosts.list()).find((h) => h.id === 'beta')!.online, false);
  });

  it('refuses a malformed heartbeat with 400 and stores nothing new', async () => {
    const response = await hub.inject({
      method: 'POST',
      url: '/spoke/v1/heartbeat',
      headers: headers('alpha'),
      payload: { capacity: 'lots' },
    });
    assert.equal(response.statusCode, 400);
  });

  it('places a requested capsul on an online host with room, and hands it the create operation', async () => {
    const vmId = await newCapsul('placed@example.org');
    assert.equal(await placePending({ pool: db.pool }), 1);
    const { rows } = await db.pool.query('SELECT host, state FROM vms WHERE id = $1', [vmId]);
    assert.deepEqual(rows[0], { host: 'alpha', state: 'creating' });
    const ops = await operations('alpha');
    const create = ops.find((op) => op.vmId === vmId)!;
    assert.equal(create.kind, 'create');
    assert.deepEqual(create.spec, {
      memoryMb: 1024,
      vcpus: 1,
      imageFile: 'debian/debian-12-genericcloud-amd64.qcow2',
      sshPublicKeys: [sshKey],
    });
    assert.deepEqual(await operations('beta'), []);
    assert.equal(await placePending({ pool: db.pool }), 0, 'placing again does nothing');
  });

  it('refuses a capsul up front when no host has room', async () => {
    await db.ledger.recordPayment({ email: 'big@example.org', amountCents: 100_000, cause: operator });
    await assert.rejects(
      db.ledger.createVm({ email: 'big@example.org', size: 'f1-xx', os: 'debian12', sshPublicKeys: [sshKey], cause: operator }),
      /no host has room for a f1-xx \(8192 MiB\) right now/,
    );
  });
});

describe('reports', () => {
  it('records provisioning and state, completes the operation, and shows IPs in vms', async () => {
    await heartbeat('alpha');
    const vmId = await newCapsul('reports@example.org');
    await placePending({ pool: db.pool });
    const create = (await operations('alpha')).find((op) => op.vmId === vmId)!;
    const provisioned: Report = {
      ...reportBase(vmId, create.id),
      type: 'provisioned',
      ipv4: '192.0.2.7',
      ipv6: '2001:db8::7',
      sshHostKeys: [{ type: 'ssh-ed25519', sha256: 'SHA256:x' }],
    };
    const running: Report = { ...reportBase(vmId, create.id), type: 'state', state: 'running' };
    const response = await report('alpha', [provisioned, running]);
    assert.equal(response.statusCode, 200);
    assert.deepEqual(
      response.json().results.map((r: { status: string }) => r.status),
      ['accepted', 'accepted'],
    );
    const { rows } = await db.pool.query('SELECT state, last_seen_ipv4, last_seen_ipv6 FROM vms WHERE id = $1', [vmId]);
    assert.deepEqual(rows[0], { state: 'running', last_seen_ipv4: '192.0.2.7', last_seen_ipv6: '2001:db8::7' });
    assert.equal(
      (await operations('alpha')).some((op) => op.id === create.id),
      false,
      'completed operations are no longer delivered',
    );

    const again = await report('alpha', [provisioned, running]);
    assert.deepEqual(
      again.json().results.map((r: { status: string }) => r.status),
      ['duplicate', 'duplicate'],
    );
    // Older than the state last recorded (and still after the capsul was requested): stale.
    const stale: Report = { ...reportBase(vmId, null, new Date(Date.parse(running.observedAt) - 1_000)), type: 'state', state: 'stopped' };
    assert.deepEqual((await report('alpha', [stale])).json().results[0].status, 'stale');
    assert.equal((await db.pool.query('SELECT state FROM vms WHERE id = $1', [vmId])).rows[0].state, 'running');
  });

  it('refuses a report about a capsul on another host, or an unknown capsul, and logs nothing into the ledger', async () => {
    await heartbeat('alpha');
    const vmId = await newCapsul('other-host@example.org');
    await placePending({ pool: db.pool });
    const before = (await db.pool.query('SELECT count(*)::int AS n FROM emt_messages')).rows[0].n;
    const wrongHost = await report('beta', [{ ...reportBase(vmId, null), type: 'state', state: 'stopped' }]);
    assert.equal(wrongHost.statusCode, 200);
    assert.equal(wrongHost.json().results[0].status, 'refused');
    assert.match(wrongHost.json().results[0].error, /is placed on host alpha, not beta/);
    const unknown = await report('alpha', [{ ...reportBase('capsul-zzzzzzzzzz', null), type: 'deleted' }]);
    assert.equal(unknown.json().results[0].status, 'refused');
    assert.equal((await db.pool.query('SELECT count(*)::int AS n FROM emt_messages')).rows[0].n, before);
  });

  it('refuses a malformed request with 400 and a one-line reason', async () => {
    for (const payload of [
      { reports: [] },
      { reports: [{ id: 'x', vmId: 'nope', type: 'state' }] },
      { reports: Array.from({ length: 101 }, () => ({ ...reportBase('capsul-aaaaaaaaaa', null), type: 'deleted' })) },
      'not json at all',
    ]) {
      const response = await hub.inject({
        method: 'POST',
        url: '/spoke/v1/reports',
        headers: { ...headers('alpha'), 'content-type': 'application/json' },
        payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
      });
      assert.equal(response.statusCode, 400, JSON.stringify(payload).slice(0, 80));
      assert.match(response.json().error, /^[^\n]+$/);
    }
  });

  it('refuses a malformed report on its own, naming the problem (the rest of input checking: spoke-input.int.test.ts)', async () => {
    const response = await report('alpha', [{ ...reportBase('capsul-aaaaaaaaaa', null), type: 'exploded' } as unknown as Report]);
    assert.equal(response.statusCode, 200);
    assert.deepEqual(response.json().results[0].status, 'refused');
    assert.equal(response.json().results[0].error, 'malformed report: type must be provisioned, state, failed or deleted');
  });

  it('turns a deletion request into a delete operation for the host, and its report into the deletion', async () => {
    await heartbeat('alpha');
    const vmId = await newCapsul('delete@example.org');
    await placePending({ pool: db.pool });
    await db.ledger.deleteVm(vmId, { ...operator, reason: 'customer request' });
    assert.equal(await scheduleDeletions({ pool: db.pool }), 1);
    assert.equal(await scheduleDeletions({ pool: db.pool }), 0, 'scheduled once');
    const remove = (await operations('alpha')).find((op) => op.vmId === vmId && op.kind === 'delete')!;
    assert.ok(remove);
    const response = await report('alpha', [{ ...reportBase(vmId, remove.id), type: 'deleted' }]);
    assert.equal(response.json().results[0].status, 'accepted');
    const { rows } = await db.pool.query('SELECT state, deleted IS NOT NULL AS billed_until FROM vms WHERE id = $1', [vmId]);
    assert.deepEqual(rows[0], { state: 'deleted', billed_until: true });
  });

  it('deletes a capsul that never reached a host without troubling any host', async () => {
    const vmId = await newCapsul('never-placed@example.org'); // no placement round runs before its deletion
    await db.ledger.deleteVm(vmId, { ...operator, reason: 'changed my mind' });
    await scheduleDeletions({ pool: db.pool });
    const { rows } = await db.pool.query('SELECT state, host FROM vms WHERE id = $1', [vmId]);
    assert.deepEqual(rows[0], { state: 'deleted', host: null });
  });
});

describe('drift', () => {
  const openDrift = async (host?: string) =>
    (await hosts.drift()).filter((d) => !host || d.host === host).map((d) => `${d.host} ${d.vmId} ${d.kind}`);
  const driftEvents = async () =>
    (await db.pool.query(`SELECT count(*)::int AS n FROM emt_messages WHERE message_type = 'DriftDetected'`)).rows[0].n;

  it('records a capsul the ledger does not know on a host once per incident, and its end', async () => {
    await heartbeat('beta', [{ vmId: 'capsul-stray00001', state: 'running' }]);
    assert.deepEqual(await openDrift('beta'), ['beta capsul-stray00001 unexpected-on-host']);
    const detected = await driftEvents();
    await heartbeat('beta', [{ vmId: 'capsul-stray00001', state: 'running' }]);
    assert.equal(await driftEvents(), detected, 'the same incident is recorded once');
    await heartbeat('beta', []);
    assert.deepEqual(await openDrift('beta'), []);
    const { rows } = await db.pool.query(`SELECT resolved IS NOT NULL AS resolved FROM drift WHERE vm_id = 'capsul-stray00001'`);
    assert.deepEqual(rows, [{ resolved: true }]);
  });

  it('records a running capsul its host no longer lists', async () => {
    await heartbeat('alpha');
    const vmId = await newCapsul('missing@example.org');
    await placePending({ pool: db.pool });
    const create = (await operations('alpha')).find((op) => op.vmId === vmId)!;
    await report('alpha', [{ ...reportBase(vmId, create.id), type: 'state', state: 'running' }]);
    const listed = (await db.pool.query(`SELECT id FROM vms WHERE host = 'alpha' AND state = 'running'`)).rows.map((r) => ({
      vmId: r.id as string,
      state: 'running' as const,
    }));
    await heartbeat(
      'alpha',
      listed.filter((vm) => vm.vmId !== vmId),
    );
    assert.ok((await openDrift()).includes(`alpha ${vmId} missing-from-host`));
    await heartbeat('alpha', listed);
    assert.ok(!(await openDrift()).includes(`alpha ${vmId} missing-from-host`));
  });
});

describe('report batches', () => {
  it('records a batch in one transaction, several reports of a capsul among others, answered in the order sent', async () => {
    // A host of its own with room, added last, so the capsuls placed here leave the other tests' hosts alone.
    tokens.roomy = (await hosts.add({ hostId: 'roomy', memoryMb: 65_536, vcpus: 64, cause: operator })).token;
    await heartbeat('roomy');
    const [first, second] = [await newCapsul('batch-1@example.org'), await newCapsul('batch-2@example.org')];
    await placePending({ pool: db.pool });
    const [earlier, later] = [new Date(Date.now() - 2_000), new Date(Date.now() - 1_000)];
    const secondRunning: Report = { ...reportBase(second!, null, earlier), type: 'state', state: 'running' };
    const firstRunning: Report = { ...reportBase(first!, null, earlier), type: 'state', state: 'running' };
    const firstStopped: Report = { ...reportBase(first!, null, later), type: 'state', state: 'stopped' };
    // The same report again in the batch, and one older than what the batch already recorded.
    const firstStale: Report = { ...reportBase(first!, null, earlier), type: 'state', state: 'crashed' };
    const batch = [secondRunning, firstRunning, firstStopped, firstRunning, firstStale];
    const response = await report('roomy', batch);
    assert.deepEqual(
      response.json().results.map((r: { id: string; status: string }) => [r.id, r.status]),
      [
        [secondRunning.id, 'accepted'],
        [firstRunning.id, 'accepted'],
        [firstStopped.id, 'accepted'],
        [firstRunning.id, 'duplicate'],
        [firstStale.id, 'stale'],
      ],
    );
    const { rows } = await db.pool.query(
      `SELECT count(*)::int AS events, count(DISTINCT transaction_id)::int AS transactions FROM emt_messages
       WHERE stream_id = ANY($1::text[]) AND message_type = 'VmStateObserved'`,
      [[`vm-${first}`, `vm-${second}`]],
    );
    assert.deepEqual(rows[0], { events: 3, transactions: 1 });
    const states = await db.pool.query('SELECT id, state FROM vms WHERE id = ANY($1::text[]) ORDER BY id', [[first, second]]);
    assert.deepEqual(Object.fromEntries(states.rows.map((r) => [r.id, r.state])), { [first!]: 'stopped', [second!]: 'running' });
    // Two versions of one capsul's row written in one transaction: the row history still equals a replay.
    assert.deepEqual(await verifyProjections(db.pool), projectionsMatch);
  });

  it('answers a state report sent again duplicate while it is one of the last 100 recorded, stale after, and records it neither time', async () => {
    await heartbeat('roomy');
    const vmId = await newCapsul('many-states@example.org');
    await placePending({ pool: db.pool });
    const create = (await operations('roomy')).find((op) => op.vmId === vmId)!;
    const start = Date.now();
    const provisioned: Report = {
      ...reportBase(vmId, create.id, new Date(start)),
      type: 'provisioned',
      ipv4: null,
      ipv6: null,
      sshHostKeys: [],
    };
    const states: Report[] = Array.from({ length: rememberedStateReports + 1 }, (_, i) => ({
      ...reportBase(vmId, null, new Date(start + 10 * (i + 1))),
      type: 'state',
      state: i % 2 === 0 ? 'running' : 'stopped',
    }));
    const first = await report('roomy', [provisioned, ...states.slice(0, rememberedStateReports - 1)]);
    assert.ok(first.json().results.every((r: { status: string }) => r.status === 'accepted'));
    const events = async () =>
      (await db.pool.query(`SELECT count(*)::int AS n FROM emt_messages WHERE stream_id = $1`, [`vm-${vmId}`])).rows[0].n as number;
    // 100 state reports recorded: the first is still remembered.
    assert.equal((await report('roomy', [states[rememberedStateReports - 1]!])).json().results[0].status, 'accepted');
    const recorded = await events();
    assert.equal((await report('roomy', [states[0]!])).json().results[0].status, 'duplicate');
    // The 101st: the first is forgotten, and no newer than the last, so stale.
    assert.equal((await report('roomy', [states[rememberedStateReports]!])).json().results[0].status, 'accepted');
    assert.deepEqual(
      (await report('roomy', [states[0]!, states[rememberedStateReports]!, provisioned]))
        .json()
        .results.map((r: { status: string }) => r.status),
      ['stale', 'duplicate', 'duplicate'],
    );
    assert.equal(await events(), recorded + 1);
  });
});
