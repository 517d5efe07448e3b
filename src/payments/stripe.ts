// Stripe top-ups: one Checkout Session per top-up (provider_checkouts), the signed webhook's events and
// the reconciliation; the pages and the webhook's endpoint are the hub's (src/hub/payments/stripe.ts).
// Money is credited only from what Stripe signs or answers, keyed by the payment intent id, so a webhook
// delivered twice, late, concurrently or out of order changes nothing more; disputes and refunds carry
// Stripe's own time, so stale ones change nothing.
// A signed event is read field by field before anything is done with it: one capsul cannot use (a
// shape it does not expect, an id that is no Stripe id, an amount that is no whole number of cents) is
// acknowledged with 200 and a warning in the log, and changes nothing, so Stripe does not retry it for days.
import Stripe from 'stripe';
import type { StripeConfig } from '../config.ts';
import { canonicalEmailOrNull } from '../domain/shared/email.ts';
import { DomainError, refused } from '../domain/shared/errors.ts';
import { formatCents, type Cents } from '../domain/shared/money.ts';
import type { Cause } from '../domain/events.ts';
import { dollars } from '../core/format.ts';
import { type CheckoutRow, maxOpenCheckoutsPerDay, openCheckoutsToday, recordCheckout } from './checkouts.ts';
import { holdPayment } from './holds.ts';
import {
  CheckoutNotOpened,
  isSafeLink,
  type PaymentProvider,
  type ProviderDeps,
  type ReconcileOptions,
  type TopUpLimits,
  type WebhookOutcome,
} from './provider.ts';

const cause: Cause = { by: { kind: 'job', id: 'stripe' } };
/** Open checkouts younger than this are left to their webhook; older ones are asked about. */
export const reconcileAfterMs = 3600_000;
/** Checkouts asked about per reconciliation run; the rest wait for the next run. */
const reconcileBatch = 200;
/** Stripe's events are a few KB; a webhook body past this is not one. */
export const webhookBodyLimit = 512 * 1024;
export const sessionIdPattern = /^cs_[A-Za-z0-9_]{1,250}$/;
const paymentIntentPattern = /^pi_[A-Za-z0-9_]{1,250}$/;
/** Any other Stripe object's id (a charge `ch_…`, a dispute `du_…`): a prefix, an underscore, letters and digits. */
const stripeIdPattern = /^[a-z]{1,10}_[A-Za-z0-9_]{1,250}$/;
/** Times past this (the year 5138) are not Stripe's. */
const maxStripeSeconds = 1e11;
/** A completed checkout whose delayed payment (a bank debit) ended so will never be paid. */
const failedIntentStatuses: string[] = ['requires_payment_method', 'canceled'];

type Log = (line: string) => void;
type Settled = 'credited' | 'duplicate' | 'held' | 'unpaid' | 'ignored';

/** What capsul reads of a checkout session (from a webhook or from Stripe's API), each field checked. */
export type CheckoutFacts = {
  id: string;
  mode: string;
  paymentStatus: string;
  /** the payment intent's id: the payment's reference */
  paymentIntent: string | null;
  /** Stripe's total in the smallest unit of `currency` (absent: 0) */
  amountCents: Cents;
  currency: string | null;
  /** who paid, as the session says (its metadata, then the customer's details): only for a hold's record */
  emailHint: string | null;
  /** when it was paid: the payment intent's creation, when Stripe expanded it */
  paidAt: Date | null;
};

/**
 * Something Stripe sent that capsul cannot use: a signed event (acknowledged, since Stripe would only
 * deliver it again, and logged; nothing changed) or an API answer (the customer is told Stripe failed).
 */
export class Unusable extends Error {}

/** The SDK's options: another API origin for tests and stripe-mock, bounded waits and retries. */
function clientOptions(config: StripeConfig): ConstructorParameters<typeof Stripe>[1] {
  const options = { maxNetworkRetries: 2, timeout: 20_000, telemetry: false, appInfo: { name: 'capsul' } };
  if (!config.apiBase) return options;
  const url = new URL(config.apiBase);
  const protocol = url.protocol === 'http:' ? ('http' as const) : ('https' as const);
  return { ...options, host: url.hostname, port: url.port || (protocol === 'http' ? 80 : 443), protocol };
}

export class StripeProvider implements PaymentProvider {
  readonly id = 'stripe';
  readonly label = 'Card (Stripe)';
  readonly path = '/payment/stripe';
  readonly webhookPath = '/payment/stripe/webhook';
  /** Stripe's hosted checkout (Chrome holds a redirect from a form to the page's CSP form-action too) */
  readonly checkoutOrigin = 'https://checkout.stripe.com';
  readonly limits: TopUpLimits;
  private readonly stripe: Stripe;

  constructor(
    private readonly config: StripeConfig,
    private readonly deps: ProviderDeps,
  ) {
    this.limits = { topUpMinCents: deps.topUpMinCents, topUpMaxCents: deps.topUpMaxCents };
    this.stripe = new Stripe(config.secretKey, clientOptions(config));
  }

  /**
   * One webhook delivery, from its signature to what it changed. An event capsul cannot use, or one the
   * ledger refuses, is ignored (with a warning: Stripe would only deliver it again); one Stripe's API
   * must be asked about and did not answer is to be delivered again; a database error surfaces (500,
   * so Stripe delivers it again too).
   */
  async receiveWebhook(
    delivery: { body: unknown; headers: Record<string, string | string[] | undefined> },
    log: Log,
  ): Promise<WebhookOutcome> {
    const verified = this.verify(delivery.body, delivery.headers['stripe-signature']);
    if ('refused' in verified) return { kind: 'refused', why: verified.refused };
    const { event } = verified;
    const about = {
      stripeEvent: typeof event.id === 'string' ? event.id.slice(0, 100) : null,
      type: typeof event.type === 'string' ? event.type.slice(0, 100) : null,
    };
    try {
      const handled = await this.handle(event, log);
      if ('unusable' in handled) return { kind: 'ignored', why: handled.unusable, warn: true, about };
      return { kind: 'done', what: handled.outcome, about };
    } catch (error) {
      if (!(error instanceof Stripe.errors.StripeError)) throw error;
      return { kind: 'retry', why: error.message, about };
    }
  }

  /**
   * The event in a webhook body once its signature (and its age) verifies, or why the delivery is refused:
   * not signed by Stripe, or signed but not a JSON object (what no Stripe delivery is).
   */
  private verify(body: unknown, signature: string | string[] | undefined): { event: Record<string, unknown> } | { refused: string } {
    const forged = { refused: 'the Stripe-Signature header does not verify for this body' };
    const signatures = this.stripe.webhooks.signature;
    if (!Buffer.isBuffer(body) || typeof signature !== 'string' || !signatures) return forged;
    try {
      // The age of the signature is measured on capsul's clock, the one every other time here comes from.
      signatures.verifyHeader(body, signature, this.config.webhookSecret, undefined, undefined, this.deps.now().getTime());
    } catch {
      return forged;
    }
    let event: unknown;
    try {
      event = JSON.parse(body.toString('utf8'));
    } catch {
      return { refused: 'the body is not JSON' };
    }
    return isRecord(event) ? { event } : { refused: 'the body is not a Stripe event (a JSON object)' };
  }

  /**
   * Acts on one verified event; what it did, for the log. An event it cannot use, or one the ledger
   * refuses, changes nothing and comes back as `unusable` (why), for the caller to acknowledge and warn
   * about. Errors of the database or of Stripe's API surface, so that Stripe delivers the event again.
   */
  private async handle(event: Record<string, unknown>, log: Log): Promise<{ outcome: string } | { unusable: string }> {
    try {
      return { outcome: await this.act(event, log) };
    } catch (error) {
      if (error instanceof Unusable) return { unusable: error.message };
      if (error instanceof DomainError) return { unusable: `the ledger refused it: ${error.message}` };
      throw error;
    }
  }

  private async act(event: Record<string, unknown>, log: Log): Promise<string> {
    if (typeof event.type !== 'string') throw new Unusable('the event has no type');
    if (!handledTypes.has(event.type)) return 'ignored';
    const at = stripeTime(event.created, 'created');
    const data = event.data;
    const object = isRecord(data) ? data.object : undefined;
    if (!isRecord(object)) throw new Unusable(`the ${event.type} event has no data.object`);
    switch (event.type) {
      case 'checkout.session.completed':
      case 'checkout.session.async_payment_succeeded':
        return this.settle(checkoutFacts(object), at, this.deps.now(), log);
      case 'checkout.session.expired':
        return (await this.mark(idIn(object, 'id', sessionIdPattern), 'expired', this.deps.now())) ? 'expired' : 'unchanged';
      case 'checkout.session.async_payment_failed':
        return (await this.mark(idIn(object, 'id', sessionIdPattern), 'invalid', this.deps.now())) ? 'payment failed' : 'unchanged';
      case 'charge.dispute.funds_withdrawn':
      case 'charge.dispute.funds_reinstated': {
        const disputeId = idIn(object, 'id', stripeIdPattern);
        const reinstated = event.type === 'charge.dispute.funds_reinstated';
        return this.correct(paymentIntentIn(object), log, async (paymentId) => {
          const reason = reinstated
            ? `chargeback reversed: Stripe dispute ${disputeId} funds reinstated`
            : `chargeback: Stripe dispute ${disputeId} funds withdrawn`;
          const options = { effectiveAt: at };
          const { changed } = reinstated
            ? await this.deps.ledger.reinstatePayment(paymentId, { ...cause, reason }, options)
            : await this.deps.ledger.invalidatePayment(paymentId, { ...cause, reason }, options);
          return changed;
        });
      }
      case 'charge.refunded': {
        const chargeId = idIn(object, 'id', stripeIdPattern);
        const refundedCents = wholeNumber(object.amount_refunded, 'data.object.amount_refunded');
        if (refundedCents <= 0) return 'ignored: nothing refunded';
        return this.correct(paymentIntentIn(object), log, async (paymentId) => {
          const { changed } = await this.deps.ledger.recordRefund({
            paymentId,
            totalRefundedCents: refundedCents,
            reference: chargeId,
            effectiveAt: at,
            cause,
          });
          return changed;
        });
      }
      default:
        return 'ignored';
    }
  }

  /**
   * A paid checkout becomes a payment keyed by its payment intent, for the account that opened it, if
   * Stripe's amount is the one capsul asked for. Anything else is held for an operator, never credited.
   */
  private async settle(session: CheckoutFacts, paidAt: Date, now: Date, log: Log): Promise<Settled> {
    if (session.mode !== 'payment') return 'ignored';
    if (session.paymentStatus !== 'paid') return 'unpaid'; // a delayed method: async_payment_succeeded follows
    const reference = session.paymentIntent;
    if (reference === null) return 'ignored';
    const amountCents = session.amountCents;
    const { rows } = await this.deps.pool.query<CheckoutRow>(
      `SELECT id, email, amount_cents, created, status FROM provider_checkouts WHERE provider = 'stripe' AND id = $1`,
      [session.id],
    );
    const checkout = rows[0];
    const hold = async (reason: string) => {
      await holdPayment(
        { ...this.deps, now: () => now, log },
        {
          provider: 'stripe',
          reference,
          amountCents,
          reason,
          email: checkout?.email ?? session.emailHint,
          expectedCents: checkout ? Number(checkout.amount_cents) : null,
        },
      );
      if (checkout) await this.mark(session.id, 'held', now);
      return 'held' as const;
    };
    if (!checkout) return hold(`Stripe checkout session ${session.id} is not one capsul opened`);
    if (session.currency !== 'usd' || amountCents !== Number(checkout.amount_cents)) {
      return hold(
        `Stripe checkout session ${session.id} was paid ${formatCents(amountCents)} ${(session.currency ?? '?').toUpperCase()}, not the USD amount capsul asked for`,
      );
    }
    let recorded: { paymentId: number; duplicate: boolean };
    try {
      // Stripe's clock may run a little ahead of ours: a payment is never received in capsul's future.
      const receivedAt = new Date(Math.min(paidAt.getTime(), this.deps.now().getTime()));
      recorded = await this.deps.ledger.recordPayment({
        email: checkout.email,
        amountCents,
        reference,
        receivedAt,
        provider: 'stripe',
        cause,
      });
    } catch (error) {
      if (!(error instanceof DomainError)) throw error;
      return hold(`the ledger refused it: ${error.message}`);
    }
    await this.deps.pool.query(
      `UPDATE provider_checkouts SET status = 'credited', status_changed = $2, payment_id = $3
       WHERE provider = 'stripe' AND id = $1 AND status <> 'credited'`,
      [session.id, now.toISOString(), recorded.paymentId],
    );
    if (recorded.duplicate) return 'duplicate';
    log(`credited ${dollars(amountCents)} to ${checkout.email} as payment ${recorded.paymentId} (${reference})`);
    this.deps.afterPayments();
    return 'credited';
  }

  /**
   * A dispute's or refund's change to the payment of a payment intent. A payment capsul has not credited
   * yet (its checkout's webhook late or lost) is settled first from Stripe's record of its checkout; one
   * that is not capsul's, or is held, is acknowledged and left alone.
   */
  private async correct(paymentIntent: string | null, log: Log, change: (paymentId: number) => Promise<boolean>): Promise<string> {
    if (paymentIntent === null) return 'ignored: no payment intent';
    let paymentId = await this.deps.ledger.paymentIdFor(paymentIntent);
    if (paymentId === null) {
      const { data } = await this.stripe.checkout.sessions.list({
        payment_intent: paymentIntent,
        limit: 1,
        expand: ['data.payment_intent'],
      });
      if (data[0]) {
        const session = checkoutFacts(data[0]);
        await this.settle(session, session.paidAt ?? this.deps.now(), this.deps.now(), log);
      }
      paymentId = await this.deps.ledger.paymentIdFor(paymentIntent);
    }
    if (paymentId === null) {
      log(`${paymentIntent} is no payment capsul credited: nothing to correct`);
      return 'ignored: unknown payment';
    }
    const changed = await change(paymentId);
    if (changed) this.deps.afterPayments();
    return changed ? `payment ${paymentId} corrected` : `payment ${paymentId} unchanged`;
  }

  /** Moves an open checkout to expired or invalid, or any unsettled one to held; true when it changed. */
  private async mark(id: string, status: 'expired' | 'invalid' | 'held', now: Date): Promise<boolean> {
    const from = status === 'held' ? ['open', 'expired', 'invalid'] : ['open'];
    const { rowCount } = await this.deps.pool.query(
      `UPDATE provider_checkouts SET status = $2, status_changed = $3 WHERE provider = 'stripe' AND id = $1 AND status = ANY($4)`,
      [id, status, now.toISOString(), from],
    );
    return (rowCount ?? 0) > 0;
  }

  /**
   * Opens a Checkout Session for the amount and records it; the address to send the customer to. Too
   * many unfinished ones is a refusal; Stripe failing is CheckoutNotOpened.
   */
  async openCheckout(email: string, amountCents: Cents): Promise<string> {
    const now = this.deps.now();
    const open = await openCheckoutsToday(this.deps.pool, 'stripe', email, now);
    if (open >= maxOpenCheckoutsPerDay) {
      throw refused(`you have ${open} unfinished card payments from the last day: finish one of them, or try again tomorrow`);
    }
    let url: string;
    try {
      url = await this.createSession(email, amountCents, now);
    } catch (error) {
      if (!(error instanceof Stripe.errors.StripeError) && !(error instanceof Unusable)) throw error;
      throw new CheckoutNotOpened(`Stripe did not open a checkout session: ${error.message}`, { cause: error });
    }
    return url;
  }

  private async createSession(email: string, amountCents: Cents, now: Date): Promise<string> {
    const base = this.deps.baseUrl.replace(/\/+$/, '');
    const session = await this.stripe.checkout.sessions.create({
      mode: 'payment',
      line_items: [
        {
          quantity: 1,
          price_data: {
            currency: 'usd',
            unit_amount: amountCents,
            product_data: { name: 'capsul account credit', description: `Funds for ${email}` },
          },
        },
      ],
      customer_email: email,
      client_reference_id: email.length <= 200 ? email : undefined,
      metadata: { capsul_email: email },
      payment_intent_data: { metadata: { capsul_email: email } },
      success_url: `${base}/payment/stripe/success?session_id={CHECKOUT_SESSION_ID}`,
      cancel_url: `${base}/payment/stripe?cancelled=1`,
    });
    if (!session.url || !isSafeLink(session.url))
      throw new Unusable(`Stripe opened checkout session ${session.id} without an address to send the customer to`);
    await recordCheckout(this.deps.pool, { provider: 'stripe', id: session.id, email, amountCents, now });
    return session.url;
  }

  /** Settles open checkouts whose webhook never came, from Stripe's own record; marks abandoned ones expired. */
  async reconcile({ now, dryRun, log }: ReconcileOptions): Promise<void> {
    const { rows } = await this.deps.pool.query<{ id: string }>(
      `SELECT id FROM provider_checkouts WHERE provider = 'stripe' AND status = 'open' AND created < $1 ORDER BY created, id LIMIT $2`,
      [new Date(now.getTime() - reconcileAfterMs).toISOString(), reconcileBatch],
    );
    let failed = 0;
    for (const { id } of rows) {
      try {
        await this.reconcileOne(id, now, dryRun, log);
      } catch (error) {
        failed++;
        log(`checking checkout ${id} failed: ${(error as Error).message}`);
      }
    }
    if (failed > 0)
      throw new Error(`${failed} of ${rows.length} open checkouts could not be checked (see above); the next run tries again`);
  }

  private async reconcileOne(id: string, now: Date, dryRun: boolean, log: Log): Promise<void> {
    let session: Stripe.Checkout.Session;
    try {
      session = await this.stripe.checkout.sessions.retrieve(id, { expand: ['payment_intent'] });
    } catch (error) {
      if (!(error instanceof Stripe.errors.StripeError && error.code === 'resource_missing')) throw error;
      // Not in this Stripe account (keys changed, test mode): nothing will ever be paid on it.
      if (dryRun) log(`would mark checkout ${id} invalid: Stripe does not know it`);
      else if (await this.mark(id, 'invalid', now)) log(`marked checkout ${id} invalid: Stripe does not know it`);
      return;
    }
    if (session.status === 'complete' && session.payment_status === 'paid') {
      if (dryRun)
        return log(
          `would settle checkout ${id}: Stripe says ${formatCents(session.amount_total ?? 0)} ${(session.currency ?? '').toUpperCase()} was paid and its webhook never came`,
        );
      const facts = checkoutFacts(session);
      const outcome = await this.settle(facts, facts.paidAt ?? now, now, log);
      return log(`checkout ${id} was paid and its webhook never came: ${outcome}`);
    }
    if (session.status === 'expired') {
      if (dryRun) return log(`would mark checkout ${id} expired`);
      if (await this.mark(id, 'expired', now)) log(`marked checkout ${id} expired: it was never paid`);
      return;
    }
    const intent = session.payment_intent;
    if (session.status === 'complete' && typeof intent === 'object' && intent !== null && failedIntentStatuses.includes(intent.status)) {
      if (dryRun) return log(`would mark checkout ${id} invalid: its payment failed`);
      if (await this.mark(id, 'invalid', now)) log(`marked checkout ${id} invalid: its payment failed`);
    }
    // Still open (Stripe expires it by itself within a day) or paid by a method that is still settling.
  }
}

// ---- Reading what Stripe sends, field by field ----------------------------------------------------

/** The event types capsul acts on; any other is acknowledged without a look at its data. */
const handledTypes = new Set([
  'checkout.session.completed',
  'checkout.session.async_payment_succeeded',
  'checkout.session.expired',
  'checkout.session.async_payment_failed',
  'charge.dispute.funds_withdrawn',
  'charge.dispute.funds_reinstated',
  'charge.refunded',
]);

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** A checkout session as capsul uses it; anything of another shape is an Unusable. */
export function checkoutFacts(object: unknown): CheckoutFacts {
  if (!isRecord(object)) throw new Unusable('the checkout session is not an object');
  const text = (name: string): string => {
    const value = object[name];
    if (typeof value !== 'string' || value.length > 100) throw new Unusable(`the checkout session's ${name} is not a short text`);
    return value;
  };
  const currency = object.currency ?? null;
  if (currency !== null && (typeof currency !== 'string' || !/^[a-z]{3}$/i.test(currency))) {
    throw new Unusable("the checkout session's currency is not a currency code");
  }
  const intent = object.payment_intent;
  const metadata = isRecord(object.metadata) ? object.metadata : {};
  const details = isRecord(object.customer_details) ? object.customer_details : {};
  return {
    id: idIn(object, 'id', sessionIdPattern),
    mode: text('mode'),
    paymentStatus: text('payment_status'),
    paymentIntent: paymentIntentIn(object),
    amountCents:
      object.amount_total === null || object.amount_total === undefined ? 0 : wholeNumber(object.amount_total, 'data.object.amount_total'),
    currency: currency === null ? null : currency.toLowerCase(),
    emailHint: canonicalEmailOrNull(metadata.capsul_email) ?? canonicalEmailOrNull(details.email),
    paidAt: isRecord(intent) ? stripeTime(intent.created, 'data.object.payment_intent.created') : null,
  };
}

/** An id field of Stripe's, matching its pattern. */
function idIn(object: Record<string, unknown>, name: string, pattern: RegExp): string {
  const value = object[name];
  if (typeof value !== 'string' || !pattern.test(value)) throw new Unusable(`data.object.${name} is not a Stripe id`);
  return value;
}

/** `payment_intent`: absent, its id, or the payment intent itself (expanded); null when absent. */
function paymentIntentIn(object: Record<string, unknown>): string | null {
  const value = object.payment_intent;
  if (value === null || value === undefined) return null;
  const id = isRecord(value) ? value.id : value;
  if (typeof id !== 'string' || !paymentIntentPattern.test(id)) throw new Unusable('data.object.payment_intent is not a payment intent id');
  return id;
}

/** A time Stripe sends, in seconds since 1970; one a Date cannot hold is no time. */
function stripeTime(value: unknown, name: string): Date {
  const seconds = wholeNumber(value, name);
  if (seconds > maxStripeSeconds) throw new Unusable(`${name} is not a time`);
  return new Date(seconds * 1000);
}

/** A count Stripe sends (cents, seconds): a whole number, not negative. */
function wholeNumber(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw new Unusable(`${name} is not a whole number`);
  return value;
}
