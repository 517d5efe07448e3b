// What every payment provider (Stripe, BTCPay Server) gives the rest of capsul: its routes (the
// add-funds form, the return pages, the webhook) and a reconciliation that catches what a missed
// webhook would have said. Money only moves through the ledger's commands, keyed by the provider's
// own ids, so a webhook delivered twice, late or out of order changes nothing more.
import type { FastifyInstance, FastifyReply, preHandlerAsyncHookHandler } from 'fastify';
import { invalid } from '../domain/shared/errors.ts';
import { parseDollars, type Cents } from '../domain/shared/money.ts';
import { dollars } from '../core/format.ts';
import type { Mailer } from '../mail/mailer.ts';
import type { Ledger } from '../ledger/ledger.ts';
import type pg from 'pg';

export type ProviderId = 'stripe' | 'btcpay';

export type ProviderDeps = {
  pool: pg.Pool;
  ledger: Ledger;
  now: () => Date;
  /** the site's public address, for return and webhook URLs */
  baseUrl: string;
  mailer: Mailer;
  /** who hears about held payments */
  adminEmails: readonly string[];
  topUpMinCents: number;
  topUpMaxCents: number;
  /** after money was credited or taken back: let the jobs that follow payments run */
  afterPayments: () => void;
};

export type ReconcileOptions = { now: Date; dryRun: boolean; log: (line: string) => void };

/** What the hub mounting a provider's pages gives them: the check that a customer is logged in. */
export type RouteGuards = { requireCustomer: preHandlerAsyncHookHandler };

export interface PaymentProvider {
  readonly id: ProviderId;
  /** what the add-funds section calls it, e.g. "Card (Stripe)" */
  readonly label: string;
  /** the page with this provider's amount form, e.g. /payment/stripe */
  readonly path: string;
  /** where the provider posts its webhooks: exempt from the CSRF check, verified by signature instead */
  readonly webhookPath: string;
  /**
   * Registers the provider's pages and webhook on the hub (webhooks are exempt from CSRF: signatures
   * instead); the hub hands down how its pages know a customer.
   */
  routes(app: FastifyInstance, guards: RouteGuards): Promise<void>;
  /** the scheduled job: settles checkouts whose webhook never came, expires abandoned ones; changes nothing when dryRun */
  reconcile(options: ReconcileOptions): Promise<void>;
}

/** The top-up typed into a provider's form, in US dollars (a leading $ allowed), within the configured limits. */
export function topUpCents(typed: unknown, limits: Pick<ProviderDeps, 'topUpMinCents' | 'topUpMaxCents'>): Cents {
  if (typed !== undefined && typeof typed !== 'string')
    throw invalid("the form's amount field is not what this page sends: reload the page and try again");
  if (!typed?.trim()) throw invalid('enter an amount in US dollars, like 20 or 20.50');
  const cents = parseDollars(typed.replace(/^\s*\$/, '').slice(0, 40));
  if (cents < limits.topUpMinCents) throw invalid(`the smallest top-up is ${dollars(limits.topUpMinCents)}`);
  if (cents > limits.topUpMaxCents) throw invalid(`the largest top-up is ${dollars(limits.topUpMaxCents)}: for more, write to support`);
  return cents;
}

/**
 * Whether an address a provider answered (a hosted checkout's) is one to send a browser to: http(s) and
 * printable ASCII only, so it is safe as a Location header and in a page's link.
 */
export function isSafeLink(link: string): boolean {
  return /^https?:\/\/[\x21-\x7e]+$/.test(link) && link.length <= 2000 && URL.canParse(link);
}

/**
 * Lets a form page's form lead to a provider's hosted checkout: the POST answers with a redirect
 * there, and browsers hold redirects to the page's CSP form-action too.
 */
export function allowFormActionTo(reply: FastifyReply, origin: string): void {
  const policy = reply.getHeader('content-security-policy');
  if (typeof policy === 'string')
    reply.header('content-security-policy', policy.replace(/form-action ([^;]*)/, `form-action $1 ${origin}`));
}
