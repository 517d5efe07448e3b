// Every admin page in a real browser at a laptop's width (1280 px) and a phone's (390 px), with data
// that strains a table: long emails, references and reasons, corrected payments, held payments open,
// closed and recorded, capsuls, a host never seen with drift. At 1280 px a page uses the screen's width and no
// table needs scrolling; at 390 px a table may scroll sideways inside its own box, but nothing else
// overflows. On both, every date sits on one line. docs/screenshots/admin-*-{1280,390}.png come
// from here (CAPSUL_SCREENSHOTS=1, once every page has passed).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Page } from 'playwright-core';
import { createPool } from '../../src/db/database.ts';
import { watchIncidents } from '../../src/jobs/incidents.ts';
import { Hosts } from '../../src/ledger/hosts.ts';
import { holdPayment } from '../../src/payments/holds.ts';
import {
  assertNoHorizontalScroll,
  browserSkipReason,
  ed25519PublicKey,
  launchBrowser,
  logIn,
  publishScreenshots,
  screenshot,
  startServer,
  type Browser,
  type Server,
} from './harness.ts';

const operatorEmail = 'operator@example.org';
const longEmail = 'a.customer.with-a-really-long-mailbox-name@accounts.an-unusually-long-domain-name.example.org';
const shortEmail = 'kim@example.org';
const longReference = 'pi_3QkLm9AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-bank-transfer-0042';
const longReason =
  'Chargeback opened by the card issuer (case CB-2026-11-000123456789, https://dashboard.stripe.com/disputes/du_1QkLm9AbCdEfGhIjKlMnOpQr): ' +
  'the customer says they did not recognise the charge; evidence sent on the third, awaiting the outcome before anything else is done.';
const longOperator = 'an-operator-with-a-long-name@operations.an-unusually-long-domain-name.example.org';

/** The screens every admin page must fit. */
const screens = [
  { name: '1280', width: 1280, height: 800, phone: false },
  { name: '390', width: 390, height: 844, phone: true },
] as const;

let server: Server;
let browser: Browser;
/** payment ids the pages are visited with */
const seeded = { invalidated: '' };
let allPassed = true;

describe('the admin pages at 1280 and 390 px', { skip: browserSkipReason() }, () => {
  before(async () => {
    browser = await launchBrowser();
    server = await startServer({ adminEmails: [operatorEmail, longOperator] });
    await seed(server);
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
    if (allPassed) publishScreenshots();
  });

  const pages = [
    { shot: 'admin-accounts', path: () => '/admin', heading: 'Admin: accounts' },
    { shot: 'admin-payments', path: () => '/admin/payments', heading: 'Admin: payments' },
    { shot: 'admin-payment', path: () => `/admin/payments/${seeded.invalidated}`, heading: `Admin: payment` },
    { shot: 'admin-capsuls', path: () => '/admin/capsuls', heading: 'Admin: capsuls' },
    { shot: 'admin-hosts', path: () => '/admin/hosts', heading: 'Admin: hosts' },
    { shot: 'admin-incidents', path: () => '/admin/incidents', heading: 'Admin: incidents' },
    { shot: 'admin-events', path: () => '/admin/events', heading: 'Admin: recent events' },
  ];

  for (const screen of screens) {
    it(`every admin page fits ${screen.width} px, dates on one line`, async () => {
      const page = await browser.newPage(screen);
      try {
        await logIn(page, server, operatorEmail, { from: '/admin' });
        const problems: string[] = [];
        for (const each of pages) {
          await page.goto(`${server.baseUrl}${each.path()}`);
          await page.getByRole('heading', { name: new RegExp(`^${each.heading}`), level: 1 }).waitFor();
          await assertNoHorizontalScroll(page);
          problems.push(...(await overflows(page, { tablesMayScroll: screen.phone })).map((p) => `${each.path()}: ${p}`));
          problems.push(...(await wrappedDates(page)).map((p) => `${each.path()}: ${p}`));
          await screenshot(page, `${each.shot}-${screen.name}`);
        }
        assert.deepEqual(problems, [], `at ${screen.width} px:\n${problems.join('\n')}`);
      } catch (error) {
        allPassed = false;
        throw error;
      } finally {
        await page.context().close();
      }
    });
  }
});

/**
 * What sticks out sideways on `page`: an element whose content is wider than its box, or whose box
 * reaches past its parent's or the window's right edge. Inside a scroll box (overflow-x auto) the
 * content may be wider than the box only when `tablesMayScroll`; otherwise the box must not scroll.
 */
function overflows(page: Page, options: { tablesMayScroll: boolean }): Promise<string[]> {
  // No named functions in here: tsx would wrap them in a helper the page does not have.
  return page.evaluate(({ tablesMayScroll }) => {
    const problems: string[] = [];
    const windowRight = document.documentElement.clientWidth;
    const elements = [...document.querySelectorAll('main, main *')];
    const label = new Map(
      elements.map((el) => [
        el,
        `<${el.tagName.toLowerCase()}${el.className ? ` class="${el.className}"` : ''}> "${(el.textContent ?? '').trim().replace(/\s+/g, ' ').slice(0, 50)}"`,
      ]),
    );
    const scrollBoxes = new Set(elements.filter((el) => ['auto', 'scroll'].includes(getComputedStyle(el).overflowX)));
    for (const el of elements) {
      const style = getComputedStyle(el);
      if (style.display === 'none' || style.display === 'contents') continue;
      const box = el.getBoundingClientRect();
      if (scrollBoxes.has(el)) {
        if (!tablesMayScroll && el.scrollWidth > el.clientWidth + 1) {
          problems.push(`${label.get(el)} must scroll sideways: ${el.scrollWidth} px of content in ${el.clientWidth} px`);
        }
        if (box.right > windowRight + 1)
          problems.push(`${label.get(el)} reaches ${Math.round(box.right)} px, past the window (${windowRight} px)`);
        continue;
      }
      if (style.display !== 'inline' && el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1) {
        problems.push(`${label.get(el)} overflows its box: ${el.scrollWidth} px of content in ${el.clientWidth} px`);
      }
      const parent = el.parentElement;
      let inScrollBox = false;
      for (let up = parent; up; up = up.parentElement) if (scrollBoxes.has(up)) inScrollBox = true;
      if (!inScrollBox && box.width > 0 && box.right > windowRight + 1) {
        problems.push(`${label.get(el)} reaches ${Math.round(box.right)} px, past the window (${windowRight} px)`);
      }
      if (parent && !scrollBoxes.has(parent) && box.width > 0) {
        const parentRight = parent.getBoundingClientRect().right;
        if (box.right > parentRight + 1)
          problems.push(
            `${label.get(el)} sticks out of ${label.get(parent) ?? parent.tagName} by ${Math.round(box.right - parentRight)} px`,
          );
      }
    }
    return problems;
  }, options);
}

/** Every date on `page` (2026-12-07 14:19:08) that the browser broke over more than one line. */
function wrappedDates(page: Page): Promise<string[]> {
  return page.evaluate(() => {
    const problems: string[] = [];
    const walker = document.createTreeWalker(document.querySelector('main')!, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const match of (node.textContent ?? '').matchAll(/\d{4}-\d\d-\d\d \d\d:\d\d(:\d\d)?/g)) {
        const range = document.createRange();
        range.setStart(node, match.index);
        range.setEnd(node, match.index + match[0].length);
        const lines = new Set([...range.getClientRects()].filter((r) => r.width > 0).map((r) => Math.round(r.top)));
        if (lines.size > 1) problems.push(`the date ${match[0]} is on ${lines.size} lines`);
      }
    }
    return problems;
  });
}

/** Accounts, corrected payments, held payments, capsuls (one deleted), a second host with drift, as an operator makes them. */
async function seed(on: Server): Promise<void> {
  const capsul = async (args: string[]) => {
    const run = await on.capsul(args);
    assert.equal(run.code, 0, `capsul ${args.join(' ')}: ${run.stderr}`);
    return run.stdout.trim();
  };
  await capsul(['record-payment', '--email', longEmail, '--dollars', '50', '--reference', longReference, '--at', '2026-01-02T03:04:05Z']);
  await capsul(['record-payment', '--email', shortEmail, '--dollars', '20', '--by', longOperator]);
  seeded.invalidated = await capsul(['record-payment', '--email', longEmail, '--dollars', '12.34', '--reference', `${longReference}-b`]);
  await capsul(['invalidate-payment', seeded.invalidated, '--reason', longReason, '--by', longOperator]);
  const reinstated = await capsul(['record-payment', '--email', shortEmail, '--dollars', '7']);
  await capsul(['invalidate-payment', reinstated, '--reason', 'a chargeback', '--by', longOperator]);
  await capsul(['reinstate-payment', reinstated, '--reason', `Dispute won. ${longReason}`, '--by', longOperator]);
  const sshKey = ed25519PublicKey('admin@widths').line;
  await capsul(['create-vm', '--email', longEmail, '--size', 'f1-xs', '--os', 'debian12', '--ssh-key', sshKey]);
  const deleted = await capsul(['create-vm', '--email', shortEmail, '--size', 'f1-xs', '--os', 'debian12', '--ssh-key', sshKey]);
  await capsul(['delete-vm', deleted, '--reason', longReason, '--by', longOperator]);
  await capsul(['add-host', '--id', 'a-second-host-never-seen', '--memory-mb', '65536', '--vcpus', '32']);

  const pool = createPool(on.databaseUrl, 2);
  try {
    const deps = { pool, mailer: { send: async () => {}, outboxDir: null }, adminEmails: [], now: () => new Date() };
    const hold = (reference: string, email: string | null) =>
      holdPayment(deps, { provider: 'stripe', reference, email, amountCents: 1234, expectedCents: 2000, reason: longReason });
    await hold(`${longReference}-open`, longEmail);
    await hold(`${longReference}-unknown`, null);
    await hold(`${longReference}-closed`, longEmail);
    await hold(`${longReference}-recorded`, shortEmail);
    // The second host reports a capsul the ledger never placed there: open drift.
    await new Hosts({ pool, now: () => new Date() }).checkDrift('a-second-host-never-seen', ['capsul-stray00001']);
    // Incidents: the drift above, opened by the incidents job now; two from earlier in the day, cleared.
    const alerts = { hostOfflineMinutes: 10, waitingMinutes: 10, webhookFailures: 5, jobFailures: 3 };
    await watchIncidents({ pool, now: () => new Date(), alerts }, { dryRun: false, report: () => {}, log: () => {} });
    const hoursAgo = (hours: number) => new Date(Date.now() - hours * 3600_000).toISOString();
    const earlier = [
      [
        'host-offline',
        'rack1-node3',
        3,
        2,
        `host rack1-node3 is offline: it last sent a heartbeat ${hoursAgo(3.2).slice(0, 16).replace('T', ' ')} UTC`,
      ],
      ['job-failing', 'reconcile', 5, 4, 'the reconcile job has failed 3 runs in a row'],
    ] as const;
    for (const [kind, subject, opened, cleared, summary] of earlier) {
      await pool.query(
        `INSERT INTO incidents (kind, subject, opened, cleared, summary, details, mailed_open, mailed_clear, recipients)
         VALUES ($1, $2, $3, $4, $5, '[]', $3, $4, $6)`,
        [kind, subject, hoursAgo(opened), hoursAgo(cleared), summary, operatorEmail],
      );
    }
  } finally {
    await pool.end();
  }
  await capsul([
    'resolve-hold',
    '--provider',
    'stripe',
    '--reference',
    `${longReference}-closed`,
    '--reason',
    longReason,
    '--by',
    longOperator,
  ]);
  await capsul(['record-payment', '--email', shortEmail, '--dollars', '12.34', '--reference', `${longReference}-recorded`]);
}
