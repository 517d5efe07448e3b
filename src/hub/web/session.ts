// The web app's cross-cutting layer, installed on the hub's root: signed cookies, a CSRF token checked
// on every POST, the logged-in customer read from the session cookie, what every page's template gets
// (`it.customer`, `it.csrf()`), and the one check of the paths a login may return to. (Form bodies are
// parsed at the edge, in app.ts.)
import { createHash, randomBytes } from 'node:crypto';
import cookie from '@fastify/cookie';
import csrf from '@fastify/csrf-protection';
import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type pg from 'pg';

export type Customer = { email: string; isAdmin: boolean };

declare module 'fastify' {
  interface FastifyRequest {
    /** the logged-in customer, or null */
    customer: Customer | null;
  }
  interface FastifyReply {
    /** the CSRF token for this page's forms (one per response; sets the CSRF cookie when needed) */
    csrfToken(): string;
    /** merged into every template's data by @fastify/view */
    locals: Record<string, unknown>;
  }
}

export type SessionDeps = {
  pool: pg.Pool;
  secretKey: string;
  adminEmails: readonly string[];
  /** Secure cookies: BASE_URL is https */
  secureCookies: boolean;
  now: () => Date;
  /** URL prefixes whose POSTs carry no CSRF token (the spoke API, provider webhooks): they authenticate otherwise */
  csrfExempt: readonly string[];
};

export const sessionCookie = 'capsul_session';
const csrfCookie = 'capsul_csrf';
/** A session ends after this long unused, and after `sessionMaxMs` whatever happens. */
export const sessionIdleMs = 14 * 24 * 3600_000;
export const sessionMaxMs = 90 * 24 * 3600_000;
/** last_seen is written at most this often per session. */
const touchEveryMs = 3600_000;

export const sha256 = (text: string) => createHash('sha256').update(text).digest();

/** Where a reply keeps the CSRF token its page's forms share (made on first use). */
const csrfTokenKey = Symbol('csrfToken');
type ReplyWithToken = FastifyReply & { [csrfTokenKey]?: string | null };

/** Every cookie of ours: HttpOnly, SameSite=Lax, Secure when the site is https. */
const cookieOptions = (deps: Pick<SessionDeps, 'secureCookies'>) => ({
  path: '/',
  httpOnly: true,
  sameSite: 'lax' as const,
  secure: deps.secureCookies,
});

export async function installSessions(app: FastifyInstance, deps: SessionDeps): Promise<void> {
  await app.register(cookie, { secret: deps.secretKey, hook: 'onRequest' });
  await app.register(csrf, { cookieKey: csrfCookie, cookieOpts: { ...cookieOptions(deps), signed: true } });
  await app.register(rateLimit, { global: false });

  app.decorateRequest('customer', null);
  app.decorateReply(csrfTokenKey, null);
  app.decorateReply('csrfToken', function csrfToken(this: ReplyWithToken) {
    this[csrfTokenKey] ??= this.generateCsrf();
    return this[csrfTokenKey];
  });

  const isExempt = (url: string) => deps.csrfExempt.some((prefix) => url.startsWith(prefix));

  app.addHook('onRequest', async (request, reply) => {
    if (isExempt(request.url) || request.url.startsWith('/static/') || request.url === '/health') return;
    request.customer = await customerOf(request, reply, deps);
    reply.locals = { ...reply.locals, customer: request.customer, csrf: () => reply.csrfToken() };
  });

  // Every POST from a page carries the token of the form it came from (double submit against the signed cookie).
  app.addHook('preHandler', (request, reply, done) => {
    if (request.method === 'GET' || request.method === 'HEAD' || isExempt(request.url)) return done();
    app.csrfProtection(request, reply, done);
  });
}

async function customerOf(request: FastifyRequest, reply: FastifyReply, deps: SessionDeps): Promise<Customer | null> {
  const raw = request.cookies[sessionCookie];
  if (!raw) return null;
  const unsigned = request.unsignCookie(raw);
  const idHash = unsigned.valid && unsigned.value ? sha256(unsigned.value) : null;
  const now = deps.now();
  const { rows } = idHash
    ? await deps.pool.query({
        // Every page view asks this: a named statement, planned once per connection.
        name: 'session-customer',
        text: 'SELECT email, last_seen FROM sessions WHERE id_hash = $1 AND expires > $2 AND created > $3',
        values: [idHash, now.toISOString(), new Date(now.getTime() - sessionMaxMs).toISOString()],
      })
    : { rows: [] };
  if (!rows[0]) {
    reply.clearCookie(sessionCookie, cookieOptions(deps));
    return null;
  }
  if (now.getTime() - rows[0].last_seen.getTime() > touchEveryMs) {
    await deps.pool.query('UPDATE sessions SET last_seen = $2, expires = $3 WHERE id_hash = $1', [
      idHash,
      now.toISOString(),
      new Date(now.getTime() + sessionIdleMs).toISOString(),
    ]);
  }
  return { email: rows[0].email, isAdmin: deps.adminEmails.includes(rows[0].email) };
}

/**
 * Records a new session for `email` (a new random id each login) through `db`, the caller's transaction,
 * and returns its id for `setSessionCookie`: the cookie is set only once that transaction has committed.
 */
export async function insertSession(db: pg.ClientBase | pg.Pool, deps: Pick<SessionDeps, 'now'>, email: string): Promise<string> {
  const id = randomBytes(32).toString('base64url');
  const now = deps.now();
  await db.query('INSERT INTO sessions (id_hash, email, created, last_seen, expires) VALUES ($1, $2, $3, $3, $4)', [
    sha256(id),
    email,
    now.toISOString(),
    new Date(now.getTime() + sessionIdleMs).toISOString(),
  ]);
  return id;
}

export function setSessionCookie(reply: FastifyReply, deps: Pick<SessionDeps, 'secureCookies'>, id: string): void {
  reply.setCookie(sessionCookie, id, { ...cookieOptions(deps), signed: true, maxAge: sessionMaxMs / 1000 });
}

/** Deletes the request's session, if it has one, through `db` (default: the pool). */
export async function deleteSession(request: FastifyRequest, db: pg.ClientBase | pg.Pool): Promise<void> {
  const raw = request.cookies[sessionCookie];
  const unsigned = raw ? request.unsignCookie(raw) : null;
  if (unsigned?.valid && unsigned.value) await db.query('DELETE FROM sessions WHERE id_hash = $1', [sha256(unsigned.value)]);
}

export async function endSession(request: FastifyRequest, reply: FastifyReply, deps: SessionDeps): Promise<void> {
  await deleteSession(request, deps.pool);
  reply.clearCookie(sessionCookie, cookieOptions(deps));
}

/** preHandler for customer pages: no session → to the login page, and back here after it. */
export async function requireCustomer(request: FastifyRequest, reply: FastifyReply): Promise<void> {
  if (request.customer) return;
  // After a POST, back to the page the form was on (the Referer's path), if it is one to return to.
  const back = safeReturnPath(request.method === 'GET' ? request.url : refererPath(request.headers.referer));
  return reply.redirect(`/auth/login?next=${encodeURIComponent(back)}`, 303);
}

function refererPath(referer: string | undefined): string | null {
  if (!referer || !URL.canParse(referer)) return null;
  const url = new URL(referer);
  return `${url.pathname}${url.search}`;
}

/** The customer `requireCustomer` let in, for the routes behind it. */
export function signedIn(request: FastifyRequest): Customer {
  if (request.customer === null) throw new Error('a customer page ran without requireCustomer');
  return request.customer;
}

/**
 * preHandler after a plugin's guards, for routes whose schema only attaches its refusal (`attachValidation`):
 * fastify validates before the preHandlers run, and a stranger's or a forged request is answered by the
 * login and CSRF checks first, whatever it sent. The refusal then goes to the one error handler (400).
 */
export async function refuseInvalidInput(request: FastifyRequest): Promise<void> {
  if (request.validationError) throw request.validationError;
}

/** preHandler for /admin: operators only; anyone else is told there is no such page. */
export async function requireAdmin(request: FastifyRequest, reply: FastifyReply): Promise<void> {
  if (!request.customer) return requireCustomer(request, reply);
  if (!request.customer.isAdmin) {
    return reply.code(404).view('error.eta', { title: 'Page not found', message: 'There is no page at this address.' });
  }
}

/** Longest return path kept; a longer one is not a page of ours. */
export const maxReturnPathLength = 500;

/**
 * A page on this site to return to after logging in (`next`, a login link's return_to), or `/console`
 * for anything else. What it returns is safe as a Location header and cannot lead off the site. Kept:
 * at most `maxReturnPathLength` characters of printable ASCII without spaces, whose percent-escapes
 * decode to printable ASCII (an encoded space allowed); both as given and decoded, a path (one leading
 * `/`, not `//`) with no backslash; not a login page itself. So neither `/%EF%BC%8E/…` nor an encoded
 * CR, LF, tab, `/` or `\` slips through (browsers drop tabs and line breaks from addresses and read
 * `\` as `/`; a proxy may decode once more).
 */
export function safeReturnPath(next: unknown): string {
  if (typeof next !== 'string' || next.length > maxReturnPathLength || !/^[\x21-\x7e]+$/.test(next)) return '/console';
  let decoded: string;
  try {
    decoded = decodeURIComponent(next);
  } catch {
    return '/console';
  }
  const sameSitePath = (path: string) =>
    path.startsWith('/') && !path.startsWith('//') && !path.includes('\\') && /^[\x20-\x7e]+$/.test(path);
  if (!sameSitePath(next) || !sameSitePath(decoded) || decoded.startsWith('/auth/')) return '/console';
  return next;
}
