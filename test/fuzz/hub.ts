// The fuzz suite's hub and its route models: one hub with every route there is (both payment providers,
// an operator, a customer with a capsul and a key, a spoke host), and for each route a model of what may
// be sent to it. A route without a model fails test/fuzz/routes.int.test.ts, so no route escapes fuzzing.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, it } from 'node:test';
import fc from 'fast-check';
import type { InjectOptions } from 'fastify';
import { insertSession, sessionCookie } from '../../src/hub/web/session.ts';
import { Hosts } from '../../src/ledger/hosts.ts';
import { placePending } from '../../src/ledger/reactor.ts';
import { createMailer } from '../../src/mail/mailer.ts';
import { BtcpayProvider } from '../../src/payments/btcpay.ts';
import type { ProviderDeps } from '../../src/payments/provider.ts';
import { StripeProvider } from '../../src/payments/stripe.ts';
import { verifyProjections } from '../../src/projections/rebuild.ts';
import { operator, sshKey } from '../support/db.ts';
import {
  anyBody,
  anyJson,
  assertSafeResponse,
  encodedText,
  formBody,
  fuzzParameters,
  hostileText,
  jsonBody,
  queryString,
  RefusalWatch,
  routesOf,
  type FuzzBody,
} from '../support/fuzz.ts';
import { webHarness, type WebHarness } from '../support/web.ts';
import { startFakeBtcpay, type FakeBtcpay } from '../payments/fake-btcpay.ts';
import { startFakeStripe, webhookSecret as stripeWebhookSecret, type FakeStripe } from '../payments/fake-stripe.ts';

/** Who sends: a visitor without a session, a customer, an operator (each with a page's CSRF token, mostly), a spoke, a payment provider. */
export type Sender = 'anonymous' | 'customer' | 'admin' | 'spoke' | 'stripe' | 'btcpay';

export type RouteModel = {
  /** `METHOD /path` exactly as the hub's route tree has it */
  route: string;
  /** who may send it (the suite also sends it as `anonymous`, and a spoke's or provider's request with wrong credentials) */
  sender: Sender;
  /** valid values of route parameters (besides hostile ones) */
  params?: Record<string, fc.Arbitrary<string>>;
  query?: readonly string[];
  queryValues?: Record<string, fc.Arbitrary<string>>;
  fields?: readonly string[];
  values?: Record<string, fc.Arbitrary<string>>;
  json?: Record<string, fc.Arbitrary<unknown>>;
  /** a whole JSON document (a provider's event, a spoke's request), sent most of the time */
  document?: fc.Arbitrary<unknown>;
  /** the request ends the session it comes with: it gets a session of its own */
  endsSession?: boolean;
};

export type FuzzHub = {
  web: WebHarness;
  models: RouteModel[];
  /** every route of the hub, `METHOD /path` */
  routes(): string[];
  /** fuzzes one route as one sender: every generated request meets properties 1–3 */
  fuzz(model: RouteModel, as: Sender, defaultRuns: number): Promise<void>;
  /** property 4: the projections equal a replay of the events */
  assertProjectionsReplay(): Promise<void>;
  close(): Promise<void>;
};

const adminEmail = 'ops@capsul.test';
const customerEmail = 'fuzz@example.org';
const storeId = 'StoreFuzz';
const btcpayApiKey = 'greenfield-api-key-for-fuzz';
const btcpayWebhookSecret = 'btcpay-webhook-secret-for-fuzz';

export async function fuzzHub(): Promise<FuzzHub> {
  let web: WebHarness;
  const stripe: FakeStripe = await startFakeStripe({ now: () => web.clock.now() });
  const btcpay: FakeBtcpay = await startFakeBtcpay({ storeId, apiKey: btcpayApiKey, webhookSecret: btcpayWebhookSecret });
  // The providers are made before the harness that makes the database: their deps read it when used.
  const deps: ProviderDeps = {
    get pool() {
      return web.db.pool;
    },
    get ledger() {
      return web.db.ledger;
    },
    get mailer() {
      return createMailer({ from: 'capsul <no-reply@capsul.test>', outboxDir: web.outboxDir });
    },
    now: () => web.clock.now(),
    baseUrl: 'http://capsul.test',
    adminEmails: [adminEmail],
    topUpMinCents: 500,
    topUpMaxCents: 100_000,
    afterPayments: () => {},
  };
  const providers = [
    new StripeProvider(stripe.config, deps),
    new BtcpayProvider({ url: btcpay.url, apiKey: btcpayApiKey, storeId, webhookSecret: btcpayWebhookSecret }, deps),
  ];
  web = await webHarness({ providers, adminEmails: [adminEmail], host: false });
  const close = async () => {
    await web.close();
    await stripe.close();
    await btcpay.close();
  };
  try {
    return await givens(web, close);
  } catch (error) {
    await close();
    throw error;
  }
}

async function givens(web: WebHarness, close: () => Promise<void>): Promise<FuzzHub> {
  // Givens, so that valid ids reach their handlers: a payment, a capsul placed on a host, a key, an open invoice.
  const { token: hostToken } = await new Hosts({ pool: web.db.pool }).add({
    hostId: 'fuzz-host',
    memoryMb: 4096,
    vcpus: 4,
    cause: operator,
  });
  const { paymentId } = await web.db.ledger.recordPayment({ email: customerEmail, amountCents: 5_000, cause: operator });
  const { vmId } = await web.db.ledger.createVm({
    email: customerEmail,
    size: 'f1-xs',
    os: 'alpine322',
    sshPublicKeys: [sshKey],
    cause: operator,
  });
  await placePending({ pool: web.db.pool });
  const customer = await web.loggedIn(customerEmail);
  assert.equal((await customer.submit('/console/ssh', '/console/ssh', { key: sshKey, name: 'laptop' })).statusCode, 303);
  const admin = await web.loggedIn(adminEmail);
  await admin.get('/admin');
  await customer.get('/console');
  const invoice = await customer.submit('/payment/btcpay', '/payment/btcpay', { amount: '20' });
  const invoiceId = /\/i\/([A-Za-z0-9]+)$/.exec(String(invoice.headers.location))?.[1];
  assert.ok(invoiceId, `no BTCPay invoice opened: ${invoice.statusCode}`);
  const checkout = await customer.submit('/payment/stripe', '/payment/stripe', { amount: '20' });
  assert.equal(checkout.statusCode, 303, `no Stripe checkout opened: ${checkout.statusCode}`);
  const sessionId = /\/pay\/(cs_[A-Za-z0-9_]+)/.exec(String(checkout.headers.location))?.[1] ?? 'cs_test_unknown';
  const confirm = await customer.get(`/console/${vmId}/delete`);
  const version = /name="version" value="(\d+)"/.exec(confirm.body)?.[1];
  assert.ok(version, `no version on the delete form: ${confirm.statusCode}`);

  const models = routeModels({ paymentId: String(paymentId), vmId, version, invoiceId, sessionId });
  // A visitor: no session, but the CSRF cookie and token of a page it opened, as a browser on the login page has.
  const visitor = web.client();
  await visitor.get('/auth/login');
  const clients = { customer, admin, anonymous: visitor };
  // No table is exempt: the one write a refusal could make is a session's last_seen (touched at most hourly,
  // on any page a logged-in customer opens), and the hub's clock stands still through the suite. The flood
  // guard's counters live in memory, and the hourly login-link limits count rows only a sent link writes.
  const watch = new RefusalWatch(web.db.admin);
  /** the statuses each route answered, for CAPSUL_FUZZ_STATS=1: does the fuzz reach the handlers? */
  const statuses = new Map<string, number[]>();

  /** A session cookie of its own (for a request that ends the session it comes with), signed as the hub signs it. */
  async function freshSession(email: string): Promise<string> {
    const id = await insertSession(web.db.pool, { now: web.clock.now }, email);
    watch.forget();
    return web.hub.signCookie(id);
  }

  async function fuzz(model: RouteModel, as: Sender, defaultRuns: number): Promise<void> {
    const request = requestArbitrary(model, as);
    await fc.assert(
      fc.asyncProperty(request, async (generated) => {
        const options = generated.options;
        const headers = { ...(options.headers as Record<string, string>) };
        if (as === 'customer' || as === 'admin' || as === 'anonymous') {
          const client = clients[as];
          const cookie =
            model.endsSession && as !== 'anonymous'
              ? client.cookieHeader.replace(
                  new RegExp(`${sessionCookie}=[^;]*`),
                  `${sessionCookie}=${await freshSession(as === 'admin' ? adminEmail : customerEmail)}`,
                )
              : client.cookieHeader;
          headers.cookie = cookie;
          if (generated.csrf === 'valid') headers['x-csrf-token'] = client.csrf;
          options.payload =
            typeof options.payload === 'string'
              ? options.payload.replaceAll(csrfPlaceholder, encodeURIComponent(client.csrf))
              : options.payload;
        }
        if (as === 'spoke' && generated.credentials !== 'none') {
          headers['x-capsul-host'] = 'fuzz-host';
          headers.authorization = `Bearer ${generated.credentials === 'valid' ? hostToken : 'x'.repeat(43)}`;
        }
        if ((as === 'stripe' || as === 'btcpay') && generated.credentials !== 'none')
          Object.assign(headers, signedHeaders(as, options.payload, generated.credentials === 'valid'));
        const about = `${options.method} ${options.url} as ${as} (${JSON.stringify(generated.summary).slice(0, 300)})`;
        await watch.before();
        const response = await web.hub.inject({ ...options, headers, remoteAddress: generated.ip });
        const key = `${model.route} as ${as}`;
        statuses.set(key, [...(statuses.get(key) ?? []), response.statusCode]);
        assertSafeResponse(response, about);
        await watch.after(response, about);
      }),
      fuzzParameters(`${model.route} as ${as}`, defaultRuns),
    );
  }

  /** Signatures as the providers make them over the bytes sent (see test/payments/fake-*.ts), or made with the wrong secret, or stale. */
  function signedHeaders(provider: 'stripe' | 'btcpay', payload: InjectOptions['payload'], valid: boolean): Record<string, string> {
    const body = Buffer.isBuffer(payload) ? payload : Buffer.from(String(payload ?? ''), 'utf8');
    if (provider === 'btcpay') return { 'btcpay-sig': `sha256=${hmac(valid ? btcpayWebhookSecret : 'not-the-secret', body)}` };
    // Stripe's: `t=<unix seconds>,v1=HMAC(secret, "<t>.<body>")`; an hour old is past its tolerance.
    const t = Math.floor(web.clock.now().getTime() / 1000) - (valid ? 0 : 3600);
    return { 'stripe-signature': `t=${t},v1=${hmac(stripeWebhookSecret, Buffer.concat([Buffer.from(`${t}.`), body]))}` };
  }

  return {
    web,
    models,
    fuzz,
    routes: () => routesOf(web.hub),
    async assertProjectionsReplay() {
      assert.deepEqual(await verifyProjections(web.db.pool), {
        matches: true,
        differences: { accounts: 0, payments: 0, vms: 0, hosts: 0, operations: 0, drift: 0, payment_holds: 0, account_events: 0 },
      });
      if (process.env.CAPSUL_FUZZ_STATS) {
        console.error(
          `fuzz: ${watch.fingerprints} fingerprints, ${(watch.fingerprintMs / Math.max(1, watch.fingerprints)).toFixed(1)} ms each`,
        );
        for (const [key, codes] of statuses) {
          const counts = new Map<number, number>();
          for (const code of codes) counts.set(code, (counts.get(code) ?? 0) + 1);
          console.error(
            `fuzz: ${key}: ${[...counts]
              .sort()
              .map(([code, n]) => `${code}×${n}`)
              .join(' ')}`,
          );
        }
      }
    },
    close,
  };
}

const hmac = (secret: string, bytes: Buffer) => createHmac('sha256', secret).update(bytes).digest('hex');

// ---- Requests ---------------------------------------------------------------------------------------

/** Stands for the sender's CSRF token in a form body until the request is sent. */
const csrfPlaceholder = '__CSRF__';

type Generated = {
  options: InjectOptions & { method: string; url: string };
  csrf: 'valid' | 'missing' | 'wrong';
  credentials: 'valid' | 'wrong' | 'none';
  ip: string;
  summary: unknown;
};

/** A spoke's long poll with a real wait would hold the suite up: waits past 50 ms are left out. */
const longWait = (query: string) => /waitMs=[^&]*\d{3}/i.test(safeDecode(query));

function requestArbitrary(model: RouteModel, as: Sender): fc.Arbitrary<Generated> {
  const [method, template] = model.route.split(' ') as [string, string];
  const segments = template.split('/').map((segment) => {
    if (!segment.startsWith(':')) return fc.constant(segment);
    const valid = model.params?.[segment.slice(1)];
    return valid ? fc.oneof({ weight: 2, arbitrary: valid }, { weight: 1, arbitrary: encodedText }) : encodedText;
  });
  const path = fc.tuple(...segments).map((parts) => parts.join('/'));
  const query = fc.option(
    queryString(model.query ?? [], model.queryValues).filter((q) => !longWait(q)),
    { freq: 2 },
  );
  const session = as === 'customer' || as === 'admin' || as === 'anonymous';
  const csrf = session
    ? fc.constantFrom<Generated['csrf']>('valid', 'valid', 'valid', 'valid', 'missing', 'wrong')
    : fc.constant<Generated['csrf']>('missing');
  const credentials =
    as === 'spoke' || as === 'stripe' || as === 'btcpay'
      ? fc.constantFrom<Generated['credentials']>('valid', 'valid', 'valid', 'wrong', 'none')
      : fc.constant<Generated['credentials']>('none');
  const fields = model.fields ?? [];
  const form = formBody(fields, model.values);
  const json = jsonBody(fields, model.json);
  const body: fc.Arbitrary<FuzzBody | null> =
    method === 'GET'
      ? fc.constant(null)
      : model.document
        ? fc.oneof(
            {
              weight: 3,
              arbitrary: model.document.map((document) => ({ payload: JSON.stringify(document), contentType: 'application/json' })),
            },
            { weight: 2, arbitrary: anyBody(form, json) },
          )
        : anyBody(form, json);
  const accept = fc.constantFrom('text/html', 'text/html,application/xhtml+xml', 'application/json', '*/*', null);
  const head = fc.boolean();
  const ip = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255)).map(([a, b, c]) => `10.${a}.${b}.${c}`);
  return fc.record({ path, query, csrf, credentials, body, accept, head, ip }).map((r) => {
    const headers: Record<string, string> = {};
    if (r.accept) headers.accept = r.accept;
    let payload: string | Buffer | undefined;
    if (r.body) {
      if (r.body.contentType) headers['content-type'] = r.body.contentType;
      payload = r.body.payload;
      // The form's own token, as a page's form sends it (or none, or a wrong one).
      if (session && typeof payload === 'string' && r.body.contentType === 'application/x-www-form-urlencoded' && r.csrf !== 'missing') {
        payload = `_csrf=${r.csrf === 'valid' ? csrfPlaceholder : 'forged'}${payload ? '&' : ''}${payload}`;
      }
    }
    const url = `${r.path}${r.query === null ? '' : `?${r.query}`}`;
    const options = { method: method === 'GET' && r.head ? 'HEAD' : method, url, headers, ...(payload === undefined ? {} : { payload }) };
    return {
      options,
      csrf: r.csrf,
      credentials: r.credentials,
      ip: r.ip,
      summary: { ...r, body: r.body && { contentType: r.body.contentType, payload: String(r.body.payload).slice(0, 200) } },
    } as Generated;
  });
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

// ---- The models -----------------------------------------------------------------------------------

type Givens = { paymentId: string; vmId: string; version: string; invoiceId: string; sessionId: string };

function routeModels(given: Givens): RouteModel[] {
  const page = (route: string, sender: Sender, more: Partial<RouteModel> = {}): RouteModel => ({ route, sender, ...more });
  const amount = fc.constantFrom('20', '5', '4.99', '1000', '1000.01', '0', '-5', '20.005', '1e3', ' 20 ', '２０');
  const email = fc.constantFrom('alice@example.org', 'fuzz@example.org', 'ALICE@Example.ORG', 'a@b', 'x@localhost', 'ops@capsul.test');
  const returnPath = fc.constantFrom(
    '/console',
    '/console/ssh',
    '//evil.example',
    '/auth/login',
    '/%2F%2Fevil',
    'https://evil.example/',
    '/console%0d%0a',
  );
  const spokeReport = fc.record(
    {
      id: fc.oneof(fc.uuid(), hostileText),
      vmId: fc.oneof(fc.constant(given.vmId), hostileText),
      operationId: fc.oneof(fc.uuid(), fc.constant(null), anyJson),
      observedAt: fc.oneof(
        fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
        anyJson,
      ),
      type: fc.constantFrom('state', 'provisioned', 'failed', 'deleted', 'vanished', 'nonsense'),
      state: fc.oneof(fc.constantFrom('running', 'stopped', 'crashed'), anyJson),
      ipv4: fc.oneof(fc.ipV4(), anyJson),
      ipv6: fc.oneof(fc.ipV6(), fc.constant(null), anyJson),
      error: anyJson,
      sshHostKeys: fc.oneof(fc.constant([{ type: 'ssh-ed25519', sha256: 'SHA256:x' }]), anyJson),
    },
    { requiredKeys: [] },
  );
  const stripeEvent = fc.record(
    {
      id: fc.oneof(fc.constant('evt_fuzz'), hostileText),
      object: fc.constantFrom('event', 'nonsense'),
      type: fc.oneof(
        fc.constantFrom(
          'checkout.session.completed',
          'checkout.session.async_payment_succeeded',
          'checkout.session.async_payment_failed',
          'checkout.session.expired',
          'charge.dispute.created',
          'charge.dispute.closed',
          'charge.refunded',
          'payment_intent.succeeded',
        ),
        hostileText,
      ),
      created: fc.oneof(fc.integer({ min: 1_700_000_000, max: 1_900_000_000 }), anyJson),
      data: fc.oneof(
        fc.record(
          {
            object: fc.record(
              {
                id: fc.oneof(fc.constant(given.sessionId), fc.constant('cs_test_unknown'), hostileText),
                object: fc.constantFrom('checkout.session', 'charge', 'dispute'),
                amount_total: fc.oneof(fc.integer({ min: -10, max: 10_000_000 }), anyJson),
                currency: fc.oneof(fc.constantFrom('usd', 'eur'), anyJson),
                payment_status: fc.oneof(fc.constantFrom('paid', 'unpaid'), anyJson),
                status: fc.oneof(fc.constantFrom('complete', 'open', 'expired', 'won', 'lost'), anyJson),
                payment_intent: fc.oneof(fc.constant('pi_test_x'), anyJson),
                client_reference_id: fc.oneof(email, anyJson),
                customer_email: anyJson,
                metadata: fc.oneof(fc.dictionary(hostileText, hostileText, { maxKeys: 2 }), anyJson),
                amount: anyJson,
                amount_refunded: anyJson,
                charge: anyJson,
              },
              { requiredKeys: [] },
            ),
          },
          { requiredKeys: [] },
        ),
        anyJson,
      ),
    },
    { requiredKeys: [] },
  );
  const btcpayEvent = fc.record(
    {
      deliveryId: fc.oneof(fc.uuid(), anyJson),
      webhookId: anyJson,
      originalDeliveryId: anyJson,
      isRedelivery: anyJson,
      type: fc.oneof(
        fc.constantFrom(
          'InvoiceCreated',
          'InvoiceReceivedPayment',
          'InvoiceProcessing',
          'InvoiceSettled',
          'InvoiceExpired',
          'InvoiceInvalid',
          'InvoicePaymentSettled',
        ),
        hostileText,
      ),
      timestamp: fc.oneof(fc.integer({ min: 1_700_000_000, max: 1_900_000_000 }), anyJson),
      storeId: fc.oneof(fc.constant(storeId), anyJson),
      invoiceId: fc.oneof(fc.constant(given.invoiceId), fc.constant('UnknownInvoice1'), anyJson),
      manuallyMarked: anyJson,
      overPaid: anyJson,
      afterExpiration: anyJson,
      metadata: anyJson,
    },
    { requiredKeys: [] },
  );
  return [
    page('GET /', 'anonymous'),
    page('GET /pricing', 'anonymous'),
    page('GET /faq', 'anonymous'),
    page('GET /support', 'anonymous'),
    page('GET /static/capsul.css', 'anonymous'),
    page('GET /static/favicon.svg', 'anonymous'),
    page('GET /favicon.ico', 'anonymous'),
    page('GET /health', 'anonymous'),
    page('GET /auth/login', 'anonymous', { query: ['next'], queryValues: { next: returnPath } }),
    page('POST /auth/login', 'anonymous', { fields: ['email', 'next'], values: { email, next: returnPath } }),
    page('GET /auth/magic/:token', 'anonymous', {
      params: { token: fc.string({ unit: fc.constantFrom('a', 'Z', '0', '_', '-'), minLength: 43, maxLength: 43 }) },
    }),
    page('POST /auth/magic/:token', 'customer', {
      endsSession: true,
      params: { token: fc.string({ unit: fc.constantFrom('a', 'Z', '0', '_', '-'), minLength: 43, maxLength: 43 }) },
    }),
    page('POST /auth/logout', 'customer', { endsSession: true }),
    page('GET /console', 'customer'),
    page('GET /console/create', 'customer'),
    page('POST /console/create', 'customer', {
      fields: ['size', 'os', 'keys'],
      values: {
        size: fc.constantFrom('f1-xs', 'f1-s', 'f1-xxl'),
        os: fc.constantFrom('alpine322', 'debian12', 'windows'),
        keys: fc.constantFrom('laptop', 'nope'),
      },
      json: { keys: fc.array(fc.constantFrom('laptop', 'nope'), { maxLength: 3 }) },
    }),
    page('GET /console/:id', 'customer', { params: { id: fc.constant(given.vmId) } }),
    page('GET /console/:id/:action', 'customer', {
      params: { id: fc.constant(given.vmId), action: fc.constantFrom('stop', 'start', 'force-stop', 'delete', 'reboot') },
    }),
    page('POST /console/:id/:action', 'customer', {
      params: { id: fc.constant(given.vmId), action: fc.constantFrom('stop', 'start', 'force-stop', 'delete') },
      fields: ['version'],
      values: { version: fc.constantFrom(given.version, '0', '999999999999999999', '9999999999999999999') },
    }),
    page('GET /console/ssh', 'customer', { query: ['done'], queryValues: { done: fc.constantFrom('added', 'deleted') } }),
    page('POST /console/ssh', 'customer', {
      fields: ['key', 'name'],
      values: { key: fc.constantFrom(sshKey, `${sshKey}\n`, 'ssh-rsa AAAA', 'ssh-ed25519'), name: fc.constantFrom('laptop', 'phone', '') },
    }),
    page('POST /console/ssh/delete', 'customer', { fields: ['name'], values: { name: fc.constantFrom('laptop', 'nope') } }),
    page('GET /console/account-balance', 'customer', { query: ['payments'], queryValues: { payments: fc.constantFrom('all', 'some') } }),
    page('GET /console/history', 'customer', {
      query: ['before'],
      queryValues: { before: fc.constantFrom('2026-11-01T00:00:00.000Z', '0', '1', '2026-13-45', '9'.repeat(20)) },
    }),
    page('GET /console/statements', 'customer'),
    page('POST /console/statements/emails', 'customer', { fields: ['send'], values: { send: fc.constantFrom('yes', 'no', 'maybe') } }),
    ...['', '/pdf'].map((suffix) =>
      page(`GET /console/statements/:month${suffix}`, 'customer', {
        params: { month: fc.constantFrom('2026-10', '2026-11', '2026-13', '2999-01', 'november', '1969-12', '2026-1') },
      }),
    ),
    page('GET /admin', 'admin'),
    page('GET /admin/payments', 'admin', { query: ['email'], queryValues: { email } }),
    page('GET /admin/payments/:id', 'admin', {
      params: { id: fc.constantFrom(given.paymentId, '0', '-1', '99999999999999999999', '1.5') },
      query: ['done'],
      queryValues: { done: fc.constantFrom('invalidated', 'reinstated', 'already-invalid') },
    }),
    ...['invalidate', 'reinstate'].map((action) =>
      page(`POST /admin/payments/:id/${action}`, 'admin', {
        params: { id: fc.constantFrom(given.paymentId, '0', '99999999999999999999') },
        fields: ['reason'],
        values: { reason: fc.constantFrom('chargeback', '', ' ') },
      }),
    ),
    page('POST /admin/holds/resolve', 'admin', {
      fields: ['provider', 'reference', 'reason'],
      values: {
        provider: fc.constantFrom('stripe', 'btcpay', 'paypal'),
        reference: fc.constantFrom('inv-1', given.invoiceId),
        reason: fc.constantFrom('refunded', ''),
      },
    }),
    page('GET /admin/capsuls', 'admin', { query: ['email'], queryValues: { email } }),
    page('GET /admin/hosts', 'admin'),
    page('GET /admin/incidents', 'admin'),
    page('GET /admin/events', 'admin'),
    page('GET /payment/stripe', 'customer', { query: ['cancelled'], queryValues: { cancelled: fc.constantFrom('1', '0') } }),
    page('POST /payment/stripe', 'customer', { fields: ['amount'], values: { amount } }),
    page('GET /payment/stripe/success', 'customer', {
      query: ['session_id'],
      queryValues: { session_id: fc.constantFrom(given.sessionId, 'cs_test_nope') },
    }),
    page('POST /payment/stripe/webhook', 'stripe', { document: stripeEvent }),
    page('GET /payment/btcpay', 'customer'),
    page('POST /payment/btcpay', 'customer', { fields: ['amount'], values: { amount } }),
    page('GET /payment/btcpay/return', 'customer', {
      query: ['invoice'],
      queryValues: { invoice: fc.constantFrom(given.invoiceId, 'Nope1') },
    }),
    page('POST /payment/btcpay/webhook', 'btcpay', { document: btcpayEvent }),
    page('POST /spoke/v1/heartbeat', 'spoke', {
      fields: ['capacity', 'vms', 'agentVersion'],
      document: fc.record(
        {
          capacity: fc.oneof(
            fc.constant({ memoryMb: 4096, vcpus: 4 }),
            fc.record({ memoryMb: anyJson, vcpus: anyJson }, { requiredKeys: [] }),
            anyJson,
          ),
          vms: fc.oneof(
            fc.array(
              fc.oneof(
                fc.record(
                  {
                    vmId: fc.oneof(fc.constant(given.vmId), anyJson),
                    state: fc.oneof(fc.constantFrom('running', 'stopped', 'crashed'), anyJson),
                  },
                  { requiredKeys: [] },
                ),
                anyJson,
              ),
              { maxLength: 3 },
            ),
            anyJson,
          ),
          agentVersion: fc.oneof(fc.constant('capsul-spoke/fuzz'), hostileText, anyJson),
        },
        { requiredKeys: [] },
      ),
    }),
    page('GET /spoke/v1/operations', 'spoke', {
      query: ['waitMs'],
      queryValues: { waitMs: fc.constantFrom('0', '-1', '1.5', 'x', '30001') },
    }),
    page('POST /spoke/v1/reports', 'spoke', {
      fields: ['reports'],
      document: fc.record(
        {
          reports: fc.oneof(
            fc.array(fc.oneof({ weight: 3, arbitrary: spokeReport }, { weight: 1, arbitrary: anyJson }), { maxLength: 4 }),
            anyJson,
          ),
        },
        { requiredKeys: [] },
      ),
    }),
  ];
}

/** Who each route is sent as: anyone as nobody and as a customer, a customer's and an operator's pages also as those; spokes and providers with valid and wrong credentials. */
export function sendersOf(model: RouteModel): Sender[] {
  switch (model.sender) {
    case 'anonymous':
    case 'customer':
      return ['anonymous', 'customer'];
    case 'admin':
      return ['anonymous', 'customer', 'admin'];
    default:
      return [model.sender];
  }
}

/** Which test file fuzzes which routes: one file per area keeps each file's run short (and parallel). */
export const areas = {
  public: (m: RouteModel) => m.sender === 'anonymous' || m.route.includes(' /auth/'),
  console: (m: RouteModel) => m.route.includes(' /console'),
  admin: (m: RouteModel) => m.sender === 'admin',
  payments: (m: RouteModel) => m.route.includes(' /payment/') && m.sender === 'customer',
  webhooks: (m: RouteModel) => m.sender === 'stripe' || m.sender === 'btcpay',
  spoke: (m: RouteModel) => m.sender === 'spoke',
} satisfies Record<string, (model: RouteModel) => boolean>;

/** The areas each modelled route falls in (the coverage check wants exactly one). */
export function areasOf(): Map<string, string[]> {
  return new Map(
    routeModels(placeholderGivens).map((model) => [
      model.route,
      Object.entries(areas)
        .filter(([, covers]) => covers(model))
        .map(([name]) => name),
    ]),
  );
}

/**
 * A test file's fuzzing: one hub of its own, every route of `area` fuzzed as each of its senders
 * (properties 1–3 on every request), then property 4 on what all those requests left behind.
 */
export function fuzzArea(area: keyof typeof areas, defaultRuns: number): () => FuzzHub {
  const covers = areas[area];
  let hub: FuzzHub;
  before(async () => {
    hub = await fuzzHub();
  });
  after(() => hub?.close());

  it('the routes fuzzed here exist', async () => {
    const routes = hub.routes();
    for (const model of hub.models.filter(covers)) assert.ok(routes.includes(model.route), `${model.route}: no such route`);
  });
  // The models are known without a hub: the names of the tests are fixed when the file loads.
  for (const model of routeModels(placeholderGivens).filter(covers)) {
    for (const as of sendersOf(model)) {
      it(`${model.route} as ${as}: no 5xx, no leak, a refusal writes nothing`, async () => {
        await hub.fuzz(hub.models.find((m) => m.route === model.route)!, as, defaultRuns);
      });
    }
  }
  it('afterwards, the projections equal a replay of the events', async () => {
    await hub.assertProjectionsReplay();
  });
  return () => hub;
}

const placeholderGivens: Givens = { paymentId: '1', vmId: 'x', version: '1', invoiceId: 'x', sessionId: 'x' };

/** The routes a model covers (`GET` covers `HEAD`, which fastify adds beside it), for the coverage check. */
export function modelledRoutes(): Set<string> {
  return new Set(
    routeModels(placeholderGivens).flatMap((model) =>
      model.route.startsWith('GET ') ? [model.route, model.route.replace(/^GET/, 'HEAD')] : [model.route],
    ),
  );
}
