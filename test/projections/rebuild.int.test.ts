// Rebuild replaces the projections from the events while appends keep arriving: nothing lost, nothing
// doubled, readers never see a half-built table, and appends are not held up while it folds.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { rebuildProjections, verifyProjections } from '../../src/projections/rebuild.ts';
import { editBehindTheLedger, operator, projectionsMatch, sshKey, testDatabase, type TestDatabase } from '../support/db.ts';

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
    assert.deepEqual(await verifyProjections(db.pool), projectionsMatch);
    const recorded = await count(`SELECT count(*)::int AS n FROM emt_messages WHERE message_type = 'PaymentRecorded'`);
    assert.equal(await count('SELECT count(*)::int AS n FROM payments'), recorded);
    const created = await count(`SELECT count(*)::int AS n FROM emt_messages WHERE message_type = 'VmCreationRequested'`);
    assert.equal(await count('SELECT count(*)::int AS n FROM vms'), created);
  });

  it('does not hold up appends while it folds: they complete while it waits between its phases, and it repairs on top of them', async () => {
    const email = 'aside@example.org';
    const { paymentId } = await db.ledger.recordPayment({ email, amountCents: 1500, cause: operator });
    // An edit no event explains, which the rebuild must repair.
    await editBehindTheLedger(db.admin, 'UPDATE payments SET dollars = 99 WHERE id = $1', [paymentId]);
    let appendedMeanwhile: number[] = [];
    const result = await rebuildProjections(db.admin, {
      async betweenPhases() {
        // A rebuild that held the projections' lock here would leave these waiting for ever.
        const appends = Promise.all(
          [1, 2, 3].map(async (i) => (await db.ledger.recordPayment({ email, amountCents: 100 * i, cause: operator })).paymentId),
        );
        const stuck = new Promise<never>((_, reject) =>
          setTimeout(() => reject(new Error('appends waited for the rebuild while it folded')), 60_000).unref(),
        );
        appendedMeanwhile = await Promise.race([appends, stuck]);
        await db.ledger.invalidatePayment(paymentId, { ...operator, reason: 'chargeback' });
      },
    });
    assert.equal(result.changed.payments, 1, 'the edited row, and only it, differed from the events');
    const rows = await db.pool.query(
      'SELECT id, dollars::text, invalidated FROM payments WHERE account_id = (SELECT id FROM accounts WHERE email = $1) ORDER BY id',
      [email],
    );
    assert.deepEqual(rows.rows, [
      { id: String(paymentId), dollars: '15.00', invalidated: true },
      ...appendedMeanwhile
        .map((id, i) => ({ id: String(id), dollars: `${i + 1}.00`, invalidated: false }))
        .sort((a, b) => Number(a.id) - Number(b.id)),
    ]);
    assert.deepEqual(await verifyProjections(db.pool), projectionsMatch);
  });

  it('holds only a share of the rows at a time: folded in many passes, it finds and repairs what one pass would', async () => {
    const email = 'passes@example.org';
    const { paymentId } = await db.ledger.recordPayment({ email, amountCents: 2500, cause: operator });
    await db.ledger.createVm({ email, size: 'f1-xs', os: 'alpine322', sshPublicKeys: [sshKey], cause: operator });
    await editBehindTheLedger(db.admin, [
      `UPDATE payments SET dollars = 1 WHERE id = ${paymentId}`,
      `UPDATE vms_history SET state = 'running' WHERE email = '${email}'`,
    ]);
    const events = await count('SELECT count(*)::int AS n FROM emt_messages');
    // A bound of 10 rows: dozens of passes over this ledger (three rows an event, at most).
    const tiny = { rowsPerPass: 10 };
    assert.ok((events * 3) / tiny.rowsPerPass > 20, `${events} events`);
    const verified = await verifyProjections(db.pool, tiny);
    assert.equal(verified.differences.payments, 1);
    assert.equal(verified.differences.vms_history, 1);
    assert.deepEqual(verified.comparedRowByRow, ['payments', 'vms_history']);
    const inOnePass = await verifyProjections(db.pool);
    assert.deepEqual(verified, inOnePass, 'the same findings in many passes as in one');
    const { rows, changed } = await rebuildProjections(db.admin, tiny);
    assert.equal(changed.payments, 1);
    assert.equal(changed.vms_history, 1);
    assert.equal(rows.payments, await count('SELECT count(*)::int AS n FROM payments'));
    assert.equal(rows.vms_history, await count('SELECT count(*)::int AS n FROM vms_history'));
    assert.deepEqual(await verifyProjections(db.pool, tiny), projectionsMatch);
    assert.deepEqual(await verifyProjections(db.pool), projectionsMatch);
  });
});
