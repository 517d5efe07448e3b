// Logging in by email link over real HTTP against a real database: the link works once, for 20
// minutes, only by pressing the button; limits per email and per IP; CSRF on every form; sessions.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { sha256 } from '../../src/hub/web/session.ts';
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
    assert.equal((await client.get(`/auth/magic/${'A'.repeat(43)}`)).statusCode, 410);
    assert.equal((await client.get('/auth/magic/%3Cscript%3E')).statusCode, 410);
    await client.get('/auth/login');
    assert.equal((await client.post(`/auth/magic/${'A'.repeat(43)}`)).statusCode, 410);
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

  it('refuses addresses with invisible characters, bidi overrides and invalid domains, saying why, and sends nothing', async () => {
    const client = web.client();
    await client.get('/auth/login');
    const cases: [string, RegExp][] = [
      ['gu\u200bs@example.org', /invisible or control character \(U\+200B\)/],
      ['\u202egro.elpmaxe@sug', /invisible or control character \(U\+202E\)/],
      ['gus@exam\u00adple.org', /invisible or control character \(U\+00AD\)/],
      ['a@-.org', /is not an email address/],
      ['a@localhost', /is not an email address/],
      ['a@bücher.example', /outside ASCII \(U\+00FC\)/],
    ];
    for (const [email, why] of cases) {
      const response = await client.post('/auth/login', { email });
      assert.equal(response.statusCode, 400, JSON.stringify(email));
      assert.match(response.body, why, JSON.stringify(email));
      assert.doesNotMatch(response.body, /\u202e[^"]*<\/p>/, 'the message shows no raw override');
    }
    const { rows } = await web.db.pool.query(`SELECT count(*)::int AS n FROM login_tokens WHERE email LIKE '%gus%' OR email LIKE 'a@%'`);
    assert.equal(rows[0].n, 0);
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
      assert.equal(
        (await web.client().submit('/auth/login', '/auth/login', { email: 'fresh@example.org' })).statusCode,
        200,
        'other IPs go on',
      );
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
    const response = await web.hub.inject({
      method: 'GET',
      url: '/console',
      headers: { cookie: 'capsul_session=abc.def', accept: 'text/html' },
    });
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

describe('return paths: never off-site, never a 500, never a burnt link', () => {
  const base = 'http://capsul.test';
  let people = 0;

  /** Where a browser would go for this Location: on this site, and nothing a header cannot hold. */
  function assertStaysHere(location: unknown, about: string): void {
    assert.equal(typeof location, 'string', about);
    assert.match(location as string, /^\/[\x21-\x7e]*$/, `${about}: a printable path`);
    assert.equal(new URL(location as string, base).origin, base, `${about}: stays on the site`);
  }

  /** Asks for a link with `next` through the form, presses its button: where it lands (the client is then logged in). */
  async function loginWith(next: string): Promise<{ location: unknown; client: ReturnType<WebHarness['client']>; email: string }> {
    const email = `next-${++people}@example.org`;
    const client = web.client();
    await client.get('/auth/login');
    const sent = await client.post('/auth/login', { email, next });
    assert.equal(sent.statusCode, 200, `${JSON.stringify(next)}: ${sent.statusCode} ${sent.body.slice(0, 200)}`);
    const link = await loginLinkFor(web.outboxDir, email);
    await client.get(link);
    const done = await client.post(link);
    assert.equal(done.statusCode, 303, `${JSON.stringify(next)}: ${done.statusCode} ${done.body.slice(0, 200)}`);
    return { location: done.headers.location, client, email };
  }

  it("the tester's /%EF%BC%8E/evil.example: the console, not a raw 500, logged in or not", async () => {
    const loggedIn = await web.loggedIn('fullwidth@example.org');
    const redirected = await loggedIn.get('/auth/login?next=/%EF%BC%8E/evil.example');
    assert.equal(redirected.statusCode, 303);
    assert.equal(redirected.headers.location, '/console');
    const visitor = web.client();
    const form = await visitor.get('/auth/login?next=/%EF%BC%8E/evil.example');
    assert.equal(form.statusCode, 200);
    assert.equal(/name="next" value="([^"]*)"/.exec(form.body)?.[1], '/console', 'the form carries the console instead');
  });

  const offSite = [
    '/%EF%BC%8E/evil.example',
    '/\uff0e/evil.example',
    '//evil.example',
    '//evil.example/console',
    '/\\evil.example',
    '/%5Cevil.example',
    '/%2F%2Fevil.example',
    '/%2f/evil.example',
    '/\t/evil.example',
    '/%09/evil.example',
    'https://evil.example/',
    'evil.example',
    '/console\r\nSet-Cookie: capsul_session=x',
    '/console%0D%0ASet-Cookie:%20capsul_session=x',
    '/console\u2028x',
    '/console%00',
    '/%',
    '/%E0%80',
    '/console?x=%FF',
    `/${'a'.repeat(600)}`,
    '/auth/magic/x',
    '/%61uth/login',
    ' /console',
    '',
  ];
  for (const next of offSite) {
    it(`next=${JSON.stringify(next.length > 40 ? `${next.slice(0, 30)}…` : next)}: logs in and lands on the console`, async () => {
      const { location, client } = await loginWith(next);
      assertStaysHere(location, JSON.stringify(next));
      assert.equal(location, '/console');
      assert.notEqual((await client.get('/console')).statusCode, 303, 'logged in');
    });
  }

  it('keeps a return path that is one: query strings and escapes of printable text included', async () => {
    for (const next of ['/console?page=2', '/console/ssh', '/console/history?all=1&from=2026-11-01', '/faq#pricing', '/console/x%20y']) {
      const { location } = await loginWith(next);
      assert.equal(location, next);
    }
  });

  it('GET /auth/login with a line break or a malformed escape in next: 400, no redirect, no 500', async () => {
    const client = await web.loggedIn('crlf@example.org');
    for (const query of ['next=/console%0D%0ASet-Cookie:%20a=b', 'next=/%0A/evil.example', 'next=/%FF', 'next=%E0%80']) {
      const response = await client.get(`/auth/login?${query}`);
      assert.equal(response.statusCode, 400, query);
      assert.equal(response.headers.location, undefined, query);
      assert.equal(response.headers['set-cookie'], undefined, query);
    }
  });

  it('a link stored with an unsafe return path (before these checks) still logs in, to the console', async () => {
    for (const returnTo of ['/\uff0e/evil.example', '/x\r\nSet-Cookie: a=b', '//evil.example', '/caf\u00e9']) {
      const email = `old-row-${++people}@example.org`;
      const token = randomBytes(32).toString('base64url');
      const now = web.clock.now();
      await web.db.pool.query(
        `INSERT INTO login_tokens (token_hash, email, created, expires, return_to, requested_by) VALUES ($1, $2, $3, $4, $5, '10.0.0.1')`,
        [sha256(token), email, now.toISOString(), new Date(now.getTime() + minutes(20)).toISOString(), returnTo],
      );
      const client = web.client();
      await client.get(`/auth/magic/${token}`);
      const done = await client.post(`/auth/magic/${token}`);
      assert.equal(done.statusCode, 303, JSON.stringify(returnTo));
      assert.equal(done.headers.location, '/console', JSON.stringify(returnTo));
      assert.notEqual((await client.get('/console')).statusCode, 303, 'logged in');
    }
  });

  it('a login step that fails consumes nothing: the link still works afterwards, and the other links are not voided', async () => {
    const email = 'fails-once@example.org';
    const client = web.client();
    await client.submit('/auth/login', '/auth/login', { email, next: '/console/ssh' });
    const first = await loginLinkFor(web.outboxDir, email);
    await new Promise((resolve) => setTimeout(resolve, 5)); // distinct outbox file names
    await client.submit('/auth/login', '/auth/login', { email, next: '/console/ssh' });
    const second = await loginLinkFor(web.outboxDir, email);
    assert.notEqual(first, second);
    const open = async () =>
      (await web.db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM login_tokens WHERE email = $1 AND used IS NULL', [email]))
        .rows[0]!.n;
    const sessions = async () =>
      (await web.db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM sessions WHERE email = $1', [email])).rows[0]!.n;
    assert.equal(await open(), 2);
    // The last part of the step (recording the session) fails, as a database error would make it.
    await web.db.admin.query(`CREATE FUNCTION refuse_session() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.email = '${email}' THEN RAISE EXCEPTION 'no sessions today'; END IF; RETURN NEW; END $$`);
    await web.db.admin.query('CREATE TRIGGER refuse_session BEFORE INSERT ON sessions FOR EACH ROW EXECUTE FUNCTION refuse_session()');
    try {
      await client.get(second);
      const failed = await client.post(second);
      assert.equal(failed.statusCode, 500);
      assert.doesNotMatch(failed.body, /no sessions today|\bat /, 'no detail or stack in the page');
      assert.equal(failed.headers.location, undefined);
      assert.equal(await open(), 2, 'neither link used nor voided');
      assert.equal(await sessions(), 0);
    } finally {
      await web.db.admin.query('DROP TRIGGER refuse_session ON sessions');
      await web.db.admin.query('DROP FUNCTION refuse_session()');
    }
    await client.get(second);
    const done = await client.post(second);
    assert.equal(done.statusCode, 303);
    assert.equal(done.headers.location, '/console/ssh');
    assert.equal(await sessions(), 1);
    assert.equal(await open(), 0, 'the login voided the other link');
    assert.equal((await web.client().get(first)).statusCode, 410);
  });

  it('a made-up token is refused before anything is read or written', async () => {
    const client = web.client();
    await client.get('/auth/login');
    for (const token of ['short', `${'A'.repeat(43)}%00`, 'A'.repeat(44), '%E2%80%8B'.padEnd(43, 'A')]) {
      const response = await client.post(`/auth/magic/${token}`);
      assert.ok([400, 410].includes(response.statusCode), `${token}: ${response.statusCode}`);
    }
  });
});
