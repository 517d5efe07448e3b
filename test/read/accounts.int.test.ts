// The accounts read model against a real database: the one balance read from the live projections
// agrees with the domain's fold of the account stream now and at later instants (the live tables hold
// corrections as they stand, so earlier instants are the as-of tables' business), for histories with
// corrections, refunds, payments received ahead of now and deleted capsuls; the balance page's statement
// is that same balance, and its cache serves while the account stream is unchanged and not after.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { monthMs } from '../../src/domain/shared/billing.ts';
import {
  accountIdByEmail,
  accountsAccruingAt,
  balanceAt,
  balancesAt,
  balanceStatement,
  paymentsListed,
  type StatementCache,
} from '../../src/read/accounts.ts';
import { operator, sshKey, testDatabase, type TestDatabase } from '../support/db.ts';

const start = new Date('2026-09-01T00:00:00Z');
const hours = (n: number) => new Date(start.getTime() + n * 3_600_000);
/** Within the clock skew a payment's receipt may lie ahead of now. */
const minutesLater = (at: Date, n: number) => new Date(at.getTime() + n * 60_000);
let now = start;
let db: TestDatabase;

before(async () => {
  db = await testDatabase({ now: () => now });
});
after(() => db.close());

const createVm = (email: string, size = 'f1-xs') =>
  db.ledger.createVm({ email, size, os: 'debian12', sshPublicKeys: [sshKey], cause: operator });
const pay = (email: string, amountCents: number, receivedAt?: Date) =>
  db.ledger.recordPayment({ email, amountCents, receivedAt, cause: operator });

/** Every instant checked: now, an hour, a month and a year on. */
const instants = () => [
  now,
  new Date(now.getTime() + 3_600_000),
  new Date(now.getTime() + monthMs),
  new Date(now.getTime() + 12 * monthMs),
];

async function assertAgreesWithTheFold(email: string) {
  const accountId = (await accountIdByEmail(db.pool, email))!;
  for (const at of instants()) {
    const folded = await db.ledger.balanceCents(email, at);
    assert.equal(await balanceAt(db.pool, accountId, at), folded, `${email} at ${at.toISOString()}`);
  }
}

describe('the one balance', () => {
  it('agrees with the fold for payments only, with an invalidation and a reinstatement', async () => {
    const email = 'payer@example.org';
    now = start;
    const first = await pay(email, 2_000);
    now = hours(2);
    const second = await pay(email, 555);
    await db.ledger.invalidatePayment(first.paymentId, { ...operator, reason: 'chargeback' });
    now = hours(3);
    await db.ledger.reinstatePayment(first.paymentId, { ...operator, reason: 'the bank reversed it' });
    now = hours(4);
    await db.ledger.invalidatePayment(second.paymentId, { ...operator, reason: 'duplicate' });
    await assertAgreesWithTheFold(email);
  });

  it('agrees with the fold for capsuls running, deleted, and a refund', async () => {
    const email = 'spender@example.org';
    now = start;
    const { paymentId } = await pay(email, 5_000);
    await createVm(email);
    now = hours(1);
    const { vmId: gone } = await createVm(email, 'f1-s');
    now = hours(3);
    await db.ledger.deleteVm(gone, { ...operator, reason: 'no longer needed' });
    now = hours(4);
    await db.ledger.recordRefund({ paymentId, totalRefundedCents: 1_234, reference: 'refund-1', cause: operator });
    now = hours(6);
    await assertAgreesWithTheFold(email);
  });

  it('agrees with the fold for a payment received ahead of now and a balance run negative', async () => {
    const email = 'late@example.org';
    now = start;
    await pay(email, 600);
    await createVm(email);
    now = hours(5);
    await pay(email, 300, minutesLater(now, 4));
    await assertAgreesWithTheFold(email); // now, before it counts, and after
    now = hours(6);
    await assertAgreesWithTheFold(email);
    assert.ok((await db.ledger.balanceCents(email, new Date(now.getTime() + 12 * monthMs))) < 0, 'the history runs the balance negative');
  });

  it('reads several accounts at once, each as alone, and an unknown account as empty', async () => {
    const ids = await Promise.all(
      ['payer@example.org', 'spender@example.org', 'late@example.org'].map((e) => accountIdByEmail(db.pool, e)),
    );
    const at = hours(5);
    const all = await balancesAt(db.pool, [...(ids as string[]), 'no-such-account'], at);
    for (const id of ids as string[]) assert.equal(all.get(id)!.balanceCents, await balanceAt(db.pool, id, at));
    assert.deepEqual(all.get('no-such-account'), { paidCents: 0, accruals: [], balanceCents: 0 });
  });
});

/** A cache that counts what it is asked to keep. */
function countingCache(): StatementCache & { sets: number } {
  const entries = new Map();
  return {
    sets: 0,
    get: (id) => entries.get(id),
    set(id, statement) {
      this.sets++;
      entries.set(id, statement);
    },
  };
}

describe("the balance page's statement", () => {
  it('is the one balance, served from its cache while the account is unchanged, and read anew after a new event', async () => {
    const email = 'statement@example.org';
    now = start;
    await pay(email, 3_000);
    await createVm(email);
    const accountId = (await accountIdByEmail(db.pool, email))!;
    const cache = countingCache();

    now = hours(2);
    const first = await balanceStatement(db.pool, cache, accountId, now, { allPayments: false });
    assert.equal(first.balanceCents, await balanceAt(db.pool, accountId, now));
    assert.equal(first.paymentCount, 1);
    assert.equal(cache.sets, 1);

    now = hours(30); // later, nothing new: the cached rows serve, the charges are computed for now
    const again = await balanceStatement(db.pool, cache, accountId, now, { allPayments: false });
    assert.equal(cache.sets, 1, 'served from the cache');
    assert.equal(again.balanceCents, await balanceAt(db.pool, accountId, now));
    assert.ok(again.balanceCents < first.balanceCents, 'charged for the time since');

    await pay(email, 1_000); // a new event on the account stream: the cached statement is stale
    const after = await balanceStatement(db.pool, cache, accountId, now, { allPayments: false });
    assert.equal(cache.sets, 2, 'read anew');
    assert.equal(after.paymentCount, 2);
    assert.equal(after.balanceCents, again.balanceCents + 1_000);
    assert.equal(after.balanceCents, await balanceAt(db.pool, accountId, now));
  });

  it('rereads when a payment received later starts to count, and lists all payments only when asked, bypassing the cache', async () => {
    const email = 'many@example.org';
    now = start;
    for (let i = 0; i < paymentsListed + 2; i++) await pay(email, 100);
    await pay(email, 700, minutesLater(start, 4));
    const accountId = (await accountIdByEmail(db.pool, email))!;
    const cache = countingCache();

    now = minutesLater(start, 1);
    const newest = await balanceStatement(db.pool, cache, accountId, now, { allPayments: false });
    assert.equal(newest.payments.length, paymentsListed);
    assert.equal(newest.paymentCount, paymentsListed + 3);
    assert.equal(newest.balanceCents, (paymentsListed + 2) * 100, 'the later payment does not count yet');

    now = minutesLater(start, 5);
    const counted = await balanceStatement(db.pool, cache, accountId, now, { allPayments: false });
    assert.equal(cache.sets, 2, 'past the next payment, the statement is read anew');
    assert.equal(counted.balanceCents, (paymentsListed + 2) * 100 + 700);

    const all = await balanceStatement(db.pool, cache, accountId, now, { allPayments: true });
    assert.equal(all.payments.length, paymentsListed + 3);
    assert.equal(cache.sets, 2, 'the long list is not cached');
    assert.equal(all.balanceCents, counted.balanceCents);
  });
});

describe('accounts with capsuls accruing', () => {
  it('lists the accounts with a capsul billed at the instant, and no other', async () => {
    now = start;
    await pay('idle@example.org', 1_000);
    await pay('stopped@example.org', 1_000);
    const { vmId } = await createVm('stopped@example.org');
    now = hours(1);
    await db.ledger.deleteVm(vmId, { ...operator, reason: 'done' });
    await pay('busy@example.org', 1_000);
    await createVm('busy@example.org');

    const emailsAt = async (at: Date) => {
      const emails: string[] = [];
      for await (const account of accountsAccruingAt(db.pool, at)) emails.push(account.email);
      return emails;
    };
    const later = await emailsAt(hours(2));
    assert.ok(later.includes('busy@example.org'));
    assert.ok(!later.includes('stopped@example.org'), 'its deletion was requested');
    assert.ok(!later.includes('idle@example.org'), 'it never had a capsul');
    assert.ok((await emailsAt(hours(0.5))).includes('stopped@example.org'), 'before its deletion it was billed');
  });
});
