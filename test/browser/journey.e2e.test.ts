// A customer's whole journey in a real browser (Debian's chromium through playwright-core) against
// the real `capsul serve` with its simulated spoke: the public pages, logging in with the link from
// the outbox, an SSH key, a payment recorded by an operator with the CLI, a capsul created, running
// with an IPv4, deleted, and the balance and history that show it all; then the admin page. Each step
// asserts what the person sees and takes a screenshot of the page: docs/screenshots/ gets the set once
// the whole journey has passed.
// The journey's steps run in order on one server and one browser; a failed step skips the ones after
// it. A last test walks the customer pages on a phone-sized screen.
import assert from 'node:assert/strict';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import type { Page } from 'playwright-core';
import {
  assertNoHorizontalScroll,
  browserSkipReason,
  cents,
  ed25519PublicKey,
  fact,
  followLoginLink,
  launchBrowser,
  logIn,
  publishScreenshots,
  reloadUntil,
  screenshot,
  startServer,
  visible,
  waitLimitMs,
  type Browser,
  type Server,
} from './harness.ts';

const customer = 'journey@example.org';
const operatorEmail = 'operator@example.org';
const key = ed25519PublicKey('journey@laptop');
const paymentReference = 'bank-transfer-0001';
const ipv4Pattern = /^\d{1,3}(\.\d{1,3}){3}$/;

let server: Server;
let browser: Browser;
let page: Page;
/** What earlier steps found out, for the steps after them. */
const seen = { paymentId: '', vmId: '', ipv4: '', finalBalance: '', journeyComplete: false };
/** the first step that failed: the steps after it are skipped */
let failed: string | undefined;

/** One step of the journey: skipped after a failure; a failure carries the page, a screenshot and the server's output. */
function step(name: string, body: () => Promise<void>): void {
  it(name, async (t: TestContext) => {
    if (failed) return t.skip(`needs "${failed}", which failed`);
    try {
      await body();
    } catch (error) {
      failed = name;
      throw await explained(error, page);
    }
  });
}

async function explained(error: unknown, on: Page | undefined): Promise<unknown> {
  if (!(error instanceof Error)) return error;
  const shot = path.join(os.tmpdir(), `capsul-browser-failure-${process.pid}-${Date.now()}.png`);
  const saved = await on?.screenshot({ path: shot, fullPage: true }).then(
    () => true,
    () => false,
  );
  const context = [
    `── page ${on?.url()}${saved ? ` (screenshot: ${shot})` : ''}`,
    `── capsul serve, last lines ──\n${server?.output().split('\n').slice(-30).join('\n')}`,
  ].join('\n');
  // The reporter prints the stack, which holds the message as it was when the error was made.
  error.message += `\n${context}`;
  error.stack = `${error.stack}\n${context}`;
  return error;
}

const nav = (on: Page) => on.getByRole('navigation', { name: 'Main' });

describe('a customer in the browser', { skip: browserSkipReason() }, () => {
  before(async () => {
    browser = await launchBrowser();
    server = await startServer({ adminEmails: [operatorEmail] });
    page = await browser.newPage();
  });

  after(async () => {
    // Runs even when a step failed: neither the browser nor the server may outlive the file.
    await browser?.close();
    await server?.stop();
    if (seen.journeyComplete) publishScreenshots();
  });

  step('the start page and the pricing page show the sizes and prices', async () => {
    await page.goto(`${server.baseUrl}/`);
    await page.getByRole('heading', { level: 1 }).waitFor();
    const sizes = page.getByRole('table', { name: 'Capsul sizes and prices' });
    await visible(sizes.getByRole('row', { name: /f1-s/ }).getByText('$7.16'));
    await screenshot(page, 'landing');

    await nav(page).getByRole('link', { name: 'Pricing' }).click();
    await page.getByRole('heading', { name: 'Pricing', level: 1 }).waitFor();
    await visible(page.getByRole('table', { name: 'Capsul sizes and prices' }).getByRole('row', { name: /f1-s/ }));
  });

  step('logs in with the link from the email in the outbox', async () => {
    await page.goto(`${server.baseUrl}/`);
    await nav(page).getByRole('link', { name: 'Log in' }).click();
    await logIn(page, server, customer, { from: new URL(page.url()).pathname, shots: { form: 'login', link: 'login-link' } });
    assert.equal(new URL(page.url()).pathname, '/console', 'a login lands on the console');
  });

  step('the empty console says what a first capsul needs: a key and funds', async () => {
    await page.getByRole('heading', { name: 'Capsuls', level: 1 }).waitFor();
    await visible(page.getByText('You have no capsuls yet'));
    await visible(page.getByRole('link', { name: 'add one on the SSH keys page' }));
    await visible(page.getByRole('link', { name: 'add funds on the Balance page' }));
    await screenshot(page, 'console');
  });

  step('adds an SSH key, which the page lists by name and fingerprint', async () => {
    await page.getByRole('link', { name: 'add one on the SSH keys page' }).click();
    await page.getByRole('heading', { name: 'SSH keys', level: 1 }).waitFor();
    await visible(page.getByText('You have no saved keys yet'));
    await page.getByLabel('Public key').fill(key.line);
    await page.getByRole('button', { name: 'Save the key' }).click();
    await visible(page.getByRole('status').getByText('The key was saved'));
    const row = page.getByRole('table', { name: /Your saved keys/ }).getByRole('row', { name: /journey@laptop/ });
    await visible(row.getByText(key.fingerprint, { exact: true }));
    await visible(row.getByText('ssh-ed25519', { exact: true }));
    await screenshot(page, 'ssh-keys');
  });

  step('an operator records a payment with the CLI; the balance page shows it', async () => {
    await nav(page).getByRole('link', { name: 'Balance' }).click();
    await page.getByRole('heading', { name: 'Account balance', level: 1 }).waitFor();
    await visible(page.getByText('You have not added funds yet'));

    const run = await server.capsul([
      'record-payment',
      '--email',
      customer,
      '--dollars',
      '20',
      '--reference',
      paymentReference,
      '--by',
      'test-operator',
    ]);
    assert.equal(run.code, 0, `capsul record-payment: ${run.stderr}`);
    seen.paymentId = run.stdout.trim();
    assert.match(seen.paymentId, /^\d+$/, 'record-payment prints the payment id');

    await page.reload();
    assert.equal(await fact(page, 'Balance now').then((text) => text.split(' ')[0]), '$20.00');
    assert.equal(await fact(page, 'Payments counted'), '$20.00');
    const payment = page.getByRole('table', { name: /Payments received/ }).getByRole('row', { name: new RegExp(paymentReference) });
    await visible(payment.getByText('$20.00', { exact: true }));
    await visible(payment.getByText('Counted', { exact: true }));
  });

  step('creates a capsul: a size the balance covers, an OS, the key', async () => {
    await nav(page).getByRole('link', { name: 'Capsuls' }).click();
    await page.getByRole('link', { name: 'Create a capsul' }).first().click();
    await page.getByRole('heading', { name: 'Create a capsul', level: 1 }).waitFor();
    // $20 covers a month of f1-m ($12.50) but not of f1-l ($20.50) and up: those are not offered.
    await visible(page.getByRole('radio', { name: /^f1-m:/ }));
    assert.equal(await page.getByRole('radio', { name: /^f1-l:/ }).count(), 0, 'f1-l is not offered for $20');
    await visible(page.getByText(/3 more expensive sizes are not offered/));
    const keyBox = page.getByRole('checkbox', { name: 'journey@laptop' });
    assert.equal(await keyBox.isChecked(), true, 'the one saved key is ticked to begin with');

    await page.getByRole('radio', { name: /^f1-s:/ }).check();
    await page.getByLabel('Operating system').selectOption({ label: 'Debian 12 (bookworm) (log in as debian)' });
    await keyBox.check();
    await screenshot(page, 'create');
    await page.getByRole('button', { name: 'Create the capsul' }).click();

    await page.waitForURL(/\/console\/[^/]+$/);
    seen.vmId = decodeURIComponent(new URL(page.url()).pathname.split('/').pop()!);
    await page.getByRole('heading', { name: seen.vmId, level: 1 }).waitFor();
    assert.match(await fact(page, 'Size'), /^f1-s/);
    assert.equal(await fact(page, 'Operating system'), 'Debian 12 (bookworm)');
    assert.match(await fact(page, 'Price'), /^\$7\.16 a month/);
  });

  step('the capsul page reloads itself until the capsul runs with an IPv4', async () => {
    const state = await fact(page, 'State');
    if (state !== 'running') {
      // Under way: the page says so and refreshes itself (no JavaScript).
      await visible(page.getByRole('status').getByText(/This page reloads itself every \d+ seconds/));
      assert.equal(await page.locator('meta[http-equiv="refresh"]').count(), 1, `a ${state} capsul's page refreshes itself`);
    }
    await reloadUntil(
      page,
      `${seen.vmId} running with an IPv4`,
      async () => (await fact(page, 'State')) === 'running' && ipv4Pattern.test(await fact(page, 'IPv4')),
      waitLimitMs,
    );
    seen.ipv4 = await fact(page, 'IPv4');
    assert.equal(await page.locator('meta[http-equiv="refresh"]').count(), 0, "a running capsul's page stays put");
    const installed = page.getByRole('table', { name: /Keys that may log in/ });
    await visible(installed.getByText(key.fingerprint, { exact: true }));
    await visible(page.getByRole('table', { name: 'Host-key fingerprints' }).getByText(/^SHA256:/));
    await visible(page.getByRole('link', { name: 'Stop' }));
    await screenshot(page, 'capsul-running');

    await nav(page).getByRole('link', { name: 'Capsuls' }).click();
    const row = page.getByRole('table', { name: /Your capsuls/ }).getByRole('row', { name: new RegExp(seen.vmId) });
    await visible(row.getByText(seen.ipv4, { exact: true }));
    await visible(row.getByText('running', { exact: true }));
  });

  step('deletes the capsul through the confirm page; it leaves the list', async () => {
    await page.getByRole('link', { name: seen.vmId, exact: true }).click();
    await page.getByRole('heading', { name: seen.vmId, level: 1 }).waitFor();
    await page.getByRole('link', { name: 'Delete', exact: true }).click();
    await page.getByRole('heading', { name: `Delete ${seen.vmId}?`, level: 1 }).waitFor();
    await visible(page.getByText('This cannot be undone'));
    await screenshot(page, 'delete-confirm');
    await page.getByRole('button', { name: 'Delete it for good' }).click();

    await page.getByRole('heading', { name: seen.vmId, level: 1 }).waitFor();
    assert.match(await fact(page, 'State'), /^(deleting|deleted)$/);
    await reloadUntil(page, `${seen.vmId} deleted`, async () => (await fact(page, 'State')) === 'deleted');
    assert.equal(await page.getByRole('link', { name: 'Delete', exact: true }).count(), 0, 'a deleted capsul offers no actions');

    await nav(page).getByRole('link', { name: 'Capsuls' }).click();
    await visible(page.getByText('You have no capsuls now: the ones you had are deleted.'));
    assert.equal(await page.getByRole('link', { name: seen.vmId }).count(), 0, 'the list no longer shows the capsul');
    await visible(page.getByText('you have saved one'));
    await visible(page.getByText('you have a balance'));
  });

  step("the balance shows the payment and the capsul's charge, and adds up", async () => {
    await nav(page).getByRole('link', { name: 'Balance' }).click();
    await page.getByRole('heading', { name: 'Account balance', level: 1 }).waitFor();
    const balance = (await fact(page, 'Balance now')).split(' ')[0]!;
    const paid = await fact(page, 'Payments counted');
    const charges = await fact(page, 'Charges so far');
    assert.equal(paid, '$20.00');
    assert.equal(cents(balance), cents(paid) - cents(charges), `balance ${balance} = payments ${paid} − charges ${charges}`);
    assert.ok(cents(charges) >= 0 && cents(charges) <= 1, `a capsul that existed for seconds costs at most a cent, not ${charges}`);
    seen.finalBalance = balance;

    await visible(page.getByRole('table', { name: /Payments received/ }).getByRole('row', { name: new RegExp(paymentReference) }));
    const charge = page.getByRole('table', { name: /Charges per capsul/ }).getByRole('row', { name: new RegExp(seen.vmId) });
    await visible(charge.getByText('$7.16', { exact: true }));
    await visible(charge.getByText(/^\d{4}-\d\d-\d\d \d\d:\d\d UTC$/)); // created
    await visible(charge.getByText(/^\d{4}-\d\d-\d\d \d\d:\d\d UTC \(deletion requested\)$/)); // billed until
    assert.equal(await charge.getByText('still running').count(), 0, 'the charge stopped with the deletion');
    await visible(page.getByText('No capsul is running, so your balance stays as it is.'));
    await screenshot(page, 'balance');
  });

  step('the history lists the payment, the creation, the capsul running, and its deletion', async () => {
    await nav(page).getByRole('link', { name: 'History' }).click();
    await page.getByRole('heading', { name: 'History', level: 1 }).waitFor();
    const rows = page.getByRole('table', { name: 'Events' }).getByRole('row');
    const texts = (await rows.allInnerTexts()).map((text) => text.replace(/\s+/g, ' '));
    const find = (what: RegExp) => {
      const index = texts.findIndex((text) => what.test(text));
      assert.ok(index >= 0, `the history has a row matching ${what}:\n${texts.join('\n')}`);
      return index;
    };
    const vm = seen.vmId.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    const payment = find(
      new RegExp(`Payment ${seen.paymentId} of \\$20\\.00 was received \\(manual.*reference ${paymentReference}\\).*an operator`),
    );
    const requested = find(new RegExp(`Capsul ${vm} was requested: size f1-s, .*\\$7\\.16 a month.*you`));
    const provisioned = find(new RegExp(`Capsul ${vm} was provisioned: IPv4 ${seen.ipv4.replace(/\./g, '\\.')}.*its host`));
    const deletion = find(new RegExp(`Deletion of capsul ${vm} was requested.*you`));
    const deleted = find(new RegExp(`Capsul ${vm} was deleted\\.`));
    // Newest first.
    assert.ok(
      deleted < deletion && deletion < provisioned && provisioned < requested && requested < payment,
      `newest first: deleted, deletion requested, provisioned, requested, payment:\n${texts.join('\n')}`,
    );
    await screenshot(page, 'history');

    // Filters are links: money alone, then everything again.
    const kinds = page.getByRole('navigation', { name: 'Kinds of events' });
    await kinds.getByRole('link', { name: 'Money' }).click();
    const money = page.getByRole('table', { name: 'Events about money' });
    await money.waitFor();
    const moneyTexts = (await money.getByRole('row').allInnerTexts()).join('\n');
    assert.match(moneyTexts, new RegExp(`Payment ${seen.paymentId} of \\$20\\.00 was received`));
    assert.ok(!moneyTexts.includes(seen.vmId), `no capsul in the money's history:\n${moneyTexts}`);
    assert.equal(await kinds.getByRole('link', { name: 'Money' }).getAttribute('aria-current'), 'page');
    await screenshot(page, 'history-money');
    await kinds.getByRole('link', { name: 'Everything' }).click();
    await page.getByRole('table', { name: 'Events' }).waitFor();
  });

  step('an operator (ADMIN_EMAILS) sees the account on /admin; the customer cannot', async () => {
    assert.equal(await nav(page).getByRole('link', { name: 'Admin' }).count(), 0, 'no Admin link for a customer');
    const refused = await page.goto(`${server.baseUrl}/admin`);
    assert.equal(refused?.status(), 404);
    await page.getByRole('heading', { name: 'Page not found' }).waitFor();

    const admin = await browser.newPage();
    try {
      await logIn(admin, server, operatorEmail, { from: '/admin' });
      assert.equal(new URL(admin.url()).pathname, '/admin', 'the login returns the operator to /admin');
      await admin.getByRole('heading', { name: 'Admin: accounts', level: 1 }).waitFor();
      await visible(nav(admin).getByRole('link', { name: 'Admin' }));
      const account = admin.getByRole('table', { name: /Accounts/ }).getByRole('row', { name: new RegExp(customer) });
      await visible(account.getByRole('cell', { name: seen.finalBalance, exact: true }));
      await visible(account.getByRole('link', { name: '0', exact: true })); // capsuls not deleted
      await screenshot(admin, 'admin');
      seen.journeyComplete = true;
    } catch (error) {
      throw await explained(error, admin);
    } finally {
      await admin.context().close();
    }
  });

  it('fits a phone (375 px): no page scrolls sideways, and keyboard focus is visible', async () => {
    const phone = await browser.newPage({ width: 375, height: 740, phone: true });
    const email = 'phone@example.org';
    const phoneKey = ed25519PublicKey('phone@pocket');
    try {
      // Keyboard only: type the address, Tab to the button (its focus ring must show), Enter.
      await phone.goto(`${server.baseUrl}/auth/login`);
      await assertNoHorizontalScroll(phone);
      await phone.getByLabel('Email address').focus();
      await phone.keyboard.type(email);
      await phone.keyboard.press('Tab');
      const button = phone.getByRole('button', { name: 'Send me a login link' });
      const focus = await button.evaluate((element) => {
        const style = getComputedStyle(element);
        return {
          focused: element === document.activeElement && element.matches(':focus-visible'),
          outline: `${style.outlineStyle} ${style.outlineWidth}`,
        };
      });
      assert.equal(focus.focused, true, 'Tab from the email field reaches the login button');
      assert.doesNotMatch(focus.outline, /^none|\s0px$/, `the focused login button shows a focus ring (outline ${focus.outline})`);
      await phone.keyboard.press('Enter');
      await followLoginLink(phone, server, email);
      await assertNoHorizontalScroll(phone);

      await phone.goto(`${server.baseUrl}/console/ssh`);
      await phone.getByLabel('Public key').fill(phoneKey.line);
      await phone.getByRole('button', { name: 'Save the key' }).click();
      await visible(phone.getByRole('status').getByText('The key was saved'));
      await assertNoHorizontalScroll(phone);
      const run = await server.capsul(['record-payment', '--email', email, '--dollars', '20']);
      assert.equal(run.code, 0, `capsul record-payment: ${run.stderr}`);

      await phone.goto(`${server.baseUrl}/console/create`);
      await assertNoHorizontalScroll(phone);
      await phone.getByRole('radio', { name: /^f1-xs:/ }).check();
      await phone.getByRole('button', { name: 'Create the capsul' }).click();
      await phone.waitForURL(/\/console\/[^/]+$/);
      await assertNoHorizontalScroll(phone);
      await reloadUntil(
        phone,
        "the phone's capsul running with an IPv4",
        async () => (await fact(phone, 'State')) === 'running' && ipv4Pattern.test(await fact(phone, 'IPv4')),
      );
      await assertNoHorizontalScroll(phone); // with its IPv4 and host-key fingerprints

      for (const pathname of ['/console', '/console/account-balance', '/console/history', '/', '/pricing']) {
        await phone.goto(`${server.baseUrl}${pathname}`);
        await assertNoHorizontalScroll(phone);
      }
    } catch (error) {
      throw await explained(error, phone);
    } finally {
      await phone.context().close();
    }
  });
});
