// Row history (schema_migrations/21_up_row_history.sql) answers as-of and known-at as a query. The
// proof: for random histories — payments recorded late, invalidated and reinstated at the provider's
// time, refunded, capsuls created and deleted, hosts added and removed — every projection read from the
// history at an instant of either clock equals a replay of exactly the events seen then (in effect by
// `asOf`, appended by `knownAt`), row for row; and the balance read from it equals the account's fold.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import type pg from 'pg';
import { isSeenAt, readAllEvents, type Instants, type StoredEvent } from '../../src/db/event-store.ts';
import { DomainError } from '../../src/domain/shared/errors.ts';
import { Hosts } from '../../src/ledger/hosts.ts';
import { Ledger } from '../../src/ledger/ledger.ts';
import { MemoryTables } from '../../src/projections/memory.ts';
import { shadowProjectionsAt } from '../../src/projections/as-of.ts';
import { projectionTables, tableNames } from '../../src/projections/tables.ts';
import { balancesAt } from '../../src/read/accounts.ts';
import { operator, sshKey, testDatabase, type TestDatabase } from '../support/db.ts';

let db: TestDatabase;
before(async () => {
  db = await testDatabase({ poolSize: 6 });
});
after(() => db.close());

const hourMs = 3_600_000;

type Step =
  | { kind: 'pay'; cents: number; receivedHoursAgo: number }
  | { kind: 'invalidate' | 'reinstate'; index: number; hoursAgo: number | null }
  | { kind: 'refund'; index: number; cents: number }
  | { kind: 'create' | 'delete' | 'host'; index: number }
  | { kind: 'wait'; hours: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({ kind: fc.constant('pay' as const), cents: fc.integer({ min: 100, max: 6000 }), receivedHoursAgo: fc.nat(300) }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constantFrom('invalidate' as const, 'reinstate' as const),
      index: fc.nat(20),
      hoursAgo: fc.option(fc.nat(200)),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('refund' as const), index: fc.nat(20), cents: fc.integer({ min: 1, max: 3000 }) }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constantFrom('create' as const, 'delete' as const, 'host' as const), index: fc.nat(20) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('wait' as const), hours: fc.integer({ min: 1, max: 300 }) }) },
);

let run = 0;

/** Runs the steps against the ledger at a clock of its own. */
async function play(steps: Step[], email: string): Promise<void> {
  run++;
  const startMs = Date.parse('2026-01-01T00:00:00Z') + run * 2000 * hourMs;
  let clockMs = startMs;
  const now = () => new Date(clockMs);
  const ledger = new Ledger({ pool: db.pool, now });
  const hosts = new Hosts({ pool: db.pool, now });
  const payments: number[] = [];
  const vms: string[] = [];
  const hostIds: string[] = [];
  for (const s of steps) {
    clockMs += 60_000;
    try {
      switch (s.kind) {
        case 'pay': {
          const receivedAt = new Date(clockMs - s.receivedHoursAgo * hourMs);
          payments.push(
            (await ledger.recordPayment({ email, amountCents: s.cents, reference: null, receivedAt, cause: operator })).paymentId,
          );
          break;
        }
        case 'invalidate':
        case 'reinstate': {
          if (payments.length === 0) break;
          const paymentId = payments[s.index % payments.length]!;
          const options = s.hoursAgo === null ? {} : { effectiveAt: new Date(clockMs - s.hoursAgo * hourMs) };
          if (s.kind === 'invalidate') await ledger.invalidatePayment(paymentId, { ...operator, reason: 'chargeback' }, options);
          else await ledger.reinstatePayment(paymentId, { ...operator, reason: 'dispute won' }, options);
          break;
        }
        case 'refund': {
          if (payments.length === 0) break;
          const paymentId = payments[s.index % payments.length]!;
          await ledger.recordRefund({ paymentId, totalRefundedCents: s.cents, reference: null, cause: operator });
          break;
        }
        case 'create':
          if (payments.length > 0)
            vms.push((await ledger.createVm({ email, size: 'f1-xs', os: 'debian12', sshPublicKeys: [sshKey], cause: operator })).vmId);
          break;
        case 'delete':
          if (vms.length > 0) await ledger.deleteVm(vms[s.index % vms.length]!, { ...operator, reason: 'done' });
          break;
        case 'host':
          if (s.index % 3 === 0 && hostIds.length > 0) await hosts.remove(hostIds[s.index % hostIds.length]!, operator);
          else {
            const hostId = `h${run}x${hostIds.length}`;
            await hosts.add({ hostId, memoryMb: 4096, vcpus: 4, cause: operator });
            hostIds.push(hostId);
          }
          break;
        case 'wait':
          clockMs += s.hours * hourMs;
          break;
      }
    } catch (error) {
      if (!(error instanceof DomainError)) throw error; // refusals (funds, nothing to correct) are fine
    }
  }
}

async function everyEvent(): Promise<StoredEvent[]> {
  const events: StoredEvent[] = [];
  for await (const batch of readAllEvents(db.pool)) events.push(...batch);
  return events;
}

/**
 * How many rows of each projection differ between the history read at `at` (the views `capsul sql
 * --as-of/--known-at` reads) and a replay of the events seen at `at`: compared in SQL, as multisets.
 */
async function differencesAt(client: pg.PoolClient, events: StoredEvent[], at: Instants): Promise<Record<string, number>> {
  const memory = new MemoryTables();
  for (const stored of events) if (isSeenAt(stored, at)) memory.apply(stored);
  const differences: Record<string, number> = {};
  for (const table of tableNames) {
    await client.query(`CREATE TEMP TABLE replayed_${table} (LIKE public.${table}) ON COMMIT DROP`);
    await client.query(`INSERT INTO replayed_${table} SELECT * FROM json_populate_recordset(NULL::replayed_${table}, $1::json)`, [
      JSON.stringify(memory.rows(table)),
    ]);
    const columns = projectionTables[table].columns.join(', ');
    const { rows } = await client.query(
      `SELECT (SELECT count(*) FROM (SELECT ${columns} FROM replayed_${table} EXCEPT ALL SELECT ${columns} FROM pg_temp.${table}) a)::int
            + (SELECT count(*) FROM (SELECT ${columns} FROM pg_temp.${table} EXCEPT ALL SELECT ${columns} FROM replayed_${table}) b)::int AS n`,
    );
    differences[table] = rows[0].n;
  }
  return differences;
}

const none = Object.fromEntries(tableNames.map((table) => [table, 0]));

describe('row history', () => {
  it('keeps each version of a row with when it held and when the ledger knew it; a late fact splits only the range it touches', async () => {
    const email = 'versions@example.org';
    let clockMs = Date.parse('2030-06-10T00:00:00Z');
    const ledger = new Ledger({ pool: db.pool, now: () => new Date(clockMs) });
    const { paymentId } = await ledger.recordPayment({
      email,
      amountCents: 2500,
      reference: null,
      receivedAt: new Date('2030-06-01T00:00:00Z'),
      cause: operator,
    });
    clockMs += hourMs;
    // A chargeback the provider dates to the 5th: the payment counted from the 1st to the 5th.
    await ledger.invalidatePayment(paymentId, { ...operator, reason: 'chargeback' }, { effectiveAt: new Date('2030-06-05T00:00:00Z') });
    const versions = await db.pool.query(
      `SELECT invalidated, lower(valid) AS valid_from, upper(valid) AS valid_to, upper_inf(known) AS current
       FROM payments_history WHERE id = $1 ORDER BY current, valid_from`,
      [paymentId],
    );
    assert.deepEqual(
      versions.rows.map((v) => [v.invalidated, v.valid_from?.toISOString(), v.valid_to?.toISOString() ?? null, v.current]),
      [
        [false, '2030-06-01T00:00:00.000Z', null, false], // as known before the chargeback was recorded
        [false, '2030-06-01T00:00:00.000Z', '2030-06-05T00:00:00.000Z', true],
        [true, '2030-06-05T00:00:00.000Z', null, true],
      ],
    );
    const opened = await db.pool.query(`SELECT lower(valid)::text AS opened FROM accounts_history WHERE email = $1`, [email]);
    assert.deepEqual(opened.rows, [{ opened: '-infinity' }], 'an account holds from no time in particular');
  });

  it('never lets a row go back in recorded time: of two appends at once, the second to apply is known no earlier than the first', async () => {
    // A database of its own: the edits below are no event's, which the replay property would see.
    const own = await testDatabase();
    const email = 'racing@example.org';
    const { paymentId } = await own.ledger.recordPayment({ email, amountCents: 1000, reference: null, cause: operator });
    const update = (dollars: string) =>
      JSON.stringify([{ kind: 'update', table: 'payments', values: { id: paymentId, dollars }, lookups: {}, at: '2030-01-01T00:00:00Z' }]);
    const first = await own.admin.connect();
    const second = await own.admin.connect();
    try {
      // The first transaction starts first (its now() is earlier) but applies second.
      await first.query('BEGIN');
      const { rows } = await first.query('SELECT now() AS started');
      await new Promise((resolve) => setTimeout(resolve, 20));
      await second.query('BEGIN');
      await second.query('SELECT capsul_apply_projection($1::jsonb)', [update('11.00')]);
      await second.query('COMMIT');
      await first.query('SELECT capsul_apply_projection($1::jsonb)', [update('12.00')]);
      await first.query('COMMIT');
      const versions = await own.pool.query(
        `SELECT dollars::text, lower(known) AS known_from FROM payments_history WHERE id = $1 AND upper_inf(known) AND upper_inf(valid)`,
        [paymentId],
      );
      assert.equal(versions.rows.length, 1);
      assert.equal(versions.rows[0].dollars, '12.00');
      assert.ok(versions.rows[0].known_from > rows[0].started, 'known from the later of the two, not from when it started');
      const overlapping = await own.pool.query(
        `SELECT count(*)::int AS n FROM payments_history a JOIN payments_history b
         ON a.id = b.id AND a.ctid <> b.ctid AND a.valid && b.valid AND a.known && b.known WHERE a.id = $1`,
        [paymentId],
      );
      assert.equal(overlapping.rows[0].n, 0, 'at any instant of both clocks a row has one version');
    } finally {
      first.release();
      second.release();
      await own.close();
    }
  });

  it('lets nobody but the projector write the row history: not capsul_app, not the owner', async () => {
    await assert.rejects(db.pool.query(`UPDATE payments_history SET dollars = 1`), /permission denied/);
    await assert.rejects(db.admin.query(`UPDATE payments_history SET dollars = 1`), /payments_history is a projection of the event ledger/);
    await assert.rejects(db.admin.query(`DELETE FROM vms_history`), /projection of the event ledger/);
    await assert.rejects(db.admin.query(`TRUNCATE accounts_history`), /projection of the event ledger/);
    const op = { kind: 'update', table: 'payments_history', values: { id: 1, dollars: '1' }, lookups: {}, at: '-infinity' };
    await assert.rejects(
      db.admin.query(`SELECT capsul_apply_projection($1::jsonb)`, [JSON.stringify([op])]),
      /"payments_history" is not a projection table/,
    );
  });

  it("writes every column of every projection (the projector's statements are generated from the tables: schema 24)", async () => {
    const { rows } = await db.admin.query(`SELECT prosrc FROM pg_proc WHERE proname = 'capsul_apply_projection'`);
    for (const table of tableNames) {
      const set = new RegExp(`UPDATE ${table} t SET \\(([^)]*)\\)`).exec(rows[0].prosrc);
      assert.ok(set, `the projector has an update of ${table}`);
      assert.deepEqual(
        set[1]!.split(', '),
        projectionTables[table].columns.filter((column) => column !== 'id'),
        `${table}: every column but the key`,
      );
    }
    // A column added later is written once the projector is generated again, as its migration must.
    const own = await testDatabase();
    try {
      const { paymentId } = await own.ledger.recordPayment({
        email: 'column@example.org',
        amountCents: 1000,
        reference: null,
        cause: operator,
      });
      await own.admin.query(`ALTER TABLE payments ADD COLUMN note text; ALTER TABLE payments_history ADD COLUMN note text`);
      const note = (values: Record<string, unknown>) =>
        own.admin.query(`SELECT capsul_apply_projection($1::jsonb)`, [
          JSON.stringify([
            { kind: 'update', table: 'payments', values: { id: paymentId, ...values }, lookups: {}, at: '2030-01-01T00:00:00Z' },
          ]),
        ]);
      await note({ note: 'unwritten' });
      await own.admin.query(`SELECT capsul_generate_projector()`);
      await note({ note: 'written', dollars: '12.00' });
      const written = await own.admin.query(
        `SELECT (SELECT note FROM payments WHERE id = $1) AS row,
                (SELECT string_agg(coalesce(note, '-') || ' ' || dollars, ', ' ORDER BY lower(valid)) FROM payments_history WHERE id = $1 AND upper_inf(known)) AS versions`,
        [paymentId],
      );
      assert.deepEqual(written.rows[0], { row: 'written', versions: '- 10.00, written 12.00' });
    } finally {
      await own.close();
    }
  });

  it('answers every as-of and known-at as a replay of the events seen then would, row for row and in balance', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(step, { minLength: 1, maxLength: 14 }),
        // Each probe: an effective instant (at, just before or just after one of the run's facts), and a
        // recorded instant (at or just after one of the run's appends); either may be absent.
        fc.array(fc.tuple(fc.option(fc.tuple(fc.nat(), fc.constantFrom(-1, 0, 1))), fc.option(fc.tuple(fc.nat(), fc.constantFrom(0, 1)))), {
          minLength: 3,
          maxLength: 6,
        }),
        async (steps, probes) => {
          const email = `history${run}-${process.pid}@example.org`;
          const before = (await everyEvent()).length;
          await play(steps, email);
          const events = await everyEvent();
          const ours = events.slice(before);
          if (ours.length === 0) return;
          const ledger = new Ledger({ pool: db.pool });
          const accountId = await ledger.accountIdFor(email);
          const end = new Date(Math.max(...ours.map((e) => Date.parse(e.event.data.at))) + 100 * hourMs);
          for (const [effective, recorded] of probes) {
            const asOf = effective ? new Date(Date.parse(ours[effective[0] % ours.length]!.event.data.at) + effective[1]) : undefined;
            const knownAt = recorded ? new Date(Date.parse(ours[recorded[0] % ours.length]!.recordedAt) + recorded[1]) : undefined;
            const at = { ...(asOf ? { asOf } : {}), ...(knownAt ? { knownAt } : {}) };
            const client = await db.pool.connect();
            try {
              await shadowProjectionsAt(client, at);
              await client.query('BEGIN');
              assert.deepEqual(await differencesAt(client, events, at), none, JSON.stringify(at));
              await client.query('ROLLBACK');
              const knownThen = !knownAt || events.some((e) => e.streamId === `account-${accountId}` && isSeenAt(e, { knownAt }));
              if (accountId && knownThen) {
                const balanceThen = asOf ?? end;
                assert.equal(
                  (await balancesAt(db.pool, [accountId], balanceThen, knownAt)).get(accountId)!.balanceCents,
                  await ledger.balanceCents(email, balanceThen, knownAt),
                  `balance at ${JSON.stringify(at)}`,
                );
              }
            } finally {
              client.release(true);
            }
          }
        },
      ),
      { numRuns: 25 },
    );
  });
});
