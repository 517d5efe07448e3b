// The guard triggers: mistakes by the owner or a superuser (a psql session on DATABASE_URL) are refused
// too. Everyone else is stopped by privileges first (privileges.int.test.ts); what a superuser does on
// purpose (disabling a trigger, replica mode) is what the signed log reveals (test/audit).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { operator, sshKey, testDatabase, type TestDatabase } from '../support/db.ts';

let db: TestDatabase;
let paymentId: number;

before(async () => {
  db = await testDatabase();
  ({ paymentId } = await db.ledger.recordPayment({ email: 'guard@example.org', amountCents: 2000, cause: operator }));
  await db.ledger.createVm({ email: 'guard@example.org', size: 'f1-xs', os: 'debian12', sshPublicKeys: [sshKey], cause: operator });
});
after(() => db.close());

async function refused(sql: string, code: string, params: unknown[] = []) {
  await assert.rejects(db.admin.query(sql, params), (error: { code?: string }) => {
    assert.equal(error.code, code, `${sql} → ${String(error)}`);
    return true;
  });
}

const count = async (sql: string) => (await db.admin.query(sql)).rows[0].n as number;

describe('the event store is append-only', () => {
  for (const sql of [
    `UPDATE emt_messages SET message_data = '{}'`,
    `DELETE FROM emt_messages`,
    `TRUNCATE emt_messages`,
    `DELETE FROM emt_messages_emt_default_active`,
    `TRUNCATE emt_messages_emt_default_active`,
    `DELETE FROM emt_streams`,
    `TRUNCATE emt_streams`,
    `UPDATE emt_streams SET stream_position = 0`,
  ]) {
    it(`refuses ${sql}`, async () => {
      const before = await count('SELECT count(*)::int AS n FROM emt_messages');
      await refused(sql, 'CS002');
      assert.equal(await count('SELECT count(*)::int AS n FROM emt_messages'), before);
    });
  }

  it("refuses moving a stream's position without an append, at commit", async () => {
    const {
      rows: [stream],
    } = await db.admin.query(`SELECT stream_id, stream_position FROM emt_streams WHERE stream_id LIKE 'account-%' LIMIT 1`);
    await assert.rejects(
      db.admin.query('UPDATE emt_streams SET stream_position = stream_position + 5 WHERE stream_id = $1', [stream.stream_id]),
      (error: { code?: string; message?: string }) => error.code === 'CS002' && /moves only with an append/.test(error.message ?? ''),
    );
    const {
      rows: [after],
    } = await db.admin.query('SELECT stream_position FROM emt_streams WHERE stream_id = $1', [stream.stream_id]);
    assert.equal(after.stream_position, stream.stream_position);
    await db.ledger.recordPayment({ email: 'guard@example.org', amountCents: 100, cause: operator });
  });

  it('names how to correct history instead', async () => {
    await assert.rejects(db.admin.query('DELETE FROM emt_messages'), (error: { hint?: string }) => {
      assert.match(error.hint ?? '', /corrections are new events/);
      return true;
    });
  });
});

describe('projections are written only by the projector', () => {
  for (const [sql, table] of [
    [`UPDATE payments SET invalidated = true`, 'payments'],
    [`DELETE FROM payments`, 'payments'],
    [
      `INSERT INTO payments (id, created, email, dollars, invalidated, account_id, provider, recorded)
      VALUES (999, now(), 'x@y.org', 1, false, 'a', 'manual', now())`,
      'payments',
    ],
    [`TRUNCATE payments`, 'payments'],
    [`UPDATE vms SET deleted = now()`, 'vms'],
    [`DELETE FROM vms`, 'vms'],
    [`TRUNCATE vms`, 'vms'],
    [`UPDATE accounts SET email = 'someone@else.org'`, 'accounts'],
    [`DELETE FROM accounts`, 'accounts'],
    // the history index (schema 22): written by capsul_append, rebuilt by rebuild-projections
    [`DELETE FROM account_events`, 'account_events'],
    [`UPDATE account_events SET message_type = 'PaymentRecorded'`, 'account_events'],
    [`INSERT INTO account_events VALUES ('a', pg_current_xact_id(), 999, 'PaymentRecorded')`, 'account_events'],
    [`TRUNCATE account_events`, 'account_events'],
  ] as const) {
    it(`refuses ${sql.split('\n')[0]}`, async () => {
      await refused(sql, 'CS001');
      assert.ok((await count(`SELECT count(*)::int AS n FROM ${table}`)) > 0);
    });
  }

  it('tells the operator which command to use', async () => {
    await assert.rejects(db.admin.query('UPDATE payments SET invalidated = true'), (error: { hint?: string }) => {
      assert.match(error.hint ?? '', /capsul invalidate-payment/);
      return true;
    });
  });

  it("keeps the projector setting to the projector's own transaction", async () => {
    const client = await db.admin.connect();
    try {
      await client.query('BEGIN');
      await client.query(`SELECT set_config('capsul.projector', 'on', true)`);
      await client.query('COMMIT');
      await assert.rejects(client.query('UPDATE payments SET invalidated = true'), { code: 'CS001' });
    } finally {
      client.release();
    }
  });

  it('lets the projector write only projection tables', async () => {
    const op = {
      kind: 'insert',
      table: 'vm_sizes',
      values: { id: 'f9-evil', dollars_per_month: '0.01', vcpus: 64, memory_mb: 1, bandwidth_gb_per_month: 0 },
      lookups: {},
    };
    await assert.rejects(
      db.admin.query('SELECT capsul_apply_projection($1::jsonb)', [JSON.stringify([op])]),
      /"vm_sizes" is not a projection table/,
    );
    assert.equal(await count(`SELECT count(*)::int AS n FROM vm_sizes WHERE id = 'f9-evil'`), 0);
  });

  it('lets an operator change a projection only by disabling its guard on purpose', async () => {
    const client = await db.admin.connect();
    try {
      await client.query('BEGIN');
      await client.query('ALTER TABLE payments DISABLE TRIGGER capsul_projection_guard');
      await client.query('UPDATE payments SET invalidated = true WHERE id = $1', [paymentId]);
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
    const { rows } = await db.admin.query('SELECT invalidated FROM payments WHERE id = $1', [paymentId]);
    assert.equal(rows[0].invalidated, false);
  });
});
