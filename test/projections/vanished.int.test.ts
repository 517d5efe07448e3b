// The projections of capsuls that vanish from their host, written with each append, equal a full replay:
// the vms row (state vanished, when, when its charges ended), the operations it cancelled, the drift
// incident (open, then closed by a deletion confirmed since), and a rebuild gives identical tables.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { endVanishedAccruals, scheduleDeletions } from '../../src/ledger/reactor.ts';
import { rebuildProjections, verifyProjections } from '../../src/projections/rebuild.ts';
import { shadowProjectionsAt } from '../../src/projections/as-of.ts';
import { projectionTables, tableNames } from '../../src/projections/tables.ts';
import { operator, sshKey, testDatabase, type TestDatabase } from '../support/db.ts';
import { lifeOnHost, vmCommand } from '../support/scenario.ts';

const testCause = { by: { kind: 'spoke', id: 'host-a' } } as const;

let db: TestDatabase;
let clock = Date.parse('2026-01-01T00:00:00Z');
const now = () => new Date(clock);
const tick = () => new Date((clock += 60_000));
const host = 'host-a';
const vms: Record<'removed' | 'open' | 'deleted', string> = { removed: '', open: '', deleted: '' };
let stopOperation = '';
let vanishedAt = '';

/** The live tables, every column as text, in key order. */
async function tableText(table: string): Promise<string[][]> {
  const columns = (projectionTables as Record<string, { columns: readonly string[] }>)[table]!.columns;
  const { rows } = await db.pool.query(`SELECT ${columns.map((c) => `${c}::text`).join(', ')} FROM ${table} ORDER BY 1`);
  return rows.map((row) => Object.values(row) as string[]);
}

const report = () => ({ reportId: randomUUID(), operationId: null });

/** Placed on host-a, provisioned and seen running. */
async function running(vmId: string, accountId: string): Promise<void> {
  const create = randomUUID();
  await vmCommand(db, {
    type: 'PlaceVm',
    data: { vmId, host, operationId: create, context: { accountId, deletionRequested: false } },
    metadata: { now: tick(), cause: testCause },
  });
  await vmCommand(db, {
    type: 'RecordProvisioned',
    data: { vmId, host, ipv4: '192.0.2.10', ipv6: null, sshHostKeys: [], observedAt: tick(), reportId: randomUUID(), operationId: create },
    metadata: { now: now(), cause: testCause },
  });
  await vmCommand(db, {
    type: 'ObserveState',
    data: { vmId, host, state: 'running', observedAt: tick(), ...report() },
    metadata: { now: now(), cause: testCause },
  });
}

/** Its host reports it deleted, seen gone two minutes before the report arrives. */
async function reportedGone(vmId: string): Promise<string> {
  const observedAt = tick();
  clock += 2 * 60_000;
  await vmCommand(db, {
    type: 'ConfirmDeleted',
    data: { vmId, host, observedAt, ...report() },
    metadata: { now: now(), cause: testCause },
  });
  return observedAt.toISOString();
}

before(async () => {
  db = await testDatabase({ now });
  const email = 'alice@example.org';
  await db.ledger.recordPayment({ email, amountCents: 10_000, cause: operator });
  const accountId = (await db.ledger.accountIdFor(email))!;
  for (const name of ['removed', 'open', 'deleted'] as const) {
    tick();
    vms[name] = (await db.ledger.createVm({ email, size: 'f1-xs', os: 'debian12', sshPublicKeys: [sshKey], cause: operator })).vmId;
  }
  // One vanishes with a stop still open, then its owner removes it and the host confirms.
  await running(vms.removed, accountId);
  stopOperation = randomUUID();
  await vmCommand(db, {
    type: 'RequestStop',
    data: { vmId: vms.removed, force: false, operationId: stopOperation, context: { accountId, deletionRequested: false } },
    metadata: { now: tick(), cause: testCause },
  });
  vanishedAt = await reportedGone(vms.removed);
  assert.equal(await endVanishedAccruals({ pool: db.pool, now }), 1);
  tick();
  await db.ledger.deleteVm(vms.removed, { ...operator, reason: 'deleted by the customer' });
  await scheduleDeletions({ pool: db.pool, now });
  const { rows } = await db.pool.query(`SELECT id FROM operations WHERE vm_id = $1 AND kind = 'delete'`, [vms.removed]);
  await vmCommand(db, {
    type: 'ConfirmDeleted',
    data: { vmId: vms.removed, host, observedAt: tick(), reportId: randomUUID(), operationId: rows[0].id },
    metadata: { now: now(), cause: testCause },
  });
  // One vanishes and stays so; one is deleted as asked.
  await running(vms.open, accountId);
  await reportedGone(vms.open);
  assert.equal(await endVanishedAccruals({ pool: db.pool, now }), 1);
  await db.ledger.deleteVm(vms.deleted, { ...operator, reason: 'no longer needed' });
  await lifeOnHost(db, vms.deleted, accountId, tick, 'deleted');
});
after(() => db.close());

describe('projections of vanished capsuls', () => {
  it('show each capsul as it ended: vanished with when, or deleted', async () => {
    const { rows } = await db.pool.query(
      `SELECT id, state, vanished IS NOT NULL AS vanished, accrual_ended IS NOT NULL AS charges_ended, deleted IS NOT NULL AS deletion_requested,
              accrual_ended = vanished AS ended_when_seen_gone
       FROM vms ORDER BY created`,
    );
    assert.deepEqual(rows, [
      { id: vms.removed, state: 'deleted', vanished: true, charges_ended: true, deletion_requested: true, ended_when_seen_gone: true },
      { id: vms.open, state: 'vanished', vanished: true, charges_ended: true, deletion_requested: false, ended_when_seen_gone: true },
      { id: vms.deleted, state: 'deleted', vanished: false, charges_ended: false, deletion_requested: true, ended_when_seen_gone: null },
    ]);
    const {
      rows: [removed],
    } = await db.pool.query(`SELECT vanished FROM vms WHERE id = $1`, [vms.removed]);
    assert.equal(removed.vanished.toISOString(), vanishedAt);
  });

  it('end the operations it left open as cancelled, and deliver them no more', async () => {
    const { rows } = await db.pool.query(
      `SELECT kind, outcome, completed IS NOT NULL AS completed FROM operations WHERE vm_id = $1 ORDER BY created`,
      [vms.removed],
    );
    assert.deepEqual(rows, [
      { kind: 'create', outcome: 'provisioned', completed: true },
      { kind: 'stop', outcome: 'cancelled', completed: true },
      { kind: 'delete', outcome: 'deleted', completed: true },
    ]);
  });

  it('count each vanishing as a drift incident, closed once a deletion asked since is confirmed', async () => {
    const { rows } = await db.pool.query(`SELECT id, vm_id, kind, resolved IS NOT NULL AS resolved FROM drift ORDER BY detected`);
    assert.deepEqual(rows, [
      { id: `${host}/vanished-from-host/${vms.removed}`, vm_id: vms.removed, kind: 'vanished-from-host', resolved: true },
      { id: `${host}/vanished-from-host/${vms.open}`, vm_id: vms.open, kind: 'vanished-from-host', resolved: false },
    ]);
  });

  it('equal a replay of every event, and a rebuild gives identical tables', async () => {
    assert.equal((await verifyProjections(db.pool)).matches, true);
    const before = Object.fromEntries(await Promise.all(tableNames.map(async (t) => [t, await tableText(t)])));
    await rebuildProjections(db.admin);
    for (const table of tableNames) assert.deepEqual(await tableText(table), before[table], table);
  });

  it('as of a moment before it vanished, show it running, with no incident', async () => {
    const client = await db.pool.connect();
    try {
      await shadowProjectionsAt(client, { asOf: new Date(Date.parse(vanishedAt) - 1) });
      const { rows } = await client.query(`SELECT state, vanished, accrual_ended FROM vms WHERE id = $1`, [vms.removed]);
      assert.deepEqual(rows, [{ state: 'running', vanished: null, accrual_ended: null }]);
      assert.equal((await client.query('SELECT count(*)::int AS n FROM drift')).rows[0].n, 0);
    } finally {
      client.release(true);
    }
  });
});
