// BTCPay Server's pages and webhook endpoint on the hub: the amount form, the page BTCPay's checkout
// returns to (the invoice as capsul and BTCPay Server see it), and the signed webhook, whose raw bytes go
// to the provider (src/payments/btcpay.ts) to verify and act on.
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import type pg from 'pg';
import { dollars, utcMinute } from '../../core/format.ts';
import { httpStatusOf } from '../../core/http-status.ts';
import { DomainError } from '../../domain/shared/errors.ts';
import { formatCents, type Cents } from '../../domain/shared/money.ts';
import {
  BtcpayError,
  type BtcpayProvider,
  type GreenfieldInvoice,
  invoiceIdPattern,
  maxWebhookBytes,
  returnPath,
} from '../../payments/btcpay.ts';
import { type CheckoutStatus, customersCheckout } from '../../payments/checkouts.ts';
import { CheckoutNotOpened, isSafeLink, topUpCents } from '../../payments/provider.ts';
import { requireCustomer, signedIn } from '../web/session.ts';
import { countDelivery } from './deliveries.ts';
import { allowFormActionTo } from './form-action.ts';
import { type FormLimits, limitsView, topUpLimitsNow } from './top-up.ts';

/** the return page reloads itself while the invoice waits for its payment */
const refreshSeconds = 60;

type ReturnState = 'unpaid' | 'confirming' | 'settling' | 'credited' | 'held' | 'expired' | 'invalid';

/** What the return page tells the customer: the checkout's own status, else BTCPay's view of the invoice. */
export function returnState(status: CheckoutStatus, invoice: GreenfieldInvoice | null): { state: ReturnState; checked: boolean } {
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

export const btcpayRoutes: FastifyPluginAsync<{ provider: BtcpayProvider; pool: pg.Pool; now: () => Date }> = async (
  app,
  { provider, pool, now },
) => {
  // The webhook's signature is over the body exactly as sent: keep it raw (this scope only).
  app.addContentTypeParser('application/json', { parseAs: 'buffer', bodyLimit: maxWebhookBytes }, (_request, body, done) =>
    done(null, body),
  );

  const showForm = (reply: FastifyReply, state: { amount: string; error: string | null }, limits: FormLimits) => {
    allowFormActionTo(reply, provider.checkoutOrigin);
    return reply.view('btcpay.eta', { ...state, ...limitsView(limits) });
  };

  app.get(provider.path, { preHandler: requireCustomer }, async (_request, reply) =>
    showForm(reply, { amount: '', error: null }, await topUpLimitsNow(pool, provider.limits)),
  );

  app.post<{ Body: Record<string, unknown> | undefined }>(provider.path, { preHandler: requireCustomer }, async (request, reply) => {
    const typed = request.body?.amount;
    const limits = await topUpLimitsNow(pool, provider.limits);
    let amountCents: Cents | null = null;
    let link: string;
    try {
      amountCents = topUpCents(typed, limits);
      link = await provider.openCheckout(signedIn(request).email, amountCents);
    } catch (error) {
      if (error instanceof DomainError) {
        const amount = typeof typed === 'string' ? typed.slice(0, 20) : '';
        return showForm(reply.code(httpStatusOf(error)), { amount, error: error.message }, limits);
      }
      if (!(error instanceof CheckoutNotOpened) || amountCents === null) throw error;
      request.log.error({ err: error.message }, 'BTCPay invoice not created');
      return showForm(
        reply.code(502),
        {
          amount: formatCents(amountCents),
          error: 'BTCPay Server could not open an invoice just now: nothing was charged. Try again in a few minutes.',
        },
        limits,
      );
    }
    return reply.redirect(link, 303);
  });

  app.get<{ Querystring: { invoice?: unknown } }>(returnPath, { preHandler: requireCustomer }, async (request, reply) => {
    const asked = typeof request.query.invoice === 'string' && invoiceIdPattern.test(request.query.invoice) ? request.query.invoice : null;
    const checkout = await customersCheckout(pool, 'btcpay', signedIn(request).email, asked);
    if (!checkout && asked) {
      return reply.code(404).view('error.eta', { title: 'Invoice not found', message: 'You have no BTCPay invoice with this id.' });
    }
    if (!checkout) return reply.view('btcpay-return.eta', { invoice: null, refreshSeconds: 0 });
    let current: GreenfieldInvoice | null = null;
    try {
      current = await provider.invoice(checkout.id);
    } catch (error) {
      if (!(error instanceof BtcpayError)) throw error;
      request.log.warn({ err: error.message }, 'BTCPay invoice status not read');
    }
    const shown = returnState(checkout.status, current);
    return reply.view('btcpay-return.eta', {
      invoice: {
        id: checkout.id,
        amount: dollars(Number(checkout.amount_cents)),
        created: utcMinute(checkout.created),
        ...shown,
        payLink: shown.state === 'unpaid' && current && isSafeLink(current.checkoutLink) ? current.checkoutLink : null,
      },
      refreshSeconds: shown.state === 'unpaid' || shown.state === 'confirming' || shown.state === 'settling' ? refreshSeconds : 0,
    });
  });

  app.post(provider.webhookPath, async (request, reply) => {
    const delivery = { body: request.body, headers: request.headers };
    const outcome = await provider.receiveWebhook(delivery, (line) => request.log.info(`btcpay: ${line}`));
    await countDelivery({ pool, now }, provider.id, outcome, request.log);
    switch (outcome.kind) {
      case 'refused':
        request.log.warn(`BTCPay webhook refused: ${outcome.why}`);
        return reply.code(400).send({ error: outcome.why });
      case 'retry':
        // BTCPay Server delivers again later; reconcile catches it if every delivery fails.
        request.log.warn({ ...outcome.about, err: outcome.why }, 'BTCPay webhook not handled: the invoice could not be read');
        return reply.code(503).send({ error: 'the invoice could not be read from BTCPay Server: deliver again later' });
      case 'ignored':
        if (outcome.warn) request.log.warn({ ...outcome.about }, `BTCPay webhook acknowledged, nothing done: ${outcome.why}`);
        return reply.send({ ignored: outcome.why });
      case 'done':
        return reply.send({ ok: true });
      default:
        return outcome satisfies never;
    }
  });
};
