// Logging in by email link over real HTTP against a real database: the link works once, for 20
// minutes, only by pressing the button; limits per email and per IP; CSRF on every form; sessions.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { latestOutboxMessage } from '../../src/mail/mailer.ts';
import { loginLinkFor, webHarness, type WebHarness } from '../support/web.ts';

let web: WebHarness;
before(async () => {
  web = await webHarness({ adminEmails: ['boss@capsul.test'] });
});
after(() => web.close());

const minutes = (n: number) => n * 60_000;

describe('login by email link', () => {
  it('sends a link; the GET shows a button and consumes nothing; the POST logs in and lands on the console', async () => {
    const client = web.client();
    const form = await client.get('/auth/login');
    assert.equal(form.statusCode, 200);
    assert.match(form.body, /<label for="email">/);
    const sent = await client.post('/auth/login', { email: '  Alice@Example.ORG ' });
    assert.equal(sent.statusCode, 200);
    assert.match(sent.body, /alice@example\.org/);
    const link = await loginLinkFor(web.outboxDir, 'alice@example.org');
    for (let i = 0; i < 3; i++) {
      const shown = await client.get(link);
      assert.equal(shown.statusCode, 200, 'opening the link again and again (mail scanners) consumes nothing');
      assert.match(shown.body, /<button type="submit"[^>]*>Log in<\/button>/);
    }
    const done = await client.post(link);
    assert.equal(done.statusCode, 303);
    assert.equal(done.headers.location, '/console');
    const session = done.cookies.find((c: { name: string }) => c.name === 'capsul_session') as Record<string, unknown>;
    assert.ok(session, 'a session cookie is set');
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, 'Lax');
    assert.equal(session.secure, undefined, 'not Secure on http');
    const home = await client.get('/faq');
    assert.match(home.body, /Logged in as alice@example\.org/);
  });

  it('stores tokens and sessions only as hashes', async () => {
    const client = web.client();
    await client.submit('/auth/login', '/auth/login', { email: 'hash@example.org' });
    const link = await loginLinkFor(web.outboxDir, 'hash@example.org');
    const token = link.split('/').at(-1)!;
    assert.ok(Buffer.from(token, 'base64url').length >= 16, 'at least 128 random bits');
    const { rows } = await web.db.pool.query(`SELECT encode(token_hash, 'hex') AS h FROM login_tokens WHERE email = 'hash@example.org'`);
    assert.equal(rows.length, 1);
    assert.ok(!rows[0].h.includes(Buffer.from(token, 'base64url').toString('hex')));
  });

  it('refuses a used link, and a second tab pressing the same button', async () => {
    const a = web.client();
    await a.submit('/auth/login', '/auth/login', { email: 'twice@example.org' });
    const link = await loginLinkFor(web.outboxDir, 'twice@example.org');
    const b = web.client();
    await a.get(link);
    await b.get(link);
    assert.equal((await a.post(link)).statusCode, 303);
    const second = await b.post(link);
    assert.equal(second.statusCode, 410);
    assert.match(second.body, /no longer works/);
    assert.equal((await b.get(link)).statusCode, 410);
    assert.equal((await b.get('/console')).statusCode, 303, 'the second tab is not logged in');
  });

  it('refuses a link after 20 minutes', async () => {
    const client = web.client();
    await client.submit('/auth/login', '/auth/login', { email: 'late@example.org' });
    const link = await loginLinkFor(web.outboxDir, 'late@example.org');
    await client.get(link);
    web.clock.advance(minutes(20) + 1000);
    try {
      assert.equal((await client.post(link)).statusCode, 410);
    } finally {
      web.clock.set(new Date('2026-11-01T12:00:00Z'));
    }
  });

  it('voids every other open link of the email once one is used', async () => {
    const client = web.client();
    await client.submit('/auth/login', '/auth/login', { email: 'many@example.org' });
    const first = await loginLinkFor(web.outboxDir, 'many@example.org');
    await new Promise((resolve) => setTimeout(resolve, 5)); // distinct outbox file names
    await client.submit('/auth/login', '/auth/login', { email: 'MANY@example.org' });
    const second = await loginLinkFor(web.outboxDir, 'many@example.org');
    assert.notEqual(first, second);
    await client.get(second);
    assert.equal((await client.post(second)).statusCode, 303);
    assert.equal((await web.client().get(first)).statusCode, 410);
  });

  it('refuses a made-up or malformed token', async () => {
    const client = web.client();
    assert.equal((await client.get('/auth/magic/' + 'A'.repeat(43))).statusCode, 410);
    assert.equal((await client.get('/auth/magic/%3Cscript%3E')).statusCode, 410);
    await client.get('/auth/login');
    assert.equal((await client.post('/auth/magic/' + 'A'.repeat(43))).statusCode, 410);
  });

  it('returns to the page asked for, and never to another site', async () => {
    const client = web.client();
    const redirected = await client.get('/console?page=2');
    assert.equal(redirected.statusCode, 303);
    assert.equal(redirected.headers.location, '/auth/login?next=%2Fconsole%3Fpage%3D2');
    const form = await client.get(String(redirected.headers.location));
    const next = /name="next" value="([^"]*)"/.exec(form.body)?.[1];
    assert.equal(next, '/console?page=2');
    await client.post('/auth/login', { email: 'back@example.org', next });
    const link = await loginLinkFor(web.outboxDir, 'back@example.org');
    await client.get(link);
    assert.equal((await client.post(link)).headers.location, '/console?page=2');

    const other = web.client();
    await other.get('/auth/login');
    await other.post('/auth/login', { email: 'evil@example.org', next: '//evil.example/' });
    const evilLink = await loginLinkFor(web.outboxDir, 'evil@example.org');
    await other.get(evilLink);
    assert.equal((await other.post(evilLink)).headers.location, '/console');
  });

  it('explains a malformed email and sends nothing', async () => {
    const client = web.client();
    await client.get('/auth/login');
    const response = await client.post('/auth/login', { email: '<script>alert(1)</script>' });
    assert.equal(response.statusCode, 400);
    assert.match(response.body, /not an email address/);
    assert.match(response.body, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/, 'shown escaped');
    assert.doesNotMatch(response.body, /<script>alert/);
    const wrongType = await client.post('/auth/login', { email: ['a@b.org', 'c@d.org'] });
    assert.equal(wrongType.statusCode, 400);
  });

  it('limits login links per email per hour', async () => {
    const client = web.client();
    await client.get('/auth/login');
    for (let i = 0; i < 5; i++) {
      assert.equal((await client.post('/auth/login', { email: 'flood@example.org' }, { 'x-i': String(i) })).statusCode, 200);
    }
    const refused = await client.post('/auth/login', { email: 'Flood@example.org' });
    assert.equal(refused.statusCode, 429);
    assert.match(refused.body, /Too many login links/);
    const { rows } = await web.db.pool.query(`SELECT count(*)::int AS n FROM login_tokens WHERE email = 'flood@example.org'`);
    assert.equal(rows[0].n, 5, 'the refused request recorded nothing');
    web.clock.advance(minutes(61));
    try {
      assert.equal((await client.post('/auth/login', { email: 'flood@example.org' })).statusCode, 200, 'allowed again an hour later');
    } finally {
      web.clock.set(new Date('2026-11-01T12:00:00Z'));
    }
  });

  it('limits login links per IP per hour, whatever the emails', async () => {
    const client = web.client();
    await client.get('/auth/login');
    const ip = { 'x-forwarded-for': '203.0.113.9' }; // not believed: no proxy is trusted
    await web.db.pool.query(
      `INSERT INTO login_tokens (token_hash, email, created, expires, requested_by)
       SELECT sha256(('t' || i)::bytea), 'ip' || i || '@example.org', $1, $1, $2 FROM generate_series(1, 30) i`,
      [web.clock.now().toISOString(), client.ip],
    );
    try {
      const refused = await client.post('/auth/login', { email: 'fresh@example.org' }, ip);
      assert.equal(refused.statusCode, 429);
      assert.equal(await latestOutboxMessage(web.outboxDir, 'fresh@example.org'), null, 'no email sent');
      assert.equal((await web.client().submit('/auth/login', '/auth/login', { email: 'fresh@example.org' })).statusCode, 200, 'other IPs go on');
    } finally {
      await web.db.admin.query(`DELETE FROM login_tokens WHERE email LIKE 'ip%@example.org'`);
    }
  });

  it('logs out: the session is gone from the database and the cookie no longer works', async () => {
    const client = await web.loggedIn('bye@example.org');
    assert.equal((await client.get('/console')).statusCode !== 303, true);
    const stolen = client.cookieHeader;
    const out = await client.post('/auth/logout');
    assert.equal(out.statusCode, 303);
    const replay = await web.hub.inject({ method: 'GET', url: '/console', headers: { cookie: stolen, accept: 'text/html' } });
    assert.equal(replay.statusCode, 303, 'the old cookie is refused after logout');
  });

  it('refuses a forged session cookie', async () => {
    const response = await web.hub.inject({ method: 'GET', url: '/console', headers: { cookie: 'capsul_session=abc.def', accept: 'text/html' } });
    assert.equal(response.statusCode, 303);
  });
});

describe('CSRF', () => {
  it('refuses a POST without a token, or with a wrong one, with 403 and changes nothing', async () => {
    const client = web.client();
    await client.get('/auth/login');
    const none = await client.post('/auth/login', { email: 'csrf@example.org', _csrf: null });
    assert.equal(none.statusCode, 403);
    assert.match(none.body, /form has expired or did not come from this site/);
    const wrong = await client.post('/auth/login', { email: 'csrf@example.org', _csrf: 'x'.repeat(40) });
    assert.equal(wrong.statusCode, 403);
    const stranger = web.client(); // a token from another browser's cookie
    const { csrf } = client;
    await stranger.get('/faq');
    assert.equal((await stranger.post('/auth/login', { email: 'csrf@example.org', _csrf: csrf })).statusCode, 403);
    assert.equal(await latestOutboxMessage(web.outboxDir, 'csrf@example.org'), null);
  });

  it('refuses logout without a token', async () => {
    const client = await web.loggedIn('stay@example.org');
    assert.equal((await client.post('/auth/logout', { _csrf: null })).statusCode, 403);
    assert.notEqual((await client.get('/console')).statusCode, 303, 'still logged in');
  });

  it('stops a flood of login posts from one IP with 429', async () => {
    const client = web.client();
    await client.get('/auth/login');
    const statuses = [];
    for (let i = 0; i < 25; i++) statuses.push((await client.post('/auth/login', { email: 'not an email' })).statusCode);
    assert.deepEqual(new Set(statuses), new Set([400, 429]));
  });

  it('refuses a huge body with 413', async () => {
    const client = web.client();
    await client.get('/auth/login');
    const response = await client.post('/auth/login', { email: 'x'.repeat(200_000) });
    assert.equal(response.statusCode, 413);
  });
});
