// Starting, stopping and deleting a capsul through the ledger against a real database: the request
// lands on the capsul's stream as an operation for its host; refusals append nothing; the same
// operation id twice changes nothing; a version the user saw that is no longer current is reported.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { accountStream } from '../../src/domain/account/events.ts';
import { vmStream } from '../../src/domain/vm/events.ts';
import { ConcurrencyError } from '../../src/ledger/handle.ts';
import { loadStream } from '../../src/db/event-store.ts';
import { failsWith } from '../support/domain-error.ts';
import { operator, sshKey, testDatabase, type TestDatabase } from '../support/db.ts';
import { vmCommand } from '../support/scenario.ts';

const testCause = { by: { kind: 'spoke', id: 'host-a' } } as const;

let db: TestDatabase;
before(async () => {
  db = await testDatabase();
});
after(() => db.close());

const customer = (email: string) => ({ by: { kind: 'customer' as const, id: email } });
const versionOf = async (streamId: string) => (await loadStream(db.pool, streamId)).version;
const operationKindsOf = async (vmId: string) =>
  (await db.pool.query('SELECT kind FROM operations WHERE vm_id = $1 ORDER BY kind', [vmId])).rows.map((row) => row.kind as string);

let emails = 0;

/** A capsul on the test host, optionally not placed yet; returns its id and account. */
async function capsul(options: { placed?: boolean } = {}): Promise<{ vmId: string; accountId: string; email: string }> {
  const email = `power${++emails}@example.org`;
  await db.ledger.recordPayment({ email, amountCents: 10_000, cause: operator });
  const { vmId } = await db.ledger.createVm({ email, size: 'f1-xs', os: 'debian12', sshPublicKeys: [sshKey], cause: operator });
  const accountId = (await db.ledger.accountIdFor(email))!;
  if (options.placed !== false) {
    await vmCommand(db, {
      type: 'PlaceVm',
      data: { vmId, host: 'test-host', operationId: randomUUID(), context: { accountId, deletionRequested: false } },
      metadata: { now: new Date(), cause: testCause },
    });
  }
  return { vmId, accountId, email };
}

describe('starting and stopping a capsul', () => {
  it('appends a start request for its host, with an operation of that id, caused by the customer', async () => {
    const { vmId, email } = await capsul();
    const { operationId, changed } = await db.ledger.startVm(vmId, customer(email));
    assert.equal(changed, true);
    const last = (await loadStream(db.pool, vmStream(vmId))).events.at(-1)!;
    assert.equal(last.event.type, 'VmStartRequested');
    assert.deepEqual({ ...last.event.data, at: undefined }, { vmId, host: 'test-host', operationId, at: undefined });
    assert.deepEqual(last.metadata.by, { kind: 'customer', id: email });
    const { rows } = await db.pool.query('SELECT vm_id, host, kind, completed FROM operations WHERE id = $1', [operationId]);
    assert.deepEqual(rows, [{ vm_id: vmId, host: 'test-host', kind: 'start', completed: null }]);
  });

  it('appends a stop, or a forced stop, as operations of their own kinds', async () => {
    const { vmId, email } = await capsul();
    await db.ledger.stopVm(vmId, customer(email));
    await db.ledger.stopVm(vmId, customer(email), { force: true });
    const events = (await loadStream(db.pool, vmStream(vmId))).events.slice(-2);
    assert.deepEqual(
      events.map((e) => [e.event.type, (e.event.data as { force?: boolean }).force]),
      [
        ['VmStopRequested', false],
        ['VmStopRequested', true],
      ],
    );
    assert.deepEqual(await operationKindsOf(vmId), ['create', 'force-stop', 'stop']);
  });

  it('changes nothing when the same operation id comes again (a retry)', async () => {
    const { vmId, email } = await capsul();
    const operationId = randomUUID();
    assert.equal((await db.ledger.stopVm(vmId, customer(email), { operationId })).changed, true);
    const version = await versionOf(vmStream(vmId));
    const again = await db.ledger.stopVm(vmId, customer(email), { operationId });
    assert.deepEqual(again, { operationId, changed: false });
    assert.equal(await versionOf(vmStream(vmId)), version);
    assert.equal((await db.pool.query('SELECT count(*)::int AS n FROM operations WHERE id = $1', [operationId])).rows[0].n, 1);
  });

  it('refuses a capsul not on a host yet, appending nothing', async () => {
    const { vmId, email } = await capsul({ placed: false });
    await assert.rejects(db.ledger.startVm(vmId, customer(email)), failsWith('refused', /not on a host yet/));
    await assert.rejects(db.ledger.stopVm(vmId, customer(email), { force: true }), failsWith('refused', /not on a host yet/));
    assert.equal(await versionOf(vmStream(vmId)), 0n);
  });

  it('refuses a capsul whose deletion was requested, appending nothing', async () => {
    const { vmId, email } = await capsul();
    await db.ledger.deleteVm(vmId, { ...customer(email), reason: 'done with it' });
    const version = await versionOf(vmStream(vmId));
    await assert.rejects(db.ledger.startVm(vmId, customer(email)), failsWith('refused', /is deleted/));
    await assert.rejects(db.ledger.stopVm(vmId, customer(email)), failsWith('refused', /is deleted/));
    assert.equal(await versionOf(vmStream(vmId)), version);
  });

  it('refuses an unknown capsul', async () => {
    await assert.rejects(db.ledger.startVm('capsul-0000000000', operator), failsWith('not_found', /no capsul capsul-0000000000/));
    await assert.rejects(db.ledger.stopVm('capsul-0000000000', operator), failsWith('not_found', /no capsul capsul-0000000000/));
  });

  it('reports a capsul changed since the version the user saw, appending nothing', async () => {
    const { vmId, email } = await capsul();
    const seen = await versionOf(vmStream(vmId));
    await db.ledger.startVm(vmId, customer(email), { expectedVersion: seen });
    await assert.rejects(db.ledger.stopVm(vmId, customer(email), { expectedVersion: seen }), ConcurrencyError);
    assert.equal(await versionOf(vmStream(vmId)), seen + 1n);
  });

  it('lets exactly one of two concurrent requests from the same version through', async () => {
    const { vmId, email } = await capsul();
    const seen = await versionOf(vmStream(vmId));
    const results = await Promise.allSettled([
      db.ledger.stopVm(vmId, customer(email), { expectedVersion: seen }),
      db.ledger.stopVm(vmId, customer(email), { expectedVersion: seen, force: true }),
    ]);
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
    const refused = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    assert.ok(refused.reason instanceof ConcurrencyError);
    assert.equal(await versionOf(vmStream(vmId)), seen + 1n);
  });
});

describe('deleting a capsul as the user saw it', () => {
  it('requests the deletion once; the second of two deletes from the same page is reported, not a silent success', async () => {
    const { vmId, accountId, email } = await capsul();
    const seen = await versionOf(vmStream(vmId));
    assert.deepEqual(
      await db.ledger.deleteVm(vmId, { ...customer(email), reason: 'deleted by the customer' }, { expectedVmVersion: seen }),
      {
        changed: true,
      },
    );
    const accountVersion = await versionOf(accountStream(accountId));
    await assert.rejects(
      db.ledger.deleteVm(vmId, { ...customer(email), reason: 'deleted by the customer' }, { expectedVmVersion: seen }),
      ConcurrencyError,
    );
    assert.equal(await versionOf(accountStream(accountId)), accountVersion);
    // Without a version (the CLI, jobs) a repeated delete stays a harmless no-op.
    assert.deepEqual(await db.ledger.deleteVm(vmId, { ...operator, reason: 'again' }), { changed: false });
  });

  it('lets exactly one of two concurrent deletes from the same version through', async () => {
    const { vmId, accountId, email } = await capsul();
    const seen = await versionOf(vmStream(vmId));
    const before = await versionOf(accountStream(accountId));
    const results = await Promise.allSettled(
      [1, 2].map(() => db.ledger.deleteVm(vmId, { ...customer(email), reason: 'deleted by the customer' }, { expectedVmVersion: seen })),
    );
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
    assert.ok((results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason instanceof ConcurrencyError);
    assert.equal(await versionOf(accountStream(accountId)), before + 1n);
  });

  it('refuses to delete a capsul that changed since the version the user saw', async () => {
    const { vmId, email } = await capsul();
    const seen = await versionOf(vmStream(vmId));
    await db.ledger.stopVm(vmId, customer(email));
    await assert.rejects(
      db.ledger.deleteVm(vmId, { ...customer(email), reason: 'deleted by the customer' }, { expectedVmVersion: seen }),
      ConcurrencyError,
    );
    const { rows } = await db.pool.query('SELECT deleted FROM vms WHERE id = $1', [vmId]);
    assert.equal(rows[0].deleted, null);
  });
});
