// The ledger's commands against a real database: identity, idempotency, captured prices, concurrency.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { accountStream } from '../../src/domain/account/events.ts';
import { loadStream } from '../../src/db/event-store.ts';
import { operator, sshKey, testDatabase, type TestDatabase } from '../support/db.ts';

let db: TestDatabase;
before(async () => {
  db = await testDatabase({ poolSize: 12 });
});
after(() => db.close());

const count = async (sql: string, params: unknown[] = []) => (await db.pool.query(sql, params)).rows[0].n as number;

describe('ledger', () => {
  it('opens one account when first payments for one email race, whatever its case', async () => {
    const emails = ['Race@Example.org', 'race@example.org', 'RACE@EXAMPLE.ORG', 'race@Example.org'];
    const results = await Promise.all(
      [...emails, ...emails].map((email) => db.ledger.recordPayment({ email, amountCents: 100, cause: operator })),
    );
    assert.equal(new Set(results.map((r) => r.paymentId)).size, 8);
    assert.equal(await count(`SELECT count(*)::int AS n FROM accounts WHERE email = 'race@example.org'`), 1);
    assert.equal(await count(`SELECT count(*)::int AS n FROM payments WHERE email = 'race@example.org'`), 8);
    assert.equal(
      await count(`SELECT count(*)::int AS n FROM emt_streams WHERE stream_id LIKE 'account-%'
      AND stream_id IN (SELECT 'account-' || id FROM accounts WHERE email = 'race@example.org')`),
      1,
    );
  });

  it('records a provider reference once, however often and however concurrently it arrives', async () => {
    const results = await Promise.all(
      Array.from({ length: 6 }, () =>
        db.ledger.recordPayment({ email: 'ref@example.org', amountCents: 1500, reference: 'stripe-cs_1', cause: operator }),
      ),
    );
    assert.equal(new Set(results.map((r) => r.paymentId)).size, 1);
    assert.equal(results.filter((r) => !r.duplicate).length, 1);
    assert.equal(await count(`SELECT count(*)::int AS n FROM payments WHERE reference = 'stripe-cs_1'`), 1);
  });

  it('refuses a reference already recorded for another account', async () => {
    await db.ledger.recordPayment({ email: 'first@example.org', amountCents: 100, reference: 'bank-77', cause: operator });
    await assert.rejects(
      db.ledger.recordPayment({ email: 'second@example.org', amountCents: 100, reference: 'bank-77', cause: operator }),
      /already recorded as payment \d+ for another account/,
    );
    assert.equal(await count(`SELECT count(*)::int AS n FROM accounts WHERE email = 'second@example.org'`), 0);
  });

  it('loads long streams in order (positions compare as numbers, not text)', async () => {
    for (let i = 0; i < 12; i++) await db.ledger.recordPayment({ email: 'long@example.org', amountCents: 100 + i, cause: operator });
    const accountId = (await db.ledger.accountIdFor('long@example.org'))!;
    const { events, version } = await loadStream(db.pool, accountStream(accountId));
    assert.equal(version, 13n);
    assert.deepEqual(
      events.map((e) => e.streamPosition),
      Array.from({ length: 13 }, (_, i) => i + 1),
    );
  });

  it('captures the price at creation: a later catalogue change rewrites no charge', async () => {
    await db.ledger.recordPayment({ email: 'price@example.org', amountCents: 10_000, cause: operator });
    const { vmId } = await db.ledger.createVm({
      email: 'price@example.org',
      size: 'f1-s',
      os: 'debian12',
      sshPublicKeys: [sshKey],
      cause: operator,
    });
    const inAMonth = new Date(Date.now() + 40 * 86_400_000);
    const before = await db.ledger.balanceCents('price@example.org', inAMonth);
    await db.admin.query(`UPDATE vm_sizes SET dollars_per_month = 99.00 WHERE id = 'f1-s'`);
    try {
      assert.equal(await db.ledger.balanceCents('price@example.org', inAMonth), before);
      const { rows } = await db.pool.query('SELECT dollars_per_month::text AS price FROM vms WHERE id = $1', [vmId]);
      assert.equal(rows[0].price, '7.16');
    } finally {
      await db.admin.query(`UPDATE vm_sizes SET dollars_per_month = 7.16 WHERE id = 'f1-s'`);
    }
  });

  it('refuses a capsul the balance does not cover, appending nothing', async () => {
    await db.ledger.recordPayment({ email: 'poor@example.org', amountCents: 500, cause: operator });
    const accountId = (await db.ledger.accountIdFor('poor@example.org'))!;
    await assert.rejects(
      db.ledger.createVm({ email: 'poor@example.org', size: 'f1-xs', os: 'debian12', sshPublicKeys: [sshKey], cause: operator }),
      (error: { code?: string; message: string }) =>
        error.code === 'insufficient_funds' && /does not cover a month of f1-xs \(5\.33\)/.test(error.message),
    );
    assert.equal((await loadStream(db.pool, accountStream(accountId))).version, 2n);
    assert.equal(await count(`SELECT count(*)::int AS n FROM vms WHERE email = 'poor@example.org'`), 0);
  });

  it("records who did it and why in each event's metadata", async () => {
    const { paymentId } = await db.ledger.recordPayment({
      email: 'who@example.org',
      amountCents: 100,
      cause: { by: { kind: 'operator', id: 'alice' } },
    });
    await db.ledger.invalidatePayment(paymentId, { ...{ by: { kind: 'operator', id: 'bob' } }, reason: 'chargeback 123' });
    const { rows } = await db.pool.query(
      `SELECT message_type, message_metadata->'by'->>'id' AS by, message_metadata->>'reason' AS reason FROM emt_messages
       WHERE message_type LIKE 'Payment%' AND (message_data->>'paymentId')::int = $1 ORDER BY global_position`,
      [paymentId],
    );
    assert.deepEqual(rows, [
      { message_type: 'PaymentRecorded', by: 'alice', reason: null },
      { message_type: 'PaymentInvalidated', by: 'bob', reason: 'chargeback 123' },
    ]);
  });
});
