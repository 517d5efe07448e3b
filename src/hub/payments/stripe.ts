// Stripe's pages and webhook endpoint on the hub: the amount form, the page Stripe returns to, and the
// signed webhook, whose raw bytes go to the provider (src/payments/stripe.ts) to verify and act on.
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import type pg from 'pg';
import { dollars, utcMinute } from '../../core/format.ts';
import { httpStatusOf } from '../../core/http-status.ts';
import { DomainError } from '../../domain/shared/errors.ts';
import { type CheckoutStatus, customersCheckout, recentCheckouts } from '../../payments/checkouts.ts';
import { CheckoutNotOpened, topUpCents } from '../../payments/provider.ts';
import { sessionIdPattern, type StripeProvider, webhookBodyLimit } from '../../payments/stripe.ts';
import { requireCustomer, signedIn } from '../web/session.ts';
import { countDelivery } from './deliveries.ts';
import { allowFormActionTo } from './form-action.ts';
import { type FormLimits, limitsView, topUpLimitsNow } from './top-up.ts';

/** The return page reloads itself while the payment is unconfirmed, for at most this long after the checkout opened. */
const refreshSeconds = 5;
const refreshForMs = 3600_000;
const recentCheckoutsListed = 10;

const statusCopy: Record<CheckoutStatus, string> = {
  open: 'not paid (yet)',
  credited: 'added to your balance',
  held: 'being checked by an operator',
  expired: 'expired unpaid',
  invalid: 'not completed',
};

type Body = Record<string, unknown> | undefined;
type FormState = { amount: string; error: string | null; notice: string | null };

export const stripeRoutes: FastifyPluginAsync<{ provider: StripeProvider; pool: pg.Pool; now: () => Date }> = async (
  app,
  { provider, pool, now },
) => {
  const showForm = async (reply: FastifyReply, email: string, state: FormState, limits?: FormLimits) => {
    const recent = (await recentCheckouts(pool, 'stripe', email, recentCheckoutsListed)).map((row) => ({
      started: utcMinute(row.created),
      amount: dollars(Number(row.amount_cents)),
      status: statusCopy[row.status],
    }));
    allowFormActionTo(reply, provider.checkoutOrigin);
    return reply.view('stripe.eta', {
      ...state,
      recent,
      ...limitsView(limits ?? (await topUpLimitsNow(pool, provider.limits))),
    });
  };

  app.get<{ Querystring: { cancelled?: unknown } }>(provider.path, { preHandler: requireCustomer }, async (request, reply) => {
    const notice = request.query.cancelled === '1' ? 'The card payment was cancelled: nothing was charged.' : null;
    return showForm(reply, signedIn(request).email, { amount: '', error: null, notice });
  });

  app.post<{ Body: Body }>(provider.path, { preHandler: requireCustomer }, async (request, reply) => {
    const email = signedIn(request).email;
    const typed = typeof request.body?.amount === 'string' ? request.body.amount.slice(0, 40) : '';
    const limits = await topUpLimitsNow(pool, provider.limits);
    let url: string;
    try {
      url = await provider.openCheckout(email, topUpCents(request.body?.amount, limits));
    } catch (error) {
      if (error instanceof DomainError) {
        return showForm(reply.code(httpStatusOf(error)), email, { amount: typed, error: error.message, notice: null }, limits);
      }
      if (!(error instanceof CheckoutNotOpened)) throw error;
      request.log.error({ err: error.cause ?? error }, 'stripe: opening a checkout session failed');
      const message = 'Stripe did not open the card payment: nothing was charged. Please try again in a moment.';
      return showForm(reply.code(502), email, { amount: typed, error: message, notice: null }, limits);
    }
    return reply.redirect(url, 303);
  });

  app.get<{ Querystring: { session_id?: unknown } }>(
    `${provider.path}/success`,
    { preHandler: requireCustomer },
    async (request, reply) => {
      const id = request.query.session_id;
      // Another customer's checkout reads as one that does not exist.
      const checkout =
        typeof id === 'string' && sessionIdPattern.test(id) ? await customersCheckout(pool, 'stripe', signedIn(request).email, id) : null;
      if (!checkout) return reply.code(404).view('stripe-success.eta', { checkout: null, refreshSeconds: 0 });
      const waiting = checkout.status === 'open' && now().getTime() - checkout.created.getTime() < refreshForMs;
      return reply.view('stripe-success.eta', {
        checkout: { amount: dollars(Number(checkout.amount_cents)), status: checkout.status, started: utcMinute(checkout.created) },
        refreshSeconds: waiting ? refreshSeconds : 0,
      });
    },
  );

  // The webhook reads its body as the raw bytes Stripe signed, in a scope of its own.
  await app.register(async (hook) => {
    hook.removeAllContentTypeParsers();
    hook.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: webhookBodyLimit }, (_request, body, done) => done(null, body));
    hook.post(provider.webhookPath, async (request, reply) => {
      const delivery = { body: request.body, headers: request.headers };
      const outcome = await provider.receiveWebhook(delivery, (line) => request.log.info(`stripe webhook: ${line}`));
      await countDelivery({ pool, now }, provider.id, outcome, request.log);
      switch (outcome.kind) {
        case 'refused':
          request.log.warn(`stripe webhook refused: ${outcome.why}`);
          return reply.code(400).send({ error: outcome.why });
        case 'retry':
          // Stripe delivers the event again later; by then its API may answer.
          request.log.warn({ ...outcome.about, err: outcome.why }, "stripe webhook not handled: Stripe's API did not answer");
          return reply.code(503).send({ error: "Stripe's API could not be asked about this event: deliver it again later" });
        case 'ignored':
          // Acknowledged all the same: Stripe would only deliver it again, for days, and it would change nothing then either.
          request.log.warn({ ...outcome.about, why: outcome.why }, 'stripe webhook acknowledged, nothing done: capsul cannot use it');
          return reply.code(200).send({ received: true, ignored: outcome.why });
        case 'done':
          request.log.info({ ...outcome.about, outcome: outcome.what }, 'stripe webhook');
          return reply.code(200).send({ received: true });
        default:
          return outcome satisfies never;
      }
    });
  });
};
