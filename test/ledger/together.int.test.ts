// handleTogether: commands on several streams in one transaction, committed at once; the stream cache
// learns their states only after the commit, and a failed snapshot write inside it loses only the snapshot.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { accountDecider } from '../../src/domain/account/decider.ts';
import { accountStream, type AccountEvent } from '../../src/domain/account/events.ts';
import { currentEventVersion } from '../../src/domain/upcast.ts';
import { appendEvents } from '../../src/ledger/append.ts';
import { createStreamCache } from '../../src/ledger/cache.ts';
import { handleCommand, handleTogether, type CommandDeps, type Together } from '../../src/ledger/handle.ts';
import { snapshotEvery } from '../../src/ledger/load.ts';
import { operator, testDatabase, type TestDatabase } from '../support/db.ts';

let db: TestDatabase;
let nextPaymentId = 20_000_000;
before(async () => {
  db = await testDatabase();
});
after(() => db.close());

const pay = (deps: CommandDeps | Together, accountId: string) => {
  const now = new Date();
  return handleCommand(deps, accountStream(accountId), accountDecider, {
    type: 'RecordPayment',
    data: {
      accountId,
      email: `${accountId}@example.org`,
      paymentId: nextPaymentId++,
      amountCents: 500,
      provider: 'manual',
      reference: null,
      receivedAt: now,
    },
    metadata: { now, cause: operator },
  });
};

async function streamEvents(accountIds: string[]): Promise<{ events: number; transactions: number }> {
  const { rows } = await db.pool.query(
    `SELECT count(*)::int AS events, count(DISTINCT transaction_id)::int AS transactions FROM emt_messages WHERE stream_id = ANY($1::text[])`,
    [accountIds.map(accountStream)],
  );
  return rows[0];
}

describe('handleTogether', () => {
  it('commits every command at once, and the cache learns their states only then', async () => {
    const accounts = [randomUUID(), randomUUID()];
    const cache = createStreamCache();
    await handleTogether({ pool: db.pool, cache }, async (together) => {
      for (const accountId of accounts) await pay(together, accountId);
      assert.equal(together.cache.get(accountStream(accounts[0]!))?.version, 2n, 'the transaction sees its own states');
      assert.equal(cache.get(accountStream(accounts[0]!)), undefined, 'the cache does not, before the commit');
    });
    assert.deepEqual(await streamEvents(accounts), { events: 4, transactions: 1 });
    for (const accountId of accounts) assert.equal(cache.get(accountStream(accountId))?.version, 2n);
  });

  it('rolls every command back when one throws, and leaves the cache as it was', async () => {
    const [kept, other] = [randomUUID(), randomUUID()];
    const cache = createStreamCache();
    await pay({ pool: db.pool, cache }, kept);
    const before = cache.get(accountStream(kept));
    await assert.rejects(
      handleTogether({ pool: db.pool, cache }, async (together) => {
        await pay(together, kept);
        await pay(together, other);
        throw new Error('the request failed');
      }),
      /the request failed/,
    );
    assert.deepEqual(await streamEvents([kept]), { events: 2, transactions: 1 });
    assert.deepEqual(await streamEvents([other]), { events: 0, transactions: 0 });
    assert.equal(cache.get(accountStream(kept)), before);
    assert.equal(cache.get(accountStream(other)), undefined);
    // The cached state is still the stream's: the next command appends on it.
    await pay({ pool: db.pool, cache }, kept);
    assert.equal(cache.get(accountStream(kept))?.version, 3n);
  });

  it('loses only the snapshot when a load inside it cannot write one', async () => {
    const accountId = randomUUID();
    const at = new Date().toISOString();
    const events: AccountEvent[] = Array.from({ length: snapshotEvery + 1 }, () => ({
      type: 'PaymentRecorded',
      data: { accountId, paymentId: nextPaymentId++, amountCents: 100, provider: 'manual', reference: null, at, recordedAt: at },
    }));
    const metadata = { by: operator.by, eventVersion: currentEventVersion };
    await pay({ pool: db.pool }, accountId); // opens the account: two events
    assert.ok((await appendEvents(db.pool, accountStream(accountId), events, metadata, 2n)).ok);
    await db.admin.query(
      `CREATE FUNCTION refuse_snapshots() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'no snapshots today'; END $$`,
    );
    await db.admin.query(
      `CREATE TRIGGER refuse_snapshots BEFORE INSERT OR UPDATE ON stream_snapshots FOR EACH ROW EXECUTE FUNCTION refuse_snapshots()`,
    );
    const other = randomUUID();
    try {
      // The load of the long stream folds more than snapshotEvery events and tries to write a snapshot.
      await handleTogether({ pool: db.pool }, async (together) => {
        await pay(together, accountId);
        await pay(together, other);
      });
    } finally {
      await db.admin.query('DROP TRIGGER refuse_snapshots ON stream_snapshots');
      await db.admin.query('DROP FUNCTION refuse_snapshots()');
    }
    assert.deepEqual(await streamEvents([accountId, other]), { events: 2 + snapshotEvery + 1 + 1 + 2, transactions: 3 });
    const { rows } = await db.pool.query('SELECT count(*)::int AS n FROM stream_snapshots WHERE stream_id = $1', [
      accountStream(accountId),
    ]);
    assert.equal(rows[0].n, 0);
  });
});
