// The customer's statements over HTTP against a real database: the list of closed months, a month as
// a page and as a PDF with the same figures, only ever the signed-in customer's own account, and a
// clear 4xx for a month that is malformed, not over, or empty.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { operator, sshKey } from '../support/db.ts';
import { pdfText } from '../support/pdf-text.ts';
import { webHarness, type WebHarness } from '../support/web.ts';

let web: WebHarness;
const alice = 'alice-statements@example.org';
const bob = 'bob-statements@example.org';
const at = (iso: string) => web.clock.set(new Date(iso));
const text = (html: string) => html.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ');

before(async () => {
  web = await webHarness({
    start: new Date('2026-10-20T12:00:00Z'),
    issuer: { name: 'Example Hosting Co-op', addressLines: ['1 Example Street', 'Springfield 12345'] },
  });
  const ledger = web.db.ledger;
  await ledger.recordPayment({ email: alice, amountCents: 2000, reference: null, cause: operator });
  at('2026-10-25T00:00:00Z');
  const { vmId } = await ledger.createVm({ email: alice, size: 'f1-s', os: 'debian12', sshPublicKeys: [sshKey], cause: operator });
  at('2026-11-05T00:00:00Z');
  await ledger.recordPayment({ email: bob, amountCents: 1234, reference: null, cause: operator });
  at('2026-11-20T00:00:00Z');
  await ledger.deleteVm(vmId, { ...operator, reason: 'done' });
  at('2026-12-03T09:00:00Z');
  await ledger.recordPayment({
    email: alice,
    amountCents: 500,
    reference: null,
    receivedAt: new Date('2026-11-28T00:00:00Z'),
    cause: operator,
  });
});
after(() => web.close());

describe('statements pages', () => {
  it('sends a visitor to the login page', async () => {
    for (const url of ['/console/statements', '/console/statements/2026-11', '/console/statements/2026-11/pdf']) {
      const response = await web.client().get(url);
      assert.equal(response.statusCode, 303, url);
      assert.match(String(response.headers.location), /^\/auth\/login\?next=/);
    }
  });

  it('lists the closed months, newest first, each with its page and its PDF', async () => {
    const page = await (await web.loggedIn(alice)).get('/console/statements');
    assert.equal(page.statusCode, 200);
    assert.ok(page.body.includes('<a href="/console/statements/2026-11">November 2026</a>'));
    assert.ok(page.body.includes('<a href="/console/statements/2026-11/pdf" download>PDF</a>'));
    assert.ok(page.body.indexOf('November 2026') < page.body.indexOf('October 2026'));
    assert.doesNotMatch(page.body, /December 2026/, 'December is not over');
    assert.match(page.body, /<a href="\/console\/statements">Statements<\/a>/, 'in the navigation');
  });

  it('shows a month: opening, the late payment in its month, the charge, closing, and says it was reissued', async () => {
    const page = await (await web.loggedIn(alice)).get('/console/statements/2026-11');
    assert.equal(page.statusCode, 200);
    const body = text(page.body);
    assert.match(body, /Example Hosting Co-op 1 Example Street Springfield 12345/);
    assert.match(body, /Opening balance \$18\.35/);
    assert.equal(await web.db.ledger.balanceCents(alice, new Date('2026-11-01T00:00:00Z')), 1835);
    assert.match(
      body,
      /2026-11-28 00:00 Payment #\d+ received \(manual\) recorded late, on [\d-]+ [\d:]+: this statement was reissued \+\$5\.00/,
    );
    assert.match(body, /capsul capsul-\w+, f1-s at \$7\.16 a month ran 2026-11-01 00:00 to 2026-11-20 00:00 \(19\.00 days\) -\$4\.47/);
    assert.match(body, /Closing balance \$18\.88/);
    assert.match(body, /Reissued on /);
    assert.ok(page.body.includes('href="/console/statements/2026-11/pdf" download>Download as PDF</a>'));
  });

  it('gives the same month as a PDF download with real text', async () => {
    const response = await (await web.loggedIn(alice)).get('/console/statements/2026-11/pdf');
    assert.equal(response.statusCode, 200);
    assert.equal(response.headers['content-type'], 'application/pdf');
    assert.equal(response.headers['content-disposition'], 'attachment; filename="statement-2026-11.pdf"');
    const pdf = pdfText(response.rawPayload);
    for (const expected of [
      'Example Hosting Co-op',
      'Statement for November 2026',
      `Account: ${alice}`,
      '$18.35',
      '+$5.00',
      '-$4.47',
      '$18.88',
    ]) {
      assert.ok(pdf.includes(expected), `${expected} in the PDF`);
    }
  });

  it("shows a customer only their own account's statements, whatever month they ask for", async () => {
    const client = await web.loggedIn(bob);
    const list = await client.get('/console/statements');
    assert.ok(list.body.includes('November 2026'));
    assert.doesNotMatch(list.body, /October 2026/, "alice's October is not bob's");
    const november = await client.get('/console/statements/2026-11');
    assert.equal(november.statusCode, 200);
    assert.match(text(november.body), /Opening balance \$0\.00 .*\+\$12\.34 .*Closing balance \$12\.34/);
    assert.doesNotMatch(november.body, /alice|18\.35|capsul-/);
    for (const url of ['/console/statements/2026-10', '/console/statements/2026-10/pdf']) {
      const response = await client.get(url);
      assert.equal(response.statusCode, 404, url);
      assert.match(text(response.body), /Your account has no statement for October 2026/);
    }
    const pdf = await client.get('/console/statements/2026-11/pdf');
    assert.doesNotMatch(pdfText(pdf.rawPayload), /alice|18\.35/);
  });

  it('refuses a malformed month with 400 and a month not over with 404, as pages', async () => {
    const client = await web.loggedIn(alice);
    for (const month of ['2026-13', 'november', '2026-1', '1969-12', '2026-11-01']) {
      for (const suffix of ['', '/pdf']) {
        const response = await client.get(`/console/statements/${encodeURIComponent(month)}${suffix}`);
        assert.equal(response.statusCode, 400, `${month}${suffix}`);
        assert.match(text(response.body), /is not a month: give it as YYYY-MM, like 2026-11/);
      }
    }
    const open = await client.get('/console/statements/2026-12');
    assert.equal(open.statusCode, 404);
    assert.match(text(open.body), /2026-12 is not over yet: its statement is ready on 2027-01-01/);
  });

  it('tells a customer without an account that there is nothing yet', async () => {
    const client = await web.loggedIn('nobody-yet@example.org');
    assert.match(text((await client.get('/console/statements')).body), /No statements yet/);
    assert.equal((await client.get('/console/statements/2026-11')).statusCode, 404);
  });

  it('lets the customer stop and resume the statement emails, with a CSRF token, as an event by them', async () => {
    const client = await web.loggedIn(alice);
    const page = await client.get('/console/statements');
    assert.match(page.body, /<button type="submit">Stop emailing my statements<\/button>/);
    const forged = await client.post('/console/statements/emails', { send: 'no', _csrf: null });
    assert.equal(forged.statusCode, 403);
    const stopped = await client.submit('/console/statements', '/console/statements/emails', { send: 'no' });
    assert.equal(stopped.statusCode, 303);
    assert.equal(stopped.headers.location, '/console/statements');
    assert.match((await client.get('/console/statements')).body, /<button type="submit">Email me my statements<\/button>/);
    const { rows } = await web.db.pool.query(
      `SELECT message_data->>'send' AS send, message_metadata->'by' AS by FROM emt_messages WHERE message_type = 'StatementEmailsChosen'`,
    );
    assert.deepEqual(rows, [{ send: 'false', by: { kind: 'customer', id: await web.db.ledger.accountIdFor(alice) } }]);
    assert.match(text((await client.get('/console/history')).body), /You chose not to receive your monthly statements by email/);
    const again = await client.submit('/console/statements', '/console/statements/emails', { send: 'no' });
    assert.equal(again.statusCode, 303, 'the same choice again changes nothing');
    assert.equal(
      (await web.db.pool.query(`SELECT count(*)::int AS n FROM emt_messages WHERE message_type = 'StatementEmailsChosen'`)).rows[0].n,
      1,
    );
    for (const send of ['maybe', '']) {
      const bad = await client.submit('/console/statements', '/console/statements/emails', { send });
      assert.equal(bad.statusCode, 400, send);
    }
    assert.equal((await client.submit('/console/statements', '/console/statements/emails', { send: 'yes' })).statusCode, 303);
    assert.match((await client.get('/console/statements')).body, /Stop emailing my statements/);
  });

  it('has no email setting for a customer without an account', async () => {
    const client = await web.loggedIn('no-account-yet@example.org');
    const page = await client.get('/console/statements');
    assert.doesNotMatch(page.body, /emailing my statements|Email me my statements/);
    const refused = await client.post('/console/statements/emails', { send: 'no' });
    assert.equal(refused.statusCode, 404);
  });
});
