// Stripe top-ups: the amount form, one Checkout Session per top-up (provider_checkouts), the page Stripe
// returns to, the signed webhook and the reconciliation. Money is credited only from what Stripe signs
// or answers, keyed by the payment intent id, so a webhook delivered twice, late, concurrently or out of
// order changes nothing more; disputes and refunds carry Stripe's own time, so stale ones change nothing.
import type { FastifyInstance, FastifyReply } from 'fastify';
import Stripe from 'stripe';
import type { StripeConfig } from '../config.ts';
import { DomainError, refused } from '../domain/shared/errors.ts';
import { formatCents, type Cents } from '../domain/shared/money.ts';
import type { Cause } from '../ledger/handle.ts';
import { requireCustomer } from '../hub/web/session.ts';
import { dollars, utcMinute } from '../hub/web/format.ts';
import { maxOpenCheckoutsPerDay, openCheckoutsToday, recordCheckout } from './checkouts.ts';
import { holdPayment } from './holds.ts';
import { allowFormActionTo, topUpCents, type PaymentProvider, type ProviderDeps, type ReconcileOptions } from './provider.ts';

/** Where Stripe's hosted checkout lives: the form page's CSP must let its form lead there (Chrome enforces form-action on redirects). */
const checkoutOrigin = 'https://checkout.stripe.com';
const cause: Cause = { by: { kind: 'job', id: 'stripe' } };
/** Open checkouts younger than this are left to their webhook; older ones are asked about. */
export const reconcileAfterMs = 3600_000;
/** Checkouts asked about per reconciliation run; the rest wait for the next run. */
const reconcileBatch = 200;
/** Stripe's events are a few KB; a webhook body past this is not one. */
const webhookBodyLimit = 512 * 1024;
/** The return page reloads itself while the payment is unconfirmed, for at most this long after the checkout opened. */
const refreshSeconds = 5;
const refreshForMs = 3600_000;
const recentCheckoutsListed = 10;
const sessionIdPattern = /^cs_[A-Za-z0-9_]{1,250}$/;
/** A completed checkout whose delayed payment (a bank debit) ended so will never be paid. */
const failedIntentStatuses: string[] = ['requires_payment_method', 'canceled'];

type CheckoutStatus = 'open' | 'credited' | 'held' | 'expired' | 'invalid';
type CheckoutRow = { id: string; email: string; amount_cents: string; created: Date; status: CheckoutStatus };
type Log = (line: string) => void;
type Settled = 'credited' | 'duplicate' | 'held' | 'unpaid' | 'ignored';

const webhookPath = '/payment/stripe/webhook';

export function stripeProvider(config: StripeConfig, deps: ProviderDeps): PaymentProvider {
  const billing = new StripeBilling(config, deps);
  return {
    id: 'stripe',
    label: 'Card (Stripe)',
    path: '/payment/stripe',
    webhookPath,
    routes: (app) => stripeRoutes(app, billing, deps),
    reconcile: (options) => billing.reconcile(options),
  };
}

/** The SDK's options: another API origin for tests and stripe-mock, bounded waits and retries. */
function clientOptions(config: StripeConfig): ConstructorParameters<typeof Stripe>[1] {
  const options = { maxNetworkRetries: 2, timeout: 20_000, telemetry: false, appInfo: { name: 'capsul' } };
  if (!config.apiBase) return options;
  const url = new URL(config.apiBase);
  const protocol = url.protocol === 'http:' ? 'http' as const : 'https' as const;
  return { ...options, host: url.hostname, port: url.port || (protocol === 'http' ? 80 : 443), protocol };
}

const idOf = (value: string | { id: string } | null | undefined): string | null => (typeof value === 'string' ? value : value?.id ?? null);
const stripeTime = (seconds: number) => new Date(seconds * 1000);

class StripeBilling {
  readonly stripe: Stripe;

  constructor(private readonly config: StripeConfig, private readonly deps: ProviderDeps) {
    this.stripe = new Stripe(config.secretKey, clientOptions(config));
  }

  /** The signed event in a webhook body, or null when the signature (or its age) does not verify. */
  verify(body: unknown, signature: string | string[] | undefined): Stripe.Event | null {
    if (!Buffer.isBuffer(body) || typeof signature !== 'string') return null;
    try {
      // The age of the signature is measured on capsul's clock, the one every other time here comes from.
      return this.stripe.webhooks.constructEvent(body, signature, this.config.webhookSecret, undefined, undefined, this.deps.now().getTime());
    } catch {
      return null;
    }
  }

  /** Acts on one verified event; what it did, for the log. Errors (the database, Stripe) surface so Stripe retries. */
  async handle(event: Stripe.Event, log: Log): Promise<string> {
    const at = stripeTime(event.created);
    switch (event.type) {
      case 'checkout.session.completed':
      case 'checkout.session.async_payment_succeeded':
        return this.settle(event.data.object, at, this.deps.now(), log);
      case 'checkout.session.expired':
        return (await this.mark(event.data.object.id, 'expired', this.deps.now())) ? 'expired' : 'unchanged';
      case 'checkout.session.async_payment_failed':
        return (await this.mark(event.data.object.id, 'invalid', this.deps.now())) ? 'payment failed' : 'unchanged';
      case 'charge.dispute.funds_withdrawn':
      case 'charge.dispute.funds_reinstated': {
        const dispute = event.data.object;
        const reinstated = event.type === 'charge.dispute.funds_reinstated';
        return this.correct(idOf(dispute.payment_intent), log, async (paymentId) => {
          const reason = reinstated
            ? `chargeback reversed: Stripe dispute ${dispute.id} funds reinstated`
            : `chargeback: Stripe dispute ${dispute.id} funds withdrawn`;
          const options = { effectiveAt: at };
          const { changed } = reinstated
            ? await this.deps.ledger.reinstatePayment(paymentId, reason, cause, options)
            : await this.deps.ledger.invalidatePayment(paymentId, reason, cause, options);
          return changed;
        });
      }
      case 'charge.refunded': {
        const charge = event.data.object;
        if (charge.amount_refunded <= 0) return 'ignored: nothing refunded';
        return this.correct(idOf(charge.payment_intent), log, async (paymentId) => {
          const { changed } = await this.deps.ledger.recordRefund({
            paymentId, totalRefundedCents: charge.amount_refunded, reference: charge.id, effectiveAt: at, cause,
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
  async settle(session: Stripe.Checkout.Session, paidAt: Date, now: Date, log: Log): Promise<Settled> {
    if (session.mode !== 'payment') return 'ignored';
    if (session.payment_status !== 'paid') return 'unpaid'; // a delayed method: async_payment_succeeded follows
    const reference = idOf(session.payment_intent);
    if (reference === null) return 'ignored';
    const amountCents: Cents = session.amount_total ?? 0;
    const { rows } = await this.deps.pool.query<CheckoutRow>(
      `SELECT id, email, amount_cents, created, status FROM provider_checkouts WHERE provider = 'stripe' AND id = $1`, [session.id],
    );
    const checkout = rows[0];
    const hold = async (reason: string) => {
      await holdPayment({ ...this.deps, now: () => now, log }, {
        provider: 'stripe', reference, amountCents, reason,
        email: checkout?.email ?? session.metadata?.capsul_email ?? session.customer_details?.email ?? null,
        expectedCents: checkout ? Number(checkout.amount_cents) : null,
      });
      if (checkout) await this.mark(session.id, 'held', now);
      return 'held' as const;
    };
    if (!checkout) return hold(`Stripe checkout session ${session.id} is not one capsul opened`);
    if (session.currency !== 'usd' || amountCents !== Number(checkout.amount_cents)) {
      return hold(`Stripe checkout session ${session.id} was paid ${formatCents(amountCents)} ${(session.currency ?? '?').toUpperCase()}, not the USD amount capsul asked for`);
    }
    let recorded: { paymentId: number; duplicate: boolean };
    try {
      // Stripe's clock may run a little ahead of ours: a payment is never received in capsul's future.
      const receivedAt = new Date(Math.min(paidAt.getTime(), this.deps.now().getTime()));
      recorded = await this.deps.ledger.recordPayment({
        email: checkout.email, amountCents, reference, receivedAt, provider: 'stripe', cause,
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
      const { data } = await this.stripe.checkout.sessions.list({ payment_intent: paymentIntent, limit: 1, expand: ['data.payment_intent'] });
      if (data[0]) await this.settle(data[0], paidAtOf(data[0], this.deps.now()), this.deps.now(), log);
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

  /** Opens a Checkout Session for the amount and records it; the address to send the customer to. */
  async openCheckout(email: string, amountCents: Cents): Promise<string> {
    const now = this.deps.now();
    const open = await openCheckoutsToday(this.deps.pool, 'stripe', email, now);
    if (open >= maxOpenCheckoutsPerDay) {
      throw refused(`you have ${open} unfinished card payments from the last day: finish one of them, or try again tomorrow`);
    }
    const base = this.deps.baseUrl.replace(/\/+$/, '');
    const session = await this.stripe.checkout.sessions.create({
      mode: 'payment',
      line_items: [{
        quantity: 1,
        price_data: { currency: 'usd', unit_amount: amountCents, product_data: { name: 'capsul account credit', description: `Funds for ${email}` } },
      }],
      customer_email: email,
      client_reference_id: email.length <= 200 ? email : undefined,
      metadata: { capsul_email: email },
      payment_intent_data: { metadata: { capsul_email: email } },
      success_url: `${base}/payment/stripe/success?session_id={CHECKOUT_SESSION_ID}`,
      cancel_url: `${base}/payment/stripe?cancelled=1`,
    });
    if (!session.url) throw new Error(`Stripe opened checkout session ${session.id} without an address to send the customer to`);
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
    if (failed > 0) throw new Error(`${failed} of ${rows.length} open checkouts could not be checked (see above); the next run tries again`);
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
      if (dryRun) return log(`would settle checkout ${id}: Stripe says ${formatCents(session.amount_total ?? 0)} ${(session.currency ?? '').toUpperCase()} was paid and its webhook never came`);
      const outcome = await this.settle(session, paidAtOf(session, now), now, log);
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

/** When a checkout was paid, from its payment intent (expanded) when Stripe gave it. */
function paidAtOf(session: Stripe.Checkout.Session, fallback: Date): Date {
  const intent = session.payment_intent;
  return intent !== null && typeof intent === 'object' ? stripeTime(intent.created) : fallback;
}

// ---- Pages and the webhook --------------------------------------------------------------------

type Body = Record<string, unknown> | undefined;
type FormState = { amount: string; error: string | null; notice: string | null };

const statusCopy: Record<CheckoutStatus, string> = {
  open: 'not paid (yet)',
  credited: 'added to your balance',
  held: 'being checked by an operator',
  expired: 'expired unpaid',
  invalid: 'not completed',
};

async function stripeRoutes(app: FastifyInstance, billing: StripeBilling, deps: ProviderDeps): Promise<void> {
  const limits = { min: dollars(deps.topUpMinCents), max: dollars(deps.topUpMaxCents) };

  const showForm = async (reply: FastifyReply, email: string, state: FormState) => {
    const { rows } = await deps.pool.query<CheckoutRow>(
      `SELECT id, email, amount_cents, created, status FROM provider_checkouts WHERE provider = 'stripe' AND email = $1
       ORDER BY created DESC, id LIMIT $2`, [email, recentCheckoutsListed],
    );
    const recent = rows.map((row) => ({ started: utcMinute(row.created), amount: dollars(Number(row.amount_cents)), status: statusCopy[row.status] }));
    allowFormActionTo(reply, checkoutOrigin);
    return reply.view('stripe.eta', {
      ...state, recent, min: limits.min, max: limits.max,
      minDollars: formatCents(deps.topUpMinCents), maxDollars: formatCents(deps.topUpMaxCents),
    });
  };

  app.get<{ Querystring: { cancelled?: unknown } }>('/payment/stripe', { preHandler: requireCustomer }, async (request, reply) => {
    const notice = request.query.cancelled === '1' ? 'The card payment was cancelled: nothing was charged.' : null;
    return showForm(reply, request.customer!.email, { amount: '', error: null, notice });
  });

  app.post<{ Body: Body }>('/payment/stripe', { preHandler: requireCustomer }, async (request, reply) => {
    const email = request.customer!.email;
    const typed = typeof request.body?.amount === 'string' ? request.body.amount.slice(0, 40) : '';
    let url: string;
    try {
      const amountCents = topUpCents(request.body?.amount, deps);
      url = await billing.openCheckout(email, amountCents);
    } catch (error) {
      if (error instanceof DomainError) {
        const status = error.code === 'invalid' ? 400 : 409;
        return showForm(reply.code(status), email, { amount: typed, error: error.message, notice: null });
      }
      if (!(error instanceof Stripe.errors.StripeError)) throw error;
      request.log.error({ err: error }, 'stripe: opening a checkout session failed');
      const message = 'Stripe did not open the card payment: nothing was charged. Please try again in a moment.';
      return showForm(reply.code(502), email, { amount: typed, error: message, notice: null });
    }
    return reply.redirect(url, 303);
  });

  app.get<{ Querystring: { session_id?: unknown } }>('/payment/stripe/success', { preHandler: requireCustomer }, async (request, reply) => {
    const id = request.query.session_id;
    const { rows } = typeof id === 'string' && sessionIdPattern.test(id)
      ? await deps.pool.query<CheckoutRow>(
        `SELECT id, email, amount_cents, created, status FROM provider_checkouts WHERE provider = 'stripe' AND id = $1 AND email = $2`,
        [id, request.customer!.email],
      )
      : { rows: [] };
    const checkout = rows[0];
    // Another customer's checkout reads as one that does not exist.
    if (!checkout) return reply.code(404).view('stripe-success.eta', { checkout: null, refreshSeconds: 0 });
    const waiting = checkout.status === 'open' && deps.now().getTime() - checkout.created.getTime() < refreshForMs;
    return reply.view('stripe-success.eta', {
      checkout: { amount: dollars(Number(checkout.amount_cents)), status: checkout.status, started: utcMinute(checkout.created) },
      refreshSeconds: waiting ? refreshSeconds : 0,
    });
  });

  // The webhook reads its body as the raw bytes Stripe signed, in a scope of its own.
  await app.register(async (hook) => {
    hook.removeAllContentTypeParsers();
    hook.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: webhookBodyLimit }, (_request, body, done) => done(null, body));
    hook.post(webhookPath, async (request, reply) => {
      const event = billing.verify(request.body, request.headers['stripe-signature']);
      if (!event) {
        request.log.warn('stripe webhook refused: its signature does not verify');
        return reply.code(400).send({ error: 'the Stripe-Signature header does not verify for this body' });
      }
      const outcome = await billing.handle(event, (line) => request.log.info(`stripe webhook: ${line}`));
      request.log.info({ stripeEvent: event.id, type: event.type, outcome }, 'stripe webhook');
      return reply.code(200).send({ received: true });
    });
  });
}


