// The account balance page over real HTTP against a real database: payments (invalidated ones
// marked), charges per capsul, a balance that is exactly payments − charges and the ledger's own
// fold, the runway, the warnings, and how to add funds. Times come from the harness clock.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { monthMs } from '../../src/domain/shared/billing.ts';
import { operator, sshKey } from '../support/db.ts';
import { webHarness, type WebHarness } from '../support/web.ts';

const start = new Date('2026-11-01T12:00:00Z');
const dayMs = 86_400_000;

let web: WebHarness;
before(async () => {
  web = await webHarness({ start, supportEmail: 'help@capsul.test' });
});
after(() => web.close());

/** Each test starts at the same instant, whatever the one before did with the clock. Sessions end
 * after 14 idle days, so tests that move further log in when they get there. */
const at = (offsetMs: number) => web.clock.set(new Date(start.getTime() + offsetMs));

const createF1xs = (email: string) =>
  web.db.ledger.createVm({ email, size: 'f1-xs', os: 'debian12', sshPublicKeys: [sshKey], cause: operator });

/** The page's text with tags dropped and white space folded, for reading sentences across markup. */
const text = (html: string) => html.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ');

/** "2027-02-23 16:43 UTC": how the pages show an instant. */
const utcMinute = (ms: number) => `${new Date(ms).toISOString().slice(0, 16).replace('T', ' ')} UTC`;

describe('account balance', () => {
  it('sends a visitor to the login page and back', async () => {
    const response = await web.client().get('/console/account-balance');
    assert.equal(response.statusCode, 303);
    assert.equal(response.headers.location, '/auth/login?next=%2Fconsole%2Faccount-balance');
  });

  it('shows a customer without payments a zero balance and how to add funds', async () => {
    at(0);
    const client = await web.loggedIn('new@example.org');
    const page = await client.get('/console/account-balance');
    assert.equal(page.statusCode, 200);
    const body = text(page.body);
    assert.match(page.body, /<h1>Account balance<\/h1>/);
    assert.match(body, /Balance now \$0\.00/);
    assert.match(body, /You have not added funds yet/);
    assert.match(body, /bank transfer or in cash: write to help@capsul\.test and mention your account's email address, new@example\.org/);
    assert.ok(page.body.includes('href="mailto:help@capsul.test?subject=Adding%20funds%20to%20new%40example.org"'));
    assert.match(body, /No payments yet/);
    assert.match(body, /No capsuls yet/);
    assert.doesNotMatch(page.body, /role="alert"/);
  });

  it('shows payments − charges, exactly, as the ledger folds it: an invalidated payment and a deleted capsul', async () => {
    at(0);
    const email = 'sums@example.org';
    await web.db.ledger.recordPayment({ email, amountCents: 2000, reference: 'bank-2026-11-01', cause: operator });
    const { paymentId: bounced } = await web.db.ledger.recordPayment({ email, amountCents: 1500, cause: operator });
    const { vmId: first } = await createF1xs(email);
    at(2 * dayMs);
    await web.db.ledger.invalidatePayment(bounced, { ...operator, reason: 'chargeback' });
    at(10 * dayMs);
    await web.db.ledger.deleteVm(first, { ...operator, reason: 'no longer needed' });
    const { vmId: second } = await createF1xs(email);
    at(20 * dayMs);

    const page = await (await web.loggedIn(email)).get('/console/account-balance');
    assert.equal(page.statusCode, 200);
    const body = text(page.body);
    // Each capsul ran 10 days of 30.44 at $5.33: 175.098… cents each, 350.197… in all.
    const ledgerBalance = await web.db.ledger.balanceCents(email);
    assert.equal(ledgerBalance, 2000 - 350);
    assert.match(body, /Balance now \$16\.50/);
    assert.match(body, /Payments counted \$20\.00/);
    assert.match(body, /Charges so far \$3\.50/);

    assert.match(page.body, /<caption>Payments received, newest first<\/caption>/);
    assert.match(page.body, /<th scope="col">Status<\/th>/);
    assert.match(
      body,
      /2026-11-01 12:00 UTC \$15\.00 manual \(bank transfer or cash\) Invalidated 2026-11-03 12:00 UTC: it does not count\. Why: see your history/,
    );
    assert.ok(!body.includes('chargeback'), "the operators' reason is theirs");
    assert.match(page.body, /<a href="\/console\/history\?kind=money">Why: see your history<\/a>/);
    assert.match(page.body, /<del>\$15\.00<\/del>/);
    assert.match(body, /2026-11-01 12:00 UTC \$20\.00 manual \(bank transfer or cash\) bank-2026-11-01 Counted/);

    assert.match(page.body, /<caption>Charges per capsul, newest first<\/caption>/);
    assert.match(body, new RegExp(`${second} f1-xs 2026-11-11 12:00 UTC still running \\$5\\.33 \\$1\\.75`));
    assert.match(body, new RegExp(`${first} f1-xs 2026-11-01 12:00 UTC 2026-11-11 12:00 UTC \\(deletion requested\\) \\$5\\.33 \\$1\\.75`));
    assert.match(body, /Total charges \$3\.50/);
    assert.match(body, /may differ from their sum by a cent/);

    // Both capsuls together ran without a break from the start: out once charges round to 2000 cents,
    // i.e. once 1999.5 cents have accrued at 533 cents a month.
    const runsOutMs = start.getTime() + Math.ceil((3999 * monthMs) / 1066);
    assert.equal(await web.db.ledger.balanceCents(email, new Date(runsOutMs)), 0);
    assert.equal(await web.db.ledger.balanceCents(email, new Date(runsOutMs - 1)), 1);
    assert.match(body, new RegExp(`At the current rate \\(\\$5\\.33/month\\) your credit lasts until ${utcMinute(runsOutMs)} ?\\.`));
    assert.doesNotMatch(page.body, /role="alert"/, 'months of credit left: no warning');
  });

  it('agrees with the ledger at every instant, to the cent', async () => {
    at(0);
    const email = 'cents@example.org';
    const client = await web.loggedIn(email);
    await web.db.ledger.recordPayment({ email, amountCents: 1234, cause: operator });
    await createF1xs(email);
    for (const offsetMs of [1, 61_000, 3_600_000 + 7, dayMs - 1, 3 * dayMs + 12_345]) {
      at(offsetMs);
      const cents = await web.db.ledger.balanceCents(email);
      const shown = `$${Math.floor(cents / 100)}.${String(cents % 100).padStart(2, '0')}`;
      assert.ok(text((await client.get('/console/account-balance')).body).includes(`Balance now ${shown}`), `at +${offsetMs} ms: ${shown}`);
    }
  });

  it('warns when the credit runs out within a week', async () => {
    at(0);
    const email = 'low@example.org';
    await web.db.ledger.recordPayment({ email, amountCents: 533, cause: operator });
    await createF1xs(email);
    at(20 * dayMs);
    const client = await web.loggedIn(email);
    assert.doesNotMatch((await client.get('/console/account-balance')).body, /role="alert"/, 'ten days left');
    at(24 * dayMs);
    const page = await client.get('/console/account-balance');
    // 533 cents are charged once 532.5 have accrued.
    const runsOut = utcMinute(start.getTime() + Math.ceil((1065 * monthMs) / 1066));
    assert.equal(runsOut, '2026-12-01 21:52 UTC');
    assert.ok(page.body.includes(`<p class="warning" role="alert">Your credit runs out within a week, on ${runsOut}. Add funds`));
    assert.match(text(page.body), new RegExp(`your credit lasts until ${runsOut}`));
  });

  it('warns when the credit has run out and the balance is negative', async () => {
    at(0);
    const email = 'negative@example.org';
    await web.db.ledger.recordPayment({ email, amountCents: 533, cause: operator });
    await createF1xs(email);
    at(40 * dayMs);
    const page = await (await web.loggedIn(email)).get('/console/account-balance');
    const cents = await web.db.ledger.balanceCents(email);
    assert.ok(cents < 0);
    const shown = `-$${Math.floor(-cents / 100)}.${String(-cents % 100).padStart(2, '0')}`;
    assert.ok(page.body.includes(`<p class="error" role="alert">Your credit has run out (balance ${shown})`));
    assert.match(text(page.body), new RegExp(`Balance now ${shown.replace('$', '\\$')}`));
    assert.doesNotMatch(page.body, /lasts until/, 'no runway once the credit is gone');
  });

  it('lists the newest 25 payments, counts them all, and shows all on request; a refund counts off', async () => {
    at(0);
    const email = 'many-payments@example.org';
    const ids: number[] = [];
    for (let i = 1; i <= 30; i++) {
      ids.push((await web.db.ledger.recordPayment({ email, amountCents: 100 * i, reference: `many-${i}`, cause: operator })).paymentId);
      web.clock.advance(1000);
    }
    await web.db.ledger.recordRefund({ paymentId: ids[29]!, totalRefundedCents: 1000, reference: 'ch_many', cause: operator });
    const client = await web.loggedIn(email);
    const page = text((await client.get('/console/account-balance')).body);
    // 1 + 2 + … + 30 dollars = $465.00, less the $10.00 refunded.
    assert.match(page, /Balance now \$455\.00/);
    assert.match(page, /Counted, all 30 payments \$455\.00/);
    assert.match(page, /\$10\.00 refunded: \$20\.00 counts\./);
    assert.match(page, /newest 25 of your 30 payments/);
    assert.equal((page.match(/many-\d+/g) ?? []).length, 25);
    assert.doesNotMatch(page, /many-5 /, 'the oldest are a link away');
    const all = text((await client.get('/console/account-balance?payments=all')).body);
    assert.equal((all.match(/many-\d+/g) ?? []).length, 30);
    assert.doesNotMatch(all, /Show all payments/);
    assert.equal(await web.db.ledger.balanceCents(email), 45_500);
  });

  it('follows every change of the account at once, though it rereads the tables only when the account changed', async () => {
    at(0);
    const email = 'follows@example.org';
    const { paymentId } = await web.db.ledger.recordPayment({ email, amountCents: 2000, reference: 'follows-1', cause: operator });
    const client = await web.loggedIn(email);
    const balance = async () => /Balance now -?\$(-?[\d.]+)/.exec(text((await client.get('/console/account-balance')).body))?.[0].slice(12);
    assert.equal(await balance(), '$20.00');
    assert.equal(await balance(), '$20.00', 'the same again');
    await web.db.ledger.recordRefund({ paymentId, totalRefundedCents: 500, reference: 'ch_follows', cause: operator });
    assert.equal(await balance(), '$15.00', 'a refund');
    const { vmId } = await createF1xs(email);
    web.clock.advance(monthMs / 4);
    assert.equal(await balance(), '$13.67', 'charges accrue with the clock: 15.00 − 1.3325, rounded once');
    await web.db.ledger.deleteVm(vmId, { ...operator, reason: 'done' });
    web.clock.advance(monthMs / 4);
    assert.equal(await balance(), '$13.67', 'a deletion stops the charges');
    await web.db.ledger.invalidatePayment(paymentId, { ...operator, reason: 'chargeback' });
    assert.equal(await balance(), '-$1.33', 'an invalidation');
    // Received two minutes from now (within the clock skew allowed): counted from then, not before.
    await web.db.ledger.recordPayment({
      email,
      amountCents: 1000,
      receivedAt: new Date(web.clock.now().getTime() + 120_000),
      cause: operator,
    });
    assert.equal(await balance(), '-$1.33');
    web.clock.advance(121_000);
    assert.equal(await balance(), '$8.67', 'the payment counts once received');
    assert.equal(await web.db.ledger.balanceCents(email), 867);
  });

  it('says the balance stays put when nothing runs', async () => {
    at(0);
    const email = 'idle@example.org';
    const client = await web.loggedIn(email);
    await web.db.ledger.recordPayment({ email, amountCents: 1000, cause: operator });
    const { vmId } = await createF1xs(email);
    at(dayMs);
    await web.db.ledger.deleteVm(vmId, { ...operator, reason: 'done' });
    at(5 * dayMs);
    const body = text((await client.get('/console/account-balance')).body);
    assert.match(body, /No capsul is running, so your balance stays as it is/);
    assert.doesNotMatch(body, /At the current rate/);
  });

  it("never shows another customer's payments or capsuls", async () => {
    at(0);
    await web.db.ledger.recordPayment({ email: 'rich@example.org', amountCents: 99_900, reference: 'rich-secret-ref', cause: operator });
    const { vmId } = await createF1xs('rich@example.org');
    const client = await web.loggedIn('poor@example.org');
    const page = await client.get('/console/account-balance');
    assert.ok(!page.body.includes('rich-secret-ref'));
    assert.ok(!page.body.includes(vmId));
    assert.ok(!page.body.includes('999.00'));
    assert.match(text(page.body), /Balance now \$0\.00/);
  });

  it('shows references with script in them escaped, and no reason an operator gave', async () => {
    at(0);
    const email = 'escape-balance@example.org';
    const client = await web.loggedIn(email);
    const { paymentId } = await web.db.ledger.recordPayment({
      email,
      amountCents: 500,
      reference: '<script>alert(1)</script>',
      cause: operator,
    });
    await web.db.ledger.invalidatePayment(paymentId, { ...operator, reason: '<img src=x onerror=alert(2)>' });
    const page = await client.get('/console/account-balance');
    assert.doesNotMatch(page.body, /<script>|<img src=x/);
    assert.ok(page.body.includes('&lt;script&gt;alert(1)&lt;/script&gt;'));
    assert.ok(!page.body.includes('onerror'));
  });
});
