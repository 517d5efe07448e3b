// Schema changes that never lose facts: a down step may drop what is rebuilt from the events
// (projections), seeded again (the catalogue) or worthless once gone (sessions, login links), and is
// refused, changing nothing, when it would drop events or facts no event holds. After a schema change the
// ids handed out by sequences stay above every id the events hold.
import assert from 'node:assert/strict';
import { databaseFingerprint } from '../support/fingerprint.ts';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import type pg from 'pg';
import { generateSignerKey } from '../../src/audit/note.ts';
import { sealCommitted, signCheckpoint } from '../../src/audit/log.ts';
import { createPool, type Database } from '../../src/db/database.ts';
import { DowngradeRefusedError, latestVersion, migrate, migrationsDir, schemaVersion } from '../../src/db/migrate.ts';
import { accountStream } from '../../src/domain/account/events.ts';
import { Hosts } from '../../src/ledger/hosts.ts';
import { Ledger } from '../../src/ledger/ledger.ts';
import { prepareDatabase } from '../../src/ledger/open.ts';
import { holdIdOf } from '../../src/domain/hold/events.ts';
import { holdPayment, resolveHold } from '../../src/payments/holds.ts';
import { rebuildProjections, verifyProjections } from '../../src/projections/rebuild.ts';
import { tableNames } from '../../src/projections/tables.ts';
import { emptyDatabase, envFor, operator, sshKey, urlFor } from '../support/db.ts';
import { capsulHere } from '../support/cli.ts';
import { assertRefused } from '../support/processes.ts';

const latest = latestVersion();

type Fresh = {
  name: string;
  /** the superuser's pool: migrations, and the facts planted below */
  admin: pg.Pool;
  database: Database;
  /** a new capsul_app pool, as a process started now would open (closed with the database) */
  appPool(): pg.Pool;
};

/** An empty database migrated to the latest version by migrate() itself, dropped afterwards. */
async function withMigratedDatabase(work: (db: Fresh) => Promise<void>): Promise<void> {
  const empty = await emptyDatabase();
  const admin = createPool(empty.url, 4);
  const pools: pg.Pool[] = [];
  try {
    await migrate(admin);
    const database: Database = {
      urls: { admin: empty.url, app: urlFor(empty.name, 'app'), reader: urlFor(empty.name, 'reader') },
      embedded: false,
      stop: async () => {},
    };
    const appPool = () => {
      const pool = createPool(database.urls.app, 4);
      pools.push(pool);
      return pool;
    };
    await work({ name: empty.name, admin, database, appPool });
  } finally {
    for (const pool of pools) await pool.end().catch(() => {});
    await admin.end().catch(() => {});
    await empty.drop();
  }
}

/** Payments of two accounts, a host, a capsul, an invalidation and a refund: every projection has rows. */
async function recordSomeHistory(db: Fresh): Promise<{ ledger: Ledger; paymentIds: number[] }> {
  const pool = db.appPool();
  const ledger = new Ledger({ pool });
  await new Hosts({ pool }).add({ hostId: 'host-1', memoryMb: 1_000_000, vcpus: 1000, cause: operator });
  const paymentIds: number[] = [];
  for (const [email, amountCents] of [
    ['alice@example.org', 2000],
    ['alice@example.org', 533],
    ['bob@example.org', 1000],
  ] as const) {
    paymentIds.push((await ledger.recordPayment({ email, amountCents, cause: operator })).paymentId);
  }
  await ledger.createVm({ email: 'alice@example.org', size: 'f1-xs', os: 'debian12', sshPublicKeys: [sshKey], cause: operator });
  await ledger.invalidatePayment(paymentIds[1]!, { ...operator, reason: 'chargeback' });
  // A refund lives in a column (payments.refunded_dollars) that 08's down drops: the events bring it back.
  assert.deepEqual(await ledger.recordRefund({ paymentId: paymentIds[2]!, totalRefundedCents: 250, reference: 're_1', cause: operator }), {
    changed: true,
  });
  return { ledger, paymentIds };
}

/** Every projection's rows, as text. */
async function projectionRows(admin: pg.Pool): Promise<Record<string, string[]>> {
  const rows: Record<string, string[]> = {};
  for (const table of tableNames)
    rows[table] = (await admin.query(`SELECT t::text AS row FROM ${table} t ORDER BY t.id`)).rows.map((r) => r.row);
  return rows;
}

const eventsText = async (admin: pg.Pool) =>
  (
    await admin.query(
      `SELECT count(*)::text || ':' || md5(coalesce(string_agg(m::text, '|' ORDER BY m.global_position), '')) AS h FROM emt_messages m`,
    )
  ).rows[0].h as string;

/** A down step refused: DowngradeRefusedError, its one-line message names `names`, and nothing changed. */
async function assertDownRefused(db: Fresh, target: number, names: RegExp[]): Promise<void> {
  const before = await databaseFingerprint(db.admin);
  const version = await schemaVersion(db.admin);
  await assert.rejects(migrate(db.admin, { target }), (error: Error) => {
    assert.ok(error instanceof DowngradeRefusedError, `expected a DowngradeRefusedError, got ${String(error)}`);
    assert.match(error.message, /^refused: schema \d+ → \d+ \(\d\d_down_[a-z0-9_]+\.sql\) would drop [^\n]+$/);
    for (const name of names) assert.match(error.message, name);
    return true;
  });
  assert.equal(await schemaVersion(db.admin), version, 'the schema version did not move');
  assert.deepEqual(await databaseFingerprint(db.admin), before, 'nothing changed');
}

describe('a downgrade that would lose events is refused whole', () => {
  it('refuses migrate to 0 while events exist (DowngradeRefusedError naming emt_messages), and NOTHING changed', async () => {
    await withMigratedDatabase(async (db) => {
      await recordSomeHistory(db);
      await assertDownRefused(db, 0, [/emt_messages/, /^refused: schema 1 → 0 \(01_down_event_store\.sql\)/]);
      assert.equal(await schemaVersion(db.admin), latest);
    });
  });
});

describe('down steps that would drop facts no event holds', () => {
  it('13 → 12: refused while the log holds leaves (then checkpoints too); allowed while nothing is sealed', async () => {
    await withMigratedDatabase(async (db) => {
      await recordSomeHistory(db);
      // Events, but no leaf yet: the log's tables are empty and may go.
      assert.deepEqual(await migrate(db.admin, { target: 12 }), { from: latest, to: 12 });
      assert.deepEqual(await migrate(db.admin), { from: 12, to: latest });
      const pool = db.appPool();
      const { sealed } = await sealCommitted(pool, { waitMs: 120_000 });
      assert.ok(sealed > 0);
      await assertDownRefused(db, 12, [/^refused: schema 13 → 12 \(13_down_audit_log\.sql\)/, /capsul_log_leaves/, /capsul_log_nodes/]);
      const dir = mkdtempSync(path.join(os.tmpdir(), 'capsul-downgrade-'));
      try {
        const key = { ...generateSignerKey('capsul.test/ledger'), name: 'capsul.test/ledger' };
        assert.ok(await signCheckpoint(pool, key, path.join(dir, 'latest-checkpoint')));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
      await assertDownRefused(db, 12, [/capsul_log_leaves/, /capsul_log_checkpoints/]);
    });
  });

  it('14 → 13: refused while incident emails are recorded; allowed once there are none (the vms columns are a projection)', async () => {
    await withMigratedDatabase(async (db) => {
      await recordSomeHistory(db);
      assert.deepEqual(await migrate(db.admin, { target: 14 }), { from: latest, to: 14 });
      await db.admin.query(
        `INSERT INTO incident_emails (drift_id, recipients, sent) VALUES ('h/vanished-from-host/capsul-aaaaaaaaaa', 'ops@example.org', now())`,
      );
      await assertDownRefused(db, 13, [
        /^refused: schema 14 → 13 \(14_down_vanished_capsuls\.sql\) would drop the table incident_emails \(1 rows?\)/,
      ]);
      await db.admin.query('DELETE FROM incident_emails');
      assert.deepEqual(await migrate(db.admin, { target: 13 }), { from: 14, to: 13 });
    });
  });

  it('19 → 18: refused while statement_emails records a statement sent; allowed when it is empty', async () => {
    await withMigratedDatabase(async (db) => {
      await recordSomeHistory(db);
      await db.admin.query(`INSERT INTO statement_emails (account_id, month, outcome, decided) VALUES ('a', '2026-11', 'sent', now())`);
      await assertDownRefused(db, 18, [
        /^refused: schema 19 → 18 \(19_down_statement_emails\.sql\) would drop the table statement_emails \(1 rows?\)/,
      ]);
      await db.admin.query('DELETE FROM statement_emails');
      assert.deepEqual(await migrate(db.admin, { target: 18 }), { from: latest, to: 18 });
    });
  });

  it("24 → 23: the projector is version 21's again and capsul_append version 22's, word for word; the tables and their history stay a replay of the events either way", async () => {
    await withMigratedDatabase(async (db) => {
      const { ledger, paymentIds } = await recordSomeHistory(db);
      assert.deepEqual(await migrate(db.admin, { target: 23 }), { from: latest, to: 23 });
      const bodies = await db.admin.query(
        `SELECT proname, prosrc FROM pg_proc WHERE proname IN ('capsul_apply_projection', 'capsul_record_history', 'capsul_append', 'capsul_generate_projector')`,
      );
      const body = (file: string, name: string) =>
        new RegExp(`CREATE (?:OR REPLACE )?FUNCTION ${name}\\([\\s\\S]*?AS \\$\\$([\\s\\S]*?)\\$\\$;`).exec(
          readFileSync(path.join(migrationsDir, file), 'utf8'),
        )![1];
      assert.deepEqual(Object.fromEntries(bodies.rows.map((row) => [row.proname, row.prosrc])), {
        capsul_apply_projection: body('21_up_row_history.sql', 'capsul_apply_projection'),
        capsul_record_history: body('21_up_row_history.sql', 'capsul_record_history'),
        capsul_append: body('22_up_history_index.sql', 'capsul_append'),
      });
      // Appended at 23 and at 24 again: each writes what a replay of the events holds.
      await ledger.invalidatePayment(paymentIds[0]!, { ...operator, reason: 'chargeback' });
      assert.equal((await verifyProjections(db.admin)).matches, true);
      assert.deepEqual(await migrate(db.admin), { from: 23, to: latest });
      await ledger.reinstatePayment(paymentIds[0]!, { ...operator, reason: 'won the dispute' });
      await ledger.recordPayment({ email: 'bob@example.org', amountCents: 700, cause: operator });
      assert.equal((await verifyProjections(db.admin)).matches, true);
    });
  });

  it('23 → 22: the stream snapshots go with their rows (derived from the events), and the ledger answers the same', async () => {
    await withMigratedDatabase(async (db) => {
      const { ledger } = await recordSomeHistory(db);
      const balance = await ledger.balanceCents('alice@example.org');
      await db.admin.query(
        `INSERT INTO stream_snapshots (stream_id, stream_version, message_id, shape_version, state, taken)
         SELECT stream_id, stream_position, message_id, 1, '{}', now() FROM emt_messages WHERE stream_position = 1`,
      );
      assert.deepEqual(await migrate(db.admin, { target: 22 }), { from: latest, to: 22 });
      assert.equal((await db.admin.query(`SELECT to_regclass('stream_snapshots') AS t`)).rows[0].t, null);
      assert.deepEqual(await migrate(db.admin), { from: 22, to: latest });
      assert.equal((await db.admin.query('SELECT count(*)::int AS n FROM stream_snapshots')).rows[0].n, 0);
      assert.equal(await new Ledger({ pool: db.appPool() }).balanceCents('alice@example.org'), balance);
    });
  });

  it('18 ⇄ 17: who was told of a vanished capsul goes from incident_emails to incidents and back; the other incidents are monitoring and go', async () => {
    await withMigratedDatabase(async (db) => {
      await recordSomeHistory(db);
      assert.deepEqual(await migrate(db.admin, { target: 17 }), { from: latest, to: 17 });
      const told = {
        drift_id: 'rack1/vanished-from-host/capsul-aaaaaaaaaa',
        recipients: 'ops@example.org',
        sent: new Date('2026-11-02T10:00:00Z'),
      };
      await db.admin.query('INSERT INTO incident_emails (drift_id, recipients, sent) VALUES ($1, $2, $3)', [
        told.drift_id,
        told.recipients,
        told.sent,
      ]);
      assert.deepEqual(await migrate(db.admin, { target: 18 }), { from: 17, to: 18 });
      const { rows } = await db.admin.query(
        'SELECT kind, subject, summary, mailed_open, recipients, cleared IS NOT NULL AS cleared FROM incidents',
      );
      assert.deepEqual(rows, [
        {
          kind: 'vanished',
          subject: told.drift_id,
          summary: 'capsul capsul-aaaaaaaaaa vanished from host rack1',
          mailed_open: told.sent,
          recipients: told.recipients,
          cleared: true, // its drift is not there (any more): closed, not announced again
        },
      ]);
      await db.admin.query(
        `INSERT INTO incidents (kind, subject, opened, summary) VALUES ('host-offline', 'rack1', now(), 'host rack1 is offline')`,
      );
      await db.admin.query(`INSERT INTO webhook_deliveries (provider, failures) VALUES ('stripe', 3)`);
      assert.deepEqual(await migrate(db.admin, { target: 17 }), { from: 18, to: 17 });
      const back = await db.admin.query('SELECT drift_id, recipients, sent FROM incident_emails');
      assert.deepEqual(back.rows, [told]);
    });
  });

  it('10 → 9: refused while warning emails are recorded; allowed once there are none', async () => {
    await withMigratedDatabase(async (db) => {
      await recordSomeHistory(db);
      assert.deepEqual(await migrate(db.admin, { target: 10 }), { from: latest, to: 10 });
      await db.admin.query(`INSERT INTO warning_emails (event_position, account_id, level, sent) VALUES (1, 'a', 'zero_1w', now())`);
      await assertDownRefused(db, 9, [
        /^refused: schema 10 → 9 \(10_down_warning_emails\.sql\) would drop the table warning_emails \(1 rows?\)/,
      ]);
      await db.admin.query('DELETE FROM warning_emails');
      assert.deepEqual(await migrate(db.admin, { target: 9 }), { from: 10, to: 9 });
    });
  });

  it("9 → 8: refused while a held payment's resolution is recorded (its columns); allowed when they hold nothing", async () => {
    await withMigratedDatabase(async (db) => {
      await recordSomeHistory(db);
      assert.deepEqual(await migrate(db.admin, { target: 9 }), { from: latest, to: 9 });
      await db.admin.query(`INSERT INTO payment_holds (provider, reference, email, amount_cents, expected_cents, reason, held, resolved, resolved_by, resolution)
        VALUES ('stripe', 'pi_1', 'alice@example.org', 2000, 1000, 'amount differs', now(), now(), 'operator:alice', 'credited')`);
      await assertDownRefused(db, 8, [
        /^refused: schema 9 → 8 \(09_down_hold_resolution\.sql\)/,
        /the column payment_holds\.resolved_by/,
        /the column payment_holds\.resolution/,
      ]);
      await db.admin.query('UPDATE payment_holds SET resolved_by = NULL, resolution = NULL');
      assert.deepEqual(await migrate(db.admin, { target: 8 }), { from: 9, to: 8 });
      // The held payment itself is a fact: the next step down is refused while it is kept.
      await assertDownRefused(db, 7, [/^refused: schema 8 → 7 \(08_down_billing\.sql\) would drop the table payment_holds/]);
    });
  });

  it('8 → 7: refused while checkouts, held payments or receipts are kept, each; allowed when all are empty', async () => {
    await withMigratedDatabase(async (db) => {
      await recordSomeHistory(db);
      assert.deepEqual(await migrate(db.admin, { target: 8 }), { from: latest, to: 8 });
      const facts: [string, string][] = [
        [
          'provider_checkouts',
          `INSERT INTO provider_checkouts (provider, id, email, amount_cents, created, status, status_changed)
          VALUES ('stripe', 'cs_1', 'alice@example.org', 2000, now(), 'open', now())`,
        ],
        [
          'payment_holds',
          `INSERT INTO payment_holds (provider, reference, email, amount_cents, reason, held)
          VALUES ('btcpay', 'inv_1', 'bob@example.org', 999, 'no checkout', now())`,
        ],
        ['payment_receipts', `INSERT INTO payment_receipts (payment_id, sent) VALUES (1, now())`],
      ];
      for (const [table, insert] of facts) {
        await db.admin.query(insert);
        await assertDownRefused(db, 7, [
          new RegExp(`^refused: schema 8 → 7 \\(08_down_billing\\.sql\\) would drop the table ${table} \\(1 rows?\\)`),
        ]);
        await db.admin.query(`DELETE FROM ${table}`);
      }
      assert.deepEqual(await migrate(db.admin, { target: 7 }), { from: 8, to: 7 });
    });
  });

  it('7 → 6: refused while saved SSH keys are kept; logins and sessions may go with it', async () => {
    await withMigratedDatabase(async (db) => {
      await recordSomeHistory(db);
      assert.deepEqual(await migrate(db.admin, { target: 7 }), { from: latest, to: 7 });
      await db.admin.query(
        `INSERT INTO ssh_public_keys (email, name, content, created) VALUES ('alice@example.org', 'laptop', $1, now())`,
        [sshKey],
      );
      await db.admin.query(
        `INSERT INTO sessions (id_hash, email, created, last_seen, expires) VALUES ('\\x01', 'alice@example.org', now(), now(), now() + interval '1 day')`,
      );
      await db.admin.query(
        `INSERT INTO login_tokens (token_hash, email, created, expires) VALUES ('\\x02', 'alice@example.org', now(), now() + interval '1 hour')`,
      );
      await assertDownRefused(db, 6, [/^refused: schema 7 → 6 \(07_down_web\.sql\) would drop the table ssh_public_keys \(1 rows?\): /]);
      const refusal = await migrate(db.admin, { target: 6 }).catch((error: Error) => error.message);
      assert.doesNotMatch(String(refusal), /sessions|login_tokens/, 'sessions and login links are not facts');
      await db.admin.query('DELETE FROM ssh_public_keys');
      assert.deepEqual(await migrate(db.admin, { target: 6 }), { from: 7, to: 6 });
    });
  });
});

describe('held payments become events (15)', () => {
  const holdRows = async (admin: pg.Pool) =>
    (
      await admin.query(
        `SELECT provider, reference, email, amount_cents::text, expected_cents::text, reason, held::text, resolved::text, resolved_by, resolution
         FROM payment_holds ORDER BY provider, reference`,
      )
    ).rows.map((row) => ({ ...row }));
  const countOf = async (admin: pg.Pool, type: string) =>
    Number((await admin.query('SELECT count(*)::int AS n FROM emt_messages WHERE message_type = $1', [type])).rows[0].n);

  it('15 → 14 keeps the rows in a plain table again; back at 15 the rows kept meanwhile are events, sealed, and a rebuild gives them row for row', async () => {
    await withMigratedDatabase(async (db) => {
      await recordSomeHistory(db);
      const pool = db.appPool();
      const holds = { pool, mailer: { send: async () => {}, outboxDir: null }, adminEmails: [], now: () => new Date() };
      const held = { email: 'alice@example.org', amountCents: 1500, expectedCents: 2000, reason: 'the amount differs' };
      assert.deepEqual(await holdPayment(holds, { ...held, provider: 'stripe', reference: 'pi_new' }), { new: true });
      assert.deepEqual(await migrate(db.admin, { target: 14 }), { from: latest, to: 14 });
      // At 14 the table is the app's own again: holds are written and closed in place.
      await db.admin.query(`INSERT INTO payment_holds (provider, reference, email, amount_cents, expected_cents, reason, held, resolved, resolved_by, resolution)
        VALUES ('btcpay', 'inv_old', NULL, 999, NULL, 'no checkout', '2026-01-02T03:04:05.123456Z', NULL, NULL, NULL),
               ('stripe', 'pi_old', 'bob@example.org', 1500, 2000, 'amount differs', '2026-01-01T00:00:00.5Z', '2026-01-03T00:00:00Z', 'operator:alice', 'refunded in Stripe')`);
      await db.admin.query(
        `UPDATE payment_holds SET resolved = '2026-01-04T00:00:00Z', resolved_by = 'operator:carol', resolution = 'a duplicate' WHERE reference = 'pi_new'`,
      );
      const kept = await holdRows(db.admin);
      assert.equal(kept.length, 3);

      assert.deepEqual(await migrate(db.admin), { from: 14, to: latest });
      assert.deepEqual(await holdRows(db.admin), kept, 'the rows are as they were');
      assert.equal(await countOf(db.admin, 'PaymentHeld'), 3, 'one PaymentHeld per hold: pi_new kept its own');
      assert.equal(await countOf(db.admin, 'PaymentHoldResolved'), 2, 'pi_old and pi_new were closed');
      const ids = await db.admin.query('SELECT provider, reference, id FROM payment_holds');
      for (const row of ids.rows) assert.equal(row.id, holdIdOf(row.provider, row.reference), 'the same id as holdIdOf');
      await rebuildProjections(db.admin);
      assert.deepEqual(await holdRows(db.admin), kept, 'a rebuild gives the same rows');
      assert.equal((await verifyProjections(db.admin)).matches, true);
      await sealCommitted(pool, { waitMs: 120_000 });
      const unsealed = await db.admin.query(
        `SELECT count(*)::int AS n FROM emt_messages m WHERE NOT EXISTS (SELECT 1 FROM capsul_log_leaves l WHERE l.global_position = m.global_position)`,
      );
      assert.equal(unsealed.rows[0].n, 0, "the holds' events are sealed into the log like any other");

      // Closed now through its events; the app itself can no longer write the table.
      await resolveHold(pool, { provider: 'btcpay', reference: 'inv_old', cause: { ...operator, reason: 'refunded' }, now: new Date() });
      await assert.rejects(pool.query(`UPDATE payment_holds SET resolved = NULL`), /permission denied/);
      assert.equal((await verifyProjections(db.admin)).matches, true);
    });
  });
});

describe('down steps that drop only what the events rebuild', () => {
  it('2 → 1 with events present drops the projections; prepareDatabase migrates up and rebuilds every row', async () => {
    await withMigratedDatabase(async (db) => {
      const { paymentIds } = await recordSomeHistory(db);
      const projections = await projectionRows(db.admin);
      assert.equal(projections.payments!.length, paymentIds.length);
      assert.equal(
        (await db.admin.query('SELECT refunded_dollars::text AS r FROM payments WHERE id = $1', [paymentIds[2]])).rows[0].r,
        '2.50',
      );
      const events = await eventsText(db.admin);
      assert.deepEqual(await migrate(db.admin, { target: 1 }), { from: latest, to: 1 });
      const {
        rows: [gone],
      } = await db.admin.query(
        `SELECT to_regclass('payments') IS NULL AND to_regclass('accounts') IS NULL AND to_regclass('vms') IS NULL AND to_regclass('payment_ids') IS NULL AS gone`,
      );
      assert.equal(gone.gone, true, 'the projections and the payment id sequence went');
      assert.equal(await eventsText(db.admin), events, 'every event stayed');
      const lines: string[] = [];
      assert.deepEqual(await prepareDatabase(db.database, { log: (line) => lines.push(line) }), { from: 1, to: latest });
      assert.ok(
        lines.some((line) => /rebuilding the projections/.test(line)),
        lines.join('\n'),
      );
      assert.deepEqual(await projectionRows(db.admin), projections, 'payments (and every projection) hold every row again');
      assert.equal(await eventsText(db.admin), events);
    });
  });
});

describe('the history index (22)', () => {
  const indexRows = async (admin: pg.Pool, from = 'account_events') =>
    (
      await admin.query(
        `SELECT account_id, transaction_id::text, global_position::text, message_type FROM ${from} t ORDER BY t.global_position, t.account_id`,
      )
    ).rows.map((row) => ({ ...row }));

  it("22 → 21 drops it, rows and all, and capsul_append is version 11's again; back at 22 the events fill it again, row for row", async () => {
    await withMigratedDatabase(async (db) => {
      const { ledger } = await recordSomeHistory(db);
      const before = await indexRows(db.admin);
      assert.ok(before.some((row) => row.message_type === 'VmCreationRequested'));
      assert.deepEqual(await migrate(db.admin, { target: 21 }), { from: latest, to: 21 });
      const gone = await db.admin.query(`SELECT to_regclass('account_events') IS NULL AS gone`);
      assert.equal(gone.rows[0].gone, true);
      const version11 = /CREATE FUNCTION capsul_append\([\s\S]*?AS \$\$([\s\S]*?)\$\$;/.exec(
        readFileSync(path.join(migrationsDir, '11_up_roles.sql'), 'utf8'),
      )![1];
      const { rows } = await db.admin.query(`SELECT prosrc FROM pg_proc WHERE proname = 'capsul_append'`);
      assert.equal(rows[0].prosrc, version11);
      // Appended at 21, with no index to write: the up step finds it among the events.
      await ledger.recordPayment({ email: 'bob@example.org', amountCents: 700, cause: operator });
      assert.deepEqual(await migrate(db.admin), { from: 21, to: latest });
      const after = await indexRows(db.admin);
      assert.deepEqual(after.slice(0, before.length), before);
      assert.deepEqual(
        after.slice(before.length).map((row) => row.message_type),
        ['PaymentRecorded'],
      );
      assert.deepEqual(after, await indexRows(db.admin, 'capsul_history_index_from_events()'));
    });
  });
});

describe('payment ids stay above the events', () => {
  /** Who each payment belongs to, from the events: the account stream its PaymentRecorded is in. */
  async function streamsOfPayments(admin: pg.Pool, type: string): Promise<Map<number, string>> {
    const { rows } = await admin.query(
      `SELECT (message_data->>'paymentId')::int AS id, stream_id FROM emt_messages WHERE message_type = $1`,
      [type],
    );
    return new Map(rows.map((row) => [row.id, row.stream_id]));
  }

  async function accountStreamOf(admin: pg.Pool, email: string): Promise<string> {
    const { rows } = await admin.query('SELECT id FROM accounts WHERE email = $1', [email]);
    return accountStream(rows[0].id);
  }

  /** Payments 1..3 (two accounts), down to 1 (which drops payment_ids), then `comeBack`; then the checks. */
  async function roundTrip(comeBack: (db: Fresh) => Promise<void>): Promise<void> {
    await withMigratedDatabase(async (db) => {
      const ledger = new Ledger({ pool: db.appPool() });
      const owners = ['alice@example.org', 'alice@example.org', 'bob@example.org'];
      const ids: number[] = [];
      for (const email of owners) ids.push((await ledger.recordPayment({ email, amountCents: 1000, cause: operator })).paymentId);
      assert.deepEqual(ids, [1, 2, 3]);
      assert.deepEqual(await migrate(db.admin, { target: 1 }), { from: latest, to: 1 });
      await comeBack(db);
      assert.equal(await schemaVersion(db.admin), latest);
      // A process started now (a new Ledger with its own pool) takes its ids from the sequence.
      const next = new Ledger({ pool: db.appPool() });
      const { paymentId } = await next.recordPayment({ email: 'carol@example.org', amountCents: 500, cause: operator });
      assert.equal(paymentId, 4, 'the next payment is 4, not 1');
      for (const id of ids) assert.deepEqual(await next.invalidatePayment(id, { ...operator, reason: 'chargeback' }), { changed: true });
      const recorded = await streamsOfPayments(db.admin, 'PaymentRecorded');
      const invalidated = await streamsOfPayments(db.admin, 'PaymentInvalidated');
      for (const [index, id] of ids.entries()) {
        assert.equal(invalidated.get(id), recorded.get(id), `payment ${id}'s invalidation is in its own account's stream`);
        assert.equal(recorded.get(id), await accountStreamOf(db.admin, owners[index]!));
      }
      const { rows } = await db.admin.query('SELECT id::int, email, invalidated FROM payments ORDER BY id');
      assert.deepEqual(
        rows.map((r) => ({ ...r })),
        [
          { id: 1, email: 'alice@example.org', invalidated: true },
          { id: 2, email: 'alice@example.org', invalidated: true },
          { id: 3, email: 'bob@example.org', invalidated: true },
          { id: 4, email: 'carol@example.org', invalidated: false },
        ],
      );
    });
  }

  it('after 2 → 1 and prepareDatabase back up: the next payment is 4 and invalidating 1..3 hits their accounts', async () => {
    await roundTrip(async (db) => {
      assert.deepEqual(await prepareDatabase(db.database), { from: 1, to: latest });
    });
  });

  it('after 2 → 1, migrate up and rebuildProjections: likewise', async () => {
    await roundTrip(async (db) => {
      assert.deepEqual(await migrate(db.admin), { from: 1, to: latest });
      const { rows } = await db.admin.query('SELECT count(*)::int AS n FROM payments');
      assert.equal(rows[0].n, 0, 'migrate alone leaves the projections empty');
      await rebuildProjections(db.admin);
    });
  });

  it('rebuildProjections raises a sequence set back behind the events (as a restored dump may leave it)', async () => {
    await roundTrip(async (db) => {
      assert.deepEqual(await migrate(db.admin), { from: 1, to: latest });
      await db.admin.query(`SELECT setval('payment_ids', 1, false)`);
      await rebuildProjections(db.admin);
    });
  });
});

describe('capsul migrate --to', () => {
  async function withCli(work: (db: Fresh, env: Record<string, string>) => Promise<void>): Promise<void> {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'capsul-migrate-'));
    try {
      await withMigratedDatabase((db) => work(db, { ...envFor(db.name), CAPSUL_DATA_DIR: dataDir }));
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  }

  it('goes down, says that the next capsul command migrates back up, exits 0; the next command does', async () => {
    await withCli(async (db, env) => {
      await recordSomeHistory(db);
      const payments = (await projectionRows(db.admin)).payments;
      const balanceBefore = await capsulHere(['balance', '--email', 'bob@example.org'], env);
      assert.deepEqual(balanceBefore, { code: 0, stdout: '7.50\n', stderr: '' });
      const down = await capsulHere(['migrate', '--to', '1'], env);
      assert.equal(down.code, 0, down.stderr);
      assert.equal(down.stdout, '');
      assert.match(down.stderr, new RegExp(`^schema moved from version ${latest} to 1$`, 'm'));
      assert.match(
        down.stderr,
        new RegExp(`^note: the next capsul command or npm start of this code will migrate it back up to version ${latest}; `, 'm'),
      );
      assert.equal(await schemaVersion(db.admin), 1);
      const balance = await capsulHere(['balance', '--email', 'bob@example.org'], env);
      assert.equal(balance.code, 0, balance.stderr);
      assert.equal(balance.stdout, balanceBefore.stdout);
      assert.equal(await schemaVersion(db.admin), latest);
      assert.deepEqual((await projectionRows(db.admin)).payments, payments);
    });
  });

  it('refuses a down that would drop events: exit 1, one line, nothing changed', async () => {
    await withCli(async (db, env) => {
      await recordSomeHistory(db);
      const before = await databaseFingerprint(db.admin);
      const run = await capsulHere(['migrate', '--to', '0'], env);
      assertRefused(
        run,
        1,
        /^capsul migrate: refused: schema \d+ → \d+ \(\d\d_down_[a-z0-9_]+\.sql\) would drop [^\n]*emt_messages[^\n]*nothing was changed\n$/,
      );
      assert.equal(await schemaVersion(db.admin), latest);
      assert.deepEqual(await databaseFingerprint(db.admin), before);
    });
  });

  it('refuses a version this code does not know, in one line, changing nothing', async () => {
    await withCli(async (db, env) => {
      const before = await databaseFingerprint(db.admin);
      assertRefused(
        await capsulHere(['migrate', '--to', String(latest + 1)], env),
        1,
        new RegExp(`^capsul migrate: cannot migrate to version ${latest + 1}: this code knows versions 0 to ${latest}\\n$`),
      );
      assertRefused(await capsulHere(['migrate', '--to', '-1'], env), 2, /--to/);
      assert.deepEqual(await databaseFingerprint(db.admin), before);
    });
  });
});
