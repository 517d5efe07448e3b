// Least privilege: what capsul_app (the hub, the jobs, the commands, or whoever stole its password) may
// not do, however it asks. Each attack from the outside tester's report is tried on capsul_app's own
// connection and must be refused by the database, changing nothing. (capsul_reader's side is tried
// through `capsul sql` in test/cli/cli.e2e.test.ts; the superuser's side is the log's: test/audit.)
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { operator, sshKey, testDatabase, type TestDatabase } from '../support/db.ts';
import { databaseFingerprint } from '../support/fingerprint.ts';

let db: TestDatabase;
let paymentId: number;

before(async () => {
  db = await testDatabase();
  ({ paymentId } = await db.ledger.recordPayment({ email: 'app@example.org', amountCents: 2000, cause: operator }));
  await db.ledger.createVm({ email: 'app@example.org', size: 'f1-xs', os: 'debian12', sshPublicKeys: [sshKey], cause: operator });
});
after(() => db.close());

/** Runs `sql` as capsul_app (one session, so SET and a later statement share it): refused, nothing changed. */
async function refused(statements: string[], code = '42501') {
  const before = await databaseFingerprint(db.admin);
  const client = await db.pool.connect();
  try {
    let error: { code?: string; message?: string } | undefined;
    for (const sql of statements) {
      try {
        await client.query(sql);
      } catch (caught) {
        error = caught as { code?: string };
        break;
      }
    }
    assert.ok(error, `${statements.join('; ')} was not refused`);
    assert.equal(error.code, code, `${statements.join('; ')} → ${error.message}`);
  } finally {
    await client.query('ROLLBACK').catch(() => {});
    await client.query('RESET ALL').catch(() => {});
    client.release();
  }
  assert.deepEqual(await databaseFingerprint(db.admin), before, `${statements.join('; ')} changed something`);
}

describe('capsul_app cannot write history or projections except through capsul_append', () => {
  it('is a plain role: not a superuser, not the owner, cannot become either', async () => {
    const {
      rows: [who],
    } = await db.pool.query(`SELECT current_user AS name, rolsuper, rolbypassrls, rolcreaterole,
      pg_has_role(current_user, 'capsul_owner', 'MEMBER') AS owner FROM pg_roles WHERE rolname = current_user`);
    assert.deepEqual(who, { name: 'capsul_app', rolsuper: false, rolbypassrls: false, rolcreaterole: false, owner: false });
    await refused(['SET ROLE capsul_owner']);
    await refused(['SET ROLE postgres']);
    await refused(['SET SESSION AUTHORIZATION postgres']);
  });

  it("refuses the projector's setting and function: SET capsul.projector, capsul_apply_projection", async () => {
    await refused([`SET capsul.projector = 'on'`, `UPDATE payments SET dollars = 777 WHERE id = ${paymentId}`]);
    await refused(['BEGIN', `SELECT set_config('capsul.projector', 'on', true)`, 'DELETE FROM vms']);
    const op = { kind: 'update', table: 'payments', values: { id: paymentId, dollars: '777' }, lookups: {} };
    await refused([`SELECT capsul_apply_projection('${JSON.stringify([op])}'::jsonb)`]);
  });

  it("refuses the row history: its tables, and the projector's function that writes them", async () => {
    await refused([`UPDATE payments_history SET dollars = 777 WHERE id = ${paymentId}`]);
    await refused(['BEGIN', `SELECT set_config('capsul.projector', 'on', true)`, 'DELETE FROM vms_history']);
    await refused([`INSERT INTO accounts_history SELECT * FROM accounts_history`]);
    await refused([`SELECT capsul_record_history('payments', 'update', '{"id": ${paymentId}, "dollars": "777"}'::jsonb, '-infinity')`]);
  });

  it("refuses forged events: INSERT into emt_messages, emmett's append function without the projection", async () => {
    await refused([
      `INSERT INTO emt_messages (stream_position, transaction_id, stream_id, message_schema_version, message_id,
      message_type, message_data, message_metadata) VALUES (9, pg_current_xact_id(), 'account-forged', '1', 'f', 'PaymentRecorded', '{}', '{}')`,
    ]);
    await refused([
      `SELECT * FROM emt_append_to_stream(ARRAY['m'], ARRAY['{}'::jsonb], ARRAY['{}'::jsonb], ARRAY['1'], ARRAY['PaymentRecorded'],
      ARRAY['E'], 'account-forged', 'account', 0, 'emt:default')`,
    ]);
  });

  it("refuses editing events: replica mode, UPDATE, DELETE, TRUNCATE, moving a stream's position", async () => {
    await refused(['SET session_replication_role = replica']);
    await refused([`UPDATE emt_messages SET message_data = '{}'`]);
    await refused(['DELETE FROM emt_messages']);
    await refused(['TRUNCATE emt_messages_emt_default_active']);
    await refused(['UPDATE emt_streams SET stream_position = stream_position + 5']);
  });

  it("refuses DDL: detaching or dropping the events' partition, replacing a function, renaming or dropping a projection", async () => {
    await refused(['ALTER TABLE emt_messages DETACH PARTITION emt_messages_emt_default']);
    await refused(['DROP TABLE emt_messages_emt_default_active']);
    await refused([`CREATE OR REPLACE FUNCTION capsul_apply_projection(ops jsonb) RETURNS void LANGUAGE sql AS 'SELECT'`]);
    await refused(['ALTER TABLE payments RENAME TO U&"pay\\0064ents"']);
    await refused(['ALTER TABLE payments DISABLE TRIGGER capsul_projection_guard']);
    await refused(['CREATE TABLE mine (id int)']);
  });

  it('refuses the history index except through capsul_append, which takes no rows for it from its caller', async () => {
    await refused([`INSERT INTO account_events VALUES ('forged', pg_current_xact_id(), 1, 'PaymentRecorded')`]);
    await refused(['DELETE FROM account_events']);
    await refused(['TRUNCATE account_events']);
    await refused(['BEGIN', `SELECT set_config('capsul.projector', 'on', true)`, `UPDATE account_events SET message_type = 'x'`]);
    await refused(['ALTER TABLE account_events DISABLE TRIGGER capsul_history_index_guard']);
    // The projection capsul_append writes comes from its caller: naming the index there refuses the
    // whole append (only the event position sequence moves, as it does for any failed append).
    const rows = async () => (await db.admin.query(`SELECT count(*)::int AS n FROM account_events`)).rows[0].n;
    const held = await rows();
    const op = { kind: 'insert', table: 'account_events', values: { account_id: 'forged' }, lookups: {} };
    await assert.rejects(
      db.pool.query(
        `SELECT * FROM capsul_append('account-forged', 'account', 0, ARRAY['m'], ARRAY['AccountOpened'], ARRAY['{}'::jsonb],
        ARRAY['{}'::jsonb], $1::jsonb)`,
        [JSON.stringify([op])],
      ),
      /"account_events" is not a projection table/,
    );
    assert.equal(await rows(), held);
    const forged = await db.admin.query(`SELECT count(*)::int AS n FROM emt_messages WHERE stream_id = 'account-forged'`);
    assert.equal(forged.rows[0].n, 0);
  });

  it("refuses the log's tables except through the sealer", async () => {
    await refused([`INSERT INTO capsul_log_leaves (leaf_index, global_position, leaf_hash) VALUES (999, 999, sha256('x'))`]);
    await refused([`INSERT INTO capsul_log_checkpoints (tree_size, root_hash, note) VALUES (1, sha256('x'), 'forged')`]);
    await refused(['DELETE FROM capsul_log_nodes']);
  });

  it('refuses the catalogue, and statements it never runs on its own tables', async () => {
    await refused([`UPDATE vm_sizes SET dollars_per_month = 0.01`]);
    await refused([`INSERT INTO os_images VALUES ('evil', 'x.qcow2', 'evil', false)`]);
    await refused(['TRUNCATE sessions']);
    await refused(['DELETE FROM payment_holds']);
    await refused([`UPDATE payment_holds SET resolved = now()`]);
    await refused([
      `INSERT INTO payment_holds (id, provider, reference, amount_cents, reason, held) VALUES ('x', 'stripe', 'pi_x', 1, 'x', now())`,
    ]);
    await refused(['DELETE FROM warning_emails']);
    await refused(['DELETE FROM incidents']);
    await refused(['TRUNCATE incidents']);
    await refused(['DELETE FROM webhook_deliveries']);
    await refused(['DELETE FROM statement_emails']);
    await refused([`UPDATE statement_emails SET outcome = 'sent'`]);
    await refused([`SELECT setval('payment_ids', 1)`]);
    // Snapshots (migration 23): written and replaced by loads, never deleted by the app.
    await refused(['DELETE FROM stream_snapshots']);
    await refused(['TRUNCATE stream_snapshots']);
  });

  it("refuses the server's powers: programs, files, large objects, other sessions", async () => {
    await refused([`COPY (SELECT 1) TO PROGRAM 'id > /tmp/capsul-app-pwned'`]);
    await refused([`SELECT pg_read_file('/etc/passwd')`]);
    await refused([`COPY payments TO '/tmp/capsul-app-payments.csv'`]);
    await refused([`SELECT lo_from_bytea(0, 'kept')`]);
    await refused([`SELECT lo_import('/etc/passwd')`]);
    const other = await db.admin.query('SELECT pg_backend_pid() AS pid');
    await refused([`SELECT pg_terminate_backend(${other.rows[0].pid})`]);
  });

  it('still does its own work: appends through capsul_append, writes its own tables, takes advisory locks', async () => {
    const { paymentId: next } = await db.ledger.recordPayment({ email: 'app@example.org', amountCents: 500, cause: operator });
    assert.ok(next > paymentId);
    await db.pool.query(
      `INSERT INTO sessions (id_hash, email, created, last_seen, expires) VALUES (sha256('s'), 'app@example.org', now(), now(), now())`,
    );
    await db.pool.query(`DELETE FROM sessions WHERE id_hash = sha256('s')`);
    const { rows } = await db.pool.query('SELECT pg_try_advisory_lock(7, 7) AS ok');
    assert.equal(rows[0].ok, true);
    await db.pool.query('SELECT pg_advisory_unlock(7, 7)');
  });
});
