// The small read models against a real database, where no page pins them: who a payment, a reference
// or a capsul belongs to; which streams tell an account's, a payment's and a capsul's story, and the
// pages of an account's story; the catalogue; the rows the operators' lists read, in domain units.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { accountStream } from '../../src/domain/account/events.ts';
import { vmStream } from '../../src/domain/vm/events.ts';
import { accountIdByEmail, newestAccounts } from '../../src/read/accounts.ts';
import { accountOfCapsul, newestCapsuls } from '../../src/read/capsuls.ts';
import { currentOsImages, osImage, vmSize, vmSizes } from '../../src/read/catalogue.ts';
import { accountHistoryPage, accountSelectors, capsulSelectors, paymentSelectors } from '../../src/read/history.ts';
import { accountOfPayment, newestPayments, paymentById, paymentByReference } from '../../src/read/payments.ts';
import { operator, sshKey, testDatabase, type TestDatabase } from '../support/db.ts';

const start = new Date('2026-10-01T12:00:00Z');
let now = start;
let db: TestDatabase;
let accountId: string;
let paymentId: number;
let vmId: string;
const email = 'reader@example.org';

before(async () => {
  db = await testDatabase({ now: () => now });
  ({ paymentId } = await db.ledger.recordPayment({ email, amountCents: 2_050, reference: 'wire-7', cause: operator }));
  now = new Date(start.getTime() + 60_000);
  ({ vmId } = await db.ledger.createVm({ email, size: 'f1-xs', os: 'debian12', sshPublicKeys: [sshKey], cause: operator }));
  accountId = (await accountIdByEmail(db.pool, email))!;
});
after(() => db.close());

describe('whose is it', () => {
  it('finds the account of an email, a payment and a capsul, and null for what does not exist', async () => {
    assert.equal(await accountIdByEmail(db.pool, 'nobody@example.org'), null);
    assert.equal(await accountOfPayment(db.pool, paymentId), accountId);
    assert.equal(await accountOfPayment(db.pool, 999_999), null);
    assert.deepEqual(await accountOfCapsul(db.pool, vmId), { accountId, deletionRequested: false, suspended: false });
    assert.equal(await accountOfCapsul(db.pool, 'capsul-nosuchvm00'), null);
    assert.deepEqual(await paymentByReference(db.pool, 'wire-7'), { id: paymentId, email });
    assert.equal(await paymentByReference(db.pool, 'wire-8'), null);
  });
});

describe('stories', () => {
  it("names the account's stream and its capsuls', a payment's events and a capsul's", async () => {
    assert.deepEqual(await accountSelectors(db.pool, accountId), [{ stream: accountStream(accountId) }, { stream: vmStream(vmId) }]);
    assert.deepEqual(await paymentSelectors(db.pool, paymentId), [
      { stream: accountStream(accountId), field: 'paymentId', equals: String(paymentId) },
    ]);
    assert.equal(await paymentSelectors(db.pool, 999_999), null);
    assert.deepEqual(await capsulSelectors(db.pool, vmId), [
      { stream: accountStream(accountId), field: 'vmId', equals: vmId },
      { stream: vmStream(vmId) },
    ]);
    assert.equal(await capsulSelectors(db.pool, 'capsul-nosuchvm00'), null);
  });

  it("pages an account's story newest first, and the last page has no older one", async () => {
    const whole = await accountHistoryPage(db.pool, accountId, { before: null, size: 100, kind: 'all' });
    assert.equal(whole.older, null);
    const types = whole.events.map((stored) => stored.event.type);
    assert.equal(types.at(-1), 'AccountOpened', 'oldest last');
    assert.equal(types[0], 'VmCreationRequested', 'newest first');

    const first = await accountHistoryPage(db.pool, accountId, { before: null, size: 2, kind: 'all' });
    assert.deepEqual(
      first.events.map((stored) => stored.event.type),
      types.slice(0, 2),
    );
    assert.notEqual(first.older, null);
    const second = await accountHistoryPage(db.pool, accountId, { before: first.older, size: 100, kind: 'all' });
    assert.deepEqual(
      second.events.map((stored) => stored.event.type),
      types.slice(2),
    );
    assert.equal(second.older, null);
  });

  it("pages one kind of an account's story, filtered by message type in the query", async () => {
    const money = await accountHistoryPage(db.pool, accountId, { before: null, size: 100, kind: 'money' });
    const capsuls = await accountHistoryPage(db.pool, accountId, { before: null, size: 100, kind: 'capsuls' });
    assert.ok(money.events.every((stored) => stored.event.type.startsWith('Payment') || stored.event.type === 'BalanceWarningIssued'));
    assert.ok(capsuls.events.every((stored) => stored.event.type.startsWith('Vm')));
    assert.ok(money.events.length > 0 && capsuls.events.length > 0);
  });
});

describe('the catalogue', () => {
  it('lists sizes cheapest first and images by description, and finds one of each by id', async () => {
    const sizes = await vmSizes(db.pool);
    assert.ok(sizes.length > 1);
    for (let i = 1; i < sizes.length; i++) assert.ok(sizes[i - 1]!.priceCentsPerMonth <= sizes[i]!.priceCentsPerMonth);
    assert.deepEqual(await vmSize(db.pool, sizes[0]!.id), sizes[0]);
    assert.equal(await vmSize(db.pool, 'f9-huge'), null);
    const images = await currentOsImages(db.pool);
    assert.ok(images.length > 0);
    assert.ok(images.every((image) => !image.deprecated));
    assert.equal((await osImage(db.pool, 'debian12'))?.id, 'debian12');
    assert.equal(await osImage(db.pool, 'windows'), null);
  });
});

describe("the operators' lists", () => {
  it('read accounts, payments and capsuls in cents and Dates', async () => {
    const [account] = await newestAccounts(db.pool, 1);
    assert.deepEqual(account, { id: accountId, email, createdAt: start, suspension: null });
    const payment = (await paymentById(db.pool, paymentId))!;
    assert.equal(payment.amountCents, 2_050);
    assert.equal(payment.refundedCents, 0);
    assert.equal(payment.receivedAt.getTime(), start.getTime());
    assert.equal(payment.reference, 'wire-7');
    assert.equal(payment.invalidated, false);
    assert.deepEqual(await newestPayments(db.pool, { email, limit: 10 }), [payment]);
    assert.deepEqual(await newestPayments(db.pool, { email: 'nobody@example.org', limit: 10 }), []);
    const [capsul] = await newestCapsuls(db.pool, { email: '', limit: 10 });
    assert.equal(capsul!.id, vmId);
    assert.equal(capsul!.createdAt.getTime(), now.getTime());
    assert.equal(capsul!.deletionRequestedAt, null);
  });
});
