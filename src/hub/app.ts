// The hub's HTTP application. Plugins in layers: security headers, views, form bodies, sessions and CSRF
// first, then the edge check of every input, then one error handler for everything, then the app's
// routes (/health, the public pages, login, the customer console, admin, the spoke API), each a typed
// plugin (FastifyPluginAsync<Options>) whose route schemas (TypeBox) validate and type its input.
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import helmet from '@fastify/helmet';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import view from '@fastify/view';
import { Eta } from 'eta';
import Fastify, { LogController, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type pg from 'pg';
import { Type } from 'typebox';
import { latestVersion, schemaVersion } from '../db/migrate.ts';
import { DomainError, invalid } from '../domain/shared/errors.ts';
import type { Clock } from '../core/clock.ts';
import type { LogLevel } from '../config.ts';
import { ConcurrencyError } from '../ledger/handle.ts';
import { ledgerServices, type LedgerServices } from '../ledger/services.ts';
import { createMailer, type Mailer } from '../mail/mailer.ts';
import type { ConfiguredProvider } from '../payments/index.ts';
import { installMetrics } from './metrics.ts';
import { providerRoutes } from './payments/index.ts';
import { spokeApi, spokeApiPrefix } from './spoke-api.ts';
import { accountPages } from './web/account.ts';
import { statementPages } from './web/statements.ts';
import type { Issuer } from '../statements/view.ts';
import { adminPages } from './web/admin.ts';
import { authPages } from './web/auth.ts';
import { consolePages } from './web/console.ts';
import type { WebContext } from './web/context.ts';
import { keyPages } from './web/keys.ts';
import { publicPages } from './web/public.ts';
import { installSessions, type SessionDeps } from './web/session.ts';
import { httpStatusOf } from '../core/http-status.ts';

const viewsDir = fileURLToPath(new URL('./web/views/', import.meta.url));

export type HubDeps = {
  /** the process's pool, clock, stream cache, ledger and hosts (src/ledger/services.ts, made by src/server.ts) */
  services?: LedgerServices;
  /** without `services` (a test): the hub makes its own from this pool and clock */
  pool: pg.Pool;
  logger?: boolean | object;
  now?: Clock;
  afterReports?: () => void;
  /** after a customer's or operator's command (a capsul requested or deleted): run the reactions now */
  afterCommands?: () => void;
  supportEmail?: string;
  /** who issues the monthly statements (PROVIDER_NAME, PROVIDER_ADDRESS); default: capsul, no address */
  issuer?: Issuer;
  /** the site's public address, for links in emails; https → Secure cookies */
  baseUrl?: string;
  /** signs cookies; default: a random key (sessions then end with the process) */
  secretKey?: string;
  adminEmails?: readonly string[];
  /** who is told of incidents (OPS_EMAILS); default: adminEmails */
  opsEmails?: readonly string[];
  /** default: development outbox in the temp directory */
  mailer?: Mailer;
  /** development: lines worth printing on the console (login links) */
  announce?: (line: string) => void;
  /** fastify's trustProxy: which proxies' X-Forwarded-For to believe for the client's IP */
  trustProxy?: boolean | string;
  /** the payment providers configured (Stripe, BTCPay): their pages and webhooks */
  providers?: readonly ConfiguredProvider[];
  /** each request's one log line, at this level (LOG_REQUESTS; `silent`: none); default `info` */
  requestLogLevel?: LogLevel;
  /** METRICS_TOKEN: serve /metrics to requests bearing it; unset, no /metrics */
  metricsToken?: string;
};

export async function buildHub(deps: HubDeps): Promise<FastifyInstance> {
  const app = Fastify({
    logger: deps.logger ?? false,
    logController: new RequestLog(deps.requestLogLevel ?? 'info'),
    bodyLimit: 64 * 1024,
    requestTimeout: 30_000,
    trustProxy: deps.trustProxy ?? false,
    // The router cannot match a malformed address (it answers its own bare JSON): send it past the router
    // to a path of no route, where the edge check refuses it like any other input, page or JSON.
    rewriteUrl: (raw) => (addressProblem(raw.url ?? '/') === null ? (raw.url ?? '/') : malformedAddressPath),
    routerOptions: { maxParamLength: maxPathSegmentLength },
  });
  const services = deps.services ?? ledgerServices(deps.pool, { now: deps.now });
  const { now } = services;
  const baseUrl = (deps.baseUrl ?? 'http://localhost:3000').replace(/\/+$/, '');

  // Content-Security-Policy default-src 'self' and the other helmet headers, on every response.
  await app.register(helmet, {
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'self'"],
        baseUri: ["'self'"],
        formAction: ["'self'"],
        frameAncestors: ["'none'"],
        objectSrc: ["'none'"],
        imgSrc: ["'self'", 'data:'],
        styleSrc: ["'self'"],
        scriptSrc: ["'self'"],
      },
    },
  });
  // Templates compiled once and cached (NODE_ENV=development: read again on every request, for editing them).
  const cacheTemplates = process.env.NODE_ENV !== 'development';
  await app.register(view, {
    engine: { eta: new Eta({ views: viewsDir, autoEscape: true, cache: cacheTemplates }) },
    templates: viewsDir,
    production: cacheTemplates,
  });
  const sessionDeps: SessionDeps = {
    pool: deps.pool,
    secretKey: deps.secretKey ?? randomBytes(32).toString('hex'),
    adminEmails: deps.adminEmails ?? [],
    secureCookies: baseUrl.startsWith('https:'),
    now,
    // POSTs that carry no CSRF token: they authenticate otherwise (spoke tokens; provider signatures).
    csrfExempt: [`${spokeApiPrefix}/`, ...(deps.providers ?? []).map((provider) => provider.webhookPath)],
  };
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'buffer' }, (_request, body, done) => {
    try {
      done(null, parseForm(body as Buffer));
    } catch (error) {
      done(error as Error, undefined);
    }
  });
  await installSessions(app, sessionDeps);

  // The edge: every route's input is checked here, after its body is parsed and before anything else
  // looks at it (validation, CSRF, the handler), whatever the route. The rule: "The edge rule", below.
  // (The spoke API checks its bodies field by field itself, stricter, and answers per report, so one
  // poison report does not turn a whole batch away.)
  app.addHook('preValidation', async (request) => {
    const spokeBody = request.originalUrl.startsWith(`${spokeApiPrefix}/`);
    const problem = addressProblem(request.originalUrl) ?? (spokeBody ? null : bodyProblem(request.body));
    if (problem !== null) throw invalid(problem);
  });

  // Set before any route plugin is registered: plugins inherit the handlers in force when they register.
  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (databaseUnavailable(error)) {
      // The database restarting (or cut off): nothing is wrong with the request, try again shortly.
      request.log.warn({ err: error.message }, 'database unavailable');
      reply.header('retry-after', '10');
      if (wantsHtml(request)) {
        return errorPage(
          reply,
          503,
          'Back in a moment',
          'capsul cannot reach its database just now. Nothing was changed; please try again in a minute.',
        );
      }
      return reply.code(503).send({ error: 'the database is unavailable just now: try again shortly' });
    }
    const status = statusOf(error);
    if (status === 500) request.log.error({ err: error }, 'request failed');
    else request.log.info({ err: error.message }, 'request refused');
    const message = status === 500 ? 'something went wrong on our side' : messageOf(error, request);
    if (wantsHtml(request)) {
      return errorPage(
        reply,
        status,
        status === 500 ? 'Something went wrong' : 'That did not work',
        status === 500 ? 'Something went wrong on our side. It has been logged; please try again in a moment.' : message,
      );
    }
    return reply.code(status).send({ error: message });
  });
  app.setNotFoundHandler((request, reply) => {
    if (wantsHtml(request)) return errorPage(reply, 404, 'Page not found', 'There is no page at this address.');
    return reply.code(404).send({ error: 'not found' });
  });

  // Before the routes: every request is counted.
  installMetrics(app, {
    token: deps.metricsToken,
    pool: deps.pool,
    now,
    operatorsToTell: (deps.opsEmails ?? deps.adminEmails ?? []).length > 0,
  });

  await app.register(health, { pool: deps.pool });
  const { hosts } = services;
  const web: WebContext = {
    pool: deps.pool,
    ledger: services.ledger,
    hosts,
    now,
    baseUrl,
    supportEmail: deps.supportEmail ?? 'support@localhost',
    issuer: deps.issuer ?? { name: 'capsul', addressLines: [] },
    afterCommands: deps.afterCommands ?? (() => {}),
    providers: (deps.providers ?? []).map(({ id, label, path }) => ({ id, label, path })),
  };
  const mailer = deps.mailer ?? createMailer({ from: 'capsul <no-reply@localhost>', outboxDir: path.join(os.tmpdir(), 'capsul-outbox') });
  await app.register(publicPages, { pool: deps.pool, supportEmail: deps.supportEmail ?? 'support@localhost' });
  await app.register(authPages, { ...sessionDeps, baseUrl, mailer, announce: deps.announce });
  await app.register(consolePages, web);
  await app.register(keyPages, web);
  await app.register(accountPages, web);
  await app.register(statementPages, web);
  await app.register(adminPages, web);
  for (const provider of deps.providers ?? []) await providerRoutes(app, provider, { pool: deps.pool, now });
  // Spokes heartbeat and poll all day: their routine requests stay out of the info log.
  await app.register(spokeApi, {
    prefix: spokeApiPrefix,
    logLevel: 'warn',
    pool: services.pool,
    cache: services.streams,
    hosts,
    now,
    afterReports: deps.afterReports,
  });

  return app;
}

const healthReport = Type.Object({
  status: Type.Union([Type.Literal('ok'), Type.Literal('schema mismatch'), Type.Literal('unavailable')]),
  database: Type.Union([Type.Literal('ok'), Type.Literal('unreachable')]),
  schemaVersion: Type.Optional(Type.Integer()),
  expectedSchemaVersion: Type.Integer(),
});

/** GET /health: 200 when the database answers with the schema this code expects, 503 otherwise. */
const health: FastifyPluginAsyncTypebox<{ pool: pg.Pool }> = async (app, { pool }) => {
  app.get('/health', { schema: { response: { 200: healthReport, 503: healthReport } } }, async (request, reply) => {
    const expected = latestVersion();
    try {
      const version = await schemaVersion(pool);
      const healthy = version === expected;
      return reply.code(healthy ? 200 : 503).send({
        status: healthy ? 'ok' : 'schema mismatch',
        database: 'ok',
        schemaVersion: version,
        expectedSchemaVersion: expected,
      });
    } catch (error) {
      request.log.error({ err: error }, 'health check: database unreachable');
      return reply.code(503).send({ status: 'unavailable', database: 'unreachable', expectedSchemaVersion: expected });
    }
  });
};

/**
 * One line per request when its answer is sent, at LOG_REQUESTS' level, instead of fastify's two at
 * info; its address without secrets. A failed request is logged by the error handler as well.
 */
class RequestLog extends LogController {
  constructor(private readonly level: LogLevel) {
    super({ disableRequestLogging: level === 'silent' });
  }

  override incomingRequest(): void {}

  override requestCompleted(_error: Error | null, request: FastifyRequest, reply: FastifyReply): void {
    if (this.level === 'silent') return;
    const line = { method: request.method, url: loggableUrl(request.url), statusCode: reply.statusCode, ms: Math.round(reply.elapsedTime) };
    reply.log[this.level](line, 'request');
  }
}

/** A request's address for the log: a login link's token is a secret, and never written down. */
export function loggableUrl(url: string): string {
  return url.replace(/^\/auth\/magic\/[^/?#]*/, '/auth/magic/…');
}

/** Errors that mean the database cannot be reached or is restarting, not that the request was wrong. */
function databaseUnavailable(error: Error & { code?: string }): boolean {
  // Connection refused or reset, the server shutting down or starting (57P01–57P03), the pool timing out.
  return (
    ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', '57P01', '57P02', '57P03'].includes(error.code ?? '') ||
    /^(Connection terminated|timeout exceeded when trying to connect)/.test(error.message)
  );
}

function statusOf(error: FastifyError): number {
  if (error instanceof DomainError) return httpStatusOf(error);
  if (error instanceof ConcurrencyError) return 409;
  return error.statusCode && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 500;
}

function messageOf(error: FastifyError, request: FastifyRequest): string {
  if (error.code?.startsWith('FST_CSRF_'))
    return 'This form has expired or did not come from this site: go back, reload the page and try again.';
  if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return 'What you sent is too large.';
  // A route schema's refusal: the pages name the field in their own words; the spoke API keeps the schema's.
  if (error.validation && !request.originalUrl.startsWith(spokeApiPrefix)) return schemaRefusal(error);
  return error.message;
}

/** What a page says when its route schema refuses the input: which field, and what to do (no page of ours sends that). */
function schemaRefusal({ validation = [], validationContext }: FastifyError): string {
  const [first] = validation;
  const missing = first?.params.missingProperty;
  const field = typeof missing === 'string' ? missing : (first?.instancePath.split('/')[1] ?? '');
  if (validationContext === 'body') {
    return field === ''
      ? 'What you sent is not a form of this page: reload the page and try again.'
      : `the form's ${field} field is not what this page sends: reload the page and try again`;
  }
  return field === ''
    ? 'This address is not one of this site: check it and try again.'
    : `the address's ${field} parameter is not what this site's links carry: check it and try again`;
}

/** Browsers get pages; spokes and scripts get JSON. */
function wantsHtml(request: FastifyRequest): boolean {
  return !request.originalUrl.startsWith(spokeApiPrefix) && (request.headers.accept ?? '').includes('text/html');
}

// ---- The edge rule --------------------------------------------------------------------------------
// Text from outside is well-formed UTF-8 and holds no control character (Unicode Cc: U+0000–U+001F,
// U+007F–U+009F), in the address (path, route parameters, query string), in form and JSON field names,
// and in their values, with one exception: tab, line feed and carriage return inside a value of a form
// or JSON body, where textareas (a pasted SSH key) and the spokes' multi-line failure
// reports live. Anything else is refused with 400 before any handler runs: PostgreSQL text cannot hold
// NUL, and no field of capsul means anything by the others. Which characters a single field takes
// beyond that (an email, a key's name, a return path) is that field's own rule. Bodies read as raw
// bytes (the payment webhooks) are checked by their own routes, after their signatures.

/** Where rewriteUrl sends a malformed address: no route is there, and the edge hook refuses the request first. */
const malformedAddressPath = '/-/malformed-address';
const controlCharacter = /\p{Cc}/u;
/** A control character a body value may not hold (tab, line feed and carriage return it may). */
const controlInValue = /(?![\t\n\r])\p{Cc}/u;
/** Half of a UTF-16 surrogate pair on its own (a JSON \ud800): no text at all, and PostgreSQL refuses it. */
const loneSurrogate = /\p{Cs}/u;
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });
/** The router's limit on a route parameter, as sent: a longer segment is refused here, with the site's page. */
const maxPathSegmentLength = 100;

/** Why an address (path and query, as sent) cannot be taken, or null. */
function addressProblem(url: string): string | null {
  // Browsers percent-encode everything else; raw spaces, controls and non-ASCII bytes are no address.
  if (!/^[\x21-\x7e]*$/.test(url)) return 'This address holds characters that are not allowed in one: check it and try again.';
  let decoded: string;
  try {
    decoded = decodeURIComponent(url);
  } catch {
    return 'This address is malformed: a %-escape in it is not valid UTF-8 text.';
  }
  const control = controlCharacter.exec(decoded);
  if (control) return `This address holds a control character (${codePoint(control[0])}), which no page here takes.`;
  const path = url.split('?', 1)[0]!;
  if (path.split('/').some((segment) => segment.length > maxPathSegmentLength)) {
    return `This address is too long: a part of it between slashes has more than ${maxPathSegmentLength} characters.`;
  }
  return null;
}

/** Why a parsed body (form fields, JSON) cannot be taken, or null; walked without recursion, whatever its depth. */
function bodyProblem(body: unknown): string | null {
  if (Buffer.isBuffer(body)) return null;
  const pending: [value: unknown, field: string][] = [[body, 'body']];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const [value, field] = next;
    if (typeof value === 'string') {
      const problem = textProblem(value, controlInValue);
      if (problem !== null) return `The field ${fieldName(field)} ${problem}: remove it and try again.`;
    } else if (Array.isArray(value)) {
      for (const item of value) pending.push([item, field]);
    } else if (typeof value === 'object' && value !== null) {
      for (const [name, item] of Object.entries(value)) {
        const problem = textProblem(name, controlCharacter);
        if (problem !== null) return `A field name ${problem}: no form of this site sends that.`;
        // Named by its top-level field (a form's field, a JSON body's member): what a sender can find it by.
        pending.push([item, field === 'body' ? name : field]);
      }
    }
  }
  return null;
}

function textProblem(text: string, control: RegExp): string | null {
  if (loneSurrogate.test(text)) return 'is not valid Unicode text (it holds half of a surrogate pair)';
  const found = control.exec(text);
  return found ? `holds a control character (${codePoint(found[0])}), which no field here takes` : null;
}

/** A field's name for a message: quoted, short, and with anything unprintable escaped. */
function fieldName(name: string): string {
  return JSON.stringify(name.slice(0, 60)).replace(/[^\x20-\x7e]/g, (unit) => `\\u${unit.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

const codePoint = (character: string) => `U+${character.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;

/**
 * An application/x-www-form-urlencoded body as fields (a repeated name → its values in order), refusing
 * what no browser sends: bytes that are not UTF-8, and %-escapes that do not decode to UTF-8 text.
 */
export function parseForm(body: Buffer): Record<string, string | string[]> {
  let text: string;
  try {
    text = strictUtf8.decode(body);
  } catch {
    throw invalid('What you sent is not UTF-8 text: reload the page and try again.');
  }
  const form: Record<string, string | string[]> = Object.create(null);
  for (const pair of text.split('&')) {
    if (pair === '') continue;
    const equals = pair.indexOf('=');
    const name = formDecode(equals < 0 ? pair : pair.slice(0, equals));
    const value = formDecode(equals < 0 ? '' : pair.slice(equals + 1));
    const earlier = form[name];
    if (earlier === undefined) form[name] = value;
    else if (Array.isArray(earlier)) earlier.push(value);
    else form[name] = [earlier, value];
  }
  return form;
}

function formDecode(text: string): string {
  try {
    return decodeURIComponent(text.replaceAll('+', ' '));
  } catch {
    throw invalid('What you sent is malformed: a %-escape in it is not valid UTF-8 text.');
  }
}

function errorPage(reply: FastifyReply, status: number, title: string, message: string) {
  return reply.code(status).view('error.eta', { title, message });
}
