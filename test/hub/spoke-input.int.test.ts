// The spoke API's edge, over HTTP against a real database: whatever a spoke sends (NUL and other
// controls, bidi formatting, lone surrogates, over-long values, wrong types, times from the future or
// from before the capsul) gets a 400 or its report's own refusal, never a 5xx, and a refusal changes
// nothing; the rest of a batch still counts.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { buildHub } from '../../src/hub/app.ts';
import { Hosts } from '../../src/ledger/hosts.ts';
import { placePending } from '../../src/ledger/reactor.ts';
import type { Heartbeat, Operation, Report } from '../../src/spoke/protocol.ts';
import { operator, sshKey, testDatabase, type TestDatabase } from '../support/db.ts';
import { databaseFingerprint } from '../support/fingerprint.ts';

let db: TestDatabase;
let hub: FastifyInstance;
let token: string;
let betaToken: string;
/** a capsul placed on host alpha, provisioned and running */
let vmId: string;
let createId: string;

before(async () => {
  db = await testDatabase({ host: false });
  const hosts = new Hosts({ pool: db.pool });
  token = (await hosts.add({ hostId: 'alpha', memoryMb: 4096, vcpus: 4, cause: operator })).token;
  betaToken = (await hosts.add({ hostId: 'beta', memoryMb: 1024, vcpus: 1, cause: operator })).token;
  hub = await buildHub({ pool: db.pool });
  assert.equal((await heartbeat(beat())).statusCode, 200);
  await db.ledger.recordPayment({ email: 'edge@example.org', amountCents: 10_000, cause: operator });
  vmId = (await db.ledger.createVm({ email: 'edge@example.org', size: 'f1-s', os: 'debian12', sshPublicKeys: [sshKey], cause: operator }))
    .vmId;
  await placePending({ pool: db.pool });
  const ops = (await hub.inject({ method: 'GET', url: '/spoke/v1/operations?waitMs=0', headers: headers() })).json()
    .operations as Operation[];
  createId = ops.find((op) => op.vmId === vmId)!.id;
  const results = await statuses([provisioned(), { ...base(createId), type: 'state', state: 'running' }]);
  assert.deepEqual(results, ['accepted', 'accepted']);
});
after(async () => {
  await hub?.close();
  await db?.close();
});

const headers = () => ({ 'x-capsul-host': 'alpha', authorization: `Bearer ${token}` });
const post = (endpoint: string, payload: string | object, contentType = 'application/json') =>
  hub.inject({
    method: 'POST',
    url: `/spoke/v1/${endpoint}`,
    headers: { ...headers(), 'content-type': contentType },
    payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
  });
const heartbeat = (body: unknown) => post('heartbeat', body as object);
const beat = (): Heartbeat => ({ capacity: { memoryMb: 4096, vcpus: 4 }, vms: [], agentVersion: 'capsul-spoke/test' });
const base = (operationId: string | null = null, observedAt = new Date()) => ({
  id: randomUUID(),
  vmId,
  operationId,
  observedAt: observedAt.toISOString(),
});
const provisioned = (): Report => ({
  ...base(createId),
  type: 'provisioned',
  ipv4: '192.0.2.7',
  ipv6: '2001:db8::7',
  sshHostKeys: [{ type: 'ssh-ed25519', sha256: 'SHA256:x' }],
});
async function statuses(reports: unknown[]): Promise<string[]> {
  const response = await post('reports', { reports });
  assert.equal(response.statusCode, 200, response.body);
  return (response.json().results as { status: string }[]).map((r) => r.status);
}
const vmState = async () => (await db.pool.query('SELECT state, state_observed FROM vms WHERE id = $1', [vmId])).rows[0];

/** A 400 with a one-line JSON error and nothing else, or a 200 refusing every report of the request. */
function assertRefused(response: LightMyRequestResponse, what: string): void {
  assert.ok(response.statusCode < 500, `${what}: HTTP ${response.statusCode} ${response.body}`);
  const body = response.json();
  if (response.statusCode === 200) {
    assert.ok(Array.isArray(body.results), `${what}: ${response.body}`);
    for (const result of body.results) {
      assert.equal(result.status, 'refused', `${what}: ${response.body}`);
      assert.match(result.error, /^[^\n]+$/, what);
    }
  } else {
    assert.ok([400, 413].includes(response.statusCode), `${what}: HTTP ${response.statusCode}`);
    assert.deepEqual(Object.keys(body), ['error'], what);
    assert.match(body.error, /^[^\n]{1,400}$/, what);
    assert.doesNotMatch(body.error, /\bat \S+ \(|Error:/, `${what}: no stack trace`);
  }
}

/** Sends it (or them), checks each is refused, and that the database is as it was. */
async function assertRefusedAndNothingChanged(
  send: () => Promise<LightMyRequestResponse | LightMyRequestResponse[]>,
  what: string,
): Promise<void> {
  const before = await databaseFingerprint(db.admin);
  for (const response of [await send()].flat()) assertRefused(response, what);
  assert.deepEqual(await databaseFingerprint(db.admin), before, `${what} changed something`);
}

// Each is refused in any field of a report or a heartbeat; an error's text alone may hold tab and line feed.
const poisons: [string, string][] = [
  ['NUL', '\u0000'],
  ['BEL', '\u0007'],
  ['ESC', '\u001b'],
  ['CR', '\r'],
  ['DEL', '\u007f'],
  ['NEL (C1)', '\u0085'],
  ['CSI (C1)', '\u009b'],
  ['RLO', '\u202e'],
  ['LRI', '\u2066'],
  ['RLM', '\u200f'],
  ['LINE SEPARATOR', '\u2028'],
  ['lone high surrogate', '\ud800'],
  ['lone low surrogate', '\udc00'],
];
const singleLinePoisons: [string, string][] = [...poisons, ['TAB', '\t'], ['LF', '\n']];

/** Every string field of every report type, and a way to put `text` into it. */
const reportFields: [string, (text: string) => unknown][] = [
  ['id', (text) => ({ ...base(), id: `${randomUUID()}${text}`, type: 'state', state: 'stopped' })],
  ['vmId', (text) => ({ ...base(), vmId: `${vmId}${text}`, type: 'state', state: 'stopped' })],
  ['operationId', (text) => ({ ...base(`${createId}${text}`), type: 'state', state: 'stopped' })],
  ['observedAt', (text) => ({ ...base(), observedAt: `${new Date().toISOString()}${text}`, type: 'state', state: 'stopped' })],
  ['type', (text) => ({ ...base(), type: `state${text}`, state: 'stopped' })],
  ['state', (text) => ({ ...base(), type: 'state', state: `stopped${text}` })],
  ['ipv4', (text) => ({ ...provisioned(), ipv4: `192.0.2.8${text}` })],
  ['ipv6', (text) => ({ ...provisioned(), ipv6: `2001:db8::8${text}` })],
  ['sshHostKeys[].type', (text) => ({ ...provisioned(), sshHostKeys: [{ type: `ssh-ed25519${text}`, sha256: 'SHA256:y' }] })],
  ['sshHostKeys[].sha256', (text) => ({ ...provisioned(), sshHostKeys: [{ type: 'ssh-ed25519', sha256: `SHA256:y${text}` }] })],
  ['error', (text) => ({ ...base(), type: 'failed', error: `disk full${text}` })],
];

const heartbeatFields: [string, (text: string) => unknown][] = [
  ['vms[].vmId', (text) => ({ ...beat(), vms: [{ vmId: `${vmId}${text}`, state: 'running' }] })],
  ['vms[].state', (text) => ({ ...beat(), vms: [{ vmId, state: `running${text}` }] })],
  ['agentVersion', (text) => ({ ...beat(), agentVersion: `capsul-spoke/0.1.0${text}` })],
];

describe('the spoke API refuses poisoned text at the edge', () => {
  for (const [field, withText] of reportFields) {
    it(`refuses a report with a control, bidi or lone surrogate in ${field}, changing nothing`, async () => {
      await assertRefusedAndNothingChanged(async () => {
        const responses = [];
        for (const [name, poison] of field === 'error' ? poisons : singleLinePoisons) {
          const response = await post('reports', { reports: [withText(poison)] });
          assertRefused(response, `${name} in ${field}`);
          responses.push(response);
        }
        return responses;
      }, `every poison in ${field}`);
    });
  }

  for (const [field, withText] of heartbeatFields) {
    it(`refuses a heartbeat with a control, bidi or lone surrogate in ${field} with 400, storing nothing`, async () => {
      await assertRefusedAndNothingChanged(async () => {
        const responses = [];
        for (const [name, poison] of singleLinePoisons) {
          const response = await heartbeat(withText(poison));
          assert.equal(response.statusCode, 400, `${name} in ${field}`);
          responses.push(response);
        }
        return responses;
      }, `every poison in ${field}`);
    });
  }

  it("takes tab and line feed in a failure's error text (driver output is multi-line)", async () => {
    const vm = await capsulOfItsOwn('multiline@example.org');
    const response = await post('reports', {
      reports: [{ ...base(), vmId: vm, type: 'failed', error: 'virsh: error:\n\tdomain not found' }],
    });
    assert.equal(response.json().results[0].status, 'accepted', response.body);
    const { rows } = await db.pool.query('SELECT failure FROM vms WHERE id = $1', [vm]);
    assert.equal(rows[0].failure, 'virsh: error:\n\tdomain not found');
  });

  it('refuses over-long values and wrong types report by report, naming the field', async () => {
    const cases: [unknown, RegExp][] = [
      [{ ...base(), type: 'failed', error: 'x'.repeat(2001) }, /^malformed report: error is 2001 characters long; at most 2000$/],
      [{ ...base(), type: 'failed', error: 5 }, /^malformed report: error must be a string$/],
      [{ ...base(), type: 'failed' }, /^malformed report: error must be a string$/],
      [{ ...base(), operationId: 'o'.repeat(101), type: 'deleted' }, /^malformed report: operationId must be 1 to 100 characters long$/],
      [{ ...base(), type: 'state', state: 7 }, /^malformed report: state must be one of running, stopped, crashed, paused$/],
      [{ ...provisioned(), ipv4: '999.0.2.1' }, /^malformed report: ipv4 must be an IPv4 address or null$/],
      [{ ...provisioned(), ipv4: undefined }, /^malformed report: ipv4 must be a string or null$/],
      [
        { ...provisioned(), sshHostKeys: Array.from({ length: 17 }, (_, i) => ({ type: 'ssh-ed25519', sha256: `SHA256:${i}` })) },
        /sshHostKeys holds 17 keys; at most 16/,
      ],
      [
        { ...provisioned(), sshHostKeys: [{ type: 'ssh-ed25519', sha256: 'SHA256:x', extra: 'kept?' }, 'no'] },
        /sshHostKeys\[1\] must be an object/,
      ],
      [{ ...base(), observedAt: '2026-02-30T00:00:00Z', type: 'deleted' }, /observedAt "2026-02-30T00:00:00Z" is not a valid time/],
      [{ ...base(), observedAt: 1795694404120, type: 'deleted' }, /observedAt must be a string/],
      [{ ...base(), vmId: 'capsul-AAAAAAAAAA', type: 'deleted' }, /vmId must be a capsul id/],
    ];
    for (const [bad, reason] of cases) {
      const before = await databaseFingerprint(db.admin);
      const response = await post('reports', { reports: [bad] });
      assert.equal(response.statusCode, 200, response.body);
      const [result] = response.json().results;
      assert.equal(result.status, 'refused', response.body);
      assert.match(result.error, reason);
      assert.deepEqual(await databaseFingerprint(db.admin), before);
    }
  });

  it('answers each report of a batch on its own: a malformed one is refused, the others are recorded', async () => {
    const stopped = { ...base(), type: 'state', state: 'stopped' };
    const poisoned = { ...base(), type: 'failed', error: 'looks fine\u202e but is not' };
    const running = { ...base(null, new Date(Date.now() + 1_000)), type: 'state', state: 'running' };
    const response = await post('reports', { reports: [stopped, poisoned, running] });
    assert.equal(response.statusCode, 200);
    const results = response.json().results as { id: string; status: string; error?: string }[];
    assert.deepEqual(
      results.map((r) => [r.id, r.status]),
      [
        [stopped.id, 'accepted'],
        [poisoned.id, 'refused'],
        [running.id, 'accepted'],
      ],
    );
    assert.equal(results[1]!.error, 'malformed report: error contains U+202E (a bidirectional formatting character) at position 10');
    assert.equal((await vmState()).state, 'running');
    const { rows } = await db.pool.query(
      `SELECT count(*)::int AS n FROM emt_messages WHERE message_type = 'VmFailed' AND message_data->>'vmId' = $1`,
      [vmId],
    );
    assert.equal(rows[0].n, 0);
  });

  it('drops fields a report does not have rather than storing them', async () => {
    const vm = await capsulOfItsOwn('extra-fields@example.org');
    const report = { ...base(), vmId: vm, type: 'state', state: 'running', note: 'not in the protocol', ipv4: '192.0.2.99' };
    assert.deepEqual(await statuses([report]), ['accepted']);
    const { rows } = await db.pool.query(
      `SELECT message_data FROM emt_messages WHERE message_type = 'VmStateObserved' AND message_data->>'reportId' = $1`,
      [report.id],
    );
    assert.deepEqual(Object.keys(rows[0].message_data).sort(), ['at', 'host', 'operationId', 'reportId', 'state', 'vmId']);
  });
});

describe('the spoke API refuses a malformed request as a whole with 400 (or 413), never 5xx', () => {
  const bodies: [string, string, string?][] = [
    ['not JSON', 'not json at all'],
    ['JSON cut short', '{"reports": [{"id": '],
    ['a raw NUL inside a JSON string', '{"reports": [{"id": "abc\u0000defgh"}]}'],
    ['a list, not an object', '[]'],
    ['null', 'null'],
    ['reports not a list', '{"reports": "all of them"}'],
    ['a report that is not an object', '{"reports": [1]}'],
    ['a report without an id', '{"reports": [{"type": "deleted"}]}'],
    ['a report id that is a number', '{"reports": [{"id": 1234567890, "type": "deleted"}]}'],
    ['a prototype-poisoning key', '{"reports": [], "__proto__": {"polluted": true}}'],
    ['deeply nested JSON', `{"reports": ${'['.repeat(100_000)}${']'.repeat(100_000)}}`],
    ['a body larger than 1 MiB', JSON.stringify({ reports: [{ ...base(), type: 'failed', error: 'x'.repeat(1_100_000) }] })],
    ['plain text', 'reports please', 'text/plain'],
    ['an empty body', ''],
  ];
  for (const [what, body, contentType] of bodies) {
    it(`refuses ${what}`, async () => {
      await assertRefusedAndNothingChanged(() => post('reports', body, contentType), what);
      await assertRefusedAndNothingChanged(() => post('heartbeat', body, contentType), `${what} (heartbeat)`);
    });
  }

  it('refuses a heartbeat whose capacity does not fit, or whose lists are not lists', async () => {
    for (const body of [
      { ...beat(), capacity: { memoryMb: 3_000_000_000, vcpus: 4 } },
      { ...beat(), capacity: { memoryMb: '4096', vcpus: 4 } },
      { ...beat(), capacity: { memoryMb: -1, vcpus: 4 } },
      { ...beat(), vms: 'none' },
      { ...beat(), vms: Array.from({ length: 10_001 }, () => ({ vmId, state: 'running' })) },
      { ...beat(), agentVersion: '' },
      { ...beat(), agentVersion: 'v'.repeat(101) },
    ]) {
      await assertRefusedAndNothingChanged(
        async () => {
          const response = await heartbeat(body);
          assert.equal(response.statusCode, 400, response.body);
          return response;
        },
        JSON.stringify(body).slice(0, 80),
      );
    }
  });

  it("stores a heartbeat's capsuls with the protocol's fields only", async () => {
    const response = await heartbeat({ ...beat(), vms: [{ vmId, state: 'running', extra: 'dropped' }] });
    assert.equal(response.statusCode, 200, response.body);
    const { rows } = await db.pool.query(`SELECT vms, agent_version FROM host_heartbeats WHERE host_id = 'alpha'`);
    assert.deepEqual(rows[0], { vms: [{ vmId, state: 'running' }], agent_version: 'capsul-spoke/test' });
  });

  it('answers a stranger 401 before reading the body', async () => {
    const response = await hub.inject({
      method: 'POST',
      url: '/spoke/v1/reports',
      headers: { 'content-type': 'application/json', 'x-capsul-host': 'alpha', authorization: `Bearer ${'x'.repeat(43)}` },
      payload: 'not json at all',
    });
    assert.equal(response.statusCode, 401);
  });
});

describe("the spoke API believes a report's time only within the clock skew", () => {
  it("refuses a report from the future, naming the hub's time and the skew, and takes the next real report", async () => {
    const before = await vmState();
    const future = { ...base(null, new Date('2099-01-01T00:00:00.000Z')), type: 'state', state: 'stopped' };
    const response = await post('reports', { reports: [future] });
    const [result] = response.json().results;
    assert.equal(result.status, 'refused');
    assert.match(
      result.error,
      /^observedAt 2099-01-01T00:00:00\.000Z is ahead of the hub's clock \(\d{4}-\d\d-\d\dT[\d:.]+Z\) by more than the 300 s allowed: check this host's clock$/,
    );
    assert.deepEqual(await vmState(), before);

    const later = (await vmState()).state === 'running' ? 'stopped' : 'running';
    assert.deepEqual(await statuses([{ ...base(null, new Date(Date.now() + 2_000)), type: 'state', state: later }]), ['accepted']);
    assert.equal((await vmState()).state, later);
  });

  it("takes a report a little ahead of the hub's clock (within the skew)", async () => {
    const vm = await capsulOfItsOwn('skew@example.org');
    assert.deepEqual(await statuses([{ ...base(null, new Date(Date.now() + 240_000)), vmId: vm, type: 'state', state: 'running' }]), [
      'accepted',
    ]);
  });

  it('refuses a report observed before its capsul was requested (beyond the skew), and an absurd time, changing nothing', async () => {
    for (const observedAt of ['2001-01-01T00:00:00.000Z', '0001-01-01T00:00:00Z', new Date(Date.now() - 3_600_000).toISOString()]) {
      const before = await databaseFingerprint(db.admin);
      for (const type of ['state', 'failed', 'deleted', 'provisioned'] as const) {
        const report = { ...provisioned(), type, state: 'stopped', error: 'x', operationId: null, observedAt };
        const [result] = (await post('reports', { reports: [report] })).json().results;
        assert.equal(result.status, 'refused', `${type} at ${observedAt}`);
        assert.match(
          result.error,
          new RegExp(
            `^observedAt ${observedAt.replace(/[.]/g, '\\.')} is before capsul ${vmId} was requested \\(.+Z, the hub's clock\\) by more than the 300 s allowed`,
          ),
        );
      }
      assert.deepEqual(await databaseFingerprint(db.admin), before);
    }
  });

  it("tells a host nothing of another host's capsul: its report is refused as not this host's, whatever its time", async () => {
    const response = await hub.inject({
      method: 'POST',
      url: '/spoke/v1/reports',
      headers: { 'x-capsul-host': 'beta', authorization: `Bearer ${betaToken}` },
      payload: { reports: [{ ...base(null, new Date('2001-01-01T00:00:00Z')), type: 'deleted' }] },
    });
    const [result] = response.json().results;
    assert.equal(result.status, 'refused');
    assert.equal(result.error, `capsul ${vmId} is placed on host alpha, not beta`);
  });

  it('refuses an absurd time about a capsul the hub does not know without a 5xx', async () => {
    const response = await post('reports', {
      reports: [{ ...base(null, new Date('0001-01-01T00:00:00Z')), vmId: 'capsul-zzzzzzzzzz', type: 'deleted' }],
    });
    assert.equal(response.json().results[0].status, 'refused');
  });
});

describe('the spoke API under arbitrary text (fast-check)', () => {
  // Any UTF-16 code unit (lone surrogates included), weighted towards what is refused.
  const unit = fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...poisons.map(([, c]) => c), '\t', '\n', '\u061c', '\u2069', 'é', '\u{1F600}') },
    { weight: 3, arbitrary: fc.integer({ min: 0, max: 0xffff }).map((code) => String.fromCharCode(code)) },
    { weight: 4, arbitrary: fc.constantFrom(...'abcxyz019-:.'.split('')) },
  );
  const text = fc.array(unit, { maxLength: 40 }).map((units) => units.join(''));

  it('never answers a report 5xx, and a refused one changes nothing', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...reportFields), text, async ([field, withText], value) => {
        const before = await databaseFingerprint(db.admin);
        const response = await post('reports', { reports: [withText(value)] });
        assert.ok(response.statusCode < 500, `${field} ${JSON.stringify(value)}: HTTP ${response.statusCode}`);
        const refused = response.statusCode !== 200 || response.json().results[0].status === 'refused';
        if (refused) assert.deepEqual(await databaseFingerprint(db.admin), before, `${field} ${JSON.stringify(value)} changed something`);
      }),
      { numRuns: 60 },
    );
  });

  it('never answers a heartbeat 5xx, and a refused one stores nothing', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...heartbeatFields), text, async ([field, withText], value) => {
        const before = await databaseFingerprint(db.admin);
        const response = await heartbeat(withText(value));
        assert.ok(
          response.statusCode === 200 || response.statusCode === 400,
          `${field} ${JSON.stringify(value)}: HTTP ${response.statusCode}`,
        );
        if (response.statusCode === 400)
          assert.deepEqual(await databaseFingerprint(db.admin), before, `${field} ${JSON.stringify(value)} changed something`);
      }),
      { numRuns: 40 },
    );
  });
});

/** A capsul of its own on alpha, placed (creating): for tests that change its state. */
async function capsulOfItsOwn(email: string): Promise<string> {
  await db.ledger.recordPayment({ email, amountCents: 10_000, cause: operator });
  const { vmId: vm } = await db.ledger.createVm({ email, size: 'f1-xs', os: 'debian12', sshPublicKeys: [sshKey], cause: operator });
  assert.equal((await heartbeat(beat())).statusCode, 200);
  await placePending({ pool: db.pool });
  return vm;
}
