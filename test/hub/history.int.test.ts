// The customer's history over real HTTP against a real database: their account's and capsuls' events
// as plain sentences, newest first, paged, filtered by kind, with routine state reports in runs; hosts'
// names hidden; other customers' events never shown.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { streamVersion } from '../../src/db/event-store.ts';
import type { LedgerEvent } from '../../src/domain/events.ts';
import { vmStream } from '../../src/domain/vm/events.ts';
import { appendEvents } from '../../src/ledger/append.ts';
import { operator, sshKey } from '../support/db.ts';
import { lifeOnHost } from '../support/scenario.ts';
import { webHarness, type WebHarness } from '../support/web.ts';

const start = new Date('2026-11-01T12:00:00Z');
const minutes = (n: number) => new Date(start.getTime() + n * 60_000);

let web: WebHarness;
before(async () => {
  web = await webHarness({ start });
});
after(() => web.close());

const createF1xs = (email: string) =>
  web.db.ledger.createVm({ email, size: 'f1-xs', os: 'debian12', sshPublicKeys: [sshKey], cause: operator });

/** The page's text with tags dropped and white space folded, for reading sentences across markup. */
const text = (html: string) => html.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ');

describe('history', () => {
  it('sends a visitor to the login page and back', async () => {
    const response = await web.client().get('/console/history');
    assert.equal(response.statusCode, 303);
    assert.equal(response.headers.location, '/auth/login?next=%2Fconsole%2Fhistory');
  });

  it('tells a customer without an account that nothing has happened yet', async () => {
    const page = await (await web.loggedIn('quiet@example.org')).get('/console/history');
    assert.equal(page.statusCode, 200);
    assert.match(page.body, /<h1>History<\/h1>/);
    assert.match(page.body, /Nothing has happened yet/);
    assert.doesNotMatch(page.body, /Older events/);
  });

  it("tells what happened to the money and the capsuls, newest first, without hosts' names", async () => {
    web.clock.set(start);
    const email = 'story@example.org';
    const { paymentId } = await web.db.ledger.recordPayment({ email, amountCents: 5000, reference: 'wire-42', cause: operator });
    const accountId = (await web.db.ledger.accountIdFor(email))!;
    const { vmId: running } = await createF1xs(email);
    await lifeOnHost(web.db, running, accountId, (n) => minutes(n), 'running');
    const { vmId: broken } = await createF1xs(email);
    await lifeOnHost(web.db, broken, accountId, (n) => minutes(20 + n), 'failed');
    web.clock.set(minutes(40));
    await web.db.ledger.invalidatePayment(paymentId, { ...operator, reason: 'chargeback' });
    web.clock.set(minutes(41));
    await web.db.ledger.reinstatePayment(
      paymentId,
      { ...operator, reason: 'the bank reversed the chargeback' },
      { customerNote: 'Your bank withdrew its reversal' },
    );
    const { vmId: gone } = await createF1xs(email);
    await web.db.ledger.deleteVm(gone, { ...operator, reason: 'not needed after all' });
    await lifeOnHost(web.db, gone, accountId, (n) => minutes(50 + n), 'deleted');

    const page = await (await web.loggedIn(email)).get('/console/history');
    assert.equal(page.statusCode, 200);
    const body = text(page.body);
    const sentences = [
      'Your account was opened.',
      `Payment ${paymentId} of $50.00 was received (manual (bank transfer or cash), reference wire-42).`,
      `Capsul ${running} was requested: size f1-xs, debian12, $5.33 a month. Billing started.`,
      `Capsul ${running} was placed on a host and is being created.`,
      `Capsul ${running} was provisioned: IPv4 192.0.2.10, IPv6 2001:db8::10.`,
      `Capsul ${running} was seen running.`,
      `A stop (shut down) of capsul ${running} was requested.`,
      `Capsul ${running} was seen stopped.`,
      `A start of capsul ${running} was requested.`,
      `Capsul ${broken} failed: disk full`,
      `Payment ${paymentId} was invalidated: payment reversed by your bank or payment provider. It no longer counts towards your balance.`,
      `Payment ${paymentId} was reinstated: Your bank withdrew its reversal. It counts towards your balance again.`,
      `Deletion of capsul ${gone} was requested by our operators (write to support if you want to know why). Billing stopped.`,
      `Capsul ${gone} is being deleted from its host.`,
      `Capsul ${gone} was deleted.`,
    ];
    for (const sentence of sentences) assert.ok(body.includes(sentence), sentence);
    assert.ok(!body.includes('not needed after all'), "an operator's reason for a deletion is not the customer's to read");
    // Newest first: the order the facts were committed, reversed.
    const positions = [
      'Your account was opened.',
      `Capsul ${running} was requested`,
      `Capsul ${broken} failed`,
      'was invalidated',
      'was reinstated',
      `Capsul ${gone} was deleted.`,
    ].map((sentence) => body.indexOf(sentence));
    assert.deepEqual(
      positions,
      [...positions].sort((a, b) => b - a),
    );
    assert.ok(!page.body.includes('host-a') && !page.body.includes('test-host'), "hosts are the operators' business");
    assert.match(page.body, /<caption>Events<\/caption>/);
    assert.match(page.body, /<th scope="col">When \(UTC\)<\/th>/);
    assert.match(page.body, /<th scope="row"><time datetime="2026-11-01T12:00:00.000Z">2026-11-01 12:00 UTC<\/time><\/th>/);
    assert.match(body, /2026-11-01 12:03 UTC Capsul capsul-[a-z0-9]{10} was seen running\. its host/, 'when, what, and by whom');
    assert.match(body, /was reinstated: Your bank withdrew its reversal\. It counts towards your balance again\. an operator/);
    for (const reason of ['chargeback', 'the bank reversed'])
      assert.ok(!body.includes(`: ${reason}`), `the reason "${reason}" is not shown`);
    assert.doesNotMatch(page.body, /Older events/);
  });

  it("never shows another customer's events", async () => {
    web.clock.set(start);
    await web.db.ledger.recordPayment({ email: 'mine@example.org', amountCents: 1111, cause: operator });
    const { vmId: mine } = await createF1xs('mine@example.org');
    await web.db.ledger.recordPayment({ email: 'theirs@example.org', amountCents: 7777, reference: 'their-secret', cause: operator });
    const { vmId: theirs } = await createF1xs('theirs@example.org');
    await web.db.ledger.deleteVm(theirs, { ...operator, reason: 'their reason' });
    const client = await web.loggedIn('mine@example.org');
    const page = await client.get('/console/history');
    assert.ok(page.body.includes(mine));
    assert.ok(page.body.includes('$11.11'));
    for (const secret of [theirs, '$77.77', 'their-secret', 'their reason']) assert.ok(!page.body.includes(secret), secret);
    for (const kind of ['money', 'capsuls']) {
      const filtered = await client.get(`/console/history?kind=${kind}`);
      assert.ok(filtered.body.includes(kind === 'money' ? '$11.11' : mine), kind);
      for (const secret of [theirs, '$77.77', 'their-secret', 'their reason'])
        assert.ok(!filtered.body.includes(secret), `${kind}: ${secret}`);
    }
  });

  it("tells the customer a correction's note, never the reason operators gave it", async () => {
    web.clock.set(start);
    const email = 'told@example.org';
    const { paymentId } = await web.db.ledger.recordPayment({ email, amountCents: 3000, reference: 'pi_told', cause: operator });
    web.clock.set(minutes(5));
    await web.db.ledger.invalidatePayment(
      paymentId,
      { ...operator, reason: 'chargeback dp_123, fraud?' },
      { customerNote: 'Reversed at your request' },
    );
    web.clock.set(minutes(6));
    await web.db.ledger.reinstatePayment(paymentId, { ...operator, reason: 'dp_123 won, customer was lying' });
    web.clock.set(minutes(7));
    await web.db.ledger.recordRefund({
      paymentId,
      totalRefundedCents: 1000,
      reference: 'ch_told',
      customerNote: 'Part of your payment, back as agreed by email.',
      cause: { ...operator, reason: 'goodwill after outage ticket #9' },
    });
    const client = await web.loggedIn(email);
    for (const kind of ['all', 'money']) {
      const body = text((await client.get(`/console/history?kind=${kind}`)).body);
      assert.ok(body.includes(`Payment ${paymentId} was invalidated: Reversed at your request. It no longer counts`), kind);
      assert.ok(
        body.includes(`Payment ${paymentId} was reinstated: the reversal was cancelled. It counts towards your balance again.`),
        kind,
      );
      assert.ok(
        body.includes(
          `Payment ${paymentId} was refunded ($10.00 in all so far): Part of your payment, back as agreed by email. The refunded`,
        ),
        kind,
      );
      for (const secret of ['dp_123', 'fraud', 'lying', 'goodwill', 'ticket #9']) assert.ok(!body.includes(secret), `${kind}: ${secret}`);
    }
    const balance = await client.get('/console/account-balance');
    for (const secret of ['dp_123', 'fraud', 'lying', 'goodwill']) assert.ok(!balance.body.includes(secret), `balance page: ${secret}`);
  });

  it('tells the default for corrections already in the log, written before notes (the reason in their data too)', async () => {
    web.clock.set(start);
    const email = 'old-log@example.org';
    const { paymentId } = await web.db.ledger.recordPayment({ email, amountCents: 2500, cause: operator });
    const stream = `account-${(await web.db.ledger.accountIdFor(email))!}`;
    // As version 1 wrote them: the reason in the cause and copied into the data, no customer note.
    const accountId = stream.slice('account-'.length);
    const old = [
      { type: 'PaymentInvalidated', data: { accountId, paymentId, reason: 'chargeback dp_old', at: minutes(1).toISOString() } },
      { type: 'PaymentReinstated', data: { accountId, paymentId, reason: 'dp_old won', at: minutes(2).toISOString() } },
    ] as unknown as LedgerEvent[];
    for (const event of old) {
      const reason = (event.data as { reason: string }).reason;
      const appended = await appendEvents(
        web.db.pool,
        stream,
        [event],
        { by: { kind: 'operator', id: 'old-timer' }, reason, eventVersion: 1 },
        await streamVersion(web.db.pool, stream),
      );
      assert.ok(appended.ok);
    }
    const body = text((await (await web.loggedIn(email)).get('/console/history?kind=money')).body);
    assert.ok(body.includes(`Payment ${paymentId} was invalidated: payment reversed by your bank or payment provider. It no longer`));
    assert.ok(body.includes(`Payment ${paymentId} was reinstated: the reversal was cancelled. It counts`));
    assert.ok(!body.includes('dp_old'), 'the reason is not shown');
  });

  it('shows notes and references with script in them escaped', async () => {
    web.clock.set(start);
    const email = 'escape-history@example.org';
    const { paymentId } = await web.db.ledger.recordPayment({ email, amountCents: 2000, reference: '<b>ref</b>', cause: operator });
    await web.db.ledger.invalidatePayment(paymentId, { ...operator, reason: 'x' }, { customerNote: '<script>alert(1)</script>' });
    const page = await (await web.loggedIn(email)).get('/console/history');
    assert.doesNotMatch(page.body, /<script>alert|<b>ref/);
    assert.ok(page.body.includes('&lt;script&gt;alert(1)&lt;/script&gt;'));
    assert.ok(page.body.includes('&lt;b&gt;ref&lt;/b&gt;'));
  });

  it('pages 100 events at a time through an "older" link, with none lost or repeated', async () => {
    web.clock.set(start);
    const email = 'pages@example.org';
    const recorded: number[] = [];
    for (let i = 0; i < 104; i++)
      recorded.push((await web.db.ledger.recordPayment({ email, amountCents: 100 + i, cause: operator })).paymentId);
    const client = await web.loggedIn(email);
    const paymentsOn = (html: string) => [...html.matchAll(/Payment (\d+) of/g)].map((match) => Number(match[1]));

    const first = await client.get('/console/history');
    assert.equal(paymentsOn(first.body).length, 100);
    assert.doesNotMatch(first.body, /Your account was opened/);
    assert.deepEqual(paymentsOn(first.body), recorded.slice(4).reverse(), 'the newest 100, newest first');
    const older = /<a href="(\/console\/history\?before=\d+\.\d+)">Older events<\/a>/.exec(first.body)?.[1];
    assert.ok(older, 'a link to older events');

    const second = await client.get(older);
    assert.equal(second.statusCode, 200);
    assert.deepEqual(paymentsOn(second.body), recorded.slice(0, 4).reverse());
    assert.match(second.body, /Your account was opened/);
    assert.doesNotMatch(second.body, /Older events/);
    assert.match(second.body, /<a href="\/console\/history">Newest events<\/a>/);
  });

  it('refuses a malformed page address with 400', async () => {
    const client = await web.loggedIn('cursor@example.org');
    for (const query of ['before=abc', 'before=1.2.3', 'before=%3Cscript%3E', 'before=1.1&before=2.2', `before=${'9'.repeat(30)}.1`]) {
      const response = await client.get(`/console/history?${query}`);
      assert.equal(response.statusCode, 400, query);
      assert.doesNotMatch(response.body, /<script>/);
    }
    const past = await client.get('/console/history?before=1.1');
    assert.equal(past.statusCode, 200);
    assert.match(past.body, /There is nothing older/);
  });

  it('refuses an unknown kind with 400 and the page, saying which kinds there are', async () => {
    const client = await web.loggedIn('kinds@example.org');
    for (const query of ['kind=payments', 'kind=%3Cscript%3E', 'kind=money&kind=capsuls', 'kind=MONEY', 'kind=money&before=abc']) {
      const response = await client.get(`/console/history?${query}`);
      assert.equal(response.statusCode, 400, query);
      assert.match(response.body, /<h1>History<\/h1>/, query);
      assert.match(
        response.body,
        /role="alert">(There is no such kind of history: choose all, money or capsuls\.|That history page does not exist)/,
        query,
      );
      assert.match(response.body, /<a href="\/console\/history\?kind=money">Money<\/a>/, 'a way on');
      assert.doesNotMatch(response.body, /<script>/);
    }
    for (const kind of ['all', 'money', 'capsuls', ''])
      assert.equal((await client.get(`/console/history?kind=${kind}`)).statusCode, 200, kind);
  });

  it('filters by kind through links, each marked when it is the one shown', async () => {
    web.clock.set(start);
    const email = 'filters@example.org';
    const { paymentId } = await web.db.ledger.recordPayment({ email, amountCents: 5000, cause: operator });
    const accountId = (await web.db.ledger.accountIdFor(email))!;
    const { vmId } = await createF1xs(email);
    await lifeOnHost(web.db, vmId, accountId, (n) => minutes(n), 'running');
    web.clock.set(minutes(30));
    await web.db.ledger.invalidatePayment(paymentId, { ...operator, reason: 'chargeback' });
    const client = await web.loggedIn(email);

    const money = text((await client.get('/console/history?kind=money')).body);
    assert.ok(money.includes(`Payment ${paymentId} of $50.00 was received`) && money.includes(`Payment ${paymentId} was invalidated`));
    assert.ok(!money.includes(`Capsul ${vmId}`) && !money.includes('Your account was opened'), 'money only');
    const capsuls = text((await client.get('/console/history?kind=capsuls')).body);
    assert.ok(capsuls.includes(`Capsul ${vmId} was requested`) && capsuls.includes(`A stop (shut down) of capsul ${vmId} was requested.`));
    assert.ok(!capsuls.includes(`Payment ${paymentId}`), 'capsuls only');
    const all = await client.get('/console/history');
    assert.ok(text(all.body).includes(`Payment ${paymentId} was invalidated`) && text(all.body).includes(`Capsul ${vmId} was requested`));

    assert.match(all.body, /<a href="\/console\/history" aria-current="page">Everything<\/a>/);
    const filtered = (await client.get('/console/history?kind=capsuls')).body;
    assert.match(filtered, /<a href="\/console\/history\?kind=capsuls" aria-current="page">Capsuls<\/a>/);
    assert.match(filtered, /<a href="\/console\/history">Everything<\/a>/);
    assert.match(filtered, /<caption>Events about capsuls<\/caption>/);
    assert.match(
      (await (await web.loggedIn('nothing-yet@example.org')).get('/console/history?kind=money')).body,
      /Nothing has happened to your money yet/,
    );
  });

  it('pages each kind through a history of several pages with runs of reports across page boundaries, losing and repeating nothing', async () => {
    web.clock.set(start);
    const email = 'long-story@example.org';
    const payments: number[] = [];
    payments.push((await web.db.ledger.recordPayment({ email, amountCents: 100_000, cause: operator })).paymentId);
    const accountId = (await web.db.ledger.accountIdFor(email))!;
    const { vmId } = await createF1xs(email);
    await lifeOnHost(web.db, vmId, accountId, (n) => minutes(n), 'running');
    // Newest first the history reads 41 payments, 47 reports, 41 payments … so page boundaries fall
    // inside runs; the capsuls' kind, without the payments, is one long run over several pages.
    const reportsPerRun = 47;
    let minute = 10;
    for (let round = 0; round < 5; round++) {
      const reports = Array.from({ length: reportsPerRun }, (): LedgerEvent => {
        minute += 1;
        const at = minutes(minute).toISOString();
        return { type: 'VmStateObserved', data: { vmId, host: 'host-a', state: 'running', reportId: randomUUID(), operationId: null, at } };
      });
      const stream = vmStream(vmId);
      const appended = await appendEvents(
        web.db.pool,
        stream,
        reports,
        { by: { kind: 'spoke', id: 'host-a' }, eventVersion: 1 },
        await streamVersion(web.db.pool, stream),
      );
      assert.ok(appended.ok);
      web.clock.set(minutes((minute += 1)));
      for (let i = 0; i < 41; i++)
        payments.push((await web.db.ledger.recordPayment({ email, amountCents: 100 + i, cause: operator })).paymentId);
    }
    const client = await web.loggedIn(email);
    // lifeOnHost reported running, stopped and running: three reports of its own.
    const reportCount = 5 * reportsPerRun + 3;

    /** Every page of one kind, following "Older events", each page's lines as text. */
    const pagesOf = async (kind: string) => {
      const pages: string[][] = [];
      let address: string | undefined = kind === 'all' ? '/console/history' : `/console/history?kind=${kind}`;
      while (address) {
        const response = await client.get(address);
        assert.equal(response.statusCode, 200, address);
        pages.push([...response.body.matchAll(/<th scope="row">.*?<\/th>\s*<td>(.*?)<\/td>/gs)].map((match) => match[1]!));
        address = /<a href="([^"]+)">Older events<\/a>/.exec(response.body)?.[1]?.replaceAll('&amp;', '&');
        if (address && kind !== 'all') assert.ok(address.includes(`kind=${kind}`), 'the cursor keeps the kind');
        assert.ok(pages.length < 20, 'the pages end');
      }
      return pages;
    };
    const eventsOn = (line: string) => Number(/was reported \w+ (\d+) times/.exec(line)?.[1] ?? 1);
    const paymentsOn = (pages: string[][]) =>
      pages.flat().flatMap((line) => [...(/^Payment (\d+) of/.exec(line)?.slice(1) ?? [])].map(Number));
    const reportsOn = (pages: string[][]) =>
      pages
        .flat()
        .reduce((sum, line) => sum + (/was reported \w+ \d+ times/.test(line) ? eventsOn(line) : /was seen \w+\./.test(line) ? 1 : 0), 0);
    const straddles = (pages: string[][]) =>
      pages.slice(1).filter((page, i) => page[0]?.includes('was reported running') && pages[i]!.at(-1)?.includes('was reported running'))
        .length;
    const fullPages = (pages: string[][]) => {
      for (const page of pages.slice(0, -1))
        assert.equal(
          page.reduce((sum, line) => sum + eventsOn(line), 0),
          100,
          'a page holds 100 events',
        );
    };

    const all = await pagesOf('all');
    assert.ok(all.length >= 5, `${all.length} pages`);
    fullPages(all);
    assert.deepEqual(paymentsOn(all), [...payments].reverse(), 'every payment once, newest first');
    assert.equal(reportsOn(all), reportCount, 'every report counted once');
    assert.ok(straddles(all) >= 1, 'a run crosses a page boundary');
    assert.ok(all.flat().some((line) => line.includes(`Capsul ${vmId} was reported running ${reportsPerRun} times, from `)));
    assert.equal(all.flat().filter((line) => line === 'Your account was opened.').length, 1);
    assert.ok(all.flat().includes(`Capsul ${vmId} was seen stopped.`), 'a state change is never hidden');

    const money = await pagesOf('money');
    assert.equal(money.length, 3);
    fullPages(money);
    assert.deepEqual(paymentsOn(money), [...payments].reverse());
    assert.equal(money.flat().length, payments.length, 'nothing but payments');

    const capsuls = await pagesOf('capsuls');
    assert.equal(capsuls.length, 3);
    fullPages(capsuls);
    assert.equal(paymentsOn(capsuls).length, 0);
    assert.equal(reportsOn(capsuls), reportCount);
    assert.ok(straddles(capsuls) >= 1, 'the long run crosses page boundaries');
    assert.ok(capsuls.flat().includes(`Capsul ${vmId} was seen stopped.`));
    assert.match(
      capsuls[0]![0]!,
      new RegExp(`^Capsul ${vmId} was reported running 100 times, from 2026-11-01 \\d\\d:\\d\\d UTC to 2026-11-01 \\d\\d:\\d\\d UTC\\.$`),
    );
  });
});
