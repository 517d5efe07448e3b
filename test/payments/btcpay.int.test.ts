// BTCPay Server top-ups over real HTTP against a real database: capsul's Greenfield client talks to a
// fake BTCPay Server on loopback, and webhooks arrive signed as BTCPay Server signs them. Money moves
// only when an invoice settles, once however often it is reported; corrections follow the invoice's
// current status whatever order the webhooks come in; forged deliveries change nothing; reconcile
// catches what a missed webhook would have said.
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify';
import { accountStream } from '../../src/domain/account/events.ts';
import { createMailer, latestOutboxMessage } from '../../src/mail/mailer.ts';
import { BtcpayProvider, validSignature } from '../../src/payments/btcpay.ts';
import { maxOpenCheckoutsPerDay as maxOpenInvoicesPerDay } from '../../src/payments/checkouts.ts';
import type { ProviderDeps } from '../../src/payments/provider.ts';
import { loadStream } from '../../src/db/event-store.ts';
import { btcpayRoutes } from '../../src/hub/payments/btcpay.ts';
import { webHarness, type WebClient, type WebHarness } from '../support/web.ts';
import { signature, startFakeBtcpay, type FakeBtcpay, type FakeInvoiceStatus, type WebhookType } from './fake-btcpay.ts';

const storeId = 'Store4capsulTests';
const apiKey = 'greenfield-api-key-for-tests';
const webhookSecret = 'webhook-secret-for-tests';
const admin = 'ops@capsul.test';
const start = new Date('2026-11-01T12:00:00Z');

let fake: FakeBtcpay;
let web: WebHarness;
let provider: BtcpayProvider;
let deps: ProviderDeps;
let paymentNudges = 0;
let otherHub: FastifyInstance;
let reconciler: BtcpayProvider;
/** What the hub logged at warn and above, one JSON line each. */
const warnings: string[] = [];

before(async () => {
  fake = await startFakeBtcpay({ storeId, apiKey, webhookSecret });
  // The provider is made before the hub it is registered on, which makes the database: read it when used.
  deps = {
    get pool() {
      return web.db.pool;
    },
    get ledger() {
      return web.db.ledger;
    },
    now: () => web.clock.now(),
    baseUrl: 'http://capsul.test',
    mailer: {
      outboxDir: null,
      send: (message) => createMailer({ from: 'capsul <no-reply@capsul.test>', outboxDir: web.outboxDir }).send(message),
    },
    adminEmails: [admin],
    topUpMinCents: 500,
    topUpMaxCents: 100_000,
    afterPayments: () => {
      paymentNudges++;
    },
  };
  provider = new BtcpayProvider({ url: fake.url, apiKey, storeId, webhookSecret }, deps);
  web = await webHarness({
    start,
    providers: [provider],
    logger: {
      level: 'warn',
      stream: {
        write: (line: string) => {
          warnings.push(line);
        },
      },
    },
  });
  // What other processes would do on the same database: another hub with a provider of its own, and
  // a reconciliation run from the CLI.
  otherHub = Fastify();
  const otherProvider = new BtcpayProvider({ url: fake.url, apiKey, storeId, webhookSecret }, deps);
  await otherHub.register(btcpayRoutes, { provider: otherProvider, pool: deps.pool, now: deps.now });
  reconciler = new BtcpayProvider({ url: fake.url, apiKey, storeId, webhookSecret }, deps);
});
after(async () => {
  await otherHub.close();
  await web.close();
  await fake.close();
});

// ---- givens and probes ----

let customers = 0;
const newEmail = (name: string) => `${name}-${++customers}@example.org`;

/** Opens an invoice through the add-funds form; returns its id. */
async function openInvoice(client: WebClient, amount = '20'): Promise<string> {
  const response = await client.submit('/payment/btcpay', '/payment/btcpay', { amount });
  assert.equal(response.statusCode, 303, `POST /payment/btcpay: ${response.statusCode} ${response.body.slice(0, 300)}`);
  const id = new RegExp(`^${fake.url}/i/([A-Za-z0-9]+)$`).exec(String(response.headers.location))?.[1];
  assert.ok(id, `redirected to ${response.headers.location}, not an invoice's checkout`);
  return id;
}

function post(delivery: { body: string; headers: Record<string, string> }, hub = web.hub): Promise<LightMyRequestResponse> {
  return hub.inject({ method: 'POST', url: '/payment/btcpay/webhook', payload: delivery.body, headers: delivery.headers });
}

async function deliver(invoiceId: string, type: WebhookType, times = 1): Promise<void> {
  for (let i = 0; i < times; i++) {
    const response = await post(fake.webhook(invoiceId, type, { redelivery: i > 0 }));
    assert.equal(response.statusCode, 200, `webhook ${type}: ${response.statusCode} ${response.body}`);
  }
}

/** Moves the invoice at a later instant and delivers what BTCPay Server sends for it. */
async function move(invoiceId: string, status: FakeInvoiceStatus, additionalStatus?: string): Promise<void> {
  web.clock.advance(60_000);
  for (const type of fake.move(invoiceId, status, additionalStatus)) await deliver(invoiceId, type);
}

const checkout = async (id: string) =>
  (
    await web.db.pool.query(
      `SELECT status, amount_cents::int AS cents, payment_id::int, email FROM provider_checkouts WHERE provider = 'btcpay' AND id = $1`,
      [id],
    )
  ).rows[0];
const paymentsOf = async (reference: string) =>
  (
    await web.db.pool.query(
      'SELECT id::int, email, dollars::text, provider, invalidated, invalidation_reason FROM payments WHERE reference = $1',
      [reference],
    )
  ).rows;
const holdOf = async (reference: string) =>
  (
    await web.db.pool.query(
      `SELECT email, amount_cents::int AS cents, expected_cents::int AS expected, reason FROM payment_holds WHERE provider = 'btcpay' AND reference = $1`,
      [reference],
    )
  ).rows[0];
const count = async (sql: string, params: unknown[] = []) => (await web.db.pool.query(sql, params)).rows[0].n as number;
const balanceOf = async (email: string) => web.db.ledger.balanceCents(email).catch(() => 0);

/** The account's events about payments, as "type:paymentId". */
async function paymentEvents(email: string): Promise<string[]> {
  const accountId = await web.db.ledger.accountIdFor(email);
  if (!accountId) return [];
  const { events } = await loadStream(web.db.pool, accountStream(accountId));
  return events
    .map(({ event }) => event as { type: string; data: { paymentId?: number } })
    .filter((event) => event.type.startsWith('Payment'))
    .map((event) => `${event.type}:${event.data.paymentId}`);
}

/** Everything a webhook could change, to compare before and after. */
async function snapshot() {
  const rows = async (sql: string) => JSON.stringify((await web.db.pool.query(sql)).rows);
  return [
    await rows('SELECT * FROM provider_checkouts ORDER BY id'),
    await rows('SELECT * FROM payments ORDER BY id'),
    await rows('SELECT * FROM payment_holds ORDER BY reference'),
    await rows('SELECT count(*) FROM emt_messages'),
  ].join('\n');
}

async function mailsTo(to: string): Promise<number> {
  const files = (await readdir(web.outboxDir).catch(() => [] as string[])).filter((name) => name.endsWith('.txt'));
  let n = 0;
  for (const name of files) if ((await readFile(path.join(web.outboxDir, name), 'utf8')).split('\n').includes(`To: ${to}`)) n++;
  return n;
}

/** Polls `condition` until it holds or `unless` settles. */
async function until(condition: () => Promise<boolean>, unless: Promise<unknown>): Promise<void> {
  let settled = false;
  void unless.then(
    () => {
      settled = true;
    },
    () => {
      settled = true;
    },
  );
  while (!settled && !(await condition())) await new Promise((resolve) => setTimeout(resolve, 5));
}

const text = (html: string) => html.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ');
const shuffled = <T>(items: T[], seed: number) => {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    seed = (Math.imul(seed, 1_103_515_245) + 12_345) >>> 0;
    const j = seed % (i + 1);
    [copy[i], copy[j]] = [copy[j]!, copy[i]!];
  }
  return copy;
};

// ---- the add-funds form ----

describe('the BTCPay add-funds form', () => {
  it('sends a visitor to the login page and back', async () => {
    const response = await web.client().get('/payment/btcpay');
    assert.equal(response.statusCode, 303);
    assert.equal(response.headers.location, '/auth/login?next=%2Fpayment%2Fbtcpay');
  });

  it('is offered on the balance page, and asks for an amount within the configured limits', async () => {
    const client = await web.loggedIn(newEmail('form'));
    const balance = await client.get('/console/account-balance');
    assert.match(balance.body, /<a class="button" href="\/payment\/btcpay">Bitcoin and more \(BTCPay\)<\/a>/);
    const page = await client.get('/payment/btcpay');
    assert.equal(page.statusCode, 200);
    // Configured at $5.00, raised to a month of the cheapest capsul, and the form says why.
    assert.match(text(page.body), /From \$5\.33 \(a month of the smallest capsul, f1-xs, so that you can create one\) to \$1000\.00/);
    assert.match(page.body, /<form method="post" action="\/payment\/btcpay"/);
    assert.match(page.body, /name="_csrf" value="[^"]+"/);
    // Its answer redirects to BTCPay Server's checkout: the page's policy lets the form lead there, and only there.
    assert.match(String(page.headers['content-security-policy']), new RegExp(`form-action 'self' ${fake.url};`));
    const other = await client.get('/console/account-balance');
    assert.match(String(other.headers['content-security-policy']), /form-action 'self';/);
  });

  it('refuses amounts out of range, not numbers and repeated fields, and opens no invoice', async () => {
    const email = newEmail('refused');
    const client = await web.loggedIn(email);
    const invoicesBefore = fake.invoices().length;
    const cases: [string | string[], RegExp][] = [
      ['', /enter an amount/],
      ['5.32', /smallest top-up is \$5\.33/],
      ['1000.01', /largest top-up is \$1000\.00/],
      ['twenty', /is not an amount in dollars/],
      ['20.001', /is not an amount in dollars/],
      ['-20', /is not an amount in dollars/],
      ['1e3', /is not an amount in dollars/],
      [['20', '30'], /not what this page sends/],
    ];
    for (const [amount, message] of cases) {
      const response = await client.submit('/payment/btcpay', '/payment/btcpay', { amount });
      assert.equal(response.statusCode, 400, `${JSON.stringify(amount)}: ${response.statusCode}`);
      assert.match(text(response.body), message, JSON.stringify(amount));
      assert.match(response.body, /aria-invalid="true"/);
    }
    assert.equal(fake.invoices().length, invoicesBefore);
    assert.equal(await count(`SELECT count(*)::int AS n FROM provider_checkouts WHERE email = $1`, [email]), 0);
  });

  it('refuses a form without its CSRF token (403), and a logged-out post goes to the login page', async () => {
    const email = newEmail('csrf');
    const client = await web.loggedIn(email);
    await client.get('/payment/btcpay');
    const forged = await client.post('/payment/btcpay', { amount: '20', _csrf: null });
    assert.equal(forged.statusCode, 403);
    const visitor = web.client();
    await visitor.get('/auth/login');
    const loggedOut = await visitor.post('/payment/btcpay', { amount: '20' });
    assert.equal(loggedOut.statusCode, 303);
    assert.match(String(loggedOut.headers.location), /^\/auth\/login/);
    assert.equal(await count(`SELECT count(*)::int AS n FROM provider_checkouts WHERE email = $1`, [email]), 0);
  });

  it('opens an invoice for the amount in USD and sends the customer to its checkout', async () => {
    const email = newEmail('open');
    const client = await web.loggedIn(email);
    const id = await openInvoice(client, '$20.5');
    const invoice = fake.invoice(id);
    assert.equal(invoice.amount, '20.50');
    assert.equal(invoice.currency, 'USD');
    assert.equal(invoice.metadata.buyerEmail, email);
    assert.equal(invoice.metadata.orderId, `capsul:${email}`);
    assert.equal(invoice.checkout.redirectURL, 'http://capsul.test/payment/btcpay/return?invoice={InvoiceId}');
    assert.deepEqual(await checkout(id), { status: 'open', cents: 2050, payment_id: null, email });
    assert.deepEqual(await paymentsOf(id), [], 'nothing is credited before the invoice settles');
  });

  it(`refuses a customer more than ${maxOpenInvoicesPerDay} unpaid invoices a day`, async () => {
    const email = newEmail('many');
    const client = await web.loggedIn(email);
    for (let i = 0; i < maxOpenInvoicesPerDay; i++) await openInvoice(client, '6');
    const refused = await client.submit('/payment/btcpay', '/payment/btcpay', { amount: '6' });
    assert.equal(refused.statusCode, 409);
    assert.match(text(refused.body), /unpaid BTCPay invoices/);
    assert.equal(await count(`SELECT count(*)::int AS n FROM provider_checkouts WHERE email = $1`, [email]), maxOpenInvoicesPerDay);
  });

  it('says so when BTCPay Server cannot open an invoice, and records nothing', async () => {
    const email = newEmail('down');
    const client = await web.loggedIn(email);
    await client.get('/payment/btcpay');
    fake.failNext(1);
    const response = await client.post('/payment/btcpay', { amount: '20' });
    assert.equal(response.statusCode, 502);
    assert.match(text(response.body), /BTCPay Server could not open an invoice just now: nothing was charged/);
    assert.equal(await count(`SELECT count(*)::int AS n FROM provider_checkouts WHERE email = $1`, [email]), 0);
  });
});

// ---- webhooks ----

describe('BTCPay webhooks', () => {
  it('credit a settled invoice once, however often and however concurrently they are delivered', async () => {
    const email = newEmail('settled');
    const id = await openInvoice(await web.loggedIn(email), '20');
    const nudges = paymentNudges;
    web.clock.advance(60_000);
    fake.move(id, 'Processing');
    fake.move(id, 'Settled');
    const types: WebhookType[] = [
      'InvoiceCreated',
      'InvoiceReceivedPayment',
      'InvoiceProcessing',
      'InvoicePaymentSettled',
      'InvoiceSettled',
    ];
    const deliveries = types.flatMap((type, i) => Array.from({ length: 1 + ((i * 3) % 5) }, () => fake.webhook(id, type)));
    const responses = await Promise.all(shuffled(deliveries, 7).map((delivery) => post(delivery)));
    assert.deepEqual(
      responses.map((r) => r.statusCode),
      responses.map(() => 200),
    );
    await deliver(id, 'InvoiceSettled', 2);

    const payments = await paymentsOf(id);
    assert.equal(payments.length, 1);
    assert.deepEqual(
      { ...payments[0], id: 0 },
      { id: 0, email, dollars: '20.00', provider: 'btcpay', invalidated: false, invalidation_reason: null },
    );
    assert.deepEqual(await checkout(id), { status: 'credited', cents: 2000, payment_id: payments[0].id, email });
    assert.equal(await balanceOf(email), 2000);
    assert.deepEqual(await paymentEvents(email), [`PaymentRecorded:${payments[0].id}`]);
    assert.equal(paymentNudges, nudges + 1, 'the jobs that follow payments are nudged once');
  });

  it('credit nothing while the payment is only seen (Processing)', async () => {
    const email = newEmail('processing');
    const client = await web.loggedIn(email);
    const id = await openInvoice(client, '30');
    await move(id, 'Processing');
    await deliver(id, 'InvoiceProcessing', 3);
    await deliver(id, 'InvoiceReceivedPayment', 2);
    assert.deepEqual(await paymentsOf(id), []);
    assert.equal((await checkout(id)).status, 'open');
    const page = await client.get(`/payment/btcpay/return?invoice=${id}`);
    assert.equal(page.statusCode, 200);
    assert.match(text(page.body), /waiting for confirmation on the network/);
    assert.match(page.body, /<meta http-equiv="refresh" content="60">/);
  });

  it('refuse forged, missing and tampered signatures with 400, and record nothing', async () => {
    const email = newEmail('forged');
    const id = await openInvoice(await web.loggedIn(email), '25');
    web.clock.advance(60_000);
    fake.move(id, 'Settled');
    const before = await snapshot();
    const genuine = fake.webhook(id, 'InvoiceSettled');
    const attempts = [
      fake.webhook(id, 'InvoiceSettled', { secret: 'not-the-secret' }),
      { body: genuine.body, headers: { 'content-type': 'application/json' } },
      { body: genuine.body, headers: { ...genuine.headers, 'btcpay-sig': genuine.headers['btcpay-sig']!.replace('sha256=', '') } },
      { body: genuine.body, headers: { ...genuine.headers, 'btcpay-sig': 'sha256=' } },
      { body: genuine.body, headers: { ...genuine.headers, 'btcpay-sig': `sha256=${'0'.repeat(64)}` } },
      { body: genuine.body.replace('"InvoiceSettled"', '"InvoiceExpired"'), headers: genuine.headers },
      { body: `${genuine.body} `, headers: genuine.headers },
    ];
    for (const attempt of attempts) {
      const response = await post(attempt);
      assert.equal(response.statusCode, 400, `${response.statusCode} ${response.body}`);
    }
    assert.equal(await snapshot(), before);
    // The same delivery, untouched, is taken.
    assert.equal((await post(genuine)).statusCode, 200);
    assert.equal((await paymentsOf(id)).length, 1);
  });

  it('check BTCPay-Sig against the raw body: any other body, secret or form of the header is refused', () => {
    const body = Buffer.from('{"invoiceId":"x"}');
    const good = signature('secret', body.toString());
    assert.equal(validSignature('secret', body, good), true);
    assert.equal(validSignature('secret', body, good.toUpperCase().replace('SHA256=', 'sha256=')), true, 'hex in either case');
    assert.equal(validSignature('secret', Buffer.from('{"invoiceId":"y"}'), good), false);
    assert.equal(validSignature('other', body, good), false);
    assert.equal(validSignature('secret', body, undefined), false);
    assert.equal(validSignature('secret', body, [good]), false);
    assert.equal(validSignature('secret', body, good.slice(0, -2)), false);
    assert.equal(validSignature('secret', body, `sha1=${good.slice(7)}`), false);
  });

  it('take back a credited invoice that turns Invalid, once, and give it back if it is marked Settled again', async () => {
    const email = newEmail('invalid');
    const id = await openInvoice(await web.loggedIn(email), '40');
    await move(id, 'Processing');
    await move(id, 'Settled');
    const [payment] = await paymentsOf(id);
    assert.equal(await balanceOf(email), 4000);

    await move(id, 'Invalid', 'Marked');
    await deliver(id, 'InvoiceInvalid', 2);
    await deliver(id, 'InvoiceSettled', 2); // late redeliveries of the older news change nothing
    const [invalidated] = await paymentsOf(id);
    assert.equal(invalidated.invalidated, true);
    assert.match(invalidated.invalidation_reason, new RegExp(`BTCPay invoice ${id} turned Invalid \\(Marked\\) after it was credited`));
    assert.equal((await checkout(id)).status, 'invalid');
    assert.equal(await balanceOf(email), 0);
    assert.deepEqual(await paymentEvents(email), [`PaymentRecorded:${payment.id}`, `PaymentInvalidated:${payment.id}`]);

    await move(id, 'Settled', 'Marked');
    await deliver(id, 'InvoiceSettled', 2);
    assert.equal((await paymentsOf(id))[0].invalidated, false);
    assert.deepEqual(await checkout(id), { status: 'credited', cents: 4000, payment_id: payment.id, email });
    assert.equal(await balanceOf(email), 4000);
    assert.deepEqual(await paymentEvents(email), [
      `PaymentRecorded:${payment.id}`,
      `PaymentInvalidated:${payment.id}`,
      `PaymentReinstated:${payment.id}`,
    ]);
  });

  it('mark an invoice that expires unpaid, and credit nothing', async () => {
    const email = newEmail('expired');
    const client = await web.loggedIn(email);
    const id = await openInvoice(client, '15');
    await move(id, 'Expired', 'PaidPartial');
    await deliver(id, 'InvoiceExpired', 2);
    assert.deepEqual(await paymentsOf(id), []);
    assert.equal((await checkout(id)).status, 'expired');
    const page = await client.get('/payment/btcpay/return');
    assert.match(text(page.body), new RegExp(`${id} .*expired without being paid in full`));
  });

  it('hold an invoice whose amount disagrees with the checkout, email the operators once, and credit nothing', async () => {
    const email = newEmail('mismatch');
    const client = await web.loggedIn(email);
    const id = await openInvoice(client, '50');
    fake.setAmount(id, '55.00');
    const mailsBefore = await mailsTo(admin);
    await move(id, 'Settled');
    await deliver(id, 'InvoiceSettled', 3);
    assert.deepEqual(await paymentsOf(id), []);
    assert.equal((await checkout(id)).status, 'held');
    assert.deepEqual(await holdOf(id), {
      email,
      cents: 5500,
      expected: 5000,
      reason: 'the invoice is for 55.00 USD, the checkout asked for $50.00',
    });
    assert.equal(await mailsTo(admin), mailsBefore + 1);
    const mail = await latestOutboxMessage(web.outboxDir, admin);
    assert.match(mail ?? '', /btcpay payment .* is held/);
    assert.ok(mail?.includes(id));
    assert.match(text((await client.get(`/payment/btcpay/return?invoice=${id}`)).body), /an operator looks at it before it is credited/);
  });

  it("hold a settled capsul invoice capsul has no checkout for; ignore the store's other invoices", async () => {
    const lost = fake.addInvoice({ amount: '12.00', metadata: { orderId: 'capsul:lost@example.org', buyerEmail: 'lost@example.org' } });
    const donation = fake.addInvoice({ amount: '3.00', metadata: { orderId: 'donation-7' } });
    for (const invoice of [lost, donation]) {
      fake.move(invoice.id, 'Settled');
      await deliver(invoice.id, 'InvoiceSettled', 2);
    }
    assert.deepEqual(await holdOf(lost.id), {
      email: 'lost@example.org',
      cents: 1200,
      expected: null,
      reason: 'capsul has no checkout for this BTCPay invoice',
    });
    assert.equal(await holdOf(donation.id), undefined);
    assert.deepEqual(await paymentsOf(lost.id), []);
    assert.deepEqual(await paymentsOf(donation.id), []);
  });

  it('answer 503 when BTCPay Server cannot be asked (so it delivers again), and the next delivery credits', async () => {
    const email = newEmail('retry');
    const id = await openInvoice(await web.loggedIn(email), '10');
    fake.move(id, 'Settled');
    const before = await snapshot();
    fake.failNext(1);
    const response = await post(fake.webhook(id, 'InvoiceSettled'));
    assert.equal(response.statusCode, 503);
    assert.equal(await snapshot(), before);
    await deliver(id, 'InvoiceSettled');
    assert.equal((await paymentsOf(id)).length, 1);
  });

  it('take turns across processes: a look from another hub waits for the one under way, and acts on what it left', async () => {
    const email = newEmail('two-hubs');
    const id = await openInvoice(await web.loggedIn(email), '20');
    web.clock.advance(60_000);
    fake.move(id, 'Settled');
    const paused = fake.pauseNext();
    const first = post(fake.webhook(id, 'InvoiceSettled')); // this hub reads Settled; BTCPay's answer is held up
    await paused.arrived;
    web.clock.advance(60_000);
    fake.move(id, 'Invalid', 'Marked');
    const second = post(fake.webhook(id, 'InvoiceInvalid'), otherHub);
    // The other hub's look waits for the advisory lock (were it not to wait, it would finish: Invalid,
    // nothing credited yet, and the held-up look would then credit an invalid invoice).
    await until(
      async () =>
        (await count(`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`)) > 0,
      second,
    );
    paused.release();
    assert.equal((await first).statusCode, 200);
    assert.equal((await second).statusCode, 200);
    const [payment] = await paymentsOf(id);
    assert.equal(payment?.invalidated, true, 'credited by the first look, taken back by the second');
    assert.equal((await checkout(id)).status, 'invalid');
    assert.equal(await balanceOf(email), 0);
  });

  const sign = (payload: unknown) => {
    const body = typeof payload === 'string' ? payload : JSON.stringify(payload);
    return { body, headers: { 'content-type': 'application/json', 'btcpay-sig': signature(webhookSecret, body) } };
  };

  it('ignore events that are not about an invoice, or about another store; acknowledge ids that are not ids with a warning', async () => {
    const before = await snapshot();
    const requests = fake.requests.length;
    assert.equal((await post(sign({ type: 'PayoutCreated', storeId }))).statusCode, 200);
    assert.equal((await post(sign({ type: 'InvoiceSettled', storeId: 'another', invoiceId: 'abc' }))).statusCode, 200);
    for (const invoiceId of ['../../users', 'abc\u0000', '', 'a'.repeat(65), 42, null, ['abc'], { id: 'abc' }]) {
      warnings.length = 0;
      const response = await post(sign({ type: 'InvoiceSettled', storeId, invoiceId }));
      assert.equal(response.statusCode, 200, JSON.stringify(invoiceId));
      assert.deepEqual(response.json(), { ignored: 'invoiceId is not an invoice id' });
      assert.ok(
        warnings.some((line) => /BTCPay webhook acknowledged, nothing done/.test(line)),
        `a warning for ${JSON.stringify(invoiceId)}`,
      );
    }
    assert.equal(fake.requests.length, requests, 'BTCPay Server was not asked about any of them');
    assert.equal(await snapshot(), before);
  });

  it('refuse a signed body that is not a JSON object with 400: no BTCPay delivery looks like that', async () => {
    const before = await snapshot();
    for (const body of ['not json', '[{"invoiceId":"abc"}]', 'null', '42', '"InvoiceSettled"']) {
      const response = await post(sign(body));
      assert.equal(response.statusCode, 400, body);
      assert.match((response.json() as { error: string }).error, /^the body is not (JSON|a BTCPay Server event \(a JSON object\))$/);
    }
    assert.equal(await snapshot(), before);
  });

  it('read what BTCPay Server answers field by field: odd fields are never stored, never a 500', async () => {
    const email = newEmail('odd-invoice');
    const id = await openInvoice(await web.loggedIn(email), '30');
    fake.move(id, 'Settled');
    const before = await snapshot();
    const invoice = fake.invoice(id);
    for (const [field, value] of [
      ['status', 'Sett\u0000led'],
      ['additionalStatus', 'None\u001b[2J'],
      ['amount', '30\u0000'],
      ['currency', 'U\u0000SD'],
      ['amount', { value: 30 }],
    ] as const) {
      const saved = invoice[field];
      (invoice as Record<string, unknown>)[field] = value;
      try {
        const response = await post(fake.webhook(id, 'InvoiceSettled'));
        assert.equal(response.statusCode, 503, `${field}: ${response.statusCode} ${response.body}`);
      } finally {
        (invoice as Record<string, unknown>)[field] = saved;
      }
    }
    assert.equal(await snapshot(), before);
    await deliver(id, 'InvoiceSettled');
    assert.equal((await paymentsOf(id)).length, 1, 'credited once BTCPay Server answers sense');
  });

  it("take a buyer's email into a hold only when it is one", async () => {
    for (const [buyerEmail, held] of [
      ['Buyer@Example.ORG', 'buyer@example.org'],
      ['gu\u200bs@example.org', null],
      ['nul\u0000@x.org', null],
      ['a@-.org', null],
      [42, null],
    ] as const) {
      const invoice = fake.addInvoice({ amount: '12', metadata: { orderId: 'capsul:someone@example.org', buyerEmail } });
      fake.move(invoice.id, 'Settled');
      await deliver(invoice.id, 'InvoiceSettled');
      assert.equal((await holdOf(invoice.id))?.email, held, JSON.stringify(buyerEmail));
    }
  });

  it('acknowledge an invoice the ledger refuses with a warning, leaving its checkout for an operator or the next look', async () => {
    const email = newEmail('refused-by-ledger');
    const id = await openInvoice(await web.loggedIn(email), '15');
    // A checkout row whose email the ledger no longer takes (written before today's rule, say).
    await web.db.admin.query(`UPDATE provider_checkouts SET email = 'old@localhost' WHERE provider = 'btcpay' AND id = $1`, [id]);
    fake.move(id, 'Settled');
    const before = await snapshot();
    warnings.length = 0;
    const response = await post(fake.webhook(id, 'InvoiceSettled'));
    assert.equal(response.statusCode, 200, response.body);
    assert.match((response.json() as { ignored: string }).ignored, /^the ledger refused it: "old@localhost" is not an email address/);
    assert.ok(warnings.some((line) => /the ledger refused it/.test(line)));
    assert.equal(await snapshot(), before);
    // Once the operator puts the checkout right, the next delivery credits it.
    await web.db.admin.query(`UPDATE provider_checkouts SET email = $2 WHERE provider = 'btcpay' AND id = $1`, [id, email]);
    await deliver(id, 'InvoiceSettled');
    assert.equal((await paymentsOf(id)).length, 1);
  });
});

// ---- the return page ----

describe('the BTCPay return page', () => {
  it("shows the customer's own invoice, their newest when BTCPay gives no id, and no one else's", async () => {
    const alice = await web.loggedIn(newEmail('alice'));
    const bob = await web.loggedIn(newEmail('bob'));
    const none = await alice.get('/payment/btcpay/return');
    assert.match(text(none.body), /You have no BTCPay invoice yet/);
    const id = await openInvoice(alice, '20');
    const page = await alice.get('/payment/btcpay/return?invoice={InvoiceId}');
    assert.equal(page.statusCode, 200);
    assert.match(text(page.body), new RegExp(`Invoice ${id} Amount \\$20\\.00`));
    assert.match(text(page.body), /Waiting for your payment/);
    assert.ok(page.body.includes(`href="${fake.url}/i/${id}"`));
    assert.equal((await bob.get(`/payment/btcpay/return?invoice=${id}`)).statusCode, 404);
    await move(id, 'Settled');
    const paid = await alice.get(`/payment/btcpay/return?invoice=${id}`);
    assert.match(text(paid.body), /Paid: \$20\.00 was added to your balance/);
    assert.doesNotMatch(paid.body, /http-equiv="refresh"/);
  });
});

// ---- reconcile ----

describe('BTCPay reconcile', () => {
  it('credits a settled invoice whose webhook never came, marks expired ones, leaves waiting ones; a dry run changes nothing', async () => {
    const email = newEmail('reconcile');
    const client = await web.loggedIn(email);
    const settled = await openInvoice(client, '20');
    const expired = await openInvoice(client, '30');
    const waiting = await openInvoice(client, '40');
    web.clock.advance(60_000);
    fake.move(settled, 'Processing');
    fake.move(settled, 'Settled');
    fake.move(expired, 'Expired');
    fake.move(waiting, 'Processing');

    const before = await snapshot();
    const dryLines: string[] = [];
    await provider.reconcile({ now: web.clock.now(), dryRun: true, log: (line) => dryLines.push(line) });
    assert.equal(await snapshot(), before, 'a dry run changes nothing');
    assert.ok(
      dryLines.some((line) => line.includes(settled) && /would credit \$20\.00 to /.test(line)),
      dryLines.join('\n'),
    );
    assert.ok(
      dryLines.some((line) => line.includes(expired) && /would do nothing to the ledger and mark the checkout expired/.test(line)),
      dryLines.join('\n'),
    );

    const lines: string[] = [];
    await provider.reconcile({ now: web.clock.now(), dryRun: false, log: (line) => lines.push(line) });
    assert.equal((await checkout(settled)).status, 'credited');
    assert.equal((await paymentsOf(settled)).length, 1);
    assert.equal((await checkout(expired)).status, 'expired');
    assert.equal((await checkout(waiting)).status, 'open');
    assert.equal(await balanceOf(email), 2000);
    assert.ok(
      lines.some((line) => line.includes(settled) && /credited \$20\.00 as payment \d+; checkout credited/.test(line)),
      lines.join('\n'),
    );

    // Again, and the late webhook: nothing more.
    const after = await snapshot();
    await provider.reconcile({ now: web.clock.now(), dryRun: false, log: () => {} });
    await deliver(settled, 'InvoiceSettled');
    assert.equal(await snapshot(), after);
  });

  it('takes back a credited invoice marked invalid whose webhook never came, within a week of the credit', async () => {
    const email = newEmail('late-invalid');
    const client = await web.loggedIn(email);
    const id = await openInvoice(client, '25');
    fake.move(id, 'Settled');
    await deliver(id, 'InvoiceSettled');
    assert.equal(await balanceOf(email), 2500);
    fake.move(id, 'Invalid'); // no webhook
    web.clock.advance(3600_000);
    await provider.reconcile({ now: web.clock.now(), dryRun: false, log: () => {} });
    assert.equal(await balanceOf(email), 0, 'invalidated by reconcile');
    assert.equal((await paymentsOf(id)).length, 1, 'still one payment, now invalid');
  });

  it('stops when BTCPay Server does not answer, and changes nothing', async () => {
    const email = newEmail('hang');
    const id = await openInvoice(await web.loggedIn(email), '20');
    fake.move(id, 'Settled');
    const impatient = new BtcpayProvider({ url: fake.url, apiKey, storeId, webhookSecret }, deps, { timeoutMs: 200 });
    const before = await snapshot();
    const open = await count(`SELECT count(*)::int AS n FROM provider_checkouts WHERE provider = 'btcpay' AND status = 'open'`);
    fake.hangNext(open + 10);
    const lines: string[] = [];
    await assert.rejects(
      impatient.reconcile({ now: web.clock.now(), dryRun: false, log: (line) => lines.push(line) }),
      /stopped after 3 invoices in a row could not be read/,
    );
    fake.hangNext(0);
    assert.ok(
      lines.some((line) => /could not be reached .*no answer within 0\.2 s/.test(line)),
      lines.join('\n'),
    );
    assert.equal(await snapshot(), before);
    assert.ok(!lines.join('\n').includes(apiKey), 'the API key is never logged');
  });
});

// ---- chaos ----

type Path = { name: string; steps: [FakeInvoiceStatus, string?][] };
const paths: Path[] = [
  { name: 'paid', steps: [['Processing'], ['Settled']] },
  { name: 'paid at once', steps: [['Settled']] },
  { name: 'paid, then invalid', steps: [['Processing'], ['Settled'], ['Invalid', 'Marked']] },
  { name: 'expired', steps: [['Expired']] },
  { name: 'partly paid, expired', steps: [['Processing'], ['Expired', 'PaidPartial']] },
  { name: 'seen, then invalid', steps: [['Processing'], ['Invalid']] },
  { name: 'expired, then marked settled', steps: [['Expired'], ['Settled', 'Marked']] },
  { name: 'never paid', steps: [] },
];

const invoicePlan = fc.record({
  path: fc.constantFrom(...paths),
  dollars: fc.integer({ min: 6, max: 300 }), // from the smallest whole top-up the form takes (a month of f1-xs: $5.33)
  /** copies of each delivery (1–5), and how many transitions later each copy is sent */
  copies: fc.array(fc.record({ times: fc.integer({ min: 1, max: 5 }), lags: fc.array(fc.nat(3), { minLength: 5, maxLength: 5 }) }), {
    minLength: 5,
    maxLength: 5,
  }),
});

describe('BTCPay chaos (property test)', () => {
  it("every webhook delivered one to five times, shuffled, delayed, to two hubs, with forgeries and a reconciliation: money follows each invoice's final status exactly", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(invoicePlan, { minLength: 1, maxLength: 4 }),
        fc.array(fc.nat(3), { minLength: 12, maxLength: 12 }),
        fc.integer({ min: 0, max: 2 ** 30 }),
        fc.integer({ min: 0, max: 4 }),
        fc.nat(12),
        fc.array(fc.constantFrom('none' as const, 'one' as const, 'all' as const), { minLength: 12, maxLength: 12 }),
        async (plans, order, seed, forgeries, reconcileAt, pauses) => {
          const email = newEmail('chaos');
          const client = await web.loggedIn(email);
          const ids: string[] = [];
          for (const plan of plans) ids.push(await openInvoice(client, String(plan.dollars)));
          const mailsBefore = await mailsTo(admin);

          // The transitions of all invoices interleaved (each invoice's in its order). Each transition's
          // webhooks go out as 1–5 copies, each sent then or up to three transitions later, concurrently
          // with the others and with the transitions that follow; some forgeries among them.
          const remaining = plans.map((plan) => [['New'] as [FakeInvoiceStatus, string?], ...plan.path.steps]);
          const timeline: { invoice: number; status: FakeInvoiceStatus; extra?: string; nth: number }[] = [];
          for (let k = 0; remaining.some((steps) => steps.length > 0); k++) {
            const live = remaining.flatMap((steps, i) => (steps.length > 0 ? [i] : []));
            const invoice = live[order[k % order.length]! % live.length]!;
            const [status, extra] = remaining[invoice]!.shift()!;
            timeline.push({ invoice, status, extra, nth: timeline.filter((step) => step.invoice === invoice).length });
          }
          type Send = { forged: boolean; send: (hub: FastifyInstance) => Promise<LightMyRequestResponse> };
          const scheduled = new Map<number, Send[]>();
          const schedule = (at: number, send: Send) => scheduled.set(at, [...(scheduled.get(at) ?? []), send]);
          const answers: { forged: boolean; status: number }[] = [];
          const inFlight: Promise<void>[] = [];
          const hubs = [web.hub, otherHub];
          const launch = (sends: Send[], shuffleSeed: number) => {
            for (const [n, { forged, send }] of shuffled(sends, shuffleSeed).entries()) {
              inFlight.push(
                send(hubs[(shuffleSeed + n) % 2]!).then((response) => {
                  answers.push({ forged, status: response.statusCode });
                }),
              );
            }
          };
          for (const [t, { invoice, status, extra, nth }] of timeline.entries()) {
            const id = ids[invoice]!;
            web.clock.advance(1000);
            const types: WebhookType[] = status === 'New' ? ['InvoiceCreated'] : fake.move(id, status, extra);
            types.forEach((type, n) => {
              const { times, lags } = plans[invoice]!.copies[(nth + n) % 5]!;
              for (let c = 0; c < times; c++) {
                schedule(t + lags[c]!, { forged: false, send: (hub) => post(fake.webhook(id, type, { redelivery: c > 0 }), hub) });
              }
            });
            if (t < forgeries)
              schedule(t, { forged: true, send: (hub) => post(fake.webhook(id, 'InvoiceSettled', { secret: `forged-${seed}` }), hub) });
            if (t === reconcileAt % timeline.length)
              inFlight.push(reconciler.reconcile({ now: web.clock.now(), dryRun: false, log: () => {} }));
            launch(scheduled.get(t) ?? [], seed + t);
            scheduled.delete(t);
            // Before the next transition: no delivery lands, or one, or all; the others stay in flight across it.
            const pause = pauses[t % pauses.length];
            if (pause === 'one' && inFlight.length > 0) await Promise.race(inFlight);
            else if (pause === 'all') await Promise.all(inFlight);
            else await new Promise((resolve) => setImmediate(resolve));
          }
          for (const [t, sends] of [...scheduled].sort(([a], [b]) => a - b)) launch(sends, seed + t);
          await Promise.all(inFlight);
          const statuses = answers.filter((answer) => !answer.forged).map((answer) => answer.status);
          const forgedStatuses = answers.filter((answer) => answer.forged).map((answer) => answer.status);

          assert.ok(
            statuses.every((s) => s === 200),
            `genuine deliveries: ${statuses.join(' ')}`,
          );
          assert.ok(
            forgedStatuses.every((s) => s === 400),
            `forged deliveries: ${forgedStatuses.join(' ')}`,
          );
          let expectedCents = 0;
          for (const [i, plan] of plans.entries()) {
            const id = ids[i]!;
            const final = plan.path.steps.at(-1)?.[0] ?? 'New';
            const everSettled = plan.path.steps.some(([status]) => status === 'Settled');
            const payments = await paymentsOf(id);
            const row = await checkout(id);
            assert.ok(payments.length <= 1, `${plan.path.name}: one payment at most`);
            if (final === 'Settled') {
              expectedCents += plan.dollars * 100;
              assert.equal(payments.length, 1, `${plan.path.name}: credited`);
              assert.equal(payments[0].invalidated, false, `${plan.path.name}: valid`);
              assert.equal(payments[0].dollars, `${plan.dollars}.00`);
              assert.deepEqual([row.status, row.payment_id], ['credited', payments[0].id], plan.path.name);
            } else {
              if (!everSettled) assert.equal(payments.length, 0, `${plan.path.name}: never credited`);
              if (payments.length === 1) assert.equal(payments[0].invalidated, true, `${plan.path.name}: taken back`);
              assert.equal(
                row.status,
                { New: 'open', Processing: 'open', Expired: 'expired', Invalid: 'invalid' }[final as string],
                plan.path.name,
              );
            }
          }
          assert.equal(await balanceOf(email), expectedCents);
          // Each payment is recorded once and taken back at most once: nothing doubled by redeliveries.
          const events = await paymentEvents(email);
          assert.equal(new Set(events).size, events.length, events.join(' '));
          assert.equal(await mailsTo(admin), mailsBefore, 'nothing held');
        },
      ),
      { numRuns: 40, endOnFailure: true },
    );
  });
});
