// The hub's HTTP application. Plugins in layers: security headers, views, sessions and CSRF first,
// then one error handler for everything, then the app's routes (/health, the public pages, login, the
// customer console, admin, the spoke API).
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import helmet from '@fastify/helmet';
import view from '@fastify/view';
import { Eta } from 'eta';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type pg from 'pg';
import { latestVersion, schemaVersion } from '../db/migrate.ts';
import { DomainError } from '../domain/shared/errors.ts';
import { createStreamCache } from '../ledger/cache.ts';
import { ConcurrencyError } from '../ledger/handle.ts';
import { Hosts } from '../ledger/hosts.ts';
import { Ledger } from '../ledger/ledger.ts';
import { createMailer, type Mailer } from '../mail/mailer.ts';
import type { PaymentProvider } from '../payments/provider.ts';
import { spokeApi, spokeApiPrefix } from './spoke-api.ts';
import { accountPages } from './web/account.ts';
import { adminPages } from './web/admin.ts';
import { authPages } from './web/auth.ts';
import { consolePages } from './web/console.ts';
import type { WebContext } from './web/context.ts';
import { keyPages } from './web/keys.ts';
import { publicPages } from './web/public.ts';
import { installSessions, type SessionDeps } from './web/session.ts';

const viewsDir = fileURLToPath(new URL('./web/views/', import.meta.url));

export type HubDeps = {
  pool: pg.Pool;
  logger?: boolean | object;
  now?: () => Date;
  afterReports?: () => void;
  /** after a customer's or operator's command (a capsul requested or deleted): run the reactions now */
  afterCommands?: () => void;
  supportEmail?: string;
  /** the site's public address, for links in emails; https → Secure cookies */
  baseUrl?: string;
  /** signs cookies; default: a random key (sessions then end with the process) */
  secretKey?: string;
  adminEmails?: readonly string[];
  /** default: development outbox in the temp directory */
  mailer?: Mailer;
  /** development: lines worth printing on the console (login links) */
  announce?: (line: string) => void;
  /** fastify's trustProxy: which proxies' X-Forwarded-For to believe for the client's IP */
  trustProxy?: boolean | string;
  /** the ledger the providers also credit through (default: one of the hub's own) */
  ledger?: Ledger;
  /** the payment providers configured (Stripe, BTCPay): their pages and webhooks */
  providers?: readonly PaymentProvider[];
};


export async function buildHub(deps: HubDeps): Promise<FastifyInstance> {
  const app = Fastify({
    logger: deps.logger ?? false,
    bodyLimit: 64 * 1024,
    requestTimeout: 30_000,
    trustProxy: deps.trustProxy ?? false,
  });
  const now = deps.now ?? (() => new Date());
  const baseUrl = (deps.baseUrl ?? 'http://localhost:3000').replace(/\/+$/, '');

  // Content-Security-Policy default-src 'self' and the other helmet headers, on every response.
  await app.register(helmet, {
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'self'"], baseUri: ["'self'"], formAction: ["'self'"], frameAncestors: ["'none'"],
        objectSrc: ["'none'"], imgSrc: ["'self'", 'data:'], styleSrc: ["'self'"], scriptSrc: ["'self'"],
      },
    },
  });
  // Templates compiled once and cached (NODE_ENV=development: read again on every request, for editing them).
  const cacheTemplates = process.env.NODE_ENV !== 'development';
  await app.register(view, {
    engine: { eta: new Eta({ views: viewsDir, autoEscape: true, cache: cacheTemplates }) }, templates: viewsDir, production: cacheTemplates,
  });
  const sessionDeps: SessionDeps = {
    pool: deps.pool, secretKey: deps.secretKey ?? randomBytes(32).toString('hex'), adminEmails: deps.adminEmails ?? [],
    secureCookies: baseUrl.startsWith('https:'), now,
    // POSTs that carry no CSRF token: they authenticate otherwise (spoke tokens; provider signatures).
    csrfExempt: [`${spokeApiPrefix}/`, ...(deps.providers ?? []).map((provider) => provider.webhookPath)],
  };
  await installSessions(app, sessionDeps);

  // Set before any route plugin is registered: plugins inherit the handlers in force when they register.
  app.setErrorHandler((error: Error & { statusCode?: number; code?: string }, request, reply) => {
    const status = statusOf(error);
    if (status === 500) request.log.error({ err: error }, 'request failed');
    else request.log.info({ err: error.message }, 'request refused');
    const message = status === 500 ? 'something went wrong on our side' : messageOf(error);
    if (wantsHtml(request)) {
      return errorPage(reply, status, status === 500 ? 'Something went wrong' : 'That did not work',
        status === 500 ? 'Something went wrong on our side. It has been logged; please try again in a moment.' : message);
    }
    return reply.code(status).send({ error: message });
  });
  app.setNotFoundHandler((request, reply) => {
    if (wantsHtml(request)) return errorPage(reply, 404, 'Page not found', 'There is no page at this address.');
    return reply.code(404).send({ error: 'not found' });
  });

  app.get('/health', async (_request, reply) => {
    const expected = latestVersion();
    try {
      const version = await schemaVersion(deps.pool);
      const healthy = version === expected;
      return reply.code(healthy ? 200 : 503).send({
        status: healthy ? 'ok' : 'schema mismatch',
        database: 'ok',
        schemaVersion: version,
        expectedSchemaVersion: expected,
      });
    } catch (error) {
      app.log.error({ err: error }, 'health check: database unreachable');
      return reply.code(503).send({ status: 'unavailable', database: 'unreachable', expectedSchemaVersion: expected });
    }
  });

  const cache = createStreamCache();
  const hosts = new Hosts({ pool: deps.pool, cache, now: deps.now });
  const web: WebContext = {
    pool: deps.pool, ledger: deps.ledger ?? new Ledger({ pool: deps.pool, now }), hosts, now, baseUrl, supportEmail: deps.supportEmail ?? 'support@localhost',
    afterCommands: deps.afterCommands ?? (() => {}),
    providers: (deps.providers ?? []).map(({ id, label, path }) => ({ id, label, path })),
  };
  const mailer = deps.mailer ?? createMailer({ from: 'capsul <no-reply@localhost>', outboxDir: path.join(os.tmpdir(), 'capsul-outbox') });
  await app.register(publicPages, { pool: deps.pool, supportEmail: deps.supportEmail ?? 'support@localhost' } as never);
  await app.register(authPages, { ...sessionDeps, baseUrl, mailer, announce: deps.announce } as never);
  await app.register(consolePages, web as never);
  await app.register(keyPages, web as never);
  await app.register(accountPages, web as never);
  await app.register(adminPages, web as never);
  for (const provider of deps.providers ?? []) await app.register(async (scope) => provider.routes(scope));
  // Spokes heartbeat and poll all day: their routine requests stay out of the info log.
  await app.register(spokeApi, { prefix: spokeApiPrefix, logLevel: 'warn', pool: deps.pool, cache, hosts, now: deps.now, afterReports: deps.afterReports } as never);

  return app;
}

function statusOf(error: Error & { statusCode?: number }): number {
  if (error instanceof DomainError) return { invalid: 400, not_found: 404, refused: 409, insufficient_funds: 409 }[error.code];
  if (error instanceof ConcurrencyError) return 409;
  return error.statusCode && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 500;
}

function messageOf(error: Error & { code?: string }): string {
  if (error.code?.startsWith('FST_CSRF_')) return 'This form has expired or did not come from this site: go back, reload the page and try again.';
  if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return 'What you sent is too large.';
  return error.message;
}

/** Browsers get pages; spokes and scripts get JSON. */
function wantsHtml(request: FastifyRequest): boolean {
  return !request.url.startsWith(spokeApiPrefix) && (request.headers.accept ?? '').includes('text/html');
}

function errorPage(reply: FastifyReply, status: number, title: string, message: string) {
  return reply.code(status).view('error.eta', { title, message });
}
