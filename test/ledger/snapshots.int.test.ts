// Snapshots of long streams (src/ledger/load.ts, migration 23) on a real database: a long stream's load
// writes one, the next load begins from it and equals a fold from the first event; a snapshot that fails
// a check (another shape, beyond the stream, another event at its version, a state that does not read
// back) is ignored and the stream folded from the start; a snapshot that cannot be written fails no load.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { accountDecider } from '../../src/domain/account/decider.ts';
import { accountStream, type AccountEvent } from '../../src/domain/account/events.ts';
import { accountSnapshot } from '../../src/domain/account/snapshot.ts';
import type { LedgerEvent } from '../../src/domain/events.ts';
import { currentEventVersion } from '../../src/domain/upcast.ts';
import { vmDecider } from '../../src/domain/vm/decider.ts';
import { vmStream, type VmEvent } from '../../src/domain/vm/events.ts';
import { rememberedStateReports } from '../../src/domain/vm/state.ts';
import { appendEvents } from '../../src/ledger/append.ts';
import { load, loadFromStart, snapshotEvery } from '../../src/ledger/load.ts';
import { createPool } from '../../src/db/database.ts';
import { operator, testDatabase, urlFor, type TestDatabase } from '../support/db.ts';

let db: TestDatabase;
let nextPaymentId = 10_000_000;
before(async () => {
  db = await testDatabase();
});
after(() => db.close());

const metadata = { by: operator.by, eventVersion: currentEventVersion };
const dayMs = 86_400_000;

/** Appends `events` in batches of 250 after `version`; returns the stream's new version. */
async function append(streamId: string, events: LedgerEvent[], version: bigint): Promise<bigint> {
  for (let i = 0; i < events.length; i += 250) {
    const result = await appendEvents(db.pool, streamId, events.slice(i, i + 250), metadata, version);
    assert.ok(result.ok, `append to ${streamId} at ${version}`);
    version = result.nextVersion;
  }
  return version;
}

/** Payments, with now and then an invalidation taking effect before the last one, a reinstatement, a refund, a capsul. */
function accountLife(accountId: string, count: number, startMs: number, seed: number): AccountEvent[] {
  const events: AccountEvent[] = [];
  const paid: number[] = [];
  const iso = (ms: number) => new Date(ms).toISOString();
  for (let i = 0; i < count; i++) {
    const atMs = startMs + i * 3_600_000;
    const pick = (i * 7919 + seed) % 20;
    const earlier = paid[(i * 31 + seed) % Math.max(1, paid.length)];
    if (pick === 0 && earlier !== undefined) {
      events.push({ type: 'PaymentInvalidated', data: { accountId, paymentId: earlier, at: iso(atMs - ((i * 13) % 5) * dayMs) } });
    } else if (pick === 1 && earlier !== undefined) {
      events.push({ type: 'PaymentReinstated', data: { accountId, paymentId: earlier, at: iso(atMs) } });
    } else if (pick === 2 && earlier !== undefined) {
      events.push({
        type: 'PaymentRefunded',
        data: { accountId, paymentId: earlier, totalRefundedCents: 100, reference: null, at: iso(atMs) },
      });
    } else if (pick === 3) {
      const vmId = `capsul-${randomUUID().replaceAll('-', '').slice(0, 10)}`;
      events.push({
        type: 'VmCreationRequested',
        data: { accountId, vmId, size: 'f1-xs', os: 'debian12', sshPublicKeys: [], priceCentsPerMonth: 500, at: iso(atMs) },
      });
    } else {
      const paymentId = nextPaymentId++;
      paid.push(paymentId);
      events.push({
        type: 'PaymentRecorded',
        data: {
          accountId,
          paymentId,
          amountCents: 500 + (i % 50),
          provider: 'manual',
          reference: null,
          at: iso(atMs),
          recordedAt: iso(atMs),
        },
      });
    }
  }
  return events;
}

/** A new account stream of `count` events after its opening. */
async function longAccount(count: number, seed = 0): Promise<{ streamId: string; accountId: string; version: bigint }> {
  const accountId = randomUUID();
  const streamId = accountStream(accountId);
  const opened: AccountEvent = {
    type: 'AccountOpened',
    data: { accountId, email: `${accountId}@example.org`, at: '2026-01-01T00:00:00.000Z' },
  };
  const version = await append(streamId, [opened, ...accountLife(accountId, count, Date.parse('2026-01-02T00:00:00Z'), seed)], 0n);
  return { streamId, accountId, version };
}

const snapshotRow = async (streamId: string) =>
  (
    await db.admin.query('SELECT stream_version::text AS version, shape_version, message_id FROM stream_snapshots WHERE stream_id = $1', [
      streamId,
    ])
  ).rows[0] as { version: string; shape_version: number; message_id: string } | undefined;

describe('a long stream loads from its snapshot', () => {
  it('the first load of a long account writes a snapshot; later loads begin there and equal a fold from the start', async () => {
    const { streamId, accountId, version } = await longAccount(snapshotEvery + 100);
    const first = await load(db.pool, streamId, accountDecider);
    assert.deepEqual(first.start, { from: 'start', refused: null });
    assert.equal(first.version, version);
    assert.equal((await snapshotRow(streamId))?.version, version.toString());

    const moreVersion = await append(streamId, accountLife(accountId, 40, Date.parse('2026-06-01T00:00:00Z'), 3), version);
    const again = await load(db.pool, streamId, accountDecider);
    assert.deepEqual(again.start, { from: 'snapshot', version });
    assert.equal(again.version, moreVersion);
    assert.deepStrictEqual(again.state, (await loadFromStart(db.pool, streamId, accountDecider)).state);
    // 40 events since the snapshot: fewer than snapshotEvery, no new one.
    assert.equal((await snapshotRow(streamId))?.version, version.toString());
  });

  it('property: whatever the split between the snapshot and the events after it, the load equals a fold from the start', async () => {
    const { streamId, accountId, version } = await longAccount(snapshotEvery + 1);
    await load(db.pool, streamId, accountDecider);
    let current = version;
    let startMs = Date.parse('2026-07-01T00:00:00Z');
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 60 }), fc.nat(1000), async (count, seed) => {
        current = await append(streamId, accountLife(accountId, count, startMs, seed), current);
        startMs += (count + 1) * 3_600_000;
        const loaded = await load(db.pool, streamId, accountDecider);
        assert.equal(loaded.start.from, 'snapshot');
        assert.equal(loaded.version, current);
        assert.deepStrictEqual(loaded.state, (await loadFromStart(db.pool, streamId, accountDecider)).state);
      }),
      { numRuns: 8 },
    );
  });

  it('a capsul with many reports: the same', async () => {
    const vmId = `capsul-${randomUUID().replaceAll('-', '').slice(0, 10)}`;
    const accountId = randomUUID();
    await append(
      accountStream(accountId),
      [
        { type: 'AccountOpened', data: { accountId, email: `${accountId}@example.org`, at: '2026-01-01T00:00:00.000Z' } },
        {
          type: 'VmCreationRequested',
          data: {
            accountId,
            vmId,
            size: 'f1-xs',
            os: 'debian12',
            sshPublicKeys: [],
            priceCentsPerMonth: 500,
            at: '2026-01-01T00:00:01.000Z',
          },
        },
      ],
      0n,
    );
    const reports = (from: number, count: number): VmEvent[] =>
      Array.from({ length: count }, (_, i) => ({
        type: 'VmStateObserved' as const,
        data: {
          vmId,
          host: 'test-host',
          state: i % 3 === 0 ? ('stopped' as const) : ('running' as const),
          reportId: randomUUID(),
          operationId: null,
          at: new Date(Date.parse('2026-01-02T00:00:00Z') + (from + i) * 60_000).toISOString(),
        },
      }));
    const streamId = vmStream(vmId);
    const placed: VmEvent = {
      type: 'VmPlaced',
      data: { vmId, accountId, host: 'test-host', operationId: 'op-1', at: '2026-01-01T00:01:00.000Z' },
    };
    const version = await append(streamId, [placed, ...reports(0, snapshotEvery + 10)], 0n);
    await load(db.pool, streamId, vmDecider);
    const moreVersion = await append(streamId, reports(snapshotEvery + 10, 25), version);
    const loaded = await load(db.pool, streamId, vmDecider);
    assert.deepEqual(loaded.start, { from: 'snapshot', version });
    assert.equal(loaded.version, moreVersion);
    assert.equal(loaded.state.recentStateReports.length, rememberedStateReports);
    assert.deepStrictEqual(loaded.state, (await loadFromStart(db.pool, streamId, vmDecider)).state);
  });

  it('a short stream writes none', async () => {
    const { streamId } = await longAccount(20);
    assert.deepEqual((await load(db.pool, streamId, accountDecider)).start, { from: 'start', refused: null });
    assert.equal(await snapshotRow(streamId), undefined);
  });
});

describe('a snapshot that fails a check is ignored: the stream is folded from the start', () => {
  /** A long account with its snapshot written, then `tamper` run by the superuser on its row. */
  async function tampered(tamper: string, values: (streamId: string) => unknown[] = (s) => [s]) {
    const { streamId } = await longAccount(snapshotEvery + 5);
    await load(db.pool, streamId, accountDecider);
    const { rowCount } = await db.admin.query(tamper, values(streamId));
    assert.equal(rowCount, 1);
    const loaded = await load(db.pool, streamId, accountDecider);
    assert.deepStrictEqual(loaded.state, (await loadFromStart(db.pool, streamId, accountDecider)).state);
    return { streamId, loaded };
  }

  it('another shape version (the code changed what a state is)', async () => {
    const { loaded, streamId } = await tampered('UPDATE stream_snapshots SET shape_version = shape_version + 1 WHERE stream_id = $1');
    assert.deepEqual(loaded.start, { from: 'start', refused: 'another shape' });
    // The load folded every event again: it writes a snapshot of the code's shape over it.
    assert.equal((await snapshotRow(streamId))?.shape_version, accountSnapshot.shapeVersion);
  });

  it('a version beyond the stream (a snapshot of events that are not there)', async () => {
    const { loaded } = await tampered('UPDATE stream_snapshots SET stream_version = stream_version + 1000 WHERE stream_id = $1');
    assert.deepEqual(loaded.start, { from: 'start', refused: 'beyond the stream' });
  });

  it('another event at its version (a position that names an earlier event, or a copied row)', async () => {
    const { loaded } = await tampered('UPDATE stream_snapshots SET stream_version = stream_version - 1 WHERE stream_id = $1');
    assert.deepEqual(loaded.start, { from: 'start', refused: 'another event at its version' });
    const other = await longAccount(snapshotEvery + 5);
    await load(db.pool, other.streamId, accountDecider);
    // Another stream's snapshot, copied over this one's with its position and message id.
    const copied = await tampered(
      `UPDATE stream_snapshots s SET state = o.state, stream_version = o.stream_version, message_id = o.message_id
       FROM stream_snapshots o WHERE s.stream_id = $1 AND o.stream_id = $2`,
      (streamId) => [streamId, other.streamId],
    );
    assert.deepEqual(copied.loaded.start, { from: 'start', refused: 'another event at its version' });
  });

  it('a state that does not read back (written by hand)', async () => {
    const { loaded } = await tampered(
      `UPDATE stream_snapshots SET state = jsonb_set(state, '{payments,0,1}', '"lots"') WHERE stream_id = $1`,
    );
    assert.equal(loaded.start.from, 'start');
    assert.match((loaded.start as { refused: string }).refused, /^snapshot: a payment amount is not as written/);
  });

  it('what the checks do not catch (docs/architecture.md): a wrong state under the right version and message id is used', async () => {
    const { streamId } = await longAccount(snapshotEvery + 5);
    const honest = await load(db.pool, streamId, accountDecider);
    // capsul_app may write snapshots: a state with every payment's amount doubled, as a stolen password could.
    await db.pool.query(
      `UPDATE stream_snapshots SET state = jsonb_set(state, '{payments,0,1}', to_jsonb((state #>> '{payments,0,1}')::int * 2)) WHERE stream_id = $1`,
      [streamId],
    );
    const loaded = await load(db.pool, streamId, accountDecider);
    assert.equal(loaded.start.from, 'snapshot');
    assert.notDeepStrictEqual(loaded.state, honest.state);
  });
});

describe('a snapshot that cannot be written fails no load', () => {
  it("capsul_reader's connection cannot write one: the load still answers, and none is written", async () => {
    const reader = createPool(urlFor(db.name, 'reader'), 1);
    try {
      const { streamId } = await longAccount(snapshotEvery + 5);
      const loaded = await load(reader, streamId, accountDecider);
      assert.deepStrictEqual(loaded.state, (await loadFromStart(db.pool, streamId, accountDecider)).state);
      assert.equal(await snapshotRow(streamId), undefined);
      await assert.rejects(
        reader.query(`INSERT INTO stream_snapshots VALUES ($1, 1, 'x', 1, '{}', now())`, [streamId]),
        (error: { code?: string }) => error.code === '42501',
      );
    } finally {
      await reader.end();
    }
  });
});
