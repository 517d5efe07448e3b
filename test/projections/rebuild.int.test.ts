// Rebuild replaces the projections from the events while appends keep arriving: nothing lost, nothing
// doubled, and readers never see a half-built table.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { rebuildProjections, verifyProjections } from '../../src/projections/rebuild.ts';
import { operator, sshKey, testDatabase, type TestDatabase } from '../support/db.ts';

let db: TestDatabase;
before(async () => {
  db = await testDatabase({ poolSize: 12 });
});
after(() => db.close());

const count = async (sql: string) => (await db.pool.query(sql)).rows[0].n as number;

async function writer(worker: number, commands: number): Promise<void> {
  const email = `writer${worker}@example.org`;
  const payments: number[] = [];
  const vms: string[] = [];
  for (let i = 0; i < commands; i++) {
    const roll = (i * 7 + worker) % 10;
    if (roll < 4 || payments.length === 0) {
      payments.push((await db.ledger.recordPayment({ email, amountCents: 1000 + i, cause: operator })).paymentId);
    } else if (roll < 5) {
      await db.ledger.invalidatePayment(payments[i % payments.length]!, { ...operator, reason: 'chargeback' });
    } else if (roll < 6) {
      await db.ledger.reinstatePayment(payments[i % payments.length]!, { ...operator, reason: 'dispute won' });
    } else if (roll < 8) {
      try {
        vms.push((await db.ledger.createVm({ email, size: 'f1-xs', os: 'alpine322', sshPublicKeys: [sshKey], cause: operator })).vmId);
      } catch (error) {
        if ((error as { code?: string }).code !== 'insufficient_funds') throw error;
      }
    } else if (vms.length > 0) {
      await db.ledger.deleteVm(vms.shift()!, { ...operator, reason: 'done' });
    }
  }
}

describe('rebuild-projections', () => {
  it('is correct while four writers keep appending, and readers keep reading the old rows', async () => {
    let writing = true;
    let readerMin = 0;
    let readerSawDrop = false;
    const reader = (async () => {
      while (writing) {
        const n = await count('SELECT count(*)::int AS n FROM payments');
        if (n < readerMin) readerSawDrop = true;
        readerMin = Math.max(readerMin, n);
      }
    })();
    const rebuilds = (async () => {
      let done = 0;
      while (writing || done < 2) {
        await rebuildProjections(db.admin);
        done++;
      }
      return done;
    })();
    await Promise.all([0, 1, 2, 3].map((w) => writer(w, 60)));
    writing = false;
    const rebuildCount = await rebuilds;
    await reader;

    assert.ok(rebuildCount >= 2);
    assert.equal(readerSawDrop, false, 'a reader saw payments disappear during a rebuild');
    assert.deepEqual(await verifyProjections(db.pool), {
      matches: true,
      differences: { accounts: 0, payments: 0, vms: 0, hosts: 0, operations: 0, drift: 0, payment_holds: 0, account_events: 0 },
    });
    const recorded = await count(`SELECT count(*)::int AS n FROM emt_messages WHERE message_type = 'PaymentRecorded'`);
    assert.equal(await count('SELECT count(*)::int AS n FROM payments'), recorded);
    const created = await count(`SELECT count(*)::int AS n FROM emt_messages WHERE message_type = 'VmCreationRequested'`);
    assert.equal(await count('SELECT count(*)::int AS n FROM vms'), created);
  });
});
