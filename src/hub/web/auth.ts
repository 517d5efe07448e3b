// Logging in by email: the form sends a one-time link; opening the link shows a page whose button
// logs in (a GET never consumes the token, so mail scanners that follow links cannot burn it).
// Tokens have 256 random bits, are stored only as SHA-256, work once, expire after 20 minutes, and
// a login voids every other open token of that email. The page to return to is checked where the link
// is asked for and again before the button consumes anything, and the button's whole step (token used,
// other links voided, session recorded) is one transaction: a step that fails consumes nothing.
import { randomBytes } from 'node:crypto';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply } from 'fastify';
import { Type } from 'typebox';
import { canonicalEmail } from '../../domain/shared/email.ts';
import { DomainError } from '../../domain/shared/errors.ts';
import { inTransaction } from '../../db/transaction.ts';
import type { Mailer } from '../../mail/mailer.ts';
import {
  deleteSession,
  endSession,
  insertSession,
  refuseInvalidInput,
  safeReturnPath,
  setSessionCookie,
  sha256,
  type SessionDeps,
} from './session.ts';

export const loginTokenLifetimeMs = 20 * 60_000;
/** Login links one email may be sent per hour, and one IP may ask for per hour. */
export const loginLinksPerEmailPerHour = 5;
export const loginLinksPerIpPerHour = 30;

export type AuthPagesOptions = SessionDeps & {
  baseUrl: string;
  mailer: Mailer;
  /** development: the link is also printed here (no SMTP configured) */
  announce?: (line: string) => void;
};

/** 32 random bytes in base64url: anything else in a link's place was never a token. */
const tokenPattern = /^[A-Za-z0-9_-]{43}$/;

// Where to go after logging in is any text here: safeReturnPath keeps it only if it is a page of ours.
const loginQuery = Type.Object({ next: Type.Optional(Type.String()) });
const loginForm = Type.Object({ email: Type.Optional(Type.String()), next: Type.Optional(Type.String()) });
// Any text: a link that is not a token is answered as an expired one, not as a malformed address.
const magicLink = Type.Object({ token: Type.String() });

export const authPages: FastifyPluginAsyncTypebox<AuthPagesOptions> = async (app, deps) => {
  // A flood guard per IP in front of the auth forms; the hourly limits below are kept in the database.
  const flood = { rateLimit: { max: 20, timeWindow: 60_000 } };
  app.addHook('preHandler', refuseInvalidInput);

  app.get('/auth/login', { schema: { querystring: loginQuery }, attachValidation: true }, async (request, reply) => {
    if (request.customer) return reply.redirect(safeReturnPath(request.query.next), 303);
    return reply.view('login.eta', { email: '', next: safeReturnPath(request.query.next), error: null });
  });

  app.post('/auth/login', { schema: { body: loginForm }, attachValidation: true, config: flood }, async (request, reply) => {
    const next = safeReturnPath(request.body.next);
    const typed = (request.body.email ?? '').slice(0, 300);
    let email: string;
    try {
      email = canonicalEmail(typed);
    } catch (error) {
      if (!(error instanceof DomainError)) throw error;
      // The refusal says what is wrong (an invisible character pasted along, a domain without a dot…).
      return reply.code(400).view('login.eta', { email: typed, next, error: `${error.message}. Check it and try again.` });
    }
    const now = deps.now();
    const hourAgo = new Date(now.getTime() - 3600_000).toISOString();
    const { rows } = await deps.pool.query(
      `SELECT count(*) FILTER (WHERE email = $1)::int AS by_email, count(*) FILTER (WHERE requested_by = $2)::int AS by_ip
       FROM login_tokens WHERE created > $3 AND (email = $1 OR requested_by = $2)`,
      [email, request.ip, hourAgo],
    );
    if (rows[0].by_email >= loginLinksPerEmailPerHour || rows[0].by_ip >= loginLinksPerIpPerHour) {
      request.log.info({ byEmail: rows[0].by_email, byIp: rows[0].by_ip }, 'login link refused: hourly limit');
      return reply.code(429).view('login.eta', {
        email: typed,
        next,
        error: 'Too many login links were asked for in the last hour. Use the newest link you received, or try again later.',
      });
    }
    const token = randomBytes(32).toString('base64url');
    await deps.pool.query(
      `INSERT INTO login_tokens (token_hash, email, created, expires, return_to, requested_by) VALUES ($1, $2, $3, $4, $5, $6)`,
      [sha256(token), email, now.toISOString(), new Date(now.getTime() + loginTokenLifetimeMs).toISOString(), next, request.ip],
    );
    const link = `${deps.baseUrl}/auth/magic/${token}`;
    await deps.mailer.send({
      to: email,
      subject: 'Your capsul login link',
      text: [
        'Hello,',
        '',
        `Someone (hopefully you) asked to log in to capsul as ${email}.`,
        'Open this link within 20 minutes and press the button to log in:',
        '',
        link,
        '',
        'The link works once. If you did not ask for it, ignore this email: nothing happens without the button.',
        '',
      ].join('\n'),
    });
    if (deps.mailer.outboxDir !== null) deps.announce?.(`login link for ${email}: ${link}`);
    return reply.view('login-sent.eta', { email });
  });

  app.get('/auth/magic/:token', { schema: { params: magicLink }, attachValidation: true }, async (request, reply) => {
    const row = await openToken(request.params.token);
    if (!row) return expired(reply);
    return reply.header('referrer-policy', 'no-referrer').view('magic.eta', { email: row.email, token: request.params.token });
  });

  app.post('/auth/magic/:token', { schema: { params: magicLink }, attachValidation: true, config: flood }, async (request, reply) => {
    if (!tokenPattern.test(request.params.token)) return expired(reply);
    const now = deps.now().toISOString();
    // All or nothing: if any part fails, the token, the email's other links and any old session stay as they were.
    const login = await inTransaction(deps.pool, async (db) => {
      // Consumed once: a second press (or a second tab) finds it used; the email's other links go with it.
      const {
        rows: [token],
      } = await db.query<{ email: string; return_to: string | null }>(
        `UPDATE login_tokens SET used = $2 WHERE token_hash = $1 AND used IS NULL AND expires > $2 RETURNING email, return_to`,
        [sha256(request.params.token), now],
      );
      if (!token) return null;
      // Rows written before return paths were checked this way are checked again here, before the commit.
      const location = safeReturnPath(token.return_to);
      await db.query('UPDATE login_tokens SET used = $2 WHERE email = $1 AND used IS NULL', [token.email, now]);
      await deleteSession(request, db);
      return { sessionId: await insertSession(db, deps, token.email), location };
    });
    if (!login) return expired(reply);
    setSessionCookie(reply, deps, login.sessionId);
    request.log.info('logged in');
    return reply.redirect(login.location, 303);
  });

  app.post('/auth/logout', async (request, reply) => {
    await endSession(request, reply, deps);
    return reply.redirect('/', 303);
  });

  async function openToken(token: string): Promise<{ email: string } | null> {
    if (!tokenPattern.test(token)) return null;
    const { rows } = await deps.pool.query('SELECT email FROM login_tokens WHERE token_hash = $1 AND used IS NULL AND expires > $2', [
      sha256(token),
      deps.now().toISOString(),
    ]);
    return rows[0] ?? null;
  }
};

function expired(reply: FastifyReply) {
  return reply.code(410).view('error.eta', {
    title: 'This login link no longer works',
    message: 'Login links work once and only for 20 minutes, and a login voids older links. Ask for a new one on the login page.',
    action: { href: '/auth/login', label: 'Log in' },
  });
}
