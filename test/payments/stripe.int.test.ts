// Stripe top-ups over real HTTP against a real database, with the real `stripe` SDK talking to a fake
// Stripe API on loopback and webhooks signed as Stripe signs them: the amount form and its refusals, the
// checkout, the return page, the webhook (credit once, holds, signatures, disputes, refunds), a chaos
// property (every webhook delivered one to five times, shuffled, some at once, gives the ledger that
// delivering each once in order gives) and the reconciliation of checkouts whose webhook never came.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import type { LightMyRequestResponse } from 'fastify';
import Stripe from 'stripe';
import { createMailer, latestOutboxMessage, type Mailer } from '../../src/mail/mailer.ts';
import type { ProviderDeps } from '../../src/payments/provider.ts';
import { maxOpenCheckoutsPerDay } from '../../src/payments/checkouts.ts';
import { reconcileAfterMs, StripeProvider } from '../../src/payments/stripe.ts';
import { databaseFingerprint } from '../support/fingerprint.ts';
import { operator, sshKey } from '../support/db.ts';
import { webHarness, type WebClient, type WebHarness } from '../support/web.ts';
import { webhookDeliveries } from '../../src/core/metrics.ts';
import { runJobs } from '../../src/jobs/runner.ts';
import { jobDeps, keepingMailer, recording } from '../jobs/support.ts';
import { signedDelivery, startFakeStripe, webhookSecret, type FakeStripe, type StripeEvent } from './fake-stripe.ts';

const start = new Date('2026-11-01T12:00:00Z');
const minuteMs = 60_000;
const dayMs = 86_400_000;
const ops = 'ops@capsul.test';

let web: WebHarness;
let fake: FakeStripe;
let provider: StripeProvider;
let mailer: Mailer | undefined;
let nudges = 0;
/** What the hub logged at warn and above, one JSON line each. */
const warnings: string[] = [];

before(async () => {
  fake = await startFakeStripe({ now: () => web.clock.now() });
  // The provider is built before the harness's database exists: its deps read them when used.
  const deps: ProviderDeps = {
    get pool() {
      return web.db.pool;
    },
    get ledger() {
      return web.db.ledger;
    },
    get mailer() {
      return (mailer ??= createMailer({ from: 'capsul <no-reply@capsul.test>', outboxDir: web.outboxDir }));
    },
    now: () => web.clock.now(),
    baseUrl: 'http://capsul.test',
    adminEmails: [ops],
    topUpMinCents: 500,
    topUpMaxCents: 100_000,
    afterPayments: () => {
      nudges++;
    },
  };
  provider = new StripeProvider(fake.config, deps);
  web = await webHarness({
    start,
    providers: [provider],
    adminEmails: [ops],
    logger: {
      level: 'warn',
      stream: {
        write: (line: string) => {
          warnings.push(line);
        },
      },
    },
  });
});
after(async () => {
  await web.close();
  await fake.close();
});

// ---- helpers ----

let emails = 0;
const newEmail = (what: string) => `${what}-${++emails}@example.org`;
const query = async <T = Record<string, unknown>>(sql: string, params: unknown[] = []) =>
  (await web.db.pool.query(sql, params)).rows as T[];

/** Stripe deliveries the hub refused, as its metrics count them. */
async function refusedDeliveries(): Promise<number> {
  const { values } = await webhookDeliveries.get();
  return values.find((sample) => sample.labels.provider === 'stripe' && sample.labels.outcome === 'refused')?.value ?? 0;
}

/** POSTs an event to the webhook as Stripe would, signed now (or as told). */
function deliver(event: object, options: { signature?: string | null; body?: string; at?: Date } = {}): Promise<LightMyRequestResponse> {
  const signed = signedDelivery(event, { at: options.at ?? web.clock.now() });
  const signature = options.signature === undefined ? signed.signature : options.signature;
  return web.hub.inject({
    method: 'POST',
    url: '/payment/stripe/webhook',
    payload: options.body ?? signed.body,
    headers: {
      'content-type': 'application/json; charset=utf-8',
      'user-agent': 'Stripe/1.0 (+https://stripe.com/docs/webhooks)',
      ...(signature === null ? {} : { 'stripe-signature': signature }),
    },
  });
}

async function delivered(event: object): Promise<void> {
  const response = await deliver(event);
  assert.equal(response.statusCode, 200, `${(event as StripeEvent).type}: ${response.statusCode} ${response.body}`);
}

/** Opens a card payment through the form; the session id Stripe redirected to. */
async function checkout(client: WebClient, amount: string): Promise<string> {
  const response = await client.submit('/payment/stripe', '/payment/stripe', { amount });
  assert.equal(response.statusCode, 303, `checkout: ${response.statusCode} ${response.body.slice(0, 400)}`);
  const id = /\/c\/pay\/(cs_[A-Za-z0-9_]+)$/.exec(String(response.headers.location))?.[1];
  assert.ok(id, `redirected to ${response.headers.location}`);
  return id;
}

type PaymentView = { reference: string; dollars: string; invalidated: boolean; refunded: string; reason: string | null; provider: string };
const paymentsOf = (email: string) =>
  query<PaymentView>(
    `SELECT reference, dollars::text AS dollars, invalidated, refunded_dollars::text AS refunded, invalidation_reason AS reason, provider
   FROM payments WHERE email = $1 ORDER BY created, reference`,
    [email],
  );
const paymentByReference = async (reference: string) =>
  (
    await query<PaymentView>(
      `SELECT reference, dollars::text AS dollars, invalidated, refunded_dollars::text AS refunded, invalidation_reason AS reason, provider
   FROM payments WHERE reference = $1`,
      [reference],
    )
  )[0];
const checkoutRow = async (id: string) =>
  (
    await query<{ status: string; amount_cents: string; email: string; payment_id: string | null }>(
      `SELECT status, amount_cents, email, payment_id FROM provider_checkouts WHERE provider = 'stripe' AND id = $1`,
      [id],
    )
  )[0];
const balanceOf = async (email: string) => ((await web.db.ledger.accountIdFor(email)) ? web.db.ledger.balanceCents(email) : null);
const intentOf = (sessionId: string) => fake.sessions.get(sessionId)!.payment_intent!;
const counts = async () =>
  (
    await query<{ payments: number; checkouts: number; holds: number; events: number }>(
      `SELECT (SELECT count(*)::int FROM payments) AS payments, (SELECT count(*)::int FROM payment_holds) AS holds,
          (SELECT count(*)::int FROM emt_messages) AS events,
          (SELECT count(*)::int FROM provider_checkouts WHERE status <> 'open') AS checkouts`,
    )
  )[0]!;

/** Emails to `to` that mention `text` (read in the outbox's readable copies). */
async function emailsMentioning(to: string, text: string): Promise<number> {
  const files = (await readdir(web.outboxDir).catch(() => [] as string[])).filter((name) => name.endsWith('.txt'));
  let n = 0;
  for (const name of files) {
    const message = await readFile(path.join(web.outboxDir, name), 'utf8');
    if (message.split('\n').includes(`To: ${to}`) && message.includes(text)) n++;
  }
  return n;
}

/** A customer with a paid, credited checkout; its session and payment intent. */
async function paidCustomer(amount = '30'): Promise<{ email: string; client: WebClient; session: string; intent: string }> {
  const email = newEmail('paid');
  const client = await web.loggedIn(email);
  const session = await checkout(client, amount);
  await delivered(fake.pay(session));
  return { email, client, session, intent: intentOf(session) };
}

// ---- the amount form ----

describe('the amount form', () => {
  it('asks a logged-out visitor to log in first', async () => {
    const response = await web.client().get('/payment/stripe');
    assert.equal(response.statusCode, 303);
    assert.equal(response.headers.location, `/auth/login?next=${encodeURIComponent('/payment/stripe')}`);
  });

  it("offers the amount within the limits, and lets its form lead to Stripe's checkout", async () => {
    const client = await web.loggedIn(newEmail('form'));
    const page = await client.get('/payment/stripe');
    assert.equal(page.statusCode, 200);
    // Configured at $5.00, raised to a month of the cheapest capsul (f1-xs, $5.33), and the form says why.
    assert.match(page.body, /name="amount"[^>]*min="5\.33"[^>]*max="1000\.00"/);
    assert.match(page.body, /From \$5\.33 \(a month of the smallest capsul, f1-xs, so that you can create one\) to \$1000\.00/);
    assert.match(String(page.headers['content-security-policy']), /form-action 'self' https:\/\/checkout\.stripe\.com/);
    const balance = await client.get('/console/account-balance');
    assert.match(balance.body, /href="\/payment\/stripe">Card \(Stripe\)</);
  });

  it('refuses amounts out of bounds or not amounts, re-showing the form with the reason and opening nothing', async () => {
    const email = newEmail('refused');
    const client = await web.loggedIn(email);
    const before = fake.requests.length;
    const cases: [string | string[], RegExp][] = [
      ['5.00', /smallest top-up is \$5\.33/],
      ['5.32', /smallest top-up is \$5\.33/],
      ['1000.01', /largest top-up is \$1000\.00/],
      ['0', /more than zero/],
      ['abc', /not an amount in dollars/],
      ['', /enter an amount/],
      ['1e3', /not an amount/],
      ['-5', /not an amount/],
      ['20.001', /not an amount/],
      ['99999999999', /not an amount/],
      [['10', '20'], /not what this page sends/],
    ];
    for (const [amount, message] of cases) {
      const response = await client.submit('/payment/stripe', '/payment/stripe', { amount });
      assert.equal(response.statusCode, 400, `amount ${JSON.stringify(amount)}: ${response.statusCode}`);
      assert.match(response.body, message, `amount ${JSON.stringify(amount)}`);
      assert.match(response.body, /class="error" role="alert"/);
      assert.match(response.body, /name="amount"/);
    }
    const missing = await client.submit('/payment/stripe', '/payment/stripe', {});
    assert.equal(missing.statusCode, 400);
    assert.equal(fake.requests.length, before, 'no call to Stripe');
    assert.equal((await query('SELECT 1 FROM provider_checkouts WHERE email = $1', [email])).length, 0);
  });

  it('takes the smallest top-up that pays for a capsul: the customer who pays it can create the cheapest one', async () => {
    const { email } = await paidCustomer('5.33');
    assert.equal(await balanceOf(email), 533);
    const { vmId } = await web.db.ledger.createVm({ email, size: 'f1-xs', os: 'debian12', sshPublicKeys: [sshKey], cause: operator });
    assert.match(vmId, /^capsul-/);
  });

  it('raises the smallest top-up with the catalogue: a price a migration changes counts at the next page', async () => {
    const client = await web.loggedIn(newEmail('repriced'));
    try {
      await web.db.admin.query(`UPDATE vm_sizes SET dollars_per_month = 6.10 WHERE id = 'f1-xs'`);
      const page = await client.get('/payment/stripe');
      assert.match(page.body, /From \$6\.10 \(a month of the smallest capsul, f1-xs, so that you can create one\)/);
      const refused = await client.submit('/payment/stripe', '/payment/stripe', { amount: '6.09' });
      assert.equal(refused.statusCode, 400);
      assert.match(refused.body, /smallest top-up is \$6\.10/);
    } finally {
      await web.db.admin.query(`UPDATE vm_sizes SET dollars_per_month = 5.33 WHERE id = 'f1-xs'`);
    }
  });

  it('refuses a post without the CSRF token (403), and sends a logged-out post to the login page', async () => {
    const email = newEmail('csrf');
    const client = await web.loggedIn(email);
    await client.get('/payment/stripe');
    const forged = await client.post('/payment/stripe', { amount: '20', _csrf: null });
    assert.equal(forged.statusCode, 403);
    const stranger = web.client();
    await stranger.get('/auth/login');
    const loggedOut = await stranger.post('/payment/stripe', { amount: '20' });
    assert.equal(loggedOut.statusCode, 303);
    assert.match(String(loggedOut.headers.location), /^\/auth\/login/);
    assert.equal((await query('SELECT 1 FROM provider_checkouts WHERE email = $1', [email])).length, 0);
  });

  it('tells the customer when Stripe cannot open the payment, and records nothing', async () => {
    const email = newEmail('down');
    const client = await web.loggedIn(email);
    fake.failNext(3); // the first try and both of the SDK's retries
    const response = await client.submit('/payment/stripe', '/payment/stripe', { amount: '20' });
    assert.equal(response.statusCode, 502);
    assert.match(response.body, /Stripe did not open the card payment: nothing was charged/);
    assert.equal((await query('SELECT 1 FROM provider_checkouts WHERE email = $1', [email])).length, 0);
  });

  it(`allows at most ${maxOpenCheckoutsPerDay} unfinished checkouts a day`, async () => {
    const email = newEmail('many');
    const client = await web.loggedIn(email);
    for (let i = 0; i < maxOpenCheckoutsPerDay; i++) await checkout(client, '6');
    const refused = await client.submit('/payment/stripe', '/payment/stripe', { amount: '6' });
    assert.equal(refused.statusCode, 409);
    assert.match(refused.body, /unfinished card payments/);
    assert.equal((await query('SELECT 1 FROM provider_checkouts WHERE email = $1', [email])).length, maxOpenCheckoutsPerDay);
  });
});

// ---- the checkout and the return page ----

describe('a checkout', () => {
  it('opens a Checkout Session for the amount and the account, records it open and sends the customer to it', async () => {
    const email = newEmail('Checkout');
    const client = await web.loggedIn(email);
    const response = await client.submit('/payment/stripe', '/payment/stripe', { amount: ' 25.5 ' });
    assert.equal(response.statusCode, 303);
    const id = /cs_test_[0-9a-f]+/.exec(String(response.headers.location))![0];
    const session = fake.sessions.get(id)!;
    assert.equal(response.headers.location, session.url);
    assert.equal(session.amount_total, 2550);
    assert.equal(session.currency, 'usd');
    assert.equal(session.mode, 'payment');
    assert.equal(session.customer_email, email.toLowerCase());
    assert.equal(session.client_reference_id, email.toLowerCase());
    assert.deepEqual(session.metadata, { capsul_email: email.toLowerCase() });
    assert.equal(session.success_url, 'http://capsul.test/payment/stripe/success?session_id={CHECKOUT_SESSION_ID}');
    assert.equal(session.cancel_url, 'http://capsul.test/payment/stripe?cancelled=1');
    const created = fake.requests.filter((r) => r.method === 'POST' && r.path === '/v1/checkout/sessions').at(-1)!;
    assert.deepEqual((created.params.payment_intent_data as { metadata: object }).metadata, { capsul_email: email.toLowerCase() });
    assert.deepEqual(await checkoutRow(id), { status: 'open', amount_cents: '2550', email: email.toLowerCase(), payment_id: null });
    const page = await client.get('/payment/stripe');
    assert.match(page.body, /\$25\.50<\/td><td>not paid \(yet\)/);
  });

  it("the return page only says what the webhook did: it never credits, and shows no other customer's checkout", async () => {
    const email = newEmail('return');
    const client = await web.loggedIn(email);
    const id = await checkout(client, '40');
    const completed = fake.pay(id);
    const waiting = await client.get(`/payment/stripe/success?session_id=${id}`);
    assert.equal(waiting.statusCode, 200);
    assert.match(waiting.body, /not yet confirmed your payment of <strong>\$40\.00/);
    assert.match(waiting.body, /<meta http-equiv="refresh" content="5">/);
    assert.equal(await balanceOf(email), null, 'nothing credited by the return page');

    const other = await web.loggedIn(newEmail('nosy'));
    const nosy = await other.get(`/payment/stripe/success?session_id=${id}`);
    assert.equal(nosy.statusCode, 404);
    assert.doesNotMatch(nosy.body, /\$40\.00/);
    assert.equal((await other.get('/payment/stripe/success?session_id=%3Cscript%3E')).statusCode, 404);

    await delivered(completed);
    const done = await client.get(`/payment/stripe/success?session_id=${id}`);
    assert.match(done.body, /<strong>\$40\.00<\/strong> was added to your balance/);
    assert.doesNotMatch(done.body, /http-equiv="refresh"/);
  });

  it('the cancel address shows the form again with a notice', async () => {
    const client = await web.loggedIn(newEmail('cancel'));
    const page = await client.get('/payment/stripe?cancelled=1');
    assert.match(page.body, /The card payment was cancelled: nothing was charged/);
  });
});

// ---- the webhook ----

describe('the webhook', () => {
  it('credits a completed checkout once, however often (and however concurrently) it is delivered', async () => {
    const email = newEmail('once');
    const client = await web.loggedIn(email);
    const id = await checkout(client, '30');
    const completed = fake.pay(id);
    const nudgesBefore = nudges;
    await delivered(completed);
    await delivered(completed);
    const together = await Promise.all([deliver(completed), deliver(completed), deliver(completed)]);
    assert.deepEqual(
      together.map((r) => r.statusCode),
      [200, 200, 200],
    );
    const payments = await paymentsOf(email);
    assert.deepEqual(payments, [
      { reference: intentOf(id), dollars: '30.00', invalidated: false, refunded: '0.00', reason: null, provider: 'stripe' },
    ]);
    assert.equal(await balanceOf(email), 3000);
    const row = await checkoutRow(id);
    assert.equal(row!.status, 'credited');
    assert.ok(row!.payment_id);
    assert.equal(nudges - nudgesBefore, 1, 'the payment jobs are nudged once');
  });

  it("credits the checkout's own account and amount: the session's metadata cannot redirect the money", async () => {
    const email = newEmail('owner');
    const client = await web.loggedIn(email);
    const id = await checkout(client, '12');
    const completed = fake.pay(id);
    (completed.data.object as { metadata: object }).metadata = { capsul_email: 'mallory@example.org' };
    await delivered(completed);
    assert.equal(await balanceOf(email), 1200);
    assert.equal(await balanceOf('mallory@example.org'), null);
  });

  it('holds a payment whose amount disagrees with the checkout, reports it to the operators once, and credits nothing', async () => {
    const email = newEmail('mismatch');
    const client = await web.loggedIn(email);
    const id = await checkout(client, '50');
    const completed = fake.pay(id, { amountCents: 500 });
    const intent = intentOf(id);
    await delivered(completed);
    await delivered(completed);
    await Promise.all([delivered(completed), delivered(completed)]);
    assert.deepEqual(await paymentsOf(email), []);
    assert.equal(await balanceOf(email), null);
    assert.equal((await checkoutRow(id))!.status, 'held');
    const holds = await query('SELECT email, amount_cents, expected_cents FROM payment_holds WHERE reference = $1', [intent]);
    assert.deepEqual(holds, [{ email: email.toLowerCase(), amount_cents: '500', expected_cents: '5000' }]);
    const message = await latestOutboxMessage(web.outboxDir, ops);
    assert.ok(message?.includes('is held, not credited'), message ?? 'no email to the operators');
    assert.equal(await emailsMentioning(ops, intent), 1, 'one email per hold');
  });

  it('holds a paid checkout capsul never opened', async () => {
    const { apiBase, secretKey } = fake.config;
    const url = new URL(apiBase!);
    const stranger = new Stripe(secretKey, { host: url.hostname, port: url.port, protocol: 'http' });
    const session = await stranger.checkout.sessions.create({
      mode: 'payment',
      success_url: 'https://elsewhere.example/thanks',
      customer_email: 'someone@example.org',
      line_items: [{ quantity: 2, price_data: { currency: 'usd', unit_amount: 999, product_data: { name: 'something else' } } }],
    });
    assert.equal(session.amount_total, 1998);
    await delivered(fake.pay(session.id));
    const intent = intentOf(session.id);
    assert.equal(await paymentByReference(intent), undefined);
    const holds = await query<{ reason: string; email: string | null }>('SELECT reason, email FROM payment_holds WHERE reference = $1', [
      intent,
    ]);
    assert.equal(holds.length, 1);
    assert.match(holds[0]!.reason, /is not one capsul opened/);
    assert.equal(holds[0]!.email, 'someone@example.org');
  });

  it('refuses a forged, tampered, missing or stale signature with 400 and records nothing', async () => {
    const email = newEmail('forged');
    const client = await web.loggedIn(email);
    const id = await checkout(client, '20');
    const completed = fake.pay(id);
    const before = await counts();
    const refusedBefore = await refusedDeliveries();
    const signed = signedDelivery(completed, { at: web.clock.now() });
    const otherSecret = signedDelivery(completed, { at: web.clock.now(), secret: 'whsec_not_the_one' }).signature;
    const tampered = signed.body.replace('"amount_total": 2000', '"amount_total": 200000');
    assert.notEqual(tampered, signed.body);
    const forgeries: { signature?: string | null; body?: string; at?: Date }[] = [
      { signature: otherSecret },
      { signature: null },
      { signature: '' },
      { signature: 'garbage' },
      { signature: `t=${Math.floor(web.clock.now().getTime() / 1000)}` },
      { signature: signed.signature, body: tampered },
      { at: new Date(web.clock.now().getTime() - 10 * minuteMs) }, // Stripe's tolerance is 5 minutes
      { signature: signed.signature.replace(/v1=(.)/, (_, c: string) => `v1=${c === '0' ? '1' : '0'}`) }, // one digit off
    ];
    for (const forgery of forgeries) {
      const response = await deliver(completed, forgery);
      assert.equal(response.statusCode, 400, JSON.stringify(forgery).slice(0, 200));
    }
    const unsigned = await web.hub.inject({
      method: 'POST',
      url: '/payment/stripe/webhook',
      payload: 'not json',
      headers: { 'content-type': 'text/plain' },
    });
    assert.equal(unsigned.statusCode, 400);
    const empty = await web.hub.inject({ method: 'POST', url: '/payment/stripe/webhook' });
    assert.equal(empty.statusCode, 400);
    assert.deepEqual(await counts(), before, 'no payment, hold, checkout change or event');
    assert.equal(
      (await refusedDeliveries()) - refusedBefore,
      forgeries.length + 2,
      'each delivery refused is counted (capsul_webhook_deliveries_total)',
    );
    assert.equal((await checkoutRow(id))!.status, 'open');
  });

  it('acknowledges events it does not act on with 200, changing nothing', async () => {
    const before = await counts();
    for (const type of ['customer.created', 'payment_intent.succeeded', 'charge.dispute.created', 'invoice.paid']) {
      const response = await deliver({
        id: `evt_${type}`,
        object: 'event',
        type,
        created: Math.floor(web.clock.now().getTime() / 1000),
        data: { object: { id: 'x_1', object: 'thing' } },
      });
      assert.equal(response.statusCode, 200, type);
    }
    assert.deepEqual(await counts(), before);
  });

  it('takes a webhook body up to 512 KB, and no more', async () => {
    const padded = (kb: number) => ({
      id: 'evt_big',
      object: 'event',
      type: 'customer.updated',
      created: Math.floor(web.clock.now().getTime() / 1000),
      data: { object: { id: 'cus_1', padding: 'x'.repeat(kb * 1024) } },
    });
    assert.equal((await deliver(padded(200))).statusCode, 200);
    assert.equal((await deliver(padded(600))).statusCode, 413);
  });

  it('deliveries refused again and again open a webhooks-failing incident; one good delivery and 15 quiet minutes clear it', async () => {
    const acknowledged = (id: string) => ({
      id,
      object: 'event',
      type: 'customer.created',
      created: Math.floor(web.clock.now().getTime() / 1000),
      data: { object: { id: 'cus_1', object: 'customer' } },
    });
    await delivered(acknowledged('evt_good_1'));
    for (let i = 0; i < 5; i++) assert.equal((await deliver(acknowledged(`evt_forged_${i}`), { signature: 'garbage' })).statusCode, 400);
    const row = (await web.db.pool.query(`SELECT failures, last_error FROM webhook_deliveries WHERE provider = 'stripe'`)).rows[0];
    assert.equal(row.failures, 5);
    assert.match(row.last_error, /^refused: [^\n]+$/);

    const incidents = async (at: Date) => {
      await runJobs(jobDeps(web.db, { now: () => at } as never, keepingMailer()), recording({ jobs: ['incidents'] }));
      const { rows } = await web.db.pool.query(`SELECT summary FROM incidents WHERE kind = 'webhooks-failing' AND cleared IS NULL`);
      return rows.map((r) => r.summary);
    };
    assert.deepEqual(await incidents(web.clock.now()), ["stripe's webhook deliveries are failing: 5 failures in a row"]);
    await delivered(acknowledged('evt_good_2'));
    assert.deepEqual(
      await incidents(web.clock.now()),
      ["stripe's webhook deliveries are failing: 5 failures in a row"],
      'a failure this recent keeps it open',
    );
    assert.deepEqual(await incidents(new Date(web.clock.now().getTime() + 16 * minuteMs)), [], 'quiet for 15 minutes: cleared');
  });

  it('a delayed payment method: completed unpaid credits nothing; async success credits, async failure marks the checkout', async () => {
    const email = newEmail('delayed');
    const client = await web.loggedIn(email);
    const id = await checkout(client, '35');
    const paid = fake.pay(id);
    const session = paid.data.object as Record<string, unknown>;
    await delivered({ ...paid, id: 'evt_unpaid', data: { object: { ...session, payment_status: 'unpaid' } } });
    assert.equal(await balanceOf(email), null);
    assert.equal((await checkoutRow(id))!.status, 'open');
    await delivered({ ...paid, id: 'evt_async', type: 'checkout.session.async_payment_succeeded' });
    assert.equal(await balanceOf(email), 3500);
    await delivered(paid);
    assert.equal((await paymentsOf(email)).length, 1);

    const failing = await checkout(client, '36');
    const failed = { ...fake.expire(failing), type: 'checkout.session.async_payment_failed' };
    await delivered(failed);
    assert.equal((await checkoutRow(failing))!.status, 'invalid');
  });

  it('marks an expired checkout expired, however often it is told', async () => {
    const client = await web.loggedIn(newEmail('expired'));
    const id = await checkout(client, '15');
    const expired = fake.expire(id);
    await delivered(expired);
    await delivered(expired);
    assert.equal((await checkoutRow(id))!.status, 'expired');
  });
});

// ---- chargebacks and refunds ----

describe('chargebacks', () => {
  it("a dispute's funds withdrawn invalidates the payment (chargeback, with the dispute id); reinstated makes it count again", async () => {
    const { email, intent } = await paidCustomer('30');
    web.clock.advance(dayMs);
    const withdrawn = fake.disputeWithdrawn(intent, web.clock.now(), 'du_test_withdrawn1');
    await delivered(withdrawn);
    await delivered(withdrawn);
    let payment = (await paymentByReference(intent))!;
    assert.equal(payment.invalidated, true);
    assert.match(payment.reason!, /chargeback/);
    assert.match(payment.reason!, /du_test_withdrawn1/);
    assert.equal(await balanceOf(email), 0);
    web.clock.advance(dayMs);
    const reinstated = fake.disputeReinstated(intent, web.clock.now(), 'du_test_withdrawn1');
    await delivered(reinstated);
    await delivered(withdrawn); // a late redelivery of the older event
    payment = (await paymentByReference(intent))!;
    assert.equal(payment.invalidated, false);
    assert.equal(await balanceOf(email), 3000);
  });

  it("reinstated delivered before withdrawn leaves the payment valid, as Stripe's order says", async () => {
    const { email, intent } = await paidCustomer('30');
    web.clock.advance(dayMs);
    const withdrawn = fake.disputeWithdrawn(intent, web.clock.now());
    web.clock.advance(dayMs);
    const reinstated = fake.disputeReinstated(intent, web.clock.now());
    await delivered(reinstated);
    await delivered(withdrawn);
    await delivered(reinstated);
    assert.equal((await paymentByReference(intent))!.invalidated, false);
    assert.equal(await balanceOf(email), 3000);
  });

  it("a dispute delivered before its checkout's webhook credits the payment from Stripe's record first, then invalidates it", async () => {
    const email = newEmail('early-dispute');
    const client = await web.loggedIn(email);
    const id = await checkout(client, '22');
    const completed = fake.pay(id);
    const intent = intentOf(id);
    web.clock.advance(minuteMs);
    await delivered(fake.disputeWithdrawn(intent, web.clock.now()));
    assert.equal((await paymentByReference(intent))!.invalidated, true);
    assert.equal((await checkoutRow(id))!.status, 'credited');
    await delivered(completed);
    assert.equal((await paymentsOf(email)).length, 1);
    assert.equal(await balanceOf(email), 0);
  });

  it('a dispute or refund for a payment capsul does not know is acknowledged and changes nothing', async () => {
    const before = await counts();
    const at = Math.floor(web.clock.now().getTime() / 1000);
    const dispute = { id: 'du_unknown', object: 'dispute', charge: 'ch_unknown', payment_intent: 'pi_unknown', amount: 100, created: at };
    await delivered({ id: 'evt_u1', object: 'event', type: 'charge.dispute.funds_withdrawn', created: at, data: { object: dispute } });
    await delivered({
      id: 'evt_u2',
      object: 'event',
      type: 'charge.dispute.funds_reinstated',
      created: at,
      data: { object: { ...dispute, payment_intent: null } },
    });
    await delivered({
      id: 'evt_u3',
      object: 'event',
      type: 'charge.refunded',
      created: at,
      data: { object: { id: 'ch_unknown', object: 'charge', amount: 100, amount_refunded: 100, payment_intent: 'pi_unknown' } },
    });
    assert.deepEqual(await counts(), before);
  });
});

describe('signed events of shapes capsul does not expect', () => {
  const at = () => Math.floor(web.clock.now().getTime() / 1000);
  const event = (type: string, data: unknown, extra: object = {}) => ({
    id: `evt_odd_${type}`,
    object: 'event',
    type,
    created: at(),
    data,
    ...extra,
  });
  /** A completed checkout's session as Stripe sends it, for one capsul never opened. */
  const session = (fields: object = {}) => ({
    id: 'cs_test_odd',
    object: 'checkout.session',
    mode: 'payment',
    payment_status: 'paid',
    payment_intent: 'pi_test_odd',
    amount_total: 2000,
    currency: 'usd',
    metadata: {},
    customer_details: { email: 'odd@example.org' },
    ...fields,
  });

  it('acknowledges each with 200, says why, logs a warning, and changes nothing', async () => {
    const odd: [string, object][] = [
      ["the tester's: data {}", event('checkout.session.completed', {})],
      ['no data', event('checkout.session.completed', undefined)],
      ['data null', event('checkout.session.completed', null)],
      ['data.object null', event('checkout.session.completed', { object: null })],
      ['data.object a list', event('checkout.session.completed', { object: [session()] })],
      ['data.object text', event('checkout.session.completed', { object: 'cs_test_odd' })],
      ['a session id that is none', event('checkout.session.completed', { object: session({ id: 'cs_\u0000odd' }) })],
      ['a session id of the wrong type', event('checkout.session.completed', { object: session({ id: 42 }) })],
      ['a payment intent that is a number', event('checkout.session.completed', { object: session({ payment_intent: 42 }) })],
      [
        'an expanded payment intent without an id',
        event('checkout.session.completed', { object: session({ payment_intent: { object: 'payment_intent' } }) }),
      ],
      ['a payment intent id with NUL', event('checkout.session.completed', { object: session({ payment_intent: 'pi_\u0000' }) })],
      ['an amount as text', event('checkout.session.completed', { object: session({ amount_total: '2000' }) })],
      ['an amount in fractions of a cent', event('checkout.session.completed', { object: session({ amount_total: 20.5 }) })],
      ['a negative amount', event('checkout.session.completed', { object: session({ amount_total: -2000 }) })],
      ['a currency with NUL', event('checkout.session.completed', { object: session({ currency: 'us\u0000' }) })],
      ['a mode that is no text', event('checkout.session.completed', { object: session({ mode: { payment: true } }) })],
      ['a time that is no time', event('checkout.session.completed', { object: session() }, { created: 'yesterday' })],
      ['a time past any date', event('checkout.session.completed', { object: session() }, { created: 1e20 })],
      ['no type', { id: 'evt_odd', object: 'event', created: at(), data: { object: session() } }],
      ['a type that is no text', event('checkout.session.completed', { object: session() }, { type: ['checkout.session.completed'] })],
      ['an expiry without a session id', event('checkout.session.expired', { object: {} })],
      ['an expiry with NUL in the id', event('checkout.session.expired', { object: { id: 'cs_test\u0000' } })],
      ['a dispute of no shape', event('charge.dispute.funds_withdrawn', { object: {} })],
      [
        'a dispute with a payment intent of the wrong type',
        event('charge.dispute.funds_withdrawn', { object: { id: 'du_odd', payment_intent: ['pi_x'] } }),
      ],
      ['a refund as text', event('charge.refunded', { object: { id: 'ch_odd', amount_refunded: '100', payment_intent: 'pi_odd' } })],
      ['a refund without a charge id', event('charge.refunded', { object: { amount_refunded: 100, payment_intent: 'pi_odd' } })],
    ];
    const before = await databaseFingerprint(web.db.admin);
    const requests = fake.requests.length;
    for (const [what, body] of odd) {
      warnings.length = 0;
      const response = await deliver(body);
      assert.equal(response.statusCode, 200, `${what}: ${response.statusCode} ${response.body}`);
      const answer = response.json() as { received: boolean; ignored?: string };
      assert.equal(answer.received, true, what);
      assert.match(answer.ignored ?? '', /^[\x20-\x7e]+$/, `${what}: says why, on one printable line`);
      assert.ok(
        warnings.some((line) => /stripe webhook acknowledged, nothing done/.test(line)),
        `${what}: a warning in the log`,
      );
    }
    assert.deepEqual(await databaseFingerprint(web.db.admin), before, 'nothing changed');
    assert.equal(fake.requests.length, requests, 'Stripe was not asked about any of them');
  });

  it('acknowledges types it does not act on whatever their data, without a warning', async () => {
    const before = await databaseFingerprint(web.db.admin);
    for (const data of [{}, null, undefined, { object: 'x' }]) {
      warnings.length = 0;
      const response = await deliver(event('payment_intent.created', data));
      assert.equal(response.statusCode, 200);
      assert.deepEqual(response.json(), { received: true });
      assert.deepEqual(warnings, []);
    }
    assert.deepEqual(await databaseFingerprint(web.db.admin), before);
  });

  it('holds a paid checkout capsul never opened whose payment intent has no metadata, and takes only an email that is one', async () => {
    const cases: [object, string | null][] = [
      [{ metadata: null, customer_details: null }, null],
      [{ metadata: undefined, customer_details: { email: 'Paid@Example.ORG' } }, 'paid@example.org'],
      [{ metadata: { capsul_email: 'gu\u200bs@example.org' }, customer_details: { email: 'a@-.org' } }, null],
      [{ metadata: { capsul_email: 'nul\u0000@example.org' }, customer_details: { email: 42 } }, null],
    ];
    for (const [i, [fields, email]] of cases.entries()) {
      const intent = `pi_test_nometa${i}`;
      await delivered(
        event('checkout.session.completed', { object: session({ id: `cs_test_nometa${i}`, payment_intent: intent, ...fields }) }),
      );
      const holds = await query<{ email: string | null; reason: string }>('SELECT email, reason FROM payment_holds WHERE reference = $1', [
        intent,
      ]);
      assert.equal(holds.length, 1);
      assert.equal(holds[0]!.email, email);
      assert.match(holds[0]!.reason, /is not one capsul opened/);
      assert.equal(await paymentByReference(intent), undefined);
    }
  });

  it('refuses a signed body that is not a JSON object with 400: no Stripe delivery looks like that', async () => {
    const before = await databaseFingerprint(web.db.admin);
    for (const body of ['not json', '[{"type":"checkout.session.completed"}]', 'null', '42', '"checkout.session.completed"']) {
      const t = at();
      const signature = `t=${t},v1=${createHmac('sha256', webhookSecret).update(`${t}.${body}`, 'utf8').digest('hex')}`;
      const response = await web.hub.inject({
        method: 'POST',
        url: '/payment/stripe/webhook',
        payload: body,
        headers: { 'content-type': 'application/json', 'stripe-signature': signature },
      });
      assert.equal(response.statusCode, 400, body);
      assert.match((response.json() as { error: string }).error, /^the body is not (JSON|a Stripe event \(a JSON object\))$/, body);
    }
    assert.deepEqual(await databaseFingerprint(web.db.admin), before);
  });

  it('answers 503 (deliver again) when Stripe cannot be asked about a dispute, changing nothing; the next delivery acts', async () => {
    const email = newEmail('dispute-503');
    const client = await web.loggedIn(email);
    const id = await checkout(client, '25');
    fake.pay(id); // its webhook is lost: the dispute makes capsul ask Stripe about the checkout
    const intent = intentOf(id);
    web.clock.advance(minuteMs);
    const dispute = fake.disputeWithdrawn(intent, web.clock.now());
    const before = await databaseFingerprint(web.db.admin);
    fake.failNext(3); // the first try and both of the SDK's retries
    const response = await deliver(dispute);
    assert.equal(response.statusCode, 503, response.body);
    assert.match((response.json() as { error: string }).error, /deliver it again later/);
    assert.deepEqual(await databaseFingerprint(web.db.admin), before);
    await delivered(dispute);
    assert.equal((await paymentByReference(intent))!.invalidated, true);
  });
});

describe('refunds', () => {
  it("partial and full refunds reduce the payment's credit to what is left, delivered in any order and twice", async () => {
    const { email, intent } = await paidCustomer('30');
    web.clock.advance(dayMs);
    const partial = fake.refund(intent, 1000, web.clock.now());
    web.clock.advance(dayMs);
    const full = fake.refund(intent, 2000, web.clock.now());
    await delivered(partial);
    assert.equal((await paymentByReference(intent))!.refunded, '10.00');
    assert.equal(await balanceOf(email), 2000);
    await delivered(full);
    await delivered(partial);
    await delivered(full);
    const payment = (await paymentByReference(intent))!;
    assert.equal(payment.refunded, '30.00');
    assert.equal(payment.invalidated, false);
    assert.equal(await balanceOf(email), 0);
  });

  it('the full refund first, then the partial one, ends the same', async () => {
    const { email, intent } = await paidCustomer('30');
    web.clock.advance(dayMs);
    const partial = fake.refund(intent, 500, web.clock.now());
    web.clock.advance(dayMs);
    const full = fake.refund(intent, 2500, web.clock.now());
    await delivered(full);
    await delivered(partial);
    assert.equal((await paymentByReference(intent))!.refunded, '30.00');
    assert.equal(await balanceOf(email), 0);
  });
});

// ---- chaos ----

type PaymentPlan = { customer: number; cents: number; mismatch: boolean; disputes: ('withdrawn' | 'reinstated')[]; refunds: number[] };

const paymentPlan: fc.Arbitrary<PaymentPlan> = fc.record({
  customer: fc.integer({ min: 0, max: 1 }),
  cents: fc.integer({ min: 533, max: 20_000 }), // from the smallest top-up the form takes: a month of f1-xs
  mismatch: fc.integer({ min: 0, max: 9 }).map((n) => n < 2),
  disputes: fc.array(fc.constantFrom('withdrawn' as const, 'reinstated' as const), { maxLength: 3 }),
  refunds: fc.array(fc.integer({ min: 1, max: 100 }), { maxLength: 2 }),
});

/** Each event (in Stripe's order) delivered 1–5 times, shuffled, in groups that arrive at once. */
const chaos = fc.record({
  copies: fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 60, maxLength: 60 }),
  order: fc.array(fc.nat(), { minLength: 300, maxLength: 300 }),
  groups: fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 300, maxLength: 300 }),
  delaysMs: fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 300, maxLength: 300 }),
});

let chaosRun = 0;

describe('chaos', () => {
  it('any delivery order, any number of repeats, some at once: the same ledger as each event once, in order', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(paymentPlan, { minLength: 1, maxLength: 3 }), chaos, async (plans, delivery) => {
        chaosRun++;
        const runStart = new Date(start.getTime() + (30 + chaosRun) * dayMs);
        web.clock.set(runStart);
        const copies = ['order', 'chaos'] as const;
        const customers = Object.fromEntries(
          await Promise.all(
            copies.map(async (copy) => {
              const list = [];
              for (let i = 0; i < 2; i++) {
                const email = `${copy}-r${chaosRun}-c${i}-${process.pid}@example.org`;
                list.push({ email, client: await web.loggedIn(email) });
              }
              return [copy, list] as const;
            }),
          ),
        ) as Record<(typeof copies)[number], { email: string; client: WebClient }[]>;

        // Both copies live the same story at the same instants; only their deliveries differ.
        const events: Record<(typeof copies)[number], StripeEvent[]> = { order: [], chaos: [] };
        const intents: Record<(typeof copies)[number], string[]> = { order: [], chaos: [] };
        for (const plan of plans) {
          const sessions = { order: '', chaos: '' };
          for (const copy of copies) sessions[copy] = await checkout(customers[copy][plan.customer]!.client, (plan.cents / 100).toFixed(2));
          let at = new Date(web.clock.now().getTime() + minuteMs);
          const next = () => (at = new Date(at.getTime() + 7_000));
          const paidAt = next();
          for (const copy of copies) {
            events[copy].push(fake.pay(sessions[copy], { at: paidAt, amountCents: plan.mismatch ? plan.cents + 1 : undefined }));
            intents[copy].push(intentOf(sessions[copy]));
          }
          for (const dispute of plan.disputes) {
            const when = next();
            for (const copy of copies) {
              const intent = intentOf(sessions[copy]);
              events[copy].push(dispute === 'withdrawn' ? fake.disputeWithdrawn(intent, when) : fake.disputeReinstated(intent, when));
            }
          }
          let refunded = 0;
          for (const percent of plan.refunds) {
            const cents = Math.floor(((plan.cents - refunded) * percent) / 100);
            if (cents <= 0) continue;
            refunded += cents;
            const when = next();
            for (const copy of copies) events[copy].push(fake.refund(intentOf(sessions[copy]), cents, when));
          }
        }
        web.clock.set(new Date(runStart.getTime() + dayMs));

        // Each once, in the order Stripe made them.
        const inOrder = [...events.order].sort((a, b) => a.created - b.created);
        for (const event of inOrder) await delivered(event);

        // Every event one to five times, shuffled, some groups at once, some late; a refused delivery is
        // retried later, as Stripe retries.
        let queue = events.chaos.flatMap((event, i) => Array.from({ length: delivery.copies[i % delivery.copies.length]! }, () => event));
        queue = shuffle(queue, delivery.order);
        let step = 0;
        let attempts = 0;
        while (queue.length > 0) {
          const size = delivery.groups[step % delivery.groups.length]!;
          const group = queue.splice(0, size);
          const results = await Promise.all(
            group.map(async (event, i) => {
              const delayMs = delivery.delaysMs[(step + i) % delivery.delaysMs.length]!;
              if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
              return { event, response: await deliver(event) };
            }),
          );
          for (const { event, response } of results) {
            if (response.statusCode !== 200) queue.push(event);
          }
          step++;
          assert.ok(++attempts < 2000, 'deliveries kept failing');
        }

        // The same ledger: per payment, and per account.
        for (const [i, plan] of plans.entries()) {
          const [ordered, chaotic] = await Promise.all(copies.map((copy) => paymentByReference(intents[copy][i]!)));
          const strip = (p: PaymentView | undefined) =>
            p ? { dollars: p.dollars, invalidated: p.invalidated, refunded: p.refunded, provider: p.provider } : null;
          assert.deepEqual(strip(chaotic), strip(ordered), `payment ${i} of ${JSON.stringify(plans)}`);
          // And what the plan says Stripe did.
          if (plan.mismatch) assert.equal(ordered, undefined);
          else {
            assert.equal(ordered!.invalidated, plan.disputes.at(-1) === 'withdrawn');
            assert.equal(ordered!.dollars, (plan.cents / 100).toFixed(2));
          }
          const holds = await Promise.all(
            copies.map(async (copy) => (await query('SELECT 1 FROM payment_holds WHERE reference = $1', [intents[copy][i]])).length),
          );
          assert.deepEqual(holds, plan.mismatch ? [1, 1] : [0, 0]);
        }
        for (let c = 0; c < 2; c++) {
          const [ordered, chaotic] = await Promise.all(copies.map((copy) => balanceOf(customers[copy][c]!.email)));
          assert.equal(chaotic, ordered, `balance of customer ${c}`);
          const statuses = await Promise.all(
            copies.map(async (copy) =>
              (
                await query<{ status: string }>(`SELECT status FROM provider_checkouts WHERE email = $1 ORDER BY amount_cents, status`, [
                  customers[copy][c]!.email,
                ])
              ).map((r) => r.status),
            ),
          );
          assert.deepEqual(statuses[1], statuses[0]);
        }
      }),
      { numRuns: 25 },
    );
  });
});

function shuffle<T>(items: T[], randoms: number[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = randoms[i % randoms.length]! % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

// ---- reconciliation ----

describe('reconcile', () => {
  it('dry run says what it would do and changes nothing; then it credits a missed webhook, expires abandoned checkouts and marks unknown ones invalid', async () => {
    web.clock.set(new Date(start.getTime() + 200 * dayMs));
    // Given: what earlier tests left open is settled already.
    await provider.reconcile({ now: web.clock.now(), dryRun: false, log: () => {} });
    const email = newEmail('reconcile');
    const client = await web.loggedIn(email);
    const paid = await checkout(client, '45');
    const abandoned = await checkout(client, '46');
    const young = await checkout(client, '47');
    const paidAt = new Date(web.clock.now().getTime() + 2 * minuteMs);
    fake.pay(paid, { at: paidAt }); // its webhook is never delivered
    fake.expire(abandoned);
    await web.db.pool.query(
      `INSERT INTO provider_checkouts (provider, id, email, amount_cents, created, status, status_changed) VALUES ('stripe', 'cs_test_gone', $1, 900, $2, 'open', $2)`,
      [email.toLowerCase(), web.clock.now().toISOString()],
    );
    // The young one was opened just now, the others two hours ago.
    web.clock.advance(2 * reconcileAfterMs);
    await web.db.pool.query(`UPDATE provider_checkouts SET created = $2 WHERE id = $1`, [young, web.clock.now().toISOString()]);

    const before = await counts();
    const dryLines: string[] = [];
    await provider.reconcile({ now: web.clock.now(), dryRun: true, log: (line) => dryLines.push(line) });
    assert.deepEqual(await counts(), before, 'the dry run changes nothing');
    assert.equal((await checkoutRow(paid))!.status, 'open');
    assert.ok(
      dryLines.some((line) => line.includes(`would settle checkout ${paid}`)),
      dryLines.join('\n'),
    );
    assert.ok(
      dryLines.some((line) => line.includes(`would mark checkout ${abandoned} expired`)),
      dryLines.join('\n'),
    );
    assert.ok(
      dryLines.some((line) => line.includes('would mark checkout cs_test_gone invalid')),
      dryLines.join('\n'),
    );
    assert.equal(await balanceOf(email), null);

    const lines: string[] = [];
    const nudgesBefore = nudges;
    await provider.reconcile({ now: web.clock.now(), dryRun: false, log: (line) => lines.push(line) });
    assert.equal((await checkoutRow(paid))!.status, 'credited');
    assert.equal((await checkoutRow(abandoned))!.status, 'expired');
    assert.equal((await checkoutRow('cs_test_gone'))!.status, 'invalid');
    assert.equal((await checkoutRow(young))!.status, 'open', 'a young checkout is left to its webhook');
    assert.equal(await balanceOf(email), 4500);
    assert.equal(nudges - nudgesBefore, 1);
    const [payment] = await query<{ created: Date }>('SELECT created FROM payments WHERE reference = $1', [intentOf(paid)]);
    assert.equal(payment!.created.getTime(), Math.floor(paidAt.getTime() / 1000) * 1000, 'received when Stripe took the money');

    // The webhook arriving late after all changes nothing more; a second run has nothing to do.
    const late = {
      id: 'evt_late',
      object: 'event',
      type: 'checkout.session.completed',
      created: Math.floor(paidAt.getTime() / 1000),
      data: { object: { ...fake.sessions.get(paid)! } },
    };
    await delivered(late);
    const again: string[] = [];
    const settled = await counts();
    await provider.reconcile({ now: web.clock.now(), dryRun: false, log: (line) => again.push(line) });
    assert.deepEqual(await counts(), settled);
    assert.equal((await paymentsOf(email)).length, 1);
  });

  it('a Stripe failure on one checkout does not stop the others, and the run reports it', async () => {
    web.clock.set(new Date(start.getTime() + 300 * dayMs));
    const client = await web.loggedIn(newEmail('flaky'));
    const first = await checkout(client, '10');
    const second = await checkout(client, '11');
    fake.expire(first);
    fake.expire(second);
    web.clock.advance(2 * reconcileAfterMs);
    // The oldest open checkout of all, so it is the one asked about first.
    await web.db.pool.query(`UPDATE provider_checkouts SET created = '2026-01-01T00:00:00Z' WHERE id = $1`, [first]);
    fake.failNext(3); // the first checkout's request and both retries
    const lines: string[] = [];
    await assert.rejects(
      provider.reconcile({ now: web.clock.now(), dryRun: false, log: (line) => lines.push(line) }),
      /1 of \d+ open checkouts could not be checked/,
    );
    assert.ok(
      lines.some((line) => line.includes(`checking checkout ${first} failed`)),
      lines.join('\n'),
    );
    assert.equal((await checkoutRow(first))!.status, 'open');
    assert.equal((await checkoutRow(second))!.status, 'expired');
    await provider.reconcile({ now: web.clock.now(), dryRun: false, log: (line) => lines.push(line) });
    assert.equal((await checkoutRow(first))!.status, 'expired');
    assert.equal((await checkoutRow(second))!.status, 'expired');
  });
});
