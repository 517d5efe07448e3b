// A fake Stripe API on loopback that the real `stripe` SDK talks to over HTTP: enough of Checkout
// Sessions (create, retrieve, list by payment intent, with `expand`) answered as Stripe answers, errors
// included. Tests play the customer and the card networks through it (pay, dispute, refund, expire),
// each of which returns the event Stripe would send; `signedDelivery` signs an event's body exactly as
// Stripe does (`Stripe-Signature: t=…,v1=HMAC-SHA256(secret, "t.body")`).
import { createHmac, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import Stripe from 'stripe';
import type { StripeConfig } from '../../src/config.ts';

type Json = Record<string, unknown>;

export type FakeSession = {
  id: string;
  object: 'checkout.session';
  amount_subtotal: number;
  amount_total: number;
  cancel_url: string | null;
  client_reference_id: string | null;
  created: number;
  currency: string;
  customer_email: string | null;
  customer_details: { email: string | null } | null;
  expires_at: number;
  livemode: false;
  metadata: Record<string, string>;
  mode: string;
  payment_intent: string | null;
  payment_status: 'unpaid' | 'paid' | 'no_payment_required';
  status: 'open' | 'complete' | 'expired';
  success_url: string | null;
  ui_mode: 'hosted';
  url: string | null;
};

type Intent = { id: string; amount: number; created: number; currency: string; charge: string; metadata: Record<string, string> };
type Charge = {
  id: string;
  amount: number;
  amountRefunded: number;
  created: number;
  currency: string;
  paymentIntent: string;
  disputed: boolean;
};

export type StripeEvent = { id: string; object: 'event'; type: string; created: number; data: { object: Json } };

export type FakeStripe = {
  config: StripeConfig;
  sessions: Map<string, FakeSession>;
  /** every API request, as received */
  requests: { method: string; path: string; params: Json }[];
  /** the customer pays the session (`amountCents`: a different amount than it asked for, as a tampered or misconfigured checkout would) */
  pay(sessionId: string, options?: { at?: Date; amountCents?: number }): StripeEvent;
  /** the session reaches its expiry unpaid */
  expire(sessionId: string, at?: Date): StripeEvent;
  /** the card network takes the money back (a dispute opened), or gives it back (the dispute won) */
  disputeWithdrawn(paymentIntent: string, at: Date, disputeId?: string): StripeEvent;
  disputeReinstated(paymentIntent: string, at: Date, disputeId?: string): StripeEvent;
  /** the operator refunds `amountCents` more of the payment in Stripe's dashboard */
  refund(paymentIntent: string, amountCents: number, at: Date): StripeEvent;
  /** the next `count` API requests fail with a 500, as Stripe does now and then */
  failNext(count: number): void;
  close(): Promise<void>;
};

export const webhookSecret = `whsec_test_${'c'.repeat(32)}`;
const secretKey = `sk_test_fake_${'k'.repeat(24)}`;

const seconds = (date: Date) => Math.floor(date.getTime() / 1000);
const newId = (prefix: string) => `${prefix}_test_${randomBytes(12).toString('hex')}`;

/** A request body or query in Stripe's form encoding (`a[b][0][c]=x`) as nested objects and arrays. */
export function parseStripeForm(text: string): Json {
  const root: Json = {};
  for (const [key, value] of new URLSearchParams(text)) {
    const path = key.split(/\[|\]\[|\]/).filter((part, i) => i === 0 || part !== '');
    let node: Json = root;
    path.forEach((part, i) => {
      if (i === path.length - 1) node[part] = value;
      else node = (node[part] ??= {}) as Json;
    });
  }
  return arrays(root) as Json;
}

function arrays(value: unknown): unknown {
  if (value === null || typeof value !== 'object') return value;
  const entries = Object.entries(value as Json).map(([k, v]) => [k, arrays(v)] as const);
  if (entries.length > 0 && entries.every(([k], i) => k === String(i))) return entries.map(([, v]) => v);
  return Object.fromEntries(entries);
}

class StripeApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: Json,
  ) {
    super(String(body.message));
  }
}
const invalidRequest = (message: string, param?: string, status = 400, code?: string) =>
  new StripeApiError(status, { type: 'invalid_request_error', message, ...(param ? { param } : {}), ...(code ? { code } : {}) });

export async function startFakeStripe(options: { now: () => Date }): Promise<FakeStripe> {
  const sessions = new Map<string, FakeSession>();
  const intents = new Map<string, Intent>();
  const charges = new Map<string, Charge>();
  const idempotent = new Map<string, { status: number; body: string }>();
  const requests: FakeStripe['requests'] = [];
  let failures = 0;
  const now = () => seconds(options.now());

  const intentJson = (intent: Intent): Json => ({
    id: intent.id,
    object: 'payment_intent',
    amount: intent.amount,
    amount_received: intent.amount,
    created: intent.created,
    currency: intent.currency,
    latest_charge: intent.charge,
    livemode: false,
    metadata: intent.metadata,
    status: 'succeeded',
  });
  const chargeJson = (charge: Charge): Json => ({
    id: charge.id,
    object: 'charge',
    amount: charge.amount,
    amount_captured: charge.amount,
    amount_refunded: charge.amountRefunded,
    captured: true,
    created: charge.created,
    currency: charge.currency,
    disputed: charge.disputed,
    livemode: false,
    metadata: {},
    paid: true,
    payment_intent: charge.paymentIntent,
    refunded: charge.amountRefunded === charge.amount,
    status: 'succeeded',
  });
  const sessionJson = (session: FakeSession, expand: string[], prefix = ''): Json => {
    const json: Json = { ...session };
    if (expand.includes(`${prefix}payment_intent`) && session.payment_intent)
      json.payment_intent = intentJson(intents.get(session.payment_intent)!);
    return json;
  };

  function createSession(params: Json): Json {
    const mode = params.mode;
    if (mode !== 'payment' && mode !== 'subscription' && mode !== 'setup') throw invalidRequest('Missing required param: mode.', 'mode');
    if (typeof params.success_url !== 'string') throw invalidRequest('Missing required param: success_url.', 'success_url');
    const lineItems = params.line_items;
    if (!Array.isArray(lineItems) || lineItems.length === 0) {
      throw invalidRequest('You must provide at least one line item in `payment` mode.', 'line_items');
    }
    let amount = 0;
    let currency: string | null = null;
    for (const [i, item] of (lineItems as Json[]).entries()) {
      const price = item.price_data as Json | undefined;
      const unit = Number(price?.unit_amount);
      const quantity = Number(item.quantity ?? 1);
      if (!price || !Number.isSafeInteger(unit) || unit < 0)
        throw invalidRequest('Invalid integer: unit_amount', `line_items[${i}][price_data][unit_amount]`);
      if (typeof price.currency !== 'string')
        throw invalidRequest('Missing required param: currency.', `line_items[${i}][price_data][currency]`);
      if (!(price.product_data as Json | undefined)?.name)
        throw invalidRequest('Missing required param: name.', `line_items[${i}][price_data][product_data][name]`);
      amount += unit * quantity;
      currency = price.currency;
    }
    if (typeof params.customer_email === 'string' && !/^[^@\s]+@[^@\s]+$/.test(params.customer_email)) {
      throw invalidRequest(`Invalid email address: ${params.customer_email}`, 'customer_email');
    }
    const created = now();
    const id = newId('cs');
    const session: FakeSession = {
      id,
      object: 'checkout.session',
      amount_subtotal: amount,
      amount_total: amount,
      cancel_url: (params.cancel_url as string) ?? null,
      client_reference_id: (params.client_reference_id as string) ?? null,
      created,
      currency: currency!,
      customer_email: (params.customer_email as string) ?? null,
      customer_details: null,
      expires_at: created + 86_400,
      livemode: false,
      metadata: (params.metadata as Record<string, string>) ?? {},
      mode,
      payment_intent: null,
      payment_status: 'unpaid',
      status: 'open',
      success_url: params.success_url,
      ui_mode: 'hosted',
      url: `https://checkout.stripe.com/c/pay/${id}`,
    };
    sessions.set(id, session);
    return sessionJson(session, expandOf(params));
  }

  function route(method: string, path: string, params: Json): Json {
    const expand = expandOf(params);
    if (method === 'POST' && path === '/v1/checkout/sessions') return createSession(params);
    if (method === 'GET' && path === '/v1/checkout/sessions') {
      const limit = Math.min(Number(params.limit ?? 10), 100);
      const found = [...sessions.values()]
        .filter((s) => params.payment_intent === undefined || s.payment_intent === params.payment_intent)
        .sort((a, b) => b.created - a.created)
        .slice(0, limit);
      return { object: 'list', data: found.map((s) => sessionJson(s, expand, 'data.')), has_more: false, url: '/v1/checkout/sessions' };
    }
    const match = /^\/v1\/checkout\/sessions\/([^/]+)$/.exec(path);
    if (method === 'GET' && match) {
      const session = sessions.get(decodeURIComponent(match[1]!));
      if (!session)
        throw invalidRequest(`No such checkout.session: '${decodeURIComponent(match[1]!)}'`, 'session', 404, 'resource_missing');
      return sessionJson(session, expand);
    }
    throw invalidRequest(`Unrecognized request URL (${method}: ${path}).`, undefined, 404);
  }

  const server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const url = new URL(request.url ?? '/', 'http://localhost');
      const method = request.method ?? 'GET';
      const params = parseStripeForm(method === 'GET' ? url.search.slice(1) : Buffer.concat(chunks).toString('utf8'));
      requests.push({ method, path: url.pathname, params });
      const send = (status: number, body: string) => {
        response.writeHead(status, { 'content-type': 'application/json', 'request-id': newId('req') });
        response.end(body);
      };
      if (request.headers.authorization !== `Bearer ${secretKey}`) {
        return send(401, JSON.stringify({ error: { type: 'invalid_request_error', message: 'Invalid API Key provided.' } }));
      }
      const key = request.headers['idempotency-key'];
      const replay = typeof key === 'string' ? idempotent.get(key) : undefined;
      if (replay) return send(replay.status, replay.body);
      if (failures > 0) {
        failures--;
        return send(500, JSON.stringify({ error: { type: 'api_error', message: 'An unknown error occurred' } }));
      }
      let status = 200;
      let body: string;
      try {
        body = JSON.stringify(route(method, url.pathname, params));
      } catch (error) {
        if (!(error instanceof StripeApiError)) throw error;
        status = error.status;
        body = JSON.stringify({ error: error.body });
      }
      if (typeof key === 'string' && method === 'POST') idempotent.set(key, { status, body });
      send(status, body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  const event = (type: string, object: Json, at: Date): StripeEvent => ({
    id: newId('evt'),
    object: 'event',
    type,
    created: seconds(at),
    data: { object },
    // What else Stripe puts in every event, for the body to read like Stripe's.
    ...({ api_version: Stripe.API_VERSION, livemode: false, pending_webhooks: 1, request: { id: null, idempotency_key: null } } as object),
  });
  const chargeOf = (paymentIntent: string) => {
    const intent = intents.get(paymentIntent);
    if (!intent) throw new Error(`the fake has no payment intent ${paymentIntent}`);
    return charges.get(intent.charge)!;
  };
  const dispute = (paymentIntent: string, at: Date, id: string, status: string): Json => {
    const charge = chargeOf(paymentIntent);
    charge.disputed = true;
    return {
      id,
      object: 'dispute',
      amount: charge.amount,
      charge: charge.id,
      created: seconds(at),
      currency: charge.currency,
      livemode: false,
      metadata: {},
      payment_intent: paymentIntent,
      reason: 'fraudulent',
      status,
      is_charge_refundable: false,
    };
  };
  const disputeIds = new Map<string, string>();
  const disputeIdOf = (paymentIntent: string, given?: string) => {
    if (given) return given;
    if (!disputeIds.has(paymentIntent)) disputeIds.set(paymentIntent, newId('du'));
    return disputeIds.get(paymentIntent)!;
  };

  return {
    config: { secretKey, webhookSecret, apiBase: `http://127.0.0.1:${port}` },
    sessions,
    requests,
    pay(sessionId, { at = options.now(), amountCents } = {}) {
      const session = sessions.get(sessionId);
      if (!session) throw new Error(`the fake has no checkout session ${sessionId}`);
      if (session.status !== 'open') throw new Error(`checkout session ${sessionId} is ${session.status}, not open`);
      const amount = amountCents ?? session.amount_total;
      const intent: Intent = {
        id: newId('pi'),
        amount,
        created: seconds(at),
        currency: session.currency,
        charge: newId('ch'),
        metadata: session.metadata,
      };
      intents.set(intent.id, intent);
      charges.set(intent.charge, {
        id: intent.charge,
        amount,
        amountRefunded: 0,
        created: seconds(at),
        currency: session.currency,
        paymentIntent: intent.id,
        disputed: false,
      });
      Object.assign(session, {
        status: 'complete',
        payment_status: 'paid',
        payment_intent: intent.id,
        amount_total: amount,
        amount_subtotal: amount,
        url: null,
        customer_details: { email: session.customer_email },
      });
      return event('checkout.session.completed', sessionJson(session, []), at);
    },
    expire(sessionId, at = options.now()) {
      const session = sessions.get(sessionId);
      if (session?.status !== 'open') throw new Error(`checkout session ${sessionId} is not open`);
      Object.assign(session, { status: 'expired', url: null });
      return event('checkout.session.expired', sessionJson(session, []), at);
    },
    disputeWithdrawn(paymentIntent, at, disputeId) {
      return event(
        'charge.dispute.funds_withdrawn',
        dispute(paymentIntent, at, disputeIdOf(paymentIntent, disputeId), 'needs_response'),
        at,
      );
    },
    disputeReinstated(paymentIntent, at, disputeId) {
      return event('charge.dispute.funds_reinstated', dispute(paymentIntent, at, disputeIdOf(paymentIntent, disputeId), 'won'), at);
    },
    refund(paymentIntent, amountCents, at) {
      const charge = chargeOf(paymentIntent);
      if (charge.amountRefunded + amountCents > charge.amount) throw new Error(`refunding ${amountCents} more exceeds charge ${charge.id}`);
      charge.amountRefunded += amountCents;
      return event('charge.refunded', chargeJson(charge), at);
    },
    failNext(count) {
      failures = count;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function expandOf(params: Json): string[] {
  const expand = params.expand;
  return Array.isArray(expand) ? expand.map(String) : typeof expand === 'string' ? [expand] : [];
}

/** An event's body and its Stripe-Signature header, signed at `at` as Stripe signs every delivery. */
export function signedDelivery(event: object, options: { at: Date; secret?: string }): { body: string; signature: string } {
  const body = JSON.stringify(event, null, 2);
  const t = seconds(options.at);
  const v1 = createHmac('sha256', options.secret ?? webhookSecret)
    .update(`${t}.${body}`, 'utf8')
    .digest('hex');
  return { body, signature: `t=${t},v1=${v1}` };
}
