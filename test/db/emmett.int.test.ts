// Auditors with emmett's own API: capsul's events are emmett 0.42.0's, so getPostgreSQLEventStore reads
// them — and opening a store must change nothing in capsul's database (schema version 12 records emmett's
// migrations as applied, docs/audit.md "With emmett's own tools").
// Creating an emmett store switches node-postgres' type parsing for the whole process (int8 → BigInt,
// json parsed by dumbo): every query of this file therefore asks for text and compares text.
import assert from 'node:assert/strict';
import { databaseFingerprint } from '../support/fingerprint.ts';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { combineMigrations } from '@event-driven-io/dumbo';
import { eventStoreSchemaMigrations, getPostgreSQLEventStore } from '@event-driven-io/emmett-postgresql';
import pg from 'pg';
import { loadStream } from '../../src/db/event-store.ts';
import { migrationsDir } from '../../src/db/migrate.ts';
import { accountStream } from '../../src/domain/account/events.ts';
import { operator, sshKey, testDatabase, urlFor, type TestDatabase } from '../support/db.ts';

let db: TestDatabase;
let streamId: string;

before(async () => {
  db = await testDatabase();
  const { paymentId } = await db.ledger.recordPayment({ email: 'auditor@example.org', amountCents: 2000, cause: operator });
  await db.ledger.recordPayment({ email: 'auditor@example.org', amountCents: 533, cause: operator });
  await db.ledger.createVm({ email: 'auditor@example.org', size: 'f1-xs', os: 'debian12', sshPublicKeys: [sshKey], cause: operator });
  await db.ledger.invalidatePayment(paymentId, { ...operator, reason: 'chargeback' });
  const { rows } = await db.admin.query(`SELECT id FROM accounts WHERE email = 'auditor@example.org'`);
  streamId = accountStream(rows[0].id);
});
after(() => db?.close());

/** The stream as capsul reads it (every column as text), to compare emmett's reading with. */
async function capsulReading() {
  const { events } = await loadStream(db.pool, streamId);
  return events.map((stored) => ({
    type: stored.event.type,
    data: stored.storedData,
    position: String(stored.streamPosition),
    messageId: stored.messageId,
  }));
}

function emmettReading(events: { type: string; data: unknown; metadata: Record<string, unknown> }[]) {
  return events.map((event) => ({
    type: event.type,
    data: event.data,
    position: String(event.metadata.streamPosition),
    messageId: String(event.metadata.messageId),
  }));
}

describe("emmett's migration bookkeeping (schema_migrations/12_up_emmett_bookkeeping.sql)", () => {
  it('records exactly the hashes the installed emmett computes for its four migrations', () => {
    const sql = readFileSync(path.join(migrationsDir, '12_up_emmett_bookkeeping.sql'), 'utf8');
    const recorded = Object.fromEntries([...sql.matchAll(/\('(emt:[^']+)', '([0-9a-f]{64})'\)/g)].map((m) => [m[1], m[2]]));
    // dumbo's own rule (runSQLMigration): SHA-256, hex, of the migration's SQL statements joined by "\n".
    const installed = Object.fromEntries(
      eventStoreSchemaMigrations.map((migration) => [
        migration.name,
        createHash('sha256').update(combineMigrations(migration), 'utf8').digest('hex'),
      ]),
    );
    assert.equal(eventStoreSchemaMigrations.length, 4, 'emmett 0.42.0 has four schema migrations');
    assert.deepEqual(recorded, installed, 'an emmett upgrade changed its migrations: schema version 12 must record the new hashes');
  });

  it('holds those rows in the migrated database', async () => {
    const { rows } = await db.admin.query(`SELECT name, sql_hash FROM dmb_migrations ORDER BY name`);
    const installed = eventStoreSchemaMigrations
      .map((migration) => ({
        name: migration.name,
        sql_hash: createHash('sha256').update(combineMigrations(migration), 'utf8').digest('hex'),
      }))
      .sort((a, b) => a.name.localeCompare(b.name));
    assert.deepEqual(
      rows.map((row) => ({ ...row })),
      installed,
    );
  });
});

describe("getPostgreSQLEventStore on capsul's database", () => {
  it('as a superuser with default options: readStream and aggregateStream read the events and change nothing', async () => {
    const expected = await capsulReading();
    assert.ok(expected.length >= 4, 'the account stream has its events');
    const before = await databaseFingerprint(db.admin);
    const pool = new pg.Pool({ connectionString: db.url, max: 2 });
    const store = getPostgreSQLEventStore(db.url, { connectionOptions: { pool } });
    try {
      const read = await store.readStream(streamId);
      assert.equal(read.streamExists, true);
      assert.equal(String(read.currentStreamVersion), expected.at(-1)!.position);
      assert.deepEqual(emmettReading(read.events as never), expected);
      const folded = await store.aggregateStream(streamId, {
        initialState: () => ({ types: [] as string[] }),
        evolve: (state: { types: string[] }, event: { type: string }) => ({ types: [...state.types, event.type] }),
      });
      assert.deepEqual(
        folded.state.types,
        expected.map((e) => e.type),
      );
      assert.equal(String(folded.currentStreamVersion), expected.at(-1)!.position);
      const missing = await store.readStream('account-00000000-0000-0000-0000-000000000000');
      assert.equal(missing.streamExists, false);
    } finally {
      await store.close();
      await pool.end();
    }
    assert.deepEqual(await databaseFingerprint(db.admin), before);
  });

  it("as a superuser with emmett's own pool (no options at all): still nothing changes", async () => {
    const before = await databaseFingerprint(db.admin);
    const store = getPostgreSQLEventStore(db.url);
    try {
      const read = await store.readStream(streamId);
      assert.deepEqual(emmettReading(read.events as never), await capsulReading());
    } finally {
      await store.close();
    }
    assert.deepEqual(await databaseFingerprint(db.admin), before);
  });

  it("would run emmett's migrations without version 12's rows (what the snapshot above is there to see)", async () => {
    const scratch = await testDatabase({ host: false });
    try {
      await scratch.admin.query('DELETE FROM dmb_migrations');
      const before = await databaseFingerprint(scratch.admin);
      const pool = new pg.Pool({ connectionString: scratch.url, max: 2 });
      const store = getPostgreSQLEventStore(scratch.url, { connectionOptions: { pool } });
      try {
        await store.readStream(streamId);
      } finally {
        await store.close();
        await pool.end();
      }
      const after = await databaseFingerprint(scratch.admin);
      const changed = Object.keys(after).filter((key) => after[key] !== before[key]);
      assert.ok(changed.includes('rows dmb_migrations'), 'emmett applied and recorded its migrations');
    } finally {
      await scratch.close();
    }
  });

  it("as capsul_reader with schema.autoMigration 'None': readStream returns the account's events and changes nothing", async () => {
    const before = await databaseFingerprint(db.admin);
    const pool = new pg.Pool({ connectionString: urlFor(db.name, 'reader'), max: 2 });
    const store = getPostgreSQLEventStore(urlFor(db.name, 'reader'), { schema: { autoMigration: 'None' }, connectionOptions: { pool } });
    try {
      const read = await store.readStream(streamId);
      assert.equal(read.streamExists, true);
      assert.deepEqual(emmettReading(read.events as never), await capsulReading());
      const folded = await store.aggregateStream(streamId, {
        initialState: () => 0,
        evolve: (count: number) => count + 1,
      });
      assert.equal(folded.state, read.events.length);
    } finally {
      await store.close();
      await pool.end();
    }
    assert.deepEqual(await databaseFingerprint(db.admin), before);
  });

  it("as capsul_reader with default options fails (the reader must open with autoMigration 'None'), changing nothing", async () => {
    const before = await databaseFingerprint(db.admin);
    const pool = new pg.Pool({ connectionString: urlFor(db.name, 'reader'), max: 2 });
    const store = getPostgreSQLEventStore(urlFor(db.name, 'reader'), { connectionOptions: { pool } });
    try {
      await assert.rejects(store.readStream(streamId), (error: Error & { code?: string }) => {
        // emmett's migration takes an advisory lock and runs CREATE TABLE IF NOT EXISTS: capsul_reader may do neither.
        assert.match(`${error.code ?? ''} ${error.message}`, /42501|permission denied/, String(error));
        return true;
      });
    } finally {
      await store.close();
      await pool.end();
    }
    assert.deepEqual(await databaseFingerprint(db.admin), before);
  });
});
