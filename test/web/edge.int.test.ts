// The hub's edge over real HTTP against a real database: control characters (NUL first of all) and
// malformed percent-encoding in addresses, query strings, route parameters, form and JSON bodies are
// refused with 400 and one clear line (a page for browsers, JSON for scripts and spokes) before any
// handler runs, never a 500, and change nothing; line breaks stay where a field may hold them (a pasted key).
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { Hosts } from '../../src/ledger/hosts.ts';
import { holdPayment } from '../../src/payments/holds.ts';
import { databaseFingerprint } from '../support/fingerprint.ts';
import { operator, sshKey } from '../support/db.ts';
import { webHarness, type WebClient, type WebHarness } from '../support/web.ts';

const adminEmail = 'boss@capsul.test';
const customerEmail = 'keys@example.org';
let web: WebHarness;
let admin: WebClient;
let customer: WebClient;
let paymentId: number;
let hostToken: string;

before(async () => {
  web = await webHarness({ adminEmails: [adminEmail] });
  admin = await web.loggedIn(adminEmail);
  customer = await web.loggedIn(customerEmail);
  assert.equal((await customer.submit('/console/ssh', '/console/ssh', { key: sshKey, name: 'laptop' })).statusCode, 303);
  ({ paymentId } = await web.db.ledger.recordPayment({ email: 'payer@example.org', amountCents: 2000, cause: operator }));
  await holdPayment(
    { pool: web.db.pool, mailer: web.mailer, adminEmails: [adminEmail], now: web.clock.now },
    {
      provider: 'btcpay',
      reference: 'inv-held',
      email: 'held@example.org',
      amountCents: 700,
      expectedCents: null,
      reason: 'unknown invoice',
    },
  );
  ({ token: hostToken } = await new Hosts({ pool: web.db.pool }).add({ hostId: 'edge-host', memoryMb: 1024, vcpus: 1, cause: operator }));
});
after(() => web.close());

/** Control characters no field takes (tab, line feed and carriage return are tested where they belong). */
const controls: [string, string][] = [
  ['NUL', '\u0000'],
  ['ESC', '\u001b'],
  ['BEL', '\u0007'],
  ['DEL', '\u007f'],
  ['a C1 control (NEL)', '\u0085'],
  ['a vertical tab', '\u000b'],
];
/** %-escapes that are not UTF-8: a byte never in UTF-8, an overlong, a cut sequence, a surrogate, too large, not hex, cut short. */
const badEscapes = ['%FF', '%E0%80', '%C0%AF', '%E2%82', '%ED%A0%80', '%F4%90%80%80', '%ZZ', '%', '%4'];

/** Refused at the edge: 400, the error page (with the site's security headers) or JSON, one line, no stack. */
function assertRefused(response: LightMyRequestResponse, about: string, as: 'html' | 'json' = 'html'): string {
  assert.equal(response.statusCode, 400, `${about}: ${response.statusCode} ${response.body.slice(0, 300)}`);
  assert.doesNotMatch(response.body, /\bat [\w.<>]+ \(|node_modules|Error:/, `${about}: no stack trace`);
  if (as === 'json') {
    assert.match(String(response.headers['content-type']), /^application\/json/, about);
    const { error } = response.json() as { error: string };
    assert.match(error, /^[\x20-\x7e]+$/, `${about}: one printable line`);
    return error;
  }
  assert.match(String(response.headers['content-type']), /^text\/html/, about);
  assert.match(String(response.headers['content-security-policy']), /default-src 'self'/, `${about}: the usual headers`);
  assert.match(response.body, /<title>That did not work · capsul<\/title>/, about);
  const message = /<h1>That did not work<\/h1>\s*<p>([^<]*)<\/p>/.exec(response.body)?.[1];
  assert.ok(message, `${about}: a message`);
  return message;
}

/** A form POST with a body exactly as given (after the page's CSRF token), as a script could send it. */
function rawPost(client: WebClient, url: string, body: string | Buffer): Promise<LightMyRequestResponse> {
  const payload = Buffer.concat([Buffer.from(`_csrf=${encodeURIComponent(client.csrf)}&`), Buffer.from(body)]);
  return web.hub.inject({
    method: 'POST',
    url,
    payload,
    remoteAddress: client.ip,
    headers: { accept: 'text/html', 'content-type': 'application/x-www-form-urlencoded', cookie: client.cookieHeader },
  });
}

async function unchanged(work: () => Promise<void>): Promise<void> {
  const before = await databaseFingerprint(web.db.admin);
  await work();
  assert.deepEqual(await databaseFingerprint(web.db.admin), before, 'nothing changed in the database');
}

describe('control characters in forms', () => {
  it('POST /console/ssh/delete: refused with 400 before the handler, the key kept', async () => {
    await customer.get('/console/ssh');
    await unchanged(async () => {
      for (const [what, control] of controls) {
        const message = assertRefused(await customer.post('/console/ssh/delete', { name: `laptop${control}` }), what);
        assert.match(
          message,
          /^The field &quot;name&quot; holds a control character \(U\+00[0-9A-F]{2}\), which no field here takes: remove it and try again\.$/,
        );
      }
      assertRefused(await customer.post('/console/ssh/delete', { 'na\u0000me': 'laptop' }), 'NUL in a field name');
    });
    const { rows } = await web.db.pool.query('SELECT name FROM ssh_public_keys WHERE email = $1', [customerEmail]);
    assert.deepEqual(rows, [{ name: 'laptop' }]);
  });

  it('POST /admin/payments/<id>/invalidate: refused in the reason, and in the id', async () => {
    await admin.get(`/admin/payments/${paymentId}`);
    await unchanged(async () => {
      for (const [what, control] of controls) {
        assertRefused(await admin.post(`/admin/payments/${paymentId}/invalidate`, { reason: `chargeback${control}` }), what);
      }
      for (const id of [`${paymentId}%00`, `%00${paymentId}`, `${paymentId}%0A`, `${paymentId}%1B`]) {
        assertRefused(await admin.post(`/admin/payments/${id}/invalidate`, { reason: 'chargeback' }), id);
      }
    });
  });

  it('POST /admin/holds/resolve: refused in every field', async () => {
    await admin.get('/admin/payments');
    await unchanged(async () => {
      for (const field of ['provider', 'reference', 'reason']) {
        const form = { provider: 'btcpay', reference: 'inv-held', reason: 'refunded', [field]: `x\u0000y` };
        const message = assertRefused(await admin.post('/admin/holds/resolve', form), field);
        assert.match(message, new RegExp(`The field &quot;${field}&quot; holds a control character \\(U\\+0000\\)`));
      }
    });
    const { rows } = await web.db.pool.query(`SELECT resolved FROM payment_holds WHERE reference = 'inv-held'`);
    assert.deepEqual(rows, [{ resolved: null }]);
  });

  it('the login form: refused, and no link is sent', async () => {
    const client = web.client();
    await client.get('/auth/login');
    await unchanged(async () => {
      assertRefused(await client.post('/auth/login', { email: 'nul\u0000@example.org' }), 'NUL in the email');
      assertRefused(await client.post('/auth/login', { email: 'ok@example.org', next: '/console\u0000' }), 'NUL in next');
    });
  });

  it('lets line breaks through the edge where a form field may hold them: a pasted key with its line ending is taken; a reason with one is refused by the rule for reasons, not the edge', async () => {
    const reinstated = await web.db.ledger.recordPayment({ email: 'lines@example.org', amountCents: 500, cause: operator });
    await admin.get(`/admin/payments/${reinstated.paymentId}`);
    const response = await admin.post(`/admin/payments/${reinstated.paymentId}/invalidate`, { reason: 'chargeback\r\n\tcase 42' });
    assert.equal(response.statusCode, 400, response.body.slice(0, 300));
    assert.match(response.body, /a reason must be one line of visible text: it holds U\+000D at position 11/);
    const { rows } = await web.db.pool.query('SELECT invalidated FROM payments WHERE id = $1', [reinstated.paymentId]);
    assert.equal(rows[0].invalidated, false, 'the payment is still valid');
    const other = await web.loggedIn('pasted@example.org');
    const added = await other.submit('/console/ssh', '/console/ssh', { key: `${sshKey}\r\n`, name: 'pasted' });
    assert.equal(added.statusCode, 303, added.body.slice(0, 300));
  });
});

describe('malformed percent-encoding', () => {
  it('in a query string (/admin/payments?email=): 400, not the escape taken as text', async () => {
    await unchanged(async () => {
      for (const badEscape of [...badEscapes, '%00', '%0A', '%0D%0A', '%1B', '%7F', '%C2%85']) {
        const message = assertRefused(await admin.get(`/admin/payments?email=a${badEscape}z`), badEscape);
        assert.match(
          message,
          /^This address (is malformed: a %-escape in it is not valid UTF-8 text|holds a control character \(U\+00[0-9A-F]{2}\), which no page here takes)\.$/,
          badEscape,
        );
      }
      assertRefused(await admin.get('/admin/payments?e%FFmail=a'), 'in a name');
      assertRefused(await admin.get('/admin/capsuls?email=%00'), '/admin/capsuls');
    });
    assert.equal((await admin.get('/admin/payments?email=payer%40example.org')).statusCode, 200, 'well-formed escapes work as before');
  });

  it("in a path or a route parameter: 400 with the site's page, for GET and POST", async () => {
    await admin.get(`/admin/payments/${paymentId}`);
    await unchanged(async () => {
      for (const badEscape of [...badEscapes, '%00']) {
        assertRefused(await admin.get(`/admin/payments/${badEscape}`), `GET ${badEscape}`);
        assertRefused(await customer.get(`/console/${badEscape}`), `GET /console/${badEscape}`);
        assertRefused(await admin.post(`/admin/payments/${paymentId}${badEscape}/invalidate`, { reason: 'x' }), `POST ${badEscape}`);
        assertRefused(await customer.get(`/no-such-page/${badEscape}`), `unknown page ${badEscape}`);
      }
    });
  });

  it('in a form body: 400, whichever field, and raw bytes that are not UTF-8 too', async () => {
    await customer.get('/console/ssh');
    await unchanged(async () => {
      for (const badEscape of badEscapes) {
        assertRefused(await rawPost(customer, '/console/ssh/delete', `name=laptop${badEscape}`), `value ${badEscape}`);
        assertRefused(await rawPost(customer, '/console/ssh/delete', `na${badEscape}me=laptop`), `name ${badEscape}`);
      }
      const notUtf8 = assertRefused(
        await rawPost(customer, '/console/ssh/delete', Buffer.from([0x6e, 0x61, 0x6d, 0x65, 0x3d, 0xff, 0xfe])),
        'raw 0xFF',
      );
      assert.equal(notUtf8, 'What you sent is not UTF-8 text: reload the page and try again.');
    });
    // A well-formed body the same way still works.
    assert.equal((await rawPost(customer, '/console/ssh/delete', 'name=lap%74op')).statusCode, 303);
  });

  it("a path segment longer than a route parameter may be: 400 with the site's page, not the router's bare JSON", async () => {
    assertRefused(await customer.get(`/console/${'a'.repeat(101)}`), 'a long capsul id');
    assertRefused(await admin.get(`/admin/payments/${'1'.repeat(200)}`), 'a long payment id');
    assert.equal((await customer.get(`/console/${'a'.repeat(100)}`)).statusCode, 404, 'up to the limit: the route answers');
  });

  it('answers scripts with JSON, one line', async () => {
    const error = assertRefused(
      await web.hub.inject({ method: 'GET', url: '/admin/payments?email=%E0%80', headers: { accept: 'application/json' } }),
      'json',
      'json',
    );
    assert.equal(error, 'This address is malformed: a %-escape in it is not valid UTF-8 text.');
  });
});

describe('JSON bodies (the spoke API)', () => {
  const post = (url: string, payload: string) =>
    web.hub.inject({
      method: 'POST',
      url,
      payload,
      headers: { 'content-type': 'application/json', authorization: `Bearer ${hostToken}`, 'x-capsul-host': 'edge-host' },
    });

  it("refuses NUL, other controls and lone surrogates in a spoke's heartbeat with 400 JSON (the spoke API's own, stricter check)", async () => {
    await unchanged(async () => {
      for (const [what, payload] of [
        ['NUL in a value', '{"agentVersion":"1\\u0000"}'],
        ['ESC deep inside', '{"vms":[{"vmId":"capsul-x\\u001b[2J","state":"running"}]}'],
        ['a lone surrogate', '{"agentVersion":"\\ud800"}'],
        ['a control in a name', '{"agent\\u0000Version":"1"}'],
      ] as const) {
        const error = assertRefused(await post('/spoke/v1/heartbeat', payload), what, 'json');
        assert.match(error, /^malformed heartbeat: /, what);
      }
    });
  });

  it('lets multi-line text through to the route (a failure report may span lines)', async () => {
    const failure = {
      id: 'report-multi-line',
      vmId: 'capsul-aaaaaaaaaa',
      operationId: null,
      observedAt: web.clock.now().toISOString(),
      type: 'failed',
      error: 'virsh failed:\n\terror: no such domain',
    };
    const response = await post('/spoke/v1/reports', JSON.stringify({ reports: [failure] }));
    assert.equal(response.statusCode, 200, response.body);
    assert.equal(response.json().results[0].status, 'refused', 'past the edge: the route answers for the unknown capsul');
  });

  it('walks a deeply nested body without failing', async () => {
    const deep = `{"vms":${'['.repeat(200_000)}"\\u0000"${']'.repeat(200_000)}}`;
    assertRefused(await post('/spoke/v1/heartbeat', deep), 'deep', 'json');
    const clean = `{"vms":${'['.repeat(200_000)}${']'.repeat(200_000)}}`;
    const response = await post('/spoke/v1/heartbeat', clean);
    assert.ok(response.statusCode < 500, `${response.statusCode}`);
  });
});

describe('over a real socket', () => {
  /** One raw request (its bytes exactly as given) to the listening hub; the answer's status line and body. */
  function rawRequest(port: number, target: Buffer): Promise<{ status: string; body: string }> {
    const request = Buffer.concat([
      Buffer.from('GET '),
      target,
      Buffer.from(' HTTP/1.1\r\nHost: capsul.test\r\nAccept: text/html\r\nConnection: close\r\n\r\n'),
    ]);
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => socket.end(request));
      const chunks: Buffer[] = [];
      socket.on('data', (chunk: Buffer) => chunks.push(chunk));
      socket.on('end', () => {
        const text = Buffer.concat(chunks).toString('latin1');
        resolve({ status: text.split('\r\n', 1)[0]!, body: text });
      });
      socket.on('error', reject);
    });
  }

  it("bad escapes get the site's 400 page; raw bytes that are not ASCII are refused by Node's parser with 400; never a 500", async () => {
    await web.hub.listen({ port: 0, host: '127.0.0.1' });
    const { port } = web.hub.server.address() as net.AddressInfo;
    for (const target of ['/faq?x=%FF', '/console/%E0%80', '/admin/payments?email=%00']) {
      const { status, body } = await rawRequest(port, Buffer.from(target));
      assert.equal(status, 'HTTP/1.1 400 Bad Request', target);
      assert.match(body, /That did not work/, target);
    }
    for (const target of [
      [0x2f, 0x66, 0x61, 0x71, 0x3f, 0x78, 0x3d, 0xff],
      [0x2f, 0xc3, 0xa9],
      [0x2f, 0x7f],
    ]) {
      const { status } = await rawRequest(port, Buffer.from(target));
      assert.equal(status, 'HTTP/1.1 400 Bad Request', JSON.stringify(target));
    }
  });
});
