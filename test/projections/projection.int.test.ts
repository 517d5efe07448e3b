// Every projection, fed through real appends, equals a full replay of the events.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { accountStream } from '../../src/domain/account/events.ts';
import { holdIdOf, holdStream } from '../../src/domain/hold/events.ts';
import { MemoryTables } from '../../src/projections/memory.ts';
import { readAllEvents, streamVersion } from '../../src/db/event-store.ts';
import { appendEvents } from '../../src/ledger/append.ts';
import { holdPayment, resolveHold } from '../../src/payments/holds.ts';
import { rebuildProjections, verifyProjections } from '../../src/projections/rebuild.ts';
import { shadowProjectionsAt } from '../../src/projections/as-of.ts';
import { historyTable, projectionTables, tableNames, type TableName } from '../../src/projections/tables.ts';
import { operator, projectionsMatch, sshKey, testDatabase, type TestDatabase } from '../support/db.ts';
import { lifeOnHost } from '../support/scenario.ts';

let db: TestDatabase;
let clock = Date.parse('2026-01-01T00:00:00Z');
const tick = () => new Date((clock += 60_000));

/** The live tables, every column as text, in key order. */
async function tableText(table: string): Promise<string[][]> {
  const columns = (projectionTables as Record<string, { columns: readonly string[] }>)[table]!.columns;
  const { rows } = await db.pool.query(`SELECT ${columns.map((c) => `${c}::text`).join(', ')} FROM ${table} ORDER BY 1`);
  return rows.map((row) => Object.values(row) as string[]);
}

/** A row history as text, in a stable order (its versions have no key of their own). */
async function historyText(table: TableName): Promise<string[]> {
  const { rows } = await db.pool.query(`SELECT h::text AS version FROM ${historyTable(table)} h ORDER BY 1`);
  return rows.map((row) => row.version as string);
}

before(async () => {
  db = await testDatabase({ now: tick });
  const cause = operator;
  const alice = await db.ledger.recordPayment({ email: 'Alice@Example.org', amountCents: 5000, reference: 'bank-1', cause });
  await db.ledger.recordPayment({ email: 'alice@example.org', amountCents: 2500, receivedAt: new Date('2025-12-30T12:00:00Z'), cause });
  const bob = await db.ledger.recordPayment({ email: 'bob@example.org', amountCents: 1000, cause });
  await db.ledger.invalidatePayment(bob.paymentId, { ...cause, reason: 'chargeback' });
  await db.ledger.invalidatePayment(alice.paymentId, { ...cause, reason: 'chargeback' });
  await db.ledger.reinstatePayment(alice.paymentId, { ...cause, reason: 'dispute won' });
  await db.ledger.recordRefund({ paymentId: alice.paymentId, totalRefundedCents: 700, reference: 'ch_1', cause });
  await db.ledger.recordRefund({ paymentId: alice.paymentId, totalRefundedCents: 1200, reference: 'ch_1', cause });
  const accountId = (await db.ledger.accountIdFor('alice@example.org'))!;
  // The policy would not warn this account (nothing runs yet): the event is appended as stored, for its replay.
  const warning = {
    type: 'BalanceWarningIssued' as const,
    data: { accountId, level: 'runs-out-within-week' as const, balanceCents: 4500, at: tick().toISOString() },
  };
  const stream = accountStream(accountId);
  assert.equal(
    (await appendEvents(db.pool, stream, [warning], { by: cause.by, eventVersion: 1 }, await streamVersion(db.pool, stream))).ok,
    true,
  );
  const vms = [];
  for (const size of ['f1-xs', 'f1-s', 'f1-m']) {
    vms.push((await db.ledger.createVm({ email: 'alice@example.org', size, os: 'debian12', sshPublicKeys: [sshKey], cause })).vmId);
  }
  await lifeOnHost(db, vms[0]!, accountId, tick, 'running');
  await lifeOnHost(db, vms[1]!, accountId, tick, 'failed');
  await db.ledger.deleteVm(vms[2]!, { ...cause, reason: 'no longer needed' });
  await lifeOnHost(db, vms[2]!, accountId, tick, 'deleted');
  // Held payments: one still open, one closed without credit.
  const holds = { pool: db.pool, mailer: { send: async () => {}, outboxDir: null }, adminEmails: [], now: tick };
  const held = { email: 'alice@example.org', amountCents: 1500, expectedCents: 2000, reason: 'the amount differs from the checkout' };
  await holdPayment(holds, { ...held, provider: 'stripe', reference: 'pi_held_1' });
  await holdPayment(holds, {
    provider: 'btcpay',
    reference: 'inv_held_2',
    email: null,
    amountCents: 999,
    expectedCents: null,
    reason: 'no checkout',
  });
  await resolveHold(db.pool, {
    provider: 'btcpay',
    reference: 'inv_held_2',
    cause: { ...cause, reason: 'refunded in BTCPay' },
    now: tick(),
  });
});
after(() => db.close());

describe('projections', () => {
  it('writes accounts, payments and vms rows as the events say', async () => {
    const payments = await db.pool.query(
      `SELECT email, dollars::text, invalidated, invalidation_reason, refunded_dollars::text AS refunded FROM payments ORDER BY id`,
    );
    assert.deepEqual(payments.rows, [
      { email: 'alice@example.org', dollars: '50.00', invalidated: false, invalidation_reason: null, refunded: '12.00' },
      { email: 'alice@example.org', dollars: '25.00', invalidated: false, invalidation_reason: null, refunded: '0.00' },
      { email: 'bob@example.org', dollars: '10.00', invalidated: true, invalidation_reason: 'chargeback', refunded: '0.00' },
    ]);
    const vms = await db.pool.query(
      `SELECT size, state, host, last_seen_ipv4, dollars_per_month::text, deleted IS NOT NULL AS deleted, failure FROM vms ORDER BY created`,
    );
    assert.deepEqual(vms.rows, [
      {
        size: 'f1-xs',
        state: 'running',
        host: 'host-a',
        last_seen_ipv4: '192.0.2.10',
        dollars_per_month: '5.33',
        deleted: false,
        failure: null,
      },
      {
        size: 'f1-s',
        state: 'failed',
        host: 'host-a',
        last_seen_ipv4: '192.0.2.10',
        dollars_per_month: '7.16',
        deleted: false,
        failure: 'disk full',
      },
      {
        size: 'f1-m',
        state: 'deleted',
        host: 'host-a',
        last_seen_ipv4: '192.0.2.10',
        dollars_per_month: '12.50',
        deleted: true,
        failure: null,
      },
    ]);
    const accounts = await db.pool.query('SELECT email FROM accounts ORDER BY email');
    assert.deepEqual(
      accounts.rows.map((r) => r.email),
      ['alice@example.org', 'bob@example.org'],
    );
  });

  it('records each operation asked of a host and the report that completed it', async () => {
    const { rows } = await db.pool.query(
      `SELECT o.kind, o.host, o.outcome, o.completed IS NOT NULL AS completed FROM operations o
       JOIN vms v ON v.id = o.vm_id WHERE v.size = 'f1-m' ORDER BY o.created`,
    );
    assert.deepEqual(rows, [
      { kind: 'create', host: 'host-a', outcome: 'provisioned', completed: true },
      { kind: 'stop', host: 'host-a', outcome: 'stopped', completed: true },
      { kind: 'start', host: 'host-a', outcome: 'running', completed: true },
      { kind: 'delete', host: 'host-a', outcome: 'deleted', completed: true },
    ]);
    const hosts = await db.pool.query('SELECT id, memory_mb, token_hash IS NOT NULL AS has_token, removed FROM hosts');
    assert.deepEqual(hosts.rows, [{ id: 'test-host', memory_mb: 1_000_000, has_token: true, removed: null }]);
  });

  it('a payment received before its account was recorded counts, as of then, from when it was received', async () => {
    const { rows } = await db.pool.query(
      `SELECT to_char(created AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') AS created FROM payments WHERE dollars = 25`,
    );
    assert.equal(rows[0].created, '2025-12-30 12:00');
    const client = await db.pool.connect();
    try {
      await shadowProjectionsAt(client, { asOf: new Date('2025-12-31T00:00:00Z') });
      const asOf = await client.query(`SELECT p.dollars::text, a.email FROM payments p JOIN accounts a ON a.id = p.account_id`);
      assert.deepEqual(asOf.rows, [{ dollars: '25.00', email: 'alice@example.org' }]);
      assert.equal((await client.query('SELECT count(*)::int AS n FROM vms')).rows[0].n, 0);
    } finally {
      client.release(true);
    }
  });

  it('writes payment_holds rows as the hold events say, who closed one and why from their metadata', async () => {
    const { rows } = await db.pool.query(
      `SELECT id, provider, reference, email, amount_cents::int AS amount, expected_cents::int AS expected, reason,
              held IS NOT NULL AS held, resolved IS NOT NULL AS resolved, resolved_by, resolution
       FROM payment_holds ORDER BY reference`,
    );
    assert.deepEqual(
      rows.map((row) => ({ ...row })),
      [
        {
          id: holdIdOf('btcpay', 'inv_held_2'),
          provider: 'btcpay',
          reference: 'inv_held_2',
          email: null,
          amount: 999,
          expected: null,
          reason: 'no checkout',
          held: true,
          resolved: true,
          resolved_by: 'operator:test',
          resolution: 'refunded in BTCPay',
        },
        {
          id: holdIdOf('stripe', 'pi_held_1'),
          provider: 'stripe',
          reference: 'pi_held_1',
          email: 'alice@example.org',
          amount: 1500,
          expected: 2000,
          reason: 'the amount differs from the checkout',
          held: true,
          resolved: false,
          resolved_by: null,
          resolution: null,
        },
      ],
    );
    const streams = await db.pool.query(
      `SELECT DISTINCT stream_id FROM emt_messages WHERE message_type LIKE 'PaymentHold%' OR message_type = 'PaymentHeld'`,
    );
    assert.deepEqual(
      streams.rows.map((row) => row.stream_id).sort(),
      [holdStream(holdIdOf('btcpay', 'inv_held_2')), holdStream(holdIdOf('stripe', 'pi_held_1'))].sort(),
    );
  });

  it('lets nobody but the projector write payment_holds: not capsul_app, not the owner', async () => {
    await assert.rejects(db.pool.query(`UPDATE payment_holds SET resolved = now()`), /permission denied/);
    await assert.rejects(
      db.pool.query(
        `INSERT INTO payment_holds (id, provider, reference, amount_cents, reason, held) VALUES ('x', 'stripe', 'pi_x', 1, 'x', now())`,
      ),
      /permission denied/,
    );
    await assert.rejects(db.admin.query(`UPDATE payment_holds SET resolved = NULL`), /payment_holds is a projection of the event ledger/);
    await assert.rejects(db.admin.query(`DELETE FROM payment_holds`), /projection of the event ledger/);
    await assert.rejects(db.admin.query(`TRUNCATE payment_holds`), /projection of the event ledger/);
  });

  it('equals an in-memory replay of every event, row for row', async () => {
    const memory = new MemoryTables();
    for await (const batch of readAllEvents(db.pool)) for (const stored of batch) memory.apply(stored);
    for (const table of tableNames) {
      const replayed = memory.rows(table).length;
      assert.equal((await tableText(table)).length, replayed, `${table} row count`);
    }
    assert.deepEqual(await verifyProjections(db.pool), projectionsMatch);
  });

  it('a rebuild gives identical tables, and identical row histories', async () => {
    const before = Object.fromEntries(await Promise.all(tableNames.map(async (t) => [t, await tableText(t)])));
    const historiesBefore = Object.fromEntries(await Promise.all(tableNames.map(async (t) => [t, await historyText(t)])));
    const { rows, changed } = await rebuildProjections(db.admin);
    // The history index: one row per event of an account's stream or of a capsul's.
    const indexed = await db.pool.query(
      `SELECT count(*)::int AS n FROM emt_messages WHERE stream_id LIKE 'account-%' OR stream_id LIKE 'vm-%'`,
    );
    assert.equal(rows.account_events, indexed.rows[0].n);
    assert.deepEqual(Object.fromEntries(tableNames.map((t) => [t, rows[t]])), {
      accounts: 2,
      payments: 3,
      vms: 3,
      hosts: 1,
      operations: 10,
      drift: 0,
      payment_holds: 2,
    });
    assert.ok(rows.vms_history > rows.vms, 'each capsul has several versions');
    assert.deepEqual(
      Object.values(changed),
      Object.values(changed).map(() => 0),
      'a rebuild of correct tables writes nothing',
    );
    for (const table of tableNames) {
      assert.deepEqual(await tableText(table), before[table], table);
      assert.deepEqual(await historyText(table), historiesBefore[table], historyTable(table));
    }
  });

  it("verify notices a projection changed behind the projector's back", async () => {
    const client = await db.admin.connect();
    try {
      await client.query('ALTER TABLE payments DISABLE TRIGGER capsul_projection_guard');
      await client.query(`UPDATE payments SET dollars = 1 WHERE email = 'bob@example.org'`);
      await client.query('ALTER TABLE payments ENABLE TRIGGER capsul_projection_guard');
    } finally {
      client.release();
    }
    const result = await verifyProjections(db.pool);
    assert.equal(result.matches, false);
    assert.equal(result.differences.payments, 1); // one payment differs from its replay
    assert.deepEqual(result.comparedRowByRow, ['payments'], 'only the table whose digest differs is compared row by row');
    await rebuildProjections(db.admin);
    assert.equal((await verifyProjections(db.pool)).matches, true);
  });

  it('keeps every event of the account stream in order', async () => {
    const accountId = (await db.ledger.accountIdFor('alice@example.org'))!;
    const types: string[] = [];
    for await (const batch of readAllEvents(db.pool, { selectors: [{ stream: accountStream(accountId) }] })) {
      types.push(...batch.map((s) => s.event.type));
    }
    assert.deepEqual(types, [
      'AccountOpened',
      'PaymentRecorded',
      'PaymentRecorded',
      'PaymentInvalidated',
      'PaymentReinstated',
      'PaymentRefunded',
      'PaymentRefunded',
      'BalanceWarningIssued',
      'VmCreationRequested',
      'VmCreationRequested',
      'VmCreationRequested',
      'VmDeletionRequested',
    ]);
  });
});
