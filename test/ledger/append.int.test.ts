// Events and their projection appended in one statement: version checks, conflicts, unique
// violations, and streams that emmett itself reads back.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { getPostgreSQLEventStore } from '@event-driven-io/emmett-postgresql';
import { accountStream, type AccountEvent } from '../../src/domain/account/events.ts';
import { accountDecider } from '../../src/domain/account/decider.ts';
import { appendEvents } from '../../src/ledger/append.ts';
import { ConcurrencyError, handleCommand } from '../../src/ledger/handle.ts';
import { Ledger } from '../../src/ledger/ledger.ts';
import { operator, testDatabase, type TestDatabase } from '../support/db.ts';

let db: TestDatabase;
before(async () => {
  db = await testDatabase();
});
after(() => db.close());

const at = '2026-02-01T00:00:00.000Z';
const opened = (accountId: string, email: string): AccountEvent => ({ type: 'AccountOpened', data: { accountId, email, at } });
const paid = (accountId: string, paymentId: number): AccountEvent => ({
  type: 'PaymentRecorded',
  data: { accountId, paymentId, amountCents: 100, provider: 'manual', reference: null, at, recordedAt: at },
});
const metadata = { by: operator.by, eventVersion: 1 };
const count = async (sql: string, params: unknown[]) => (await db.pool.query(sql, params)).rows[0].n as number;

describe('appendEvents', () => {
  it('appends to a new stream at version 0 and writes the projection with it', async () => {
    const accountId = randomUUID();
    const result = await appendEvents(
      db.pool,
      accountStream(accountId),
      [opened(accountId, `${accountId}@example.org`), paid(accountId, 900_001)],
      metadata,
      0n,
    );
    assert.deepEqual(result, { ok: true, nextVersion: 2n });
    assert.equal(await count('SELECT count(*)::int AS n FROM payments WHERE account_id = $1', [accountId]), 1);
  });

  it('reports a stale expected version as a conflict and writes nothing', async () => {
    const accountId = randomUUID();
    await appendEvents(db.pool, accountStream(accountId), [opened(accountId, `${accountId}@example.org`)], metadata, 0n);
    assert.deepEqual(await appendEvents(db.pool, accountStream(accountId), [paid(accountId, 900_002)], metadata, 0n), { ok: false });
    assert.deepEqual(await appendEvents(db.pool, accountStream(accountId), [paid(accountId, 900_002)], metadata, 5n), { ok: false });
    assert.equal(await count('SELECT count(*)::int AS n FROM payments WHERE id = $1', [900_002]), 0);
    assert.equal(await count('SELECT count(*)::int AS n FROM emt_messages WHERE stream_id = $1', [accountStream(accountId)]), 1);
  });

  it('lets exactly one of several racing creators of a stream win', async () => {
    const accountId = randomUUID();
    const results = await Promise.all(
      Array.from({ length: 6 }, () =>
        appendEvents(db.pool, accountStream(accountId), [opened(accountId, `${accountId}@example.org`)], metadata, 0n),
      ),
    );
    assert.equal(results.filter((r) => r.ok).length, 1);
  });

  it("throws a projection's unique violation as itself, leaving no event behind", async () => {
    const first = randomUUID();
    const second = randomUUID();
    const email = `${first}@example.org`;
    await appendEvents(db.pool, accountStream(first), [opened(first, email)], metadata, 0n);
    await assert.rejects(
      appendEvents(db.pool, accountStream(second), [opened(second, email)], metadata, 0n),
      (error: { code?: string; constraint?: string }) => error.code === '23505' && error.constraint === 'accounts_email_key',
    );
    assert.equal(await count('SELECT count(*)::int AS n FROM emt_messages WHERE stream_id = $1', [accountStream(second)]), 0);
  });

  it('writes streams that emmett reads as its own', async () => {
    const { paymentId } = await db.ledger.recordPayment({ email: 'emmett@example.org', amountCents: 4200, cause: operator });
    const accountId = (await db.ledger.accountIdFor('emmett@example.org'))!;
    const store = getPostgreSQLEventStore(db.url, { schema: { autoMigration: 'None' } });
    try {
      const { events, currentStreamVersion } = await store.readStream(accountStream(accountId));
      assert.equal(currentStreamVersion, 2n);
      assert.deepEqual(
        events.map((e) => e.type),
        ['AccountOpened', 'PaymentRecorded'],
      );
      assert.equal((events[1]!.data as { paymentId: number }).paymentId, paymentId);
      assert.equal((events[1]!.metadata as { by?: { id: string } }).by?.id, 'test');
    } finally {
      await store.close();
    }
  });
});

describe('a form that saw a version', () => {
  it('is told the stream changed meanwhile, instead of acting on what it did not see', async () => {
    const { paymentId } = await db.ledger.recordPayment({ email: 'form@example.org', amountCents: 1000, cause: operator });
    const accountId = (await db.ledger.accountIdFor('form@example.org'))!;
    const seenVersion = 2n;
    await db.ledger.recordPayment({ email: 'form@example.org', amountCents: 500, cause: operator });
    const invalidate = {
      type: 'InvalidatePayment' as const,
      data: { paymentId },
      metadata: { now: new Date(), cause: { ...operator, reason: 'chargeback' } },
    };
    await assert.rejects(
      handleCommand(db, accountStream(accountId), accountDecider, invalidate, { expectedVersion: seenVersion }),
      (error: Error) => error instanceof ConcurrencyError && /changed meanwhile/.test(error.message),
    );
    const current = await handleCommand(db, accountStream(accountId), accountDecider, invalidate, { expectedVersion: 3n });
    assert.equal(current.events.length, 1);
  });
});

describe('the stream cache of a long-running process', () => {
  it('never answers "nothing to do" from a state another process has changed', async () => {
    const hubA = new Ledger({ pool: db.pool });
    const hubB = new Ledger({ pool: db.pool });
    const { paymentId } = await hubA.recordPayment({ email: 'two-hubs@example.org', amountCents: 1000, cause: operator });
    assert.equal((await hubA.invalidatePayment(paymentId, { ...operator, reason: 'chargeback' })).changed, true);
    assert.equal((await hubB.reinstatePayment(paymentId, { ...operator, reason: 'dispute won' })).changed, true);
    // hubA's cached state still says "invalidated": it must look again and invalidate.
    assert.equal((await hubA.invalidatePayment(paymentId, { ...operator, reason: 'second chargeback' })).changed, true);
    const { rows } = await db.pool.query('SELECT invalidated, invalidation_reason FROM payments WHERE id = $1', [paymentId]);
    assert.deepEqual(rows[0], { invalidated: true, invalidation_reason: 'second chargeback' });
  });

  it('appends on a stale cached state only after reloading it', async () => {
    const hubA = new Ledger({ pool: db.pool });
    const hubB = new Ledger({ pool: db.pool });
    await hubA.recordPayment({ email: 'stale@example.org', amountCents: 1000, cause: operator });
    await hubB.recordPayment({ email: 'stale@example.org', amountCents: 1000, cause: operator });
    await hubA.recordPayment({ email: 'stale@example.org', amountCents: 1000, cause: operator });
    const cents = await db.ledger.balanceCents('stale@example.org', new Date(Date.now() + 60_000));
    assert.equal(cents, 3000);
    assert.equal(await count(`SELECT count(*)::int AS n FROM payments WHERE email = $1`, ['stale@example.org']), 3);
  });
});
