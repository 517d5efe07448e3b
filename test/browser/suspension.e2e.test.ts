// A suspended capsul in a real browser, against `capsul serve` with its simulated spoke: a customer's
// only payment is charged back, the jobs suspend the account, the hub stops the capsul; its page says
// suspended, when deletion comes and how to avoid it, and offers no Start; a top-up starts it again
// without anyone's help. docs/screenshots/capsul-suspended.png comes from here (CAPSUL_SCREENSHOTS=1).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Page } from 'playwright-core';
import {
  type Browser,
  browserSkipReason,
  ed25519PublicKey,
  fact,
  launchBrowser,
  logIn,
  publishScreenshots,
  reloadUntil,
  type Server,
  screenshot,
  startServer,
  visible,
} from './harness.ts';

const email = 'suspended@example.org';

describe('a suspended capsul in the browser', { skip: browserSkipReason() }, () => {
  let server: Server;
  let browser: Browser;
  let page: Page;
  let allPassed = false;

  before(async () => {
    server = await startServer({ adminEmails: [] });
    browser = await launchBrowser();
    page = await browser.newPage({ width: 1280, height: 900 });
  });
  after(async () => {
    await browser?.close();
    await server?.stop();
    if (allPassed) publishScreenshots();
  });

  const capsul = async (args: string[]) => {
    const run = await server.capsul(args);
    assert.equal(run.code, 0, `capsul ${args[0]}: ${run.stderr}`);
    return run.stdout.trim();
  };

  it('says suspended, when deletion comes and how to avoid it, offers no Start; a top-up starts it again', async () => {
    const paymentId = await capsul(['record-payment', '--email', email, '--dollars', '7.16']);
    const vmId = await capsul([
      'create-vm',
      '--email',
      email,
      '--size',
      'f1-s',
      '--os',
      'debian12',
      '--ssh-key',
      ed25519PublicKey('suspended').line,
    ]);
    await logIn(page, server, email, { from: `/console/${vmId}` });
    await reloadUntil(page, 'the capsul running', async () => (await fact(page, 'State')) === 'running');

    await capsul(['invalidate-payment', paymentId, '--reason', 'chargeback dp_1']);
    await capsul(['cron-task']);
    await reloadUntil(
      page,
      'the capsul suspended and stopped',
      async () => (await fact(page, 'State')) === 'suspended (stopped for nonpayment)',
    );
    const banner = page.getByRole('alert');
    await visible(banner.getByText(/This capsul is suspended: your balance ran out/));
    assert.match(await banner.innerText(), /otherwise it will be deleted on \d{4}-\d\d-\d\d \d\d:\d\d UTC/);
    assert.equal(await page.getByRole('link', { name: 'Start' }).count(), 0, 'no Start while suspended');
    await visible(page.getByRole('link', { name: 'Add funds' }));
    await screenshot(page, 'capsul-suspended');

    await capsul(['record-payment', '--email', email, '--dollars', '20']);
    await reloadUntil(page, 'the capsul running again after the top-up', async () => (await fact(page, 'State')) === 'running');
    assert.equal(await page.getByRole('alert').count(), 0, 'no suspension any more');
    allPassed = true;
  });
});
