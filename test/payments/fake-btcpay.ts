// A fake BTCPay Server on loopback, speaking enough of the Greenfield API for capsul's client (create an
// invoice, read one) over real HTTP, with invoices a test moves through New → Processing → Settled,
// Expired or Invalid, and the webhook deliveries BTCPay Server would send, signed as it signs them.
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export type FakeInvoiceStatus = 'New' | 'Processing' | 'Settled' | 'Expired' | 'Invalid';
export type WebhookType =
  | 'InvoiceCreated'
  | 'InvoiceReceivedPayment'
  | 'InvoicePaymentSettled'
  | 'InvoiceProcessing'
  | 'InvoiceSettled'
  | 'InvoiceExpired'
  | 'InvoiceInvalid';

export type FakeInvoice = {
  id: string;
  storeId: string;
  amount: string;
  currency: string;
  status: FakeInvoiceStatus;
  additionalStatus: string;
  checkoutLink: string;
  createdTime: number;
  expirationTime: number;
  monitoringExpiration: number;
  metadata: Record<string, unknown>;
  checkout: Record<string, unknown>;
};

export type Delivery = { body: string; headers: Record<string, string> };

export type FakeBtcpay = {
  url: string;
  storeId: string;
  apiKey: string;
  webhookSecret: string;
  /** every request the fake answered or is holding, oldest first */
  requests: { method: string; path: string }[];
  invoice(id: string): FakeInvoice;
  invoices(): FakeInvoice[];
  /** an invoice opened on BTCPay Server's own pages, not by capsul */
  addInvoice(fields: { amount: string; currency?: string; metadata?: Record<string, unknown> }): FakeInvoice;
  /** moves an invoice along, as a payment or an operator would; returns the webhook types BTCPay Server sends for the change */
  move(id: string, status: FakeInvoiceStatus, additionalStatus?: string): WebhookType[];
  /** the store's record of the invoice's amount changes (only an operator's mistake could do this) */
  setAmount(id: string, amount: string): void;
  /** the next `count` API requests are answered 503 */
  failNext(count: number): void;
  /** the next `count` API requests are never answered (until close) */
  hangNext(count: number): void;
  /** the next API request is answered as things stood when it arrived, but only once released */
  pauseNext(): { arrived: Promise<void>; release(): void };
  /** a webhook delivery for the invoice as BTCPay Server sends it; `secret` signs it instead of the webhook's own */
  webhook(invoiceId: string, type: WebhookType, options?: { secret?: string; redelivery?: boolean }): Delivery;
  close(): Promise<void>;
};

const base58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';
const newInvoiceId = () => [...randomBytes(22)].map((byte) => base58[byte % base58.length]).join('');

export function signature(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body, 'utf8').digest('hex')}`;
}

export async function startFakeBtcpay(options: { storeId: string; apiKey: string; webhookSecret: string }): Promise<FakeBtcpay> {
  const invoices = new Map<string, FakeInvoice>();
  const requests: { method: string; path: string }[] = [];
  let failing = 0;
  let hanging = 0;
  let paused: { arrived: () => void; released: Promise<void> } | null = null;
  const held: http.ServerResponse[] = [];
  const webhookId = `wh-${randomUUID().slice(0, 8)}`;
  let url = '';

  const send = (response: http.ServerResponse, status: number, body: unknown) => {
    response.writeHead(status, { 'content-type': 'application/json' });
    response.end(JSON.stringify(body));
  };

  function create(fields: {
    amount: string;
    currency: string;
    metadata: Record<string, unknown>;
    checkout: Record<string, unknown>;
  }): FakeInvoice {
    const id = newInvoiceId();
    const createdTime = Math.floor(Date.now() / 1000);
    const invoice: FakeInvoice = {
      id,
      storeId: options.storeId,
      amount: fields.amount,
      currency: fields.currency,
      status: 'New',
      additionalStatus: 'None',
      checkoutLink: `${url}/i/${id}`,
      createdTime,
      expirationTime: createdTime + 900,
      monitoringExpiration: createdTime + 87_300,
      metadata: fields.metadata,
      checkout: fields.checkout,
    };
    invoices.set(id, invoice);
    return invoice;
  }

  async function handle(request: http.IncomingMessage, response: http.ServerResponse): Promise<void> {
    const path = new URL(request.url ?? '/', 'http://fake').pathname;
    requests.push({ method: request.method ?? '', path });
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    if (hanging > 0) {
      hanging--;
      held.push(response);
      return;
    }
    // Answered as things stand now (a copy: a paused answer must not see later moves).
    const { status, body } = structuredClone(answer(request.method ?? '', path, request.headers.authorization, Buffer.concat(chunks)));
    if (paused) {
      const { arrived, released } = paused;
      paused = null;
      arrived();
      await released;
    }
    send(response, status, body);
  }

  function answer(method: string, path: string, authorization: string | undefined, raw: Buffer): { status: number; body: unknown } {
    if (failing > 0) {
      failing--;
      return { status: 503, body: { code: 'service-unavailable', message: 'The server is restarting' } };
    }
    if (authorization !== `token ${options.apiKey}`) {
      return { status: 401, body: { code: 'unauthenticated', message: 'Authentication is required for accessing this endpoint' } };
    }
    const match = /^\/api\/v1\/stores\/([^/]+)\/invoices(?:\/([^/]+))?$/.exec(path);
    if (!match || decodeURIComponent(match[1]!) !== options.storeId) {
      return { status: 404, body: { code: 'store-not-found', message: 'The store was not found' } };
    }
    const invoiceId = match[2] === undefined ? undefined : decodeURIComponent(match[2]);
    if (method === 'GET' && invoiceId !== undefined) {
      const invoice = invoices.get(invoiceId);
      return invoice
        ? { status: 200, body: invoice }
        : { status: 404, body: { code: 'invoice-not-found', message: 'The invoice was not found' } };
    }
    if (method === 'POST' && invoiceId === undefined) {
      let body: Record<string, unknown>;
      try {
        body = JSON.parse(raw.toString('utf8'));
      } catch {
        return { status: 400, body: { code: 'invalid-json', message: 'The request body is not JSON' } };
      }
      const amount = typeof body.amount === 'number' ? String(body.amount) : body.amount;
      if (typeof amount !== 'string' || !/^\d+(\.\d+)?$/.test(amount))
        return { status: 422, body: [{ path: 'amount', message: 'Amount should be a positive number' }] };
      if (typeof body.currency !== 'string') return { status: 422, body: [{ path: 'currency', message: 'Currency is required' }] };
      const invoice = create({
        amount,
        currency: body.currency,
        metadata: (body.metadata ?? {}) as Record<string, unknown>,
        checkout: (body.checkout ?? {}) as Record<string, unknown>,
      });
      return { status: 200, body: invoice };
    }
    return { status: 405, body: { code: 'method-not-allowed', message: 'Method not allowed' } };
  }

  const server = http.createServer((request, response) => {
    handle(request, response).catch((error) => send(response, 500, { code: 'fake-error', message: String(error) }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const invoice = (id: string) => {
    const found = invoices.get(id);
    if (!found) throw new Error(`the fake has no invoice ${id}`);
    return found;
  };

  return {
    url,
    storeId: options.storeId,
    apiKey: options.apiKey,
    webhookSecret: options.webhookSecret,
    requests,
    invoice,
    invoices: () => [...invoices.values()],
    addInvoice: (fields) =>
      create({ amount: fields.amount, currency: fields.currency ?? 'USD', metadata: fields.metadata ?? {}, checkout: {} }),
    move(id, status, additionalStatus = 'None') {
      const found = invoice(id);
      const from = found.status;
      found.status = status;
      found.additionalStatus = additionalStatus;
      switch (status) {
        case 'New':
          return [];
        case 'Processing':
          return from === 'New' ? ['InvoiceReceivedPayment', 'InvoiceProcessing'] : ['InvoiceProcessing'];
        case 'Settled':
          return from === 'Processing' ? ['InvoicePaymentSettled', 'InvoiceSettled'] : ['InvoiceSettled'];
        case 'Expired':
          return ['InvoiceExpired'];
        case 'Invalid':
          return ['InvoiceInvalid'];
      }
    },
    setAmount(id, amount) {
      invoice(id).amount = amount;
    },
    failNext(count) {
      failing = count;
    },
    hangNext(count) {
      hanging = count;
    },
    pauseNext() {
      let arrived!: () => void;
      let release!: () => void;
      const arrival = new Promise<void>((resolve) => {
        arrived = resolve;
      });
      paused = {
        arrived,
        released: new Promise<void>((resolve) => {
          release = resolve;
        }),
      };
      return { arrived: arrival, release };
    },
    webhook(invoiceId, type, deliveryOptions = {}) {
      const found = invoices.get(invoiceId);
      const payload = {
        deliveryId: randomUUID(),
        webhookId,
        originalDeliveryId: deliveryOptions.redelivery ? randomUUID() : null,
        isRedelivery: deliveryOptions.redelivery ?? false,
        type,
        timestamp: Math.floor(Date.now() / 1000),
        storeId: options.storeId,
        invoiceId,
        metadata: found?.metadata ?? {},
        ...(type === 'InvoiceSettled'
          ? { manuallyMarked: found?.additionalStatus === 'Marked', overPaid: found?.additionalStatus === 'PaidOver' }
          : {}),
        ...(type === 'InvoiceExpired' ? { partiallyPaid: found?.additionalStatus === 'PaidPartial' } : {}),
        ...(type === 'InvoiceInvalid' ? { manuallyMarked: found?.additionalStatus === 'Marked' } : {}),
      };
      const body = JSON.stringify(payload);
      return {
        body,
        headers: {
          'content-type': 'application/json',
          'user-agent': 'BTCPayServer',
          'btcpay-sig': signature(deliveryOptions.secret ?? options.webhookSecret, body),
        },
      };
    },
    async close() {
      for (const response of held) response.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
