// Web tests over real HTTP (fastify.inject) against a real database: a hub with a development outbox
// in a temp dir and a settable clock, and a small browser-like client that keeps cookies, reads the
// CSRF token out of each page's forms and logs in through the real email link.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { buildHub, type HubDeps } from '../../src/hub/app.ts';
import { createMailer, latestOutboxMessage, type Mailer } from '../../src/mail/mailer.ts';
import { testDatabase, type TestDatabase } from './db.ts';

export type WebHarness = {
  db: TestDatabase;
  hub: FastifyInstance;
  outboxDir: string;
  /** the mailer the hub sends with (into outboxDir) */
  mailer: Mailer;
  /** the hub's clock: tests move it with `clock.set(...)` / `clock.advance(ms)` */
  clock: { now(): Date; set(date: Date): void; advance(ms: number): void };
  client(): WebClient;
  /** a client logged in as `email` through the real login link */
  loggedIn(email: string): Promise<WebClient>;
  close(): Promise<void>;
};

export async function webHarness(options: Partial<HubDeps> & { host?: boolean; start?: Date } = {}): Promise<WebHarness> {
  let current = options.start ?? new Date('2026-11-01T12:00:00Z');
  const clock = {
    now: () => current,
    set: (date: Date) => {
      current = date;
    },
    advance: (ms: number) => {
      current = new Date(current.getTime() + ms);
    },
  };
  const db = await testDatabase({ now: clock.now, host: options.host });
  const outboxDir = mkdtempSync(path.join(os.tmpdir(), 'capsul-outbox-'));
  const mailer = options.mailer ?? createMailer({ from: 'capsul <no-reply@capsul.test>', outboxDir });
  const hub = await buildHub({
    pool: db.pool,
    now: clock.now,
    baseUrl: 'http://capsul.test',
    secretKey: 'k'.repeat(64),
    ...options,
    mailer,
  });
  const harness: WebHarness = {
    db,
    hub,
    outboxDir,
    mailer,
    clock,
    client: () => new WebClient(hub),
    async loggedIn(email) {
      const client = new WebClient(hub);
      await client.login(email, outboxDir);
      return client;
    },
    async close() {
      await hub.close();
      await db.close();
      rmSync(outboxDir, { recursive: true, force: true });
    },
  };
  return harness;
}

/** The login link in the newest email to `email` that has one, as a path (/auth/magic/…). */
export async function loginLinkFor(outboxDir: string, email: string): Promise<string> {
  const magicLink = /https?:\/\/[^/\s]+(\/auth\/magic\/[A-Za-z0-9_-]+)/;
  const message = await latestOutboxMessage(outboxDir, email, magicLink);
  assert.ok(message, `no email with a login link to ${email} in the outbox`);
  const link = magicLink.exec(message)?.[1];
  assert.ok(link, `no login link in the email to ${email}`);
  return link;
}

let clients = 0;

export class WebClient {
  private readonly cookies = new Map<string, string>();
  /** the CSRF token of the last page fetched that had a form */
  csrf = '';
  /** each client comes from an address of its own, as different browsers would (per-IP limits) */
  readonly ip: string;

  constructor(private readonly hub: FastifyInstance) {
    clients++;
    this.ip = `10.${(clients >> 16) & 255}.${(clients >> 8) & 255}.${clients & 255}`;
  }

  get cookieHeader(): string {
    return [...this.cookies].map(([name, value]) => `${name}=${value}`).join('; ');
  }

  async get(url: string, headers: Record<string, string> = {}): Promise<LightMyRequestResponse> {
    const response = await this.hub.inject({
      method: 'GET',
      url,
      remoteAddress: this.ip,
      headers: { accept: 'text/html', cookie: this.cookieHeader, ...headers },
    });
    this.keep(response);
    return response;
  }

  /**
   * A form POST (urlencoded). `_csrf` is the last page's token unless the form gives one (pass
   * `_csrf: null` to send none). Arrays become repeated fields (checkboxes).
   */
  async post(
    url: string,
    form: Record<string, string | string[] | null> = {},
    headers: Record<string, string> = {},
  ): Promise<LightMyRequestResponse> {
    const body = new URLSearchParams();
    const fields = { _csrf: this.csrf, ...form };
    for (const [name, value] of Object.entries(fields)) {
      if (value === null) continue;
      for (const item of Array.isArray(value) ? value : [value]) body.append(name, item);
    }
    const response = await this.hub.inject({
      method: 'POST',
      url,
      payload: body.toString(),
      remoteAddress: this.ip,
      headers: { accept: 'text/html', 'content-type': 'application/x-www-form-urlencoded', cookie: this.cookieHeader, ...headers },
    });
    this.keep(response);
    return response;
  }

  /** GET a page (keeping its CSRF token), then POST a form to `action`. */
  async submit(pageUrl: string, action: string, form: Record<string, string | string[] | null> = {}): Promise<LightMyRequestResponse> {
    const page = await this.get(pageUrl);
    assert.equal(page.statusCode, 200, `GET ${pageUrl}: ${page.statusCode}`);
    return this.post(action, form);
  }

  async login(email: string, outboxDir: string): Promise<void> {
    const sent = await this.submit('/auth/login', '/auth/login', { email });
    assert.equal(sent.statusCode, 200, `login form: ${sent.statusCode} ${sent.body.slice(0, 300)}`);
    const link = await loginLinkFor(outboxDir, email);
    const done = await this.submit(link, link);
    assert.equal(done.statusCode, 303, `login button: ${done.statusCode}`);
  }

  private keep(response: LightMyRequestResponse): void {
    for (const cookie of response.cookies as { name: string; value: string; maxAge?: number; expires?: Date }[]) {
      const cleared = cookie.value === '' || cookie.maxAge === 0 || (cookie.expires && cookie.expires.getTime() < Date.now());
      if (cleared) this.cookies.delete(cookie.name);
      else this.cookies.set(cookie.name, cookie.value);
    }
    const token = /name="_csrf" value="([^"]+)"/.exec(response.body)?.[1];
    if (token) this.csrf = token;
  }
}
