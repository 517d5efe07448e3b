// The admin pages over real HTTP against a real database: only ADMIN_EMAILS see them (everyone else is
// sent to log in or told there is no such page, and changes nothing); balances agree with the ledger to
// the cent; invalidate/reinstate go through the ledger with the operator and the reason; a missing
// reason, a missing CSRF token, an unknown or malformed payment id are refused; shown text is escaped.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { monthMs } from '../../src/domain/shared/billing.ts';
import { Hosts } from '../../src/ledger/hosts.ts';
import { balanceAt } from '../../src/read/accounts.ts';
import { latestOutboxMessage } from '../../src/mail/mailer.ts';
import { holdPayment } from '../../src/payments/holds.ts';
import { operator, sshKey } from '../support/db.ts';
import { webHarness, type WebClient, type WebHarness } from '../support/web.ts';

const adminEmail = 'boss@capsul.test';
let web: WebHarness;
let admin: WebClient;
before(async () => {
  web = await webHarness({ adminEmails: [adminEmail] });
  admin = await web.loggedIn(adminEmail);
});
after(() => web.close());

const pages = [
  '/admin',
  '/admin/payments',
  '/admin/payments?email=a%40b.org',
  '/admin/capsuls',
  '/admin/hosts',
  '/admin/incidents',
  '/admin/events',
];

async function pay(email: string, dollars: number): Promise<number> {
  const { paymentId } = await web.db.ledger.recordPayment({ email, amountCents: Math.round(dollars * 100), cause: operator });
  return paymentId;
}

async function paymentRow(id: number) {
  const { rows } = await web.db.pool.query(`SELECT invalidated, invalidation_reason, invalidated_at FROM payments WHERE id = $1`, [id]);
  return rows[0] as { invalidated: boolean; invalidation_reason: string | null; invalidated_at: Date | null };
}

/** The payment's correction events, oldest first, with their metadata. */
async function corrections(id: number) {
  const { rows } = await web.db.pool.query(
    `SELECT message_type AS type, message_metadata AS metadata, message_data AS data FROM emt_messages
     WHERE message_data->>'paymentId' = $1 AND message_type <> 'PaymentRecorded'
     ORDER BY transaction_id, global_position`,
    [String(id)],
  );
  return rows as { type: string; metadata: { by: unknown; reason?: string }; data: { reason: string; customerNote?: string } }[];
}

async function eventCount(): Promise<number> {
  const { rows } = await web.db.pool.query('SELECT count(*)::int AS n FROM emt_messages');
  return rows[0].n;
}

/** The cells of the table row whose row header is `header`, as text. */
function rowOf(body: string, header: string): string[] {
  const row = [...body.matchAll(/<tr>([\s\S]*?)<\/tr>/g)]
    .map((m) => m[1]!)
    .find((r) => /<th scope="row"[^>]*>([\s\S]*?)<\/th>/.exec(r)?.[1] === header);
  assert.ok(row, `no row for ${header}`);
  return [...row.matchAll(/<t[hd][^>]*>([\s\S]*?)<\/t[hd]>/g)].map((m) => m[1]!.replace(/<[^>]+>/g, '').trim());
}

describe('who may use /admin', () => {
  it('sends anonymous visitors to log in, for every page and every form', async () => {
    const id = await pay('anon-target@example.org', 10);
    const anonymous = web.client();
    for (const url of [...pages, `/admin/payments/${id}`]) {
      const response = await anonymous.get(url);
      assert.equal(response.statusCode, 303, url);
      assert.match(String(response.headers.location), /^\/auth\/login\?next=/, url);
    }
    await anonymous.get('/auth/login'); // a valid CSRF token: only the login stands in the way
    for (const action of ['invalidate', 'reinstate']) {
      const response = await anonymous.post(`/admin/payments/${id}/${action}`, { reason: 'not allowed' });
      assert.equal(response.statusCode, 303, action);
      assert.match(String(response.headers.location), /^\/auth\/login/);
    }
    assert.equal((await paymentRow(id)).invalidated, false);
    assert.deepEqual(await corrections(id), []);
  });

  it('tells a logged-in customer there is no such page, GET and POST, and changes nothing', async () => {
    const id = await pay('customer@example.org', 10);
    const customer = await web.loggedIn('customer@example.org');
    for (const url of [...pages, `/admin/payments/${id}`]) {
      const response = await customer.get(url);
      assert.equal(response.statusCode, 404, url);
      assert.match(response.body, /Page not found/);
      assert.doesNotMatch(response.body, /customer@example\.org<\/td>|Admin:/, `${url} shows nothing of the admin page`);
    }
    await customer.get('/console'); // a valid CSRF token of the customer's own
    const before = await eventCount();
    for (const action of ['invalidate', 'reinstate']) {
      assert.equal((await customer.post(`/admin/payments/${id}/${action}`, { reason: 'mine now' })).statusCode, 404, action);
    }
    assert.equal((await paymentRow(id)).invalidated, false);
    assert.equal(await eventCount(), before, 'no event appended');
    assert.doesNotMatch((await customer.get('/console')).body, /href="\/admin"/, 'no Admin link for customers');
  });

  it('shows an admin every page, with the Admin link in the menu', async () => {
    for (const url of pages) {
      const response = await admin.get(url);
      assert.equal(response.statusCode, 200, url);
      assert.match(response.body, /<h1>Admin: /, url);
      assert.doesNotMatch(response.body, /<script/, 'no JavaScript');
    }
    assert.match((await admin.get('/admin')).body, /<a href="\/admin">Admin<\/a>/);
  });
});

describe('accounts', () => {
  it("shows each account's balance now to the cent, equal to the ledger's fold and to balanceAt", async () => {
    const cause = operator;
    await pay('even@example.org', 20);
    await pay('spender@example.org', 20);
    const voided = await pay('spender@example.org', 5.55);
    await web.db.ledger.invalidatePayment(voided, { ...cause, reason: 'chargeback' });
    const { vmId: kept } = await web.db.ledger.createVm({
      email: 'spender@example.org',
      size: 'f1-xs',
      os: 'debian12',
      sshPublicKeys: [sshKey],
      cause,
    });
    const { vmId: gone } = await web.db.ledger.createVm({
      email: 'spender@example.org',
      size: 'f1-s',
      os: 'debian12',
      sshPublicKeys: [sshKey],
      cause,
    });
    web.clock.advance(3 * 3600_000 + 17_123); // billed for 3 h 17.123 s, then deleted
    await web.db.ledger.deleteVm(gone, { ...cause, reason: 'no longer needed' });
    // A quarter of a month (under the 14 days a session stays valid unused): f1-xs accrues 533 / 4 cents in all.
    web.clock.advance(monthMs / 4 - (3 * 3600_000 + 17_123));

    const body = (await admin.get('/admin')).body;
    for (const email of ['even@example.org', 'spender@example.org']) {
      const [, , balance] = rowOf(body, email);
      const cents = await web.db.ledger.balanceCents(email);
      const { rows } = await web.db.pool.query('SELECT id FROM accounts WHERE email = $1', [email]);
      assert.equal(await balanceAt(web.db.pool, rows[0].id, web.clock.now()), cents);
      const expected = (cents < 0 ? '-$' : '$') + (Math.abs(cents) / 100).toFixed(2);
      assert.equal(balance, expected, email);
    }
    // By hand: $20.00, minus 533/4 = 133.25 → 133 cents, minus 716 cents × (3 h 17.123 s) / 30.44 days = 2.94 → 3 cents.
    assert.deepEqual(rowOf(body, 'spender@example.org').slice(2, 4), ['$18.64', '1'], 'balance, capsuls not deleted');
    assert.deepEqual(rowOf(body, 'even@example.org').slice(2, 4), ['$20.00', '0']);
    assert.match((await admin.get('/admin/capsuls?email=spender@example.org')).body, new RegExp(`<th scope="row"[^>]*>${kept}</th>`));
  });
});

describe('payments', () => {
  it('lists payments with amount, provider, reference and status, and narrows them to one account', async () => {
    const { paymentId } = await web.db.ledger.recordPayment({
      email: 'listed@example.org',
      amountCents: 1234,
      reference: 'ref-<b>1</b>',
      provider: 'stripe',
      cause: operator,
    });
    const other = await pay('unlisted@example.org', 1);
    await web.db.ledger.invalidatePayment(other, { ...operator, reason: 'card stolen' });
    const all = (await admin.get('/admin/payments')).body;
    const cells = rowOf(all, `<a href="/admin/payments/${paymentId}">${paymentId}</a>`);
    assert.deepEqual(cells.slice(1, 5), ['listed@example.org', '$12.34', 'stripe', 'ref-&lt;b&gt;1&lt;/b&gt;']);
    assert.equal(cells[6], 'valid');
    assert.match(
      rowOf(all, `<a href="/admin/payments/${other}">${other}</a>`)[6]!,
      /^invalid since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d: card stolen$/,
    );
    const one = (await admin.get('/admin/payments?email=%20Listed@Example.org')).body;
    assert.match(one, /listed@example\.org/);
    assert.doesNotMatch(one, /unlisted@example\.org<\/td>/);
  });

  it('refuses a filter that is no email address with the rule it broke, and lists nothing rather than everything', async () => {
    await pay('filtered@example.org', 1);
    for (const [path, what] of [
      ['/admin/payments', 'payments'],
      ['/admin/capsuls', 'capsuls'],
    ] as const) {
      for (const typed of ['gu%E2%80%8Bs%40example.org', 'a%40-.org', 'nobody']) {
        const response = await admin.get(`${path}?email=${typed}`);
        assert.equal(response.statusCode, 400, `${path}?email=${typed}`);
        assert.match(response.body, /<p class="error" role="alert" id="email-error">[^<]*is not an email address/);
        assert.doesNotMatch(response.body, /filtered@example\.org/, `no ${what} listed`);
      }
    }
  });

  it('invalidates and reinstates through the form, recording the operator and the reason', async () => {
    const id = await pay('disputed@example.org', 12.34);
    const page = `/admin/payments/${id}`;
    const by = { kind: 'operator', id: adminEmail };

    const invalidated = await admin.submit(page, `${page}/invalidate`, { reason: 'chargeback #77' });
    assert.equal(invalidated.statusCode, 303);
    assert.equal(invalidated.headers.location, `${page}?done=invalidated`);
    assert.match((await admin.get(String(invalidated.headers.location))).body, /Payment invalidated/);
    const row = await paymentRow(id);
    assert.equal(row.invalidated, true);
    assert.equal(row.invalidation_reason, 'chargeback #77');
    assert.equal(row.invalidated_at?.getTime(), web.clock.now().getTime());
    assert.equal(await web.db.ledger.balanceCents('disputed@example.org'), 0);

    const again = await admin.submit(page, `${page}/invalidate`, { reason: 'pressed twice' });
    assert.equal(again.headers.location, `${page}?done=already-invalid`);
    assert.match((await admin.get(String(again.headers.location))).body, /already invalid: nothing changed/);

    const reinstated = await admin.submit(page, `${page}/reinstate`, { reason: 'dispute won' });
    assert.equal(reinstated.headers.location, `${page}?done=reinstated`);
    assert.equal((await paymentRow(id)).invalidated, false);
    assert.equal(await web.db.ledger.balanceCents('disputed@example.org'), 1234);

    const events = await corrections(id);
    assert.deepEqual(
      events.map((e) => e.type),
      ['PaymentInvalidated', 'PaymentReinstated'],
      'the repeated invalidation appended nothing',
    );
    assert.deepEqual(
      events.map((e) => e.metadata.by),
      [by, by],
    );
    assert.deepEqual(
      events.map((e) => e.metadata.reason),
      ['chargeback #77', 'dispute won'],
    );
    assert.ok(
      events.every((e) => !('reason' in e.data)),
      "the reason is its cause's, in the metadata only",
    );

    const history = (await admin.get(page)).body;
    assert.match(history, /PaymentInvalidated[\s\S]*operator:boss@capsul\.test[\s\S]*chargeback #77/);
    assert.match(history, /<button type="submit" class="danger">Invalidate payment<\/button>/, 'valid again: the form offers invalidation');
  });

  it("sets what the customer is told with the form's note; the payment page shows the reason and the note, or the default", async () => {
    const email = 'noted@example.org';
    const id = await pay(email, 9);
    const page = `/admin/payments/${id}`;
    const form = (await admin.get(page)).body;
    assert.match(form, /<input id="customer_note" name="customer_note" type="text" maxlength="200" value=""/);
    assert.match(form, /Left empty, it says: “payment reversed by your bank or payment provider”/);

    const invalidated = await admin.submit(page, `${page}/invalidate`, {
      reason: 'chargeback dp_999',
      customer_note: '  Your bank took it back.  ',
    });
    assert.equal(invalidated.headers.location, `${page}?done=invalidated`);
    assert.match((await admin.get(page)).body, /Left empty, it says: “the reversal was cancelled”/, 'the form now reinstates');
    const reinstated = await admin.submit(page, `${page}/reinstate`, { reason: 'dp_999 won', customer_note: '   ' });
    assert.equal(reinstated.headers.location, `${page}?done=reinstated`);

    const events = await corrections(id);
    assert.deepEqual(
      events.map((e) => [e.metadata.reason, e.data.customerNote]),
      [
        ['chargeback dp_999', 'Your bank took it back.'],
        ['dp_999 won', undefined],
      ],
      'a blank note is no note: the default is told',
    );
    const body = (await admin.get(page)).body;
    assert.deepEqual(rowOf(body, 'PaymentInvalidated').slice(-2), ['chargeback dp_999', 'Your bank took it back.']);
    assert.deepEqual(rowOf(body, 'PaymentReinstated').slice(-2), ['dp_999 won', 'the reversal was cancelled (the default)']);

    const history = await (await web.loggedIn(email)).get('/console/history?kind=money');
    assert.match(history.body, /was invalidated: Your bank took it back\. It no longer counts/);
    assert.ok(!history.body.includes('dp_999'), 'the customer never sees the reason');
  });

  it('refuses a note that is not one short line of visible text: the form again, the note marked, nothing changes', async () => {
    const id = await pay('bad-note@example.org', 3);
    const page = `/admin/payments/${id}`;
    for (const [note, message] of [
      ['n'.repeat(201), /a customer note may be at most 200 characters/],
      ['reversed\u202Eevil', /a customer note must be one line of visible text: it holds U\+202E/],
      ['a\u200Bb', /a customer note must be one line of visible text: it holds U\+200B/],
    ] as const) {
      const response = await admin.submit(page, `${page}/invalidate`, { reason: 'chargeback', customer_note: note });
      assert.equal(response.statusCode, 400, note);
      assert.match(response.body, message);
      assert.match(response.body, /<input id="customer_note" name="customer_note"[^>]*aria-invalid="true"/);
      assert.doesNotMatch(response.body, /<input id="reason" name="reason"[^>]*aria-invalid/);
      assert.match(response.body, /<input id="reason" name="reason" type="text"[^>]*value="chargeback"/, 'what was typed is kept');
    }
    assert.equal((await paymentRow(id)).invalidated, false);
    assert.deepEqual(await corrections(id), []);
  });

  it('refuses a missing or blank reason: the form again with the error, and nothing changes', async () => {
    const id = await pay('no-reason@example.org', 3);
    const page = `/admin/payments/${id}`;
    const forms: Record<string, string>[] = [{ reason: '   ' }, { reason: '' }, {}];
    for (const form of forms) {
      const response = await admin.submit(page, `${page}/invalidate`, form);
      assert.equal(response.statusCode, 400, JSON.stringify(form));
      assert.match(response.body, /<p class="error" role="alert" id="correction-error">a reason is required<\/p>/);
      assert.match(response.body, /<input id="reason" name="reason" type="text"[^>]*aria-invalid="true"/);
    }
    const tooLong = await admin.submit(page, `${page}/invalidate`, { reason: 'x'.repeat(1001) });
    assert.equal(tooLong.statusCode, 400);
    assert.match(tooLong.body, /at most 1000 characters/);
    assert.equal((await paymentRow(id)).invalidated, false);
    assert.deepEqual(await corrections(id), []);
  });

  it('refuses a form without the CSRF token or with a wrong one (403), and changes nothing', async () => {
    const id = await pay('csrf-target@example.org', 4);
    const page = `/admin/payments/${id}`;
    await admin.get(page);
    const none = await admin.post(`${page}/invalidate`, { reason: 'forged', _csrf: null });
    assert.equal(none.statusCode, 403);
    assert.match(none.body, /form has expired or did not come from this site/);
    assert.equal((await admin.post(`${page}/invalidate`, { reason: 'forged', _csrf: 'x'.repeat(40) })).statusCode, 403);
    const stranger = web.client(); // a real token, but of another browser's cookie
    await stranger.get('/auth/login');
    assert.equal((await admin.post(`${page}/invalidate`, { reason: 'forged', _csrf: stranger.csrf })).statusCode, 403);
    assert.equal((await paymentRow(id)).invalidated, false);
    assert.deepEqual(await corrections(id), []);
  });

  it('answers 404 for an unknown payment and for ids that are not payment ids, never 500', async () => {
    const before = await eventCount();
    for (const id of ['987654321', 'abc', '-1', '0', '1e3', '1.5', '99999999999999999999', '%3Cscript%3E', '1%20OR%201=1']) {
      const shown = await admin.get(`/admin/payments/${id}`);
      assert.equal(shown.statusCode, 404, `GET ${id}`);
      assert.doesNotMatch(shown.body, /<script>/);
      await admin.get('/admin');
      const posted = await admin.post(`/admin/payments/${id}/invalidate`, { reason: 'whatever' });
      assert.equal(posted.statusCode, 404, `POST ${id}`);
    }
    assert.equal(await eventCount(), before);
  });

  it('shows only its own notices, whatever the query string says', async () => {
    const id = await pay('notice@example.org', 2);
    for (const done of ['constructor', '<script>alert(1)</script>', 'toString']) {
      const response = await admin.get(`/admin/payments/${id}?done=${encodeURIComponent(done)}`);
      assert.equal(response.statusCode, 200);
      assert.doesNotMatch(response.body, /class="notice"/, done);
    }
  });
});

describe('capsuls, hosts and events', () => {
  it('lists held payments, emails the operators once, and shows one as recorded once an operator records it; refunds shown', async () => {
    const hold = {
      provider: 'stripe' as const,
      reference: 'pi_held_<b>1',
      email: 'held@example.org',
      amountCents: 1500,
      expectedCents: 2000,
      reason: 'the amount paid differs from the checkout',
    };
    const deps = { pool: web.db.pool, mailer: web.mailer, adminEmails: [adminEmail], now: web.clock.now };
    assert.deepEqual(await holdPayment(deps, hold), { new: true });
    assert.deepEqual(await holdPayment(deps, hold), { new: false }, 'reported again: nothing new');
    const mail = await latestOutboxMessage(web.outboxDir, adminEmail);
    assert.match(mail!, /stripe payment pi_held_<b>1 of \$15\.00 \(the checkout asked for \$20\.00\) for held@example\.org is held/);
    let page = (await admin.get('/admin/payments')).body;
    assert.match(page, /<th scope="row"[^>]*>pi_held_&lt;b&gt;1<\/th>/);
    assert.match(page, /<strong>open<\/strong>/);
    const { paymentId } = await web.db.ledger.recordPayment({
      email: 'held@example.org',
      amountCents: 1500,
      reference: 'pi_held_<b>1',
      cause: operator,
    });
    await web.db.ledger.recordRefund({ paymentId, totalRefundedCents: 250, reference: 'ch_held', cause: operator });
    page = (await admin.get('/admin/payments?email=held%40example.org')).body;
    assert.match(page, new RegExp(`recorded as <a href="/admin/payments/${paymentId}">payment ${paymentId}</a>`));
    assert.match(page, /\$2\.50 refunded/);

    // Recorded already: there is nothing to close.
    await admin.get('/admin/payments');
    const recorded = await admin.post('/admin/holds/resolve', { provider: 'stripe', reference: 'pi_held_<b>1', reason: 'duplicate' });
    assert.equal(recorded.statusCode, 409);
    assert.match(recorded.body, /was recorded as payment/);
  });

  it('closes a held payment without credit, with a reason, once; refuses a blank reason and a stranger', async () => {
    const deps = { pool: web.db.pool, mailer: web.mailer, adminEmails: [adminEmail], now: web.clock.now };
    await holdPayment(deps, {
      provider: 'btcpay',
      reference: 'inv-refunded',
      email: 'gone@example.org',
      amountCents: 700,
      expectedCents: null,
      reason: 'unknown invoice',
    });
    await admin.get('/admin/payments');
    const blank = await admin.post('/admin/holds/resolve', { provider: 'btcpay', reference: 'inv-refunded', reason: '  ' });
    assert.equal(blank.statusCode, 400);
    assert.match(blank.body, /a reason is required/);
    const customer = await web.loggedIn('not-admin@example.org');
    await customer.get('/console');
    assert.equal(
      (await customer.post('/admin/holds/resolve', { provider: 'btcpay', reference: 'inv-refunded', reason: 'x' })).statusCode,
      404,
    );
    const closed = await admin.post('/admin/holds/resolve', {
      provider: 'btcpay',
      reference: 'inv-refunded',
      reason: 'refunded in BTCPay <i>',
    });
    assert.equal(closed.statusCode, 303);
    const page = (await admin.get('/admin/payments')).body;
    assert.match(
      page,
      /closed <time datetime="[\dT:-]+Z">[\d-]+ [\d:]+<\/time> by operator:boss@capsul\.test: refunded in BTCPay &lt;i&gt;/,
    );
    const again = await admin.post('/admin/holds/resolve', { provider: 'btcpay', reference: 'inv-refunded', reason: 'again' });
    assert.equal(again.statusCode, 409);
    assert.equal((await admin.post('/admin/holds/resolve', { provider: 'btcpay', reference: 'nope', reason: 'x' })).statusCode, 404);
    const { rows } = await web.db.pool.query(`SELECT resolved_by, resolution FROM payment_holds WHERE reference = 'inv-refunded'`);
    assert.deepEqual(rows[0], { resolved_by: 'operator:boss@capsul.test', resolution: 'refunded in BTCPay <i>' });
  });

  it('lists capsuls with account, size, state, host and creation', async () => {
    await pay('vm-owner@example.org', 30);
    const { vmId } = await web.db.ledger.createVm({
      email: 'vm-owner@example.org',
      size: 'f1-s',
      os: 'debian12',
      sshPublicKeys: [sshKey],
      cause: operator,
    });
    const body = (await admin.get('/admin/capsuls?email=vm-owner@example.org')).body;
    const cells = rowOf(body, vmId);
    assert.deepEqual(cells.slice(1, 6), ['vm-owner@example.org', 'f1-s', 'pending', 'not placed', '']);
    assert.match(cells[6]!, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
    assert.equal(cells[7], '', 'not deleted');
    assert.doesNotMatch((await admin.get('/admin/capsuls?email=someone-else@example.org')).body, new RegExp(vmId));
  });

  it('lists hosts with their last heartbeat, capsuls and open drift', async () => {
    const now = web.clock.now();
    await web.db.pool.query(
      `INSERT INTO host_heartbeats (host_id, last_seen, memory_mb, vcpus, vms, agent_version) VALUES ('test-host', $1, 1000000, 1000, '[]', 'test')`,
      [now.toISOString()],
    );
    await new Hosts({ pool: web.db.pool, now: web.clock.now }).checkDrift('test-host', ['capsul-stray00001']);
    const body = (await admin.get('/admin/hosts')).body;
    const cells = rowOf(body, 'test-host');
    assert.equal(cells[1], 'online');
    assert.equal(cells[2], now.toISOString().slice(0, 19).replace('T', ' '));
    assert.equal(cells[6], '1', 'one open drift incident');
    assert.deepEqual(rowOf(body, 'test-host').length, 7);
    assert.match(body, /<td[^>]*>capsul-stray00001<\/td><td[^>]*>unexpected-on-host<\/td>/);
  });

  it('shows the newest events first, with who and why, escaped', async () => {
    const id = await pay('escaped@example.org', 6);
    const reason = '<script>alert("x")</script> & more';
    const response = await admin.submit(`/admin/payments/${id}`, `/admin/payments/${id}/invalidate`, { reason });
    assert.equal(response.statusCode, 303);
    const body = (await admin.get('/admin/events')).body;
    assert.doesNotMatch(body, /<script>alert/);
    const newest = [...body.matchAll(/<tr>([\s\S]*?)<\/tr>/g)][1]![1]!; // [0] is the header row
    assert.match(newest, /PaymentInvalidated/);
    assert.match(newest, /operator:boss@capsul\.test/);
    assert.match(newest, /&lt;script&gt;alert\(&quot;x&quot;\)&lt;\/script&gt; &amp; more/);
    assert.match(newest, new RegExp(`href="/admin/payments/${id}"`));
    assert.ok(body.indexOf('PaymentInvalidated') < body.lastIndexOf('PaymentRecorded'), 'newest first');
  });
});
