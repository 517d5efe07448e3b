// BTCPay Server top-ups through its Greenfield API. The customer picks an amount; capsul opens an
// invoice for it in USD and sends the customer to BTCPay's checkout (the pages and the webhook's
// endpoint are the hub's: src/hub/payments/btcpay.ts). Money is credited only once the invoice is
// Settled (capsul-flask credited payments merely seen, before they settled), and taken back when a
// credited invoice turns Expired or Invalid. A webhook, whatever its type, only says "look at
// invoice X": capsul fetches the invoice and acts on its current status, so a delivery repeated, late
// or out of order changes nothing more. `reconcile` looks at the open invoices for a missed webhook.
// A signed delivery that is not a JSON object is refused (400); one capsul cannot use (no invoice id, an
// id that is none) is acknowledged with 200 and a warning and changes nothing; what BTCPay Server's API
// answers is read field by field, so nothing it sends reaches the database unchecked.
import { advisoryLocks, withAdvisoryLock } from '../db/advisory-lock.ts';
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { BtcpayConfig } from '../config.ts';
import { canonicalEmailOrNull } from '../domain/shared/email.ts';
import { DomainError, invalid, refused } from '../domain/shared/errors.ts';
import { formatCents, type Cents } from '../domain/shared/money.ts';
import pLimit, { type LimitFunction } from 'p-limit';
import { dollars } from '../core/format.ts';
import { TurnsPerKey } from '../core/turns.ts';
import { type CheckoutStatus, maxOpenCheckoutsPerDay, openCheckoutsToday, recordCheckout } from './checkouts.ts';
import { holdPayment, type Hold } from './holds.ts';
import {
  CheckoutNotOpened,
  isSafeLink,
  type PaymentProvider,
  type ProviderDeps,
  type ReconcileOptions,
  type TopUpLimits,
  type WebhookOutcome,
} from './provider.ts';

export const btcpayPath = '/payment/btcpay';
/** the page BTCPay's checkout sends the customer back to */
export const returnPath = `${btcpayPath}/return`;

const defaultTimeoutMs = 10_000;
const maxResponseBytes = 1_000_000;
export const maxWebhookBytes = 64 * 1024;
/** Reconcile looks again at invoices credited this recently: one marked invalid after it settled is taken back. */
export const recheckCreditedDays = 7;
/** invoices looked at per reconciliation run, oldest first */
const reconcileBatch = 1000;
/** a reconciliation run stops after this many invoices in a row for which BTCPay Server did not answer */
const maxUnreachableInARow = 3;
/** invoices looked at concurrently by one process: each holds a pool connection for its lock */
const maxConcurrentLooks = 2;
/** Greenfield invoice ids are base58; anything else never reaches a URL we build */
export const invoiceIdPattern = /^[A-Za-z0-9_-]{1,64}$/;
/** metadata.orderId of the invoices capsul opens: marks them among a shared store's invoices */
const orderIdPrefix = 'capsul:';

const cause = { by: { kind: 'job' as const, id: 'btcpay' } };

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

// ---- reading a webhook delivery (pure) ----

/**
 * What a signed delivery asks: look at one of this store's invoices (`invoiceId`), or nothing. A body
 * that is not a JSON object is refused; an id that is none is acknowledged (signed, so BTCPay Server's:
 * it would only deliver it again, and it would say no more then).
 */
export function invoiceAskedAbout(body: Buffer, storeId: string): { invoiceId: string } | WebhookOutcome {
  let event: unknown;
  try {
    event = JSON.parse(body.toString('utf8'));
  } catch {
    return { kind: 'refused', why: 'the body is not JSON' };
  }
  if (typeof event !== 'object' || event === null || Array.isArray(event)) {
    return { kind: 'refused', why: 'the body is not a BTCPay Server event (a JSON object)' };
  }
  const { invoiceId, storeId: itsStore } = event as { invoiceId?: unknown; storeId?: unknown };
  if (invoiceId === undefined) return { kind: 'ignored', why: 'not about an invoice', warn: false };
  if (typeof invoiceId !== 'string' || !invoiceIdPattern.test(invoiceId)) {
    const said = typeof invoiceId === 'string' ? JSON.stringify(invoiceId.slice(0, 80)) : typeof invoiceId;
    return { kind: 'ignored', why: 'invoiceId is not an invoice id', warn: true, about: { invoiceId: said } };
  }
  if (itsStore !== undefined && itsStore !== storeId) return { kind: 'ignored', why: "another store's invoice", warn: false };
  return { invoiceId };
}

/** What a dry run says it would have done about an invoice. */
export function wouldDo(step: Step, checkout: Checkout | null): string {
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

// ---- the provider ----

type Log = (line: string) => void;

export class BtcpayProvider implements PaymentProvider {
  readonly id = 'btcpay';
  readonly label = 'Bitcoin and more (BTCPay)';
  readonly path = btcpayPath;
  readonly webhookPath = `${btcpayPath}/webhook`;
  /** BTCPay Server's checkout, where the add-funds form leads */
  readonly checkoutOrigin: string;
  readonly limits: TopUpLimits;
  private readonly client: GreenfieldClient;
  /** one look per invoice at a time in this process, in arrival order */
  private readonly turns = new TurnsPerKey();
  /** a few invoices at once: each look holds a pool connection for its lock */
  private readonly fewAtOnce: LimitFunction = pLimit(maxConcurrentLooks);

  constructor(
    private readonly config: BtcpayConfig,
    private readonly deps: ProviderDeps,
    options: { timeoutMs?: number } = {},
  ) {
    this.limits = { topUpMinCents: deps.topUpMinCents, topUpMaxCents: deps.topUpMaxCents };
    this.client = greenfieldClient(config, options);
    this.checkoutOrigin = new URL(config.url).origin;
  }

  /**
   * Opens an invoice for the amount and records it; the address of its checkout. Too many unpaid ones
   * is a refusal; BTCPay Server failing is CheckoutNotOpened.
   */
  async openCheckout(email: string, amountCents: Cents): Promise<string> {
    await this.requireFewOpenInvoices(email);
    let invoice: GreenfieldInvoice;
    try {
      invoice = await this.client.createInvoice({
        amountCents,
        email,
        redirectUrl: `${this.deps.baseUrl}${returnPath}?invoice={InvoiceId}`,
      });
    } catch (error) {
      if (!(error instanceof BtcpayError)) throw error;
      throw new CheckoutNotOpened(error.message, { cause: error });
    }
    if (!isSafeLink(invoice.checkoutLink)) {
      throw new CheckoutNotOpened(
        `BTCPay Server sent a checkout link that is not a web address: ${JSON.stringify(invoice.checkoutLink.slice(0, 80))}`,
      );
    }
    await recordCheckout(this.deps.pool, { provider: 'btcpay', id: invoice.id, email, amountCents, now: this.deps.now() });
    return invoice.checkoutLink;
  }

  /** The invoice as BTCPay Server has it now (null: not in the store); a BtcpayError when it cannot be read. */
  invoice(invoiceId: string): Promise<GreenfieldInvoice | null> {
    return this.client.getInvoice(invoiceId);
  }

  /**
   * One webhook delivery: whatever its type, it only says "look at invoice X", so capsul looks. A
   * ledger refusal is acknowledged with a warning (the checkout stays as it was: an operator's matter);
   * BTCPay Server not answering is to be delivered again (and reconcile catches it if every delivery fails).
   */
  async receiveWebhook(
    delivery: { body: unknown; headers: Record<string, string | string[] | undefined> },
    log: Log,
  ): Promise<WebhookOutcome> {
    const { body, headers } = delivery;
    if (!Buffer.isBuffer(body) || !validSignature(this.config.webhookSecret, body, headers['btcpay-sig'])) {
      return { kind: 'refused', why: 'missing or invalid BTCPay-Sig signature' };
    }
    const asked = invoiceAskedAbout(body, this.config.storeId);
    if ('kind' in asked) return asked;
    const about = { invoiceId: asked.invoiceId };
    try {
      await this.look(asked.invoiceId, false, log);
    } catch (error) {
      if (error instanceof DomainError) return { kind: 'ignored', why: `the ledger refused it: ${error.message}`, warn: true, about };
      if (!(error instanceof BtcpayError)) throw error;
      return { kind: 'retry', why: error.message, about };
    }
    return { kind: 'done', what: 'looked at', about };
  }

  /**
   * The scheduled job: open invoices (a settlement whose webhook never came), and invoices credited
   * lately (a store may mark one invalid after it settled, and that webhook may be lost too).
   */
  async reconcile({ now, dryRun, log }: ReconcileOptions): Promise<void> {
    const { rows } = await this.deps.pool.query<{ id: string }>(
      `SELECT id FROM provider_checkouts
       WHERE provider = 'btcpay' AND created <= $1
         AND (status = 'open' OR (status = 'credited' AND status_changed > $1::timestamptz - $3::interval))
       ORDER BY status = 'open' DESC, created LIMIT $2`,
      [now.toISOString(), reconcileBatch, `${recheckCreditedDays} days`],
    );
    let failed = 0;
    let unreachableInARow = 0;
    for (const { id } of rows) {
      try {
        await this.look(id, dryRun, log);
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

  private async requireFewOpenInvoices(email: string): Promise<void> {
    const open = await openCheckoutsToday(this.deps.pool, 'btcpay', email, this.deps.now());
    if (open >= maxOpenCheckoutsPerDay) {
      throw refused(
        `you have ${open} unpaid BTCPay invoices from the last day: pay one of them, or wait for them to expire, before opening another`,
      );
    }
  }

  /**
   * Fetches the invoice and acts on its current status. One look at an invoice at a time, across
   * processes (the hub's webhooks, a reconciliation run from the CLI): each fetches after the one
   * before has acted, and acts on what BTCPay Server says now and what that one left.
   */
  private look(invoiceId: string, dryRun: boolean, log: Log): Promise<void> {
    return this.exclusively(invoiceId, async () => {
      const observedAt = this.deps.now();
      const invoice = await this.client.getInvoice(invoiceId);
      if (!invoice) {
        log(`invoice ${invoiceId} is not in store ${this.config.storeId} on BTCPay Server: nothing done`);
        return;
      }
      const checkout = await this.readCheckout(invoiceId);
      const step = stepFor(invoice, checkout, await this.readPayment(invoiceId));
      const what = `invoice ${invoiceId}${checkout ? ` (${checkout.email}, ${dollars(checkout.amountCents)})` : ''} is ${step.why}`;
      if (dryRun) {
        log(`${what}: would ${wouldDo(step, checkout)}`);
        return;
      }
      const done = await this.act(invoiceId, checkout, step, observedAt, log);
      if (!checkout || step.action || (step.status && step.status !== checkout.status)) log(`${what}: ${done}`);
    });
  }

  /** Does what the step says: the ledger first, then the checkout; what was done, for the log. */
  private async act(invoiceId: string, checkout: Checkout | null, step: Step, observedAt: Date, log: Log): Promise<string> {
    const action = step.action;
    let paymentId = checkout?.paymentId ?? null;
    let moved = false;
    let done = 'nothing to do';
    switch (action?.kind) {
      case undefined:
        break;
      case 'credit': {
        const recorded = await this.deps.ledger.recordPayment({
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
        const held = await holdPayment({ ...this.deps, log }, action.hold);
        done = held.new ? 'held for an operator, who was emailed' : 'held for an operator already';
        break;
      }
      case 'invalidate':
      case 'reinstate': {
        const { changed } =
          action.kind === 'invalidate'
            ? await this.deps.ledger.invalidatePayment(action.paymentId, { ...cause, reason: action.reason }, { effectiveAt: observedAt })
            : await this.deps.ledger.reinstatePayment(action.paymentId, { ...cause, reason: action.reason }, { effectiveAt: observedAt });
        paymentId = action.paymentId;
        moved = changed;
        done = `payment ${action.paymentId} ${action.kind === 'invalidate' ? 'invalidated' : 'reinstated'}${changed ? '' : ' already'}`;
        break;
      }
    }
    // The ledger first: if this fails the checkout stays as it was, and the next look does it again.
    if (checkout && step.status) await this.moveCheckout(invoiceId, step.status, paymentId, observedAt);
    if (moved) this.deps.afterPayments();
    return step.status && step.status !== checkout?.status ? `${done}; checkout ${step.status}` : done;
  }

  /**
   * In this process, one look per invoice at a time (in arrival order) and a few invoices at once;
   * across processes, an advisory lock per invoice. The lock's connection is held while the look uses
   * others, so the few-at-once keeps the pool from running dry.
   */
  private exclusively(invoiceId: string, work: () => Promise<void>): Promise<void> {
    return this.turns.take(invoiceId, () => this.fewAtOnce(() => this.underInvoiceLock(invoiceId, work)));
  }

  /** Across processes: the invoice's advisory lock, on a connection of its own, held while the work runs. */
  private async underInvoiceLock(invoiceId: string, work: () => Promise<void>): Promise<void> {
    await withAdvisoryLock(this.deps.pool, advisoryLocks.btcpayInvoice(invoiceId), work);
  }

  private async readCheckout(invoiceId: string): Promise<Checkout | null> {
    const { rows } = await this.deps.pool.query(
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

  private async readPayment(invoiceId: string): Promise<KnownPayment | null> {
    const { rows } = await this.deps.pool.query('SELECT id, email, provider, invalidated FROM payments WHERE reference = $1', [invoiceId]);
    const row = rows[0];
    return row ? { id: Number(row.id), email: row.email, provider: row.provider, invalidated: row.invalidated } : null;
  }

  /** A held checkout stays held: an operator decides. */
  private async moveCheckout(invoiceId: string, status: CheckoutStatus, paymentId: number | null, observedAt: Date): Promise<void> {
    await this.deps.pool.query(
      `UPDATE provider_checkouts
          SET status_changed = CASE WHEN status <> $2 THEN $4 ELSE status_changed END,
              status = $2, payment_id = COALESCE($3, payment_id)
        WHERE provider = 'btcpay' AND id = $1 AND status <> 'held'
          AND (status <> $2 OR (payment_id IS NULL AND $3::bigint IS NOT NULL))`,
      [invoiceId, status, paymentId, observedAt.toISOString()],
    );
  }
}
