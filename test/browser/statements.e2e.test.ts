// A customer's statements in a real browser against `capsul serve`: the list of months, November as
// a page (opening, a payment recorded late with --at, a capsul's charge for the days it ran,
// closing), its PDF downloaded and opened in chromium's own viewer, and the email setting.
// docs/screenshots/statements.png, statement.png and statement-pdf.png come from here
// (CAPSUL_SCREENSHOTS=1, once every step has passed).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createPool } from '../../src/db/database.ts';
import { Ledger } from '../../src/ledger/ledger.ts';
import { pdfText } from '../support/pdf-text.ts';
import {
  browserSkipReason,
  launchBrowser,
  logIn,
  publishScreenshots,
  screenshot,
  startServer,
  visible,
  type Browser,
  type Server,
} from './harness.ts';

const email = 'robin@example.org';
const operator = { by: { kind: 'operator' as const, id: 'browser-test' } };
let server: Server;
let browser: Browser;
let downloads: string;

describe('statements in the browser', { skip: browserSkipReason() }, () => {
  before(async () => {
    browser = await launchBrowser();
    server = await startServer({
      adminEmails: [],
      env: { PROVIDER_NAME: 'Example Hosting Co-op', PROVIDER_ADDRESS: '1 Example Street|Springfield 12345|USA' },
    });
    downloads = mkdtempSync(path.join(os.tmpdir(), 'capsul-statement-pdf-'));
    // $20.00 on 20 October, an f1-s from 25 October to 20 November, $5.00 received on 28 November
    // and recorded late with --at.
    const pool = createPool(server.databaseUrl, 2);
    try {
      const at = (iso: string) => new Ledger({ pool, now: () => new Date(iso) });
      await at('2026-10-20T12:00:00Z').recordPayment({ email, amountCents: 2000, reference: 'bank-2026-10-20', cause: operator });
      const key = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGd3Fq8n5yR7t0fB1xQx6hWlC6cR3r2M7sVtqyq3b2kP robin@laptop';
      const { vmId } = await at('2026-10-25T00:00:00Z').createVm({
        email,
        size: 'f1-s',
        os: 'debian12',
        sshPublicKeys: [key],
        cause: operator,
      });
      await at('2026-11-20T00:00:00Z').deleteVm(vmId, { ...operator, reason: 'no longer needed' });
    } finally {
      await pool.end();
    }
    const late = await server.capsul(['record-payment', '--email', email, '--dollars', '5', '--at', '2026-11-28T00:00:00Z']);
    assert.equal(late.code, 0, late.stderr);
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
    if (downloads) rmSync(downloads, { recursive: true, force: true });
  });

  it('lists the months, shows November, downloads its PDF and opens it, and turns the emails off', async () => {
    const page = await browser.newPage({ width: 1100, height: 800 });
    try {
      await logIn(page, server, email, { from: '/console/statements' });
      await page.getByRole('heading', { name: 'Statements', level: 1 }).waitFor();
      await visible(page.getByRole('link', { name: 'October 2026' }));
      await screenshot(page, 'statements');

      await page.getByRole('link', { name: 'November 2026' }).click();
      await page.getByRole('heading', { name: 'Statement for November 2026', level: 1 }).waitFor();
      const rows = await page.locator('table.statement-lines tbody tr').allInnerTexts();
      const flat = rows.map((row) => row.replace(/\s+/g, ' ').trim());
      assert.equal(flat[0], '2026-11-01 00:00 Opening balance $18.35');
      assert.match(flat[1]!, /^2026-11-28 00:00 Payment #\d+ received \(manual\) recorded late, on .* \+\$5\.00$/);
      assert.match(
        flat[2]!,
        /^2026-11-01 00:00 capsul capsul-\w+, f1-s at \$7\.16 a month ran 2026-11-01 00:00 to 2026-11-20 00:00 \(19\.00 days\) -\$4\.47$/,
      );
      assert.equal(flat.at(-1), '2026-12-01 00:00 Closing balance $18.88');
      await visible(page.getByText('Example Hosting Co-op'));
      await screenshot(page, 'statement');

      const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: 'Download as PDF' }).click()]);
      assert.equal(download.suggestedFilename(), 'statement-2026-11.pdf');
      const file = path.join(downloads, 'statement-2026-11.pdf');
      await download.saveAs(file);
      const text = pdfText(readFileSync(file));
      for (const expected of ['Example Hosting Co-op', 'Statement for November 2026', '$18.35', '+$5.00', '-$4.47', '$18.88']) {
        assert.ok(text.includes(expected), `${expected} in the PDF`);
      }
      const viewer = await browser.newPage({ width: 1000, height: 1100 });
      try {
        await viewer.goto(`file://${file}`);
        await viewer.waitForTimeout(3000); // chromium's viewer draws the page after the load event
        await screenshot(viewer, 'statement-pdf');
      } finally {
        await viewer.context().close();
      }

      await page.getByRole('link', { name: 'All statements' }).click();
      await page.getByRole('button', { name: 'Stop emailing my statements' }).click();
      await visible(page.getByRole('button', { name: 'Email me my statements' }));
      publishScreenshots();
    } finally {
      await page.context().close();
    }
  });
});
