// What every payment provider (Stripe, BTCPay Server) gives the rest of capsul: where the hub mounts its
// pages and webhook (the route adapters in src/hub/payments/), and a reconciliation that catches what a
// missed webhook would have said. Money only moves through the ledger's commands, keyed by the
// provider's own ids, so a webhook delivered twice, late or out of order changes nothing more. Nothing
// here knows HTTP: a provider decides and talks to its provider's API; the hub turns that into pages.
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

/** The smallest and largest top-up a provider's form takes. */
export type TopUpLimits = Pick<ProviderDeps, 'topUpMinCents' | 'topUpMaxCents'>;

/** The cheapest size in the catalogue and its month's price: what the smallest top-up must pay for. */
export type CheapestMonth = { size: string; priceCentsPerMonth: Cents };

/**
 * The limits a form takes: the configured ones, with the smallest raised to a month of the cheapest
 * capsul, so that a customer who pays the minimum can create one (a new capsul needs its month in the
 * balance). `raisedFor`: the size it was raised for, which the form names; null when the configured
 * minimum covers it already (or the catalogue is empty).
 */
export function effectiveTopUpLimits(configured: TopUpLimits, cheapest: CheapestMonth | null): TopUpLimits & { raisedFor: string | null } {
  if (cheapest === null || cheapest.priceCentsPerMonth <= configured.topUpMinCents) return { ...configured, raisedFor: null };
  return { topUpMinCents: cheapest.priceCentsPerMonth, topUpMaxCents: configured.topUpMaxCents, raisedFor: cheapest.size };
}

/**
 * What the hub says at start of the configured limits against the catalogue: a warning when a configured
 * minimum (null: none set) does not pay for a month of the cheapest capsul (the forms raise it), an error
 * when not even the largest top-up does (no customer could pay for a capsul: the hub does not start).
 */
export function topUpLimitsCheck(
  configured: { topUpMinCents: Cents | null; topUpMaxCents: Cents },
  cheapest: CheapestMonth | null,
): { warning: string } | { error: string } | null {
  if (cheapest === null) return null;
  const month = `a month of the cheapest capsul (${cheapest.size}, ${dollars(cheapest.priceCentsPerMonth)})`;
  if (configured.topUpMaxCents < cheapest.priceCentsPerMonth) {
    return { error: `TOP_UP_MAX_DOLLARS (${dollars(configured.topUpMaxCents)}) is below ${month}: no top-up could pay for a capsul` };
  }
  if (configured.topUpMinCents !== null && configured.topUpMinCents < cheapest.priceCentsPerMonth) {
    return {
      warning: `TOP_UP_MIN_DOLLARS (${dollars(configured.topUpMinCents)}) is below ${month}: the add-funds forms take at least ${dollars(cheapest.priceCentsPerMonth)}`,
    };
  }
  return null;
}

export type ReconcileOptions = { now: Date; dryRun: boolean; log: (line: string) => void };

export interface PaymentProvider {
  readonly id: ProviderId;
  /** what the add-funds section calls it, e.g. "Card (Stripe)" */
  readonly label: string;
  /** the page with this provider's amount form, e.g. /payment/stripe */
  readonly path: string;
  /** where the provider posts its webhooks: exempt from the CSRF check, verified by signature instead */
  readonly webhookPath: string;
  /** the amounts its form takes */
  readonly limits: TopUpLimits;
  /** where the customer pays (the provider's hosted checkout): the form page's CSP lets its form lead there */
  readonly checkoutOrigin: string;
  /**
   * Opens a checkout at the provider for the amount and records it; the address to send the customer
   * to. Too many unfinished checkouts is a DomainError; the provider failing is CheckoutNotOpened.
   */
  openCheckout(email: string, amountCents: Cents): Promise<string>;
  /** One webhook delivery, from its signature to what it changed (`log` hears each step). */
  receiveWebhook(
    delivery: { body: unknown; headers: Record<string, string | string[] | undefined> },
    log: (line: string) => void,
  ): Promise<WebhookOutcome>;
  /** the scheduled job: settles checkouts whose webhook never came, expires abandoned ones; changes nothing when dryRun */
  reconcile(options: ReconcileOptions): Promise<void>;
}

/** The top-up typed into a provider's form, in US dollars (a leading $ allowed), within the configured limits. */
export function topUpCents(typed: unknown, limits: TopUpLimits): Cents {
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

/** The provider did not open a checkout (unreachable, refused, or answered what capsul cannot use): nothing was charged. */
export class CheckoutNotOpened extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CheckoutNotOpened';
  }
}

/**
 * What became of one signed webhook delivery, for the route adapter to answer: `refused` (not the
 * provider's, or no delivery of it looks like this: 400), `ignored` (acknowledged, nothing done;
 * `warn` when it is worth an operator's look), `retry` (the provider's API did not answer: deliver
 * again), or `done`. `about` names the delivery in the log (the provider's event id, the invoice).
 */
export type WebhookOutcome = (
  | { kind: 'refused'; why: string }
  | { kind: 'ignored'; why: string; warn: boolean }
  | { kind: 'retry'; why: string }
  | { kind: 'done'; what: string }
) & { about?: Record<string, string | null> };
