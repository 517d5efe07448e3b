// The history index (account_events) is rebuilt and verified with the projections: rows deleted,
// altered, moved or forged behind capsul_append's back (by the owner, past the guard) are reported by
// verify, per table, and put right by a rebuild, which rewrites only those.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type pg from 'pg';
import { createPool } from '../../src/db/database.ts';
import { rebuildProjections, verifyProjections } from '../../src/projections/rebuild.ts';
import { editBehindTheLedger, operator, projectionsMatch, sshKey, testDatabase, urlFor, type TestDatabase } from '../support/db.ts';

let db: TestDatabase;
let reader: pg.Pool;
before(async () => {
  db = await testDatabase();
  reader = createPool(urlFor(db.name, 'reader'), 2);
  for (const email of ['ann@example.org', 'ben@example.org']) {
    await db.ledger.recordPayment({ email, amountCents: 2000, cause: operator });
    await db.ledger.createVm({ email, size: 'f1-xs', os: 'debian12', sshPublicKeys: [sshKey], cause: operator });
    await db.ledger.recordPayment({ email, amountCents: 500, cause: operator });
  }
});
after(async () => {
  await reader.end();
  await db.close();
});

const indexRows = async () =>
  (
    await db.admin.query(
      `SELECT account_id, transaction_id::text, global_position::text, message_type FROM account_events t
       ORDER BY t.global_position, t.account_id`,
    )
  ).rows.map((row) => ({ ...row }));

describe('rebuild-projections and --verify cover the history index', () => {
  it('verify counts each row missing, extra or of another type; a rebuild rewrites only those, and gives the index back', async () => {
    const intact = await indexRows();
    assert.ok(intact.length >= 8);
    const [deleted, altered, moved] = [intact[1]!, intact[4]!, intact[7]!];
    await editBehindTheLedger(db.admin, [
      `DELETE FROM account_events WHERE global_position = ${deleted.global_position}`,
      `UPDATE account_events SET message_type = 'PaymentRecorded' WHERE global_position = ${altered.global_position}`,
      `UPDATE account_events SET account_id = 'someone-else' WHERE global_position = ${moved.global_position}`,
      `INSERT INTO account_events VALUES ('${deleted.account_id}', pg_current_xact_id(), 999999, 'PaymentRefunded')`,
    ]);
    assert.notEqual(altered.message_type, 'PaymentRecorded');

    const verified = await verifyProjections(reader);
    assert.equal(verified.matches, false);
    // deleted: missing; altered: another type; moved: missing under its account and extra under another; forged: extra
    assert.deepEqual(verified.differences, { ...projectionsMatch.differences, account_events: 5 });

    const { rows, changed } = await rebuildProjections(db.admin);
    assert.equal(rows.account_events, intact.length);
    assert.equal(changed.account_events, 6, 'one insert, a delete and an insert, a delete and an insert, one delete');
    assert.ok(Object.entries(changed).every(([table, n]) => table === 'account_events' || n === 0));
    assert.deepEqual(await indexRows(), intact);
    assert.equal((await verifyProjections(reader)).matches, true);
  });

  it('a rebuild of an intact index changes nothing', async () => {
    const intact = await indexRows();
    const { changed } = await rebuildProjections(db.admin);
    assert.equal(changed.account_events, 0);
    assert.deepEqual(await indexRows(), intact);
  });
});
