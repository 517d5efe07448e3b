// BTCPay Server top-ups through its Greenfield API. The customer picks an amount; capsul opens an
// invoice for it in USD and sends the customer to BTCPay's checkout. Money is credited only once the
// invoice is Settled (capsul-flask credited payments merely seen, before they settled), and taken back
// when a credited invoice turns Expired or Invalid. A webhook, whatever its type, only says "look at
// invoice X": capsul fetches the invoice and acts on its current status, so a delivery repeated, late
// or out of order changes nothing more. `reconcile` looks at the open invoices for a missed webhook.
// A signed delivery that is not a JSON object is refused (400); one capsul cannot use (no invoice id, an
// id that is none) is acknowledged with 200 and a warning and changes nothing; what BTCPay Server's API
// answers is read field by field, so nothing it sends reaches the database unchecked.
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { BtcpayConfig } from '../config.ts';
import { canonicalEmailOrNull } from '../domain/shared/email.ts';
import { DomainError, invalid, refused } from '../domain/shared/errors.ts';
import { formatCents, type Cents } from '../domain/shared/money.ts';
import { dollars, utcMinute } from '../core/format.ts';
import { maxOpenCheckoutsPerDay, openCheckoutsToday, recordCheckout } from './checkouts.ts';
import { holdPayment, type Hold } from './holds.ts';
import {
  allowFormActionTo,
  isSafeLink,
  topUpCents,
  type PaymentProvider,
  type ProviderDeps,
  type ReconcileOptions,
  type RouteGuards,
} from './provider.ts';
import { httpStatusOf } from '../core/http-status.ts';

export const btcpayPath = '/payment/btcpay';
const webhookPath = `${btcpayPath}/webhook`;
const returnPath = `${btcpayPath}/return`;

const defaultTimeoutMs = 10_000;
const maxResponseBytes = 1_000_000;
const maxWebhookBytes = 64 * 1024;
/** Reconcile looks again at invoices credited this recently: one marked invalid after it settled is taken back. */
export const recheckCreditedDays = 7;
/** invoices looked at per reconciliation run, oldest first */
const reconcileBatch = 1000;
/** a reconciliation run stops after this many invoices in a row for which BTCPay Server did not answer */
const maxUnreachableInARow = 3;
/** invoices looked at concurrently by one process: each holds a pool connection for its lock */
const maxConcurrentLooks = 2;
/** the return page reloads itself while the invoice waits for its payment */
const refreshSeconds = 60;
/** Greenfield invoice ids are base58; anything else never reaches a URL we build */
const invoiceIdPattern = /^[A-Za-z0-9_-]{1,64}$/;
/** metadata.orderId of the invoices capsul opens: marks them among a shared store's invoices */
const orderIdPrefix = 'capsul:';

const cause = { by: { kind: 'job' as const, id: 'btcpay' } };

export type CheckoutStatus = 'open' | 'credited' | 'held' | 'expired' | 'invalid';

// ---- the Greenfield client ----

export type GreenfieldInvoice = {
  id: string;
  /** New, Processing, Settled, Expired, Invalid (anything else is waited on) */
  status: string;
  /** None, PaidLate, PaidPartial, PaidOver, Marked, Invalid */
  additionalStatus: string;
  /** what the invoice asks for, in `currency`, as decimal text */
  amount: string;
  currency: string;
  checkoutLink: string;
  metadata: Record<string, unknown>;
};

/** BTCPay Server did not do what was asked: unreachable (`status` null), refused, or answered nonsense. */
export class BtcpayError extends Error {
  constructor(
    message: string,
    readonly status: number | null,
  ) {
    super(message);
    this.name = 'BtcpayError';
  }
}

export type GreenfieldClient = {
  createInvoice(input: { amountCents: Cents; email: string; redirectUrl: string }): Promise<GreenfieldInvoice>;
  /** null when the store has no such invoice */
  getInvoice(invoiceId: string): Promise<GreenfieldInvoice | null>;
};

export function greenfieldClient(config: BtcpayConfig, options: { timeoutMs?: number } = {}): GreenfieldClient {
  const timeoutMs = options.timeoutMs ?? defaultTimeoutMs;
  const storePath = `/api/v1/stores/${encodeURIComponent(config.storeId)}`;

  async function call(method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; json: unknown }> {
    const what = `${method} ${storePath}${path}`;
    let response: Response;
    let text: string;
    try {
      response = await fetch(`${config.url}${storePath}${path}`, {
        method,
        headers: {
          authorization: `token ${config.apiKey}`,
          accept: 'application/json',
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        redirect: 'error',
        signal: AbortSignal.timeout(timeoutMs),
      });
      text = await readLimited(response, maxResponseBytes);
    } catch (error) {
      if (error instanceof BtcpayError) throw error;
      const { name, message, cause: reason } = error as Error & { cause?: { message?: string } };
      const why = name === 'TimeoutError' ? `no answer within ${timeoutMs / 1000} s` : (reason?.message ?? message);
      throw new BtcpayError(`BTCPay Server at ${config.url} could not be reached (${what}): ${why}`, null);
    }
    if (response.status === 404) return { status: 404, json: null };
    if (!response.ok) {
      const hint =
        response.status === 401 || response.status === 403
          ? ' (check BTCPAY_API_KEY: it needs the permissions btcpay.store.cancreateinvoice and btcpay.store.canviewinvoices for this store)'
          : '';
      throw new BtcpayError(`BTCPay Server answered ${what} with ${response.status}${hint}: ${errorText(text)}`, response.status);
    }
    try {
      return { status: response.status, json: JSON.parse(text) };
    } catch {
      throw new BtcpayError(`BTCPay Server answered ${what} with something that is not JSON`, response.status);
    }
  }

  return {
    async createInvoice({ amountCents, email, redirectUrl }) {
      const { status, json } = await call('POST', '/invoices', {
        amount: formatCents(amountCents),
        currency: 'USD',
        metadata: { orderId: `${orderIdPrefix}${email}`, buyerEmail: email, itemDesc: 'capsul credit' },
        checkout: { redirectURL: redirectUrl, redirectAutomatically: true },
      });
      if (status === 404) throw new BtcpayError(`BTCPay Server has no store ${config.storeId} (check BTCPAY_STORE_ID)`, 404);
      return invoiceFrom(json);
    },
    async getInvoice(invoiceId) {
      if (!invoiceIdPattern.test(invoiceId)) throw invalid(`${JSON.stringify(invoiceId)} is not a BTCPay invoice id`);
      const { status, json } = await call('GET', `/invoices/${encodeURIComponent(invoiceId)}`);
      return status === 404 ? null : invoiceFrom(json);
    },
  };
}

async function readLimited(response: Response, limitBytes: number): Promise<string> {
  const reader = response.body?.getReader();
  if (!reader) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limitBytes) {
      await reader.cancel();
      throw new BtcpayError(`BTCPay Server's answer is larger than ${limitBytes} bytes`, response.status);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Greenfield errors are `{code, message}` or, for a refused request, `[{path, message}]`. */
function errorText(text: string): string {
  let said = text;
  try {
    const json = JSON.parse(text) as unknown;
    const items = Array.isArray(json) ? json : [json];
    said = items
      .map((item) => {
        const { path, message } = (item ?? {}) as { path?: unknown; message?: unknown };
        return typeof message === 'string' ? (typeof path === 'string' ? `${path}: ${message}` : message) : JSON.stringify(item);
      })
      .join('; ');
  } catch {
    /* not JSON: quote it as it is */
  }
  return JSON.stringify(said.slice(0, 300));
}

/** What each text field of an invoice must look like: its values end up in log lines, holds and ledger reasons. */
const invoiceFields = {
  id: invoiceIdPattern,
  status: /^[A-Za-z]{1,40}$/,
  additionalStatus: /^[A-Za-z]{1,40}$/,
  amount: /^\d{1,20}(\.\d{1,20})?$/,
  currency: /^[A-Za-z0-9]{1,10}$/,
  checkoutLink: /^[\x21-\x7e]{1,2000}$/,
} as const;

function invoiceFrom(json: unknown): GreenfieldInvoice {
  const record = (typeof json === 'object' && json !== null ? json : {}) as Record<string, unknown>;
  const text = (name: keyof typeof invoiceFields, fallback?: string) => {
    const value = typeof record[name] === 'number' && name === 'amount' ? String(record[name]) : (record[name] ?? fallback);
    if (typeof value !== 'string') throw new BtcpayError(`BTCPay Server sent an invoice without ${name}`, null);
    if (!invoiceFields[name].test(value)) {
      throw new BtcpayError(`BTCPay Server sent an invoice ${name} capsul does not accept: ${JSON.stringify(value.slice(0, 80))}`, null);
    }
    return value;
  };
  const metadata = typeof record.metadata === 'object' && record.metadata !== null ? (record.metadata as Record<string, unknown>) : {};
  return {
    id: text('id'),
    status: text('status'),
    additionalStatus: text('additionalStatus', 'None'),
    amount: text('amount'),
    currency: text('currency'),
    checkoutLink: text('checkoutLink'),
    metadata,
  };
}

/** The invoice's amount in cents when it is in USD and whole cents ("20", "20.5", "20.500"), else null. */
export function invoiceCents(invoice: Pick<GreenfieldInvoice, 'amount' | 'currency'>): Cents | null {
  if (invoice.currency.toUpperCase() !== 'USD') return null;
  const match = /^(\d{1,9})(?:\.(\d{1,2})0*)?$/.exec(invoice.amount.trim());
  if (!match) return null;
  return Number(match[1]) * 100 + Number((match[2] ?? '').padEnd(2, '0'));
}

/** `BTCPay-Sig: sha256=<hex HMAC-SHA256 of the raw body, keyed with the webhook's secret>`, compared in constant time. */
export function validSignature(secret: string, body: Buffer, header: string | string[] | undefined): boolean {
  if (typeof header !== 'string') return false;
  const match = /^sha256=([0-9a-fA-F]{64})$/.exec(header.trim());
  if (!match) return false;
  const expected = createHmac('sha256', secret).update(body).digest();
  return timingSafeEqual(expected, Buffer.from(match[1]!, 'hex'));
}

// ---- what an invoice's status means for capsul (pure) ----

export type Checkout = { id: string; email: string; amountCents: Cents; status: CheckoutStatus; paymentId: number | null };
/** the payment recorded under the invoice's id, if any */
export type KnownPayment = { id: number; email: string; provider: string; invalidated: boolean };

export type Action =
  | { kind: 'credit'; email: string; amountCents: Cents }
  | { kind: 'hold'; hold: Hold }
  | { kind: 'invalidate' | 'reinstate'; paymentId: number; reason: string };

/** What to do about an invoice as BTCPay Server has it now: a ledger action, and the checkout's new status. */
export type Step = { action: Action | null; status: CheckoutStatus | null; why: string };

export function stepFor(invoice: GreenfieldInvoice, checkout: Checkout | null, payment: KnownPayment | null): Step {
  const nothing = (why: string): Step => ({ action: null, status: null, why });
  const state =
    invoice.additionalStatus && invoice.additionalStatus !== 'None' ? `${invoice.status} (${invoice.additionalStatus})` : invoice.status;
  if (!checkout) {
    // A shared store's other invoices (a donation page, another shop) are none of capsul's business.
    const orderId = invoice.metadata.orderId;
    const ours = typeof orderId === 'string' && orderId.startsWith(orderIdPrefix);
    const amountCents = invoiceCents(invoice);
    if (invoice.status !== 'Settled' || !ours || payment) return nothing(`${state}, not a checkout capsul knows: ignored`);
    if (amountCents === null) return nothing(`${state} for ${invoice.amount} ${invoice.currency}, not a checkout capsul knows: ignored`);
    return {
      action: {
        kind: 'hold',
        hold: {
          provider: 'btcpay',
          reference: invoice.id,
          email: canonicalEmailOrNull(invoice.metadata.buyerEmail),
          amountCents,
          expectedCents: null,
          reason: 'capsul has no checkout for this BTCPay invoice',
        },
      },
      status: null,
      why: `${state}, but capsul has no checkout for it`,
    };
  }
  if (checkout.status === 'held') return nothing(`${state}; held for an operator already`);
  switch (invoice.status) {
    case 'Settled': {
      const amountCents = invoiceCents(invoice);
      const hold = (reason: string): Step => ({
        action: {
          kind: 'hold',
          hold: {
            provider: 'btcpay',
            reference: invoice.id,
            email: checkout.email,
            amountCents: amountCents ?? 0,
            expectedCents: checkout.amountCents,
            reason,
          },
        },
        status: 'held',
        why: `${state}, but ${reason}`,
      });
      if (amountCents !== checkout.amountCents) {
        return hold(
          `the invoice is for ${invoice.amount} ${invoice.currency}, the checkout asked for $${formatCents(checkout.amountCents)}`,
        );
      }
      if (payment && payment.email !== checkout.email)
        return hold(`its id is already recorded as payment ${payment.id} of another account`);
      if (!payment) return { action: { kind: 'credit', email: checkout.email, amountCents }, status: 'credited', why: state };
      if (payment.provider === 'btcpay' && payment.invalidated) {
        return {
          action: { kind: 'reinstate', paymentId: payment.id, reason: `BTCPay invoice ${invoice.id} is ${state} again` },
          status: 'credited',
          why: state,
        };
      }
      return { action: null, status: 'credited', why: `${state}; credited already` };
    }
    case 'Expired':
    case 'Invalid': {
      const status = invoice.status === 'Expired' ? 'expired' : 'invalid';
      // A payment an operator recorded by hand under this id is theirs to correct.
      if (payment && payment.provider === 'btcpay' && !payment.invalidated) {
        return {
          action: {
            kind: 'invalidate',
            paymentId: payment.id,
            reason: `BTCPay invoice ${invoice.id} turned ${state} after it was credited`,
          },
          status,
          why: `${state} after it was credited`,
        };
      }
      return { action: null, status, why: state };
    }
    default:
      return nothing(`${state}: waiting for it to settle`);
  }
}

// ---- the provider ----

export function btcpayProvider(config: BtcpayConfig, deps: ProviderDeps, options: { timeoutMs?: number } = {}): PaymentProvider {
  const client = greenfieldClient(config, options);
  const checkoutOrigin = new URL(config.url).origin;
  const turns = new Turns();
  const gate = new Gate(maxConcurrentLooks);

  /**
   * Fetches the invoice and acts on its current status. One look at an invoice at a time, across
   * processes (the hub's webhooks, a reconciliation run from the CLI): each fetches after the one
   * before has acted, and acts on what BTCPay Server says now and what that one left.
   */
  function look(invoiceId: string, dryRun: boolean, log: (line: string) => void): Promise<void> {
    return exclusively(invoiceId, async () => {
      const observedAt = deps.now();
      const invoice = await client.getInvoice(invoiceId);
      if (!invoice) {
        log(`invoice ${invoiceId} is not in store ${config.storeId} on BTCPay Server: nothing done`);
        return;
      }
      const checkout = await readCheckout(invoiceId);
      const step = stepFor(invoice, checkout, await readPayment(invoiceId));
      const what = `invoice ${invoiceId}${checkout ? ` (${checkout.email}, ${dollars(checkout.amountCents)})` : ''} is ${step.why}`;
      if (dryRun) {
        log(`${what}: would ${wouldDo(step, checkout)}`);
        return;
      }
      const done = await act(invoiceId, checkout, step, observedAt, log);
      if (!checkout || step.action || (step.status && step.status !== checkout.status)) log(`${what}: ${done}`);
    });
  }

  async function act(
    invoiceId: string,
    checkout: Checkout | null,
    step: Step,
    observedAt: Date,
    log: (line: string) => void,
  ): Promise<string> {
    const action = step.action;
    let paymentId = checkout?.paymentId ?? null;
    let moved = false;
    let done = 'nothing to do';
    switch (action?.kind) {
      case undefined:
        break;
      case 'credit': {
        const recorded = await deps.ledger.recordPayment({
          email: action.email,
          amountCents: action.amountCents,
          reference: invoiceId,
          receivedAt: observedAt,
          provider: 'btcpay',
          cause,
        });
        paymentId = recorded.paymentId;
        moved = !recorded.duplicate;
        done = `credited ${dollars(action.amountCents)} as payment ${paymentId}`;
        break;
      }
      case 'hold': {
        const held = await holdPayment({ ...deps, log }, action.hold);
        done = held.new ? 'held for an operator, who was emailed' : 'held for an operator already';
        break;
      }
      case 'invalidate':
      case 'reinstate': {
        const { changed } =
          action.kind === 'invalidate'
            ? await deps.ledger.invalidatePayment(action.paymentId, { ...cause, reason: action.reason }, { effectiveAt: observedAt })
            : await deps.ledger.reinstatePayment(action.paymentId, { ...cause, reason: action.reason }, { effectiveAt: observedAt });
        paymentId = action.paymentId;
        moved = changed;
        done = `payment ${action.paymentId} ${action.kind === 'invalidate' ? 'invalidated' : 'reinstated'}${changed ? '' : ' already'}`;
        break;
      }
    }
    // The ledger first: if this fails the checkout stays as it was, and the next look does it again.
    if (checkout && step.status) await moveCheckout(invoiceId, step.status, paymentId, observedAt);
    if (moved) deps.afterPayments();
    return step.status && step.status !== checkout?.status ? `${done}; checkout ${step.status}` : done;
  }

  /**
   * In this process, one look per invoice at a time (in arrival order) and a few invoices at once;
   * across processes, an advisory lock per invoice. The lock's connection is held while the look uses
   * others, so the few-at-once keeps the pool from running dry.
   */
  function exclusively(invoiceId: string, work: () => Promise<void>): Promise<void> {
    return turns.take(invoiceId, () =>
      gate.through(async () => {
        const lock = await deps.pool.connect();
        const key = [`btcpay-invoice:${invoiceId}`];
        let broken = false;
        try {
          await lock.query('SELECT pg_advisory_lock(hashtextextended($1, 0))', key);
          try {
            await work();
          } finally {
            await lock.query('SELECT pg_advisory_unlock(hashtextextended($1, 0))', key).catch(() => {
              broken = true;
            });
          }
        } finally {
          lock.release(broken);
        }
      }),
    );
  }

  async function readCheckout(invoiceId: string): Promise<Checkout | null> {
    const { rows } = await deps.pool.query(
      `SELECT id, email, amount_cents, status, payment_id FROM provider_checkouts WHERE provider = 'btcpay' AND id = $1`,
      [invoiceId],
    );
    const row = rows[0];
    return row
      ? {
          id: row.id,
          email: row.email,
          amountCents: Number(row.amount_cents),
          status: row.status,
          paymentId: row.payment_id === null ? null : Number(row.payment_id),
        }
      : null;
  }

  async function readPayment(invoiceId: string): Promise<KnownPayment | null> {
    const { rows } = await deps.pool.query('SELECT id, email, provider, invalidated FROM payments WHERE reference = $1', [invoiceId]);
    const row = rows[0];
    return row ? { id: Number(row.id), email: row.email, provider: row.provider, invalidated: row.invalidated } : null;
  }

  /** A held checkout stays held: an operator decides. */
  async function moveCheckout(invoiceId: string, status: CheckoutStatus, paymentId: number | null, observedAt: Date): Promise<void> {
    await deps.pool.query(
      `UPDATE provider_checkouts
          SET status_changed = CASE WHEN status <> $2 THEN $4 ELSE status_changed END,
              status = $2, payment_id = COALESCE($3, payment_id)
        WHERE provider = 'btcpay' AND id = $1 AND status <> 'held'
          AND (status <> $2 OR (payment_id IS NULL AND $3::bigint IS NOT NULL))`,
      [invoiceId, status, paymentId, observedAt.toISOString()],
    );
  }

  async function routes(app: FastifyInstance, { requireCustomer }: RouteGuards): Promise<void> {
    // The webhook's signature is over the body exactly as sent: keep it raw (this scope only).
    app.addContentTypeParser('application/json', { parseAs: 'buffer', bodyLimit: maxWebhookBytes }, (_request, body, done) =>
      done(null, body),
    );

    app.get(btcpayPath, { preHandler: requireCustomer }, async (_request, reply) => showForm(reply, { amount: '', error: null }));

    app.post<{ Body: Record<string, unknown> | undefined }>(btcpayPath, { preHandler: requireCustomer }, async (request, reply) => {
      const email = request.customer!.email;
      const typed = request.body?.amount;
      let amountCents: Cents;
      try {
        amountCents = topUpCents(typed, deps);
        await requireFewOpenInvoices(email);
      } catch (error) {
        if (!(error instanceof DomainError)) throw error;
        const amount = typeof typed === 'string' ? typed.slice(0, 20) : '';
        return showForm(reply.code(httpStatusOf(error)), { amount, error: error.message });
      }
      let invoice: GreenfieldInvoice;
      try {
        invoice = await client.createInvoice({ amountCents, email, redirectUrl: `${deps.baseUrl}${returnPath}?invoice={InvoiceId}` });
        if (!isSafeLink(invoice.checkoutLink))
          throw new BtcpayError(
            `BTCPay Server sent a checkout link that is not a web address: ${JSON.stringify(invoice.checkoutLink.slice(0, 80))}`,
            null,
          );
      } catch (error) {
        if (!(error instanceof BtcpayError)) throw error;
        request.log.error({ err: error.message }, 'BTCPay invoice not created');
        return showForm(reply.code(502), {
          amount: formatCents(amountCents),
          error: 'BTCPay Server could not open an invoice just now: nothing was charged. Try again in a few minutes.',
        });
      }
      await recordCheckout(deps.pool, { provider: 'btcpay', id: invoice.id, email, amountCents, now: deps.now() });
      return reply.redirect(invoice.checkoutLink, 303);
    });

    app.get<{ Querystring: { invoice?: unknown } }>(returnPath, { preHandler: requireCustomer }, async (request, reply) => {
      const email = request.customer!.email;
      const asked =
        typeof request.query.invoice === 'string' && invoiceIdPattern.test(request.query.invoice) ? request.query.invoice : null;
      const { rows } = await deps.pool.query(
        `SELECT id, amount_cents, created, status FROM provider_checkouts
          WHERE provider = 'btcpay' AND email = $1 AND ($2::text IS NULL OR id = $2) ORDER BY created DESC LIMIT 1`,
        [email, asked],
      );
      const row = rows[0];
      if (!row && asked) {
        return reply.code(404).view('error.eta', { title: 'Invoice not found', message: 'You have no BTCPay invoice with this id.' });
      }
      if (!row) return reply.view('btcpay-return.eta', { invoice: null, refreshSeconds: 0 });
      let current: GreenfieldInvoice | null = null;
      try {
        current = await client.getInvoice(row.id);
      } catch (error) {
        if (!(error instanceof BtcpayError)) throw error;
        request.log.warn({ err: error.message }, 'BTCPay invoice status not read');
      }
      const shown = returnState(row.status, current);
      return reply.view('btcpay-return.eta', {
        invoice: {
          id: row.id,
          amount: dollars(Number(row.amount_cents)),
          created: utcMinute(row.created),
          ...shown,
          payLink: shown.state === 'unpaid' && current && isSafeLink(current.checkoutLink) ? current.checkoutLink : null,
        },
        refreshSeconds: shown.state === 'unpaid' || shown.state === 'confirming' || shown.state === 'settling' ? refreshSeconds : 0,
      });
    });

    app.post(webhookPath, async (request, reply) => {
      const body = request.body;
      if (!Buffer.isBuffer(body) || !validSignature(config.webhookSecret, body, request.headers['btcpay-sig'])) {
        request.log.warn('BTCPay webhook refused: its BTCPay-Sig is missing or wrong');
        return reply.code(400).send({ error: 'missing or invalid BTCPay-Sig signature' });
      }
      let event: unknown;
      try {
        event = JSON.parse(body.toString('utf8'));
      } catch {
        request.log.warn('BTCPay webhook refused: its body is not JSON');
        return reply.code(400).send({ error: 'the body is not JSON' });
      }
      if (typeof event !== 'object' || event === null || Array.isArray(event)) {
        request.log.warn('BTCPay webhook refused: its body is not a JSON object');
        return reply.code(400).send({ error: 'the body is not a BTCPay Server event (a JSON object)' });
      }
      const { invoiceId, storeId } = event as { invoiceId?: unknown; storeId?: unknown };
      if (invoiceId === undefined) return reply.send({ ignored: 'not about an invoice' });
      if (typeof invoiceId !== 'string' || !invoiceIdPattern.test(invoiceId)) {
        // Signed, so BTCPay Server's; it would only deliver it again, and it would say no more then.
        request.log.warn(
          { invoiceId: typeof invoiceId === 'string' ? JSON.stringify(invoiceId.slice(0, 80)) : typeof invoiceId },
          'BTCPay webhook acknowledged, nothing done: its invoiceId is not an invoice id',
        );
        return reply.send({ ignored: 'invoiceId is not an invoice id' });
      }
      if (storeId !== undefined && storeId !== config.storeId) return reply.send({ ignored: "another store's invoice" });
      try {
        await look(invoiceId, false, (line) => request.log.info(`btcpay: ${line}`));
      } catch (error) {
        if (error instanceof DomainError) {
          // The ledger will not take what the invoice says (the checkout stays as it was): an operator's matter.
          request.log.warn({ invoiceId, err: error.message }, 'BTCPay webhook acknowledged, nothing done: the ledger refused it');
          return reply.send({ ignored: `the ledger refused it: ${error.message}` });
        }
        if (!(error instanceof BtcpayError)) throw error;
        // BTCPay Server delivers again later; reconcile catches it if every delivery fails.
        request.log.warn({ err: error.message }, 'BTCPay webhook not handled: the invoice could not be read');
        return reply.code(503).send({ error: 'the invoice could not be read from BTCPay Server: deliver again later' });
      }
      return reply.send({ ok: true });
    });
  }

  function showForm(reply: FastifyReply, state: { amount: string; error: string | null }) {
    allowFormActionTo(reply, checkoutOrigin);
    return reply.view('btcpay.eta', { ...state, min: dollars(deps.topUpMinCents), max: dollars(deps.topUpMaxCents) });
  }

  async function requireFewOpenInvoices(email: string): Promise<void> {
    const open = await openCheckoutsToday(deps.pool, 'btcpay', email, deps.now());
    if (open >= maxOpenCheckoutsPerDay) {
      throw refused(
        `you have ${open} unpaid BTCPay invoices from the last day: pay one of them, or wait for them to expire, before opening another`,
      );
    }
  }

  async function reconcile({ now, dryRun, log }: ReconcileOptions): Promise<void> {
    // Open invoices (a settlement whose webhook never came), and invoices credited lately (a store may
    // mark one invalid after it settled, and that webhook may be lost too).
    const { rows } = await deps.pool.query(
      `SELECT id FROM provider_checkouts
       WHERE provider = 'btcpay' AND created <= $1
         AND (status = 'open' OR (status = 'credited' AND status_changed > $1::timestamptz - $3::interval))
       ORDER BY status = 'open' DESC, created LIMIT $2`,
      [now.toISOString(), reconcileBatch, `${recheckCreditedDays} days`],
    );
    let failed = 0;
    let unreachableInARow = 0;
    for (const { id } of rows as { id: string }[]) {
      try {
        await look(id, dryRun, log);
        unreachableInARow = 0;
      } catch (error) {
        failed++;
        log(`invoice ${id} could not be looked at: ${(error as Error).message}`);
        if (error instanceof BtcpayError && error.status === null && ++unreachableInARow >= maxUnreachableInARow) {
          throw new BtcpayError(
            `stopped after ${maxUnreachableInARow} invoices in a row could not be read; the rest wait for the next run`,
            null,
          );
        }
      }
    }
    log(
      `looked at ${rows.length} open or lately credited invoice${rows.length === 1 ? '' : 's'}${dryRun ? ' (dry run: nothing changed)' : ''}`,
    );
    if (failed > 0) throw new Error(`${failed} of ${rows.length} invoices could not be looked at (see above)`);
  }

  return { id: 'btcpay', label: 'Bitcoin and more (BTCPay)', path: btcpayPath, webhookPath, routes, reconcile };
}

function wouldDo(step: Step, checkout: Checkout | null): string {
  const action = step.action;
  const doing = !action
    ? 'do nothing to the ledger'
    : action.kind === 'credit'
      ? `credit ${dollars(action.amountCents)} to ${action.email}`
      : action.kind === 'hold'
        ? 'hold it for an operator'
        : `${action.kind} payment ${action.paymentId}`;
  return step.status && step.status !== checkout?.status ? `${doing} and mark the checkout ${step.status}` : doing;
}

type ReturnState = 'unpaid' | 'confirming' | 'settling' | 'credited' | 'held' | 'expired' | 'invalid';

/** What the return page tells the customer: the checkout's own status, else BTCPay's view of the invoice. */
function returnState(status: CheckoutStatus, invoice: GreenfieldInvoice | null): { state: ReturnState; checked: boolean } {
  const checked = invoice !== null;
  if (status !== 'open') return { state: status, checked };
  switch (invoice?.status) {
    case 'Processing':
      return { state: 'confirming', checked };
    case 'Settled':
      return { state: 'settling', checked };
    case 'Expired':
      return { state: 'expired', checked };
    case 'Invalid':
      return { state: 'invalid', checked };
    default:
      return { state: 'unpaid', checked };
  }
}

/** Looks at one key at a time, in arrival order; other keys go on meanwhile. */
class Turns {
  private readonly tails = new Map<string, Promise<unknown>>();

  take<T>(key: string, work: () => Promise<T>): Promise<T> {
    const result = (this.tails.get(key) ?? Promise.resolve()).then(work);
    const tail = result.catch(() => {});
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }
}

/** At most `limit` at once; the others wait, in arrival order. */
class Gate {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly limit: number) {}

  async through<T>(work: () => Promise<T>): Promise<T> {
    if (this.running < this.limit) this.running++;
    else await new Promise<void>((resolve) => this.waiting.push(resolve)); // the slot is handed over, not freed
    try {
      return await work();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}
