// `capsul statement` against a real database: a closed month as text, HTML and PDF, its opening and
// closing equal to `capsul balance --as-of` the month's first instants, a payment recorded late with
// --at shown in the month it was received, and every bad input refused in one line.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Ledger } from '../../src/ledger/ledger.ts';
import { operator, sshKey, testDatabase, type TestDatabase } from '../support/db.ts';
import { pdfText } from '../support/pdf-text.ts';
import { assertRefused } from '../support/processes.ts';
import { capsulHere } from '../support/cli.ts';

let db: TestDatabase;
let dataDir: string;
const email = 'statement@example.org';
const provider = { PROVIDER_NAME: 'Example Hosting Co-op', PROVIDER_ADDRESS: '1 Example Street|Springfield 12345' };

const capsul = (args: string[]) => capsulHere(args, { ...db.env, CAPSUL_DATA_DIR: dataDir, ...provider });

const at = (iso: string) => () => new Date(iso);

before(async () => {
  db = await testDatabase();
  dataDir = mkdtempSync(path.join(os.tmpdir(), 'capsul-statement-'));
  // $20.00 on 20 October; an f1-s ($7.16 a month) from 25 October to 20 November; $5.00 received on
  // 28 November but recorded only now, with --at.
  await new Ledger({ pool: db.pool, now: at('2026-10-20T12:00:00Z') }).recordPayment({
    email,
    amountCents: 2000,
    reference: null,
    receivedAt: new Date('2026-10-20T12:00:00Z'),
    cause: operator,
  });
  const { vmId } = await new Ledger({ pool: db.pool, now: at('2026-10-25T00:00:00Z') }).createVm({
    email,
    size: 'f1-s',
    os: 'debian12',
    sshPublicKeys: [sshKey],
    cause: { by: { kind: 'customer', id: 'statement' } },
  });
  await new Ledger({ pool: db.pool, now: at('2026-11-20T00:00:00Z') }).deleteVm(vmId, { ...operator, reason: 'done with it' });
  const late = await capsul(['record-payment', '--email', email, '--dollars', '5', '--at', '2026-11-28T00:00:00Z']);
  assert.equal(late.code, 0, late.stderr);
});

after(async () => {
  await db?.close();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe('capsul statement', () => {
  it('prints a closed month: opening, the late payment in its month, the charge for the days it ran, closing', async () => {
    const run = await capsul(['statement', '--email', email, '--month', '2026-11']);
    assert.equal(run.code, 0, run.stderr);
    const lines = run.stdout.split('\n');
    assert.deepEqual(lines.slice(0, 3), ['Example Hosting Co-op', '1 Example Street', 'Springfield 12345']);
    assert.ok(lines.includes(`Statement for November 2026, ${email}`));
    assert.match(run.stdout, /^2026-11-01 00:00 +Opening balance +\$18\.35$/m);
    // 716 × 19 / 30.44 = 446.91… cents
    assert.match(run.stdout, /^2026-11-01 00:00 +capsul capsul-\w+, f1-s at \$7\.16 a month +-\$4\.47$/m);
    assert.match(run.stdout, /ran 2026-11-01 00:00 to 2026-11-20 00:00 \(19\.00 days\)/);
    assert.match(run.stdout, /^2026-11-28 00:00 +Payment #\d+ received \(manual\) +\+\$5\.00$/m);
    assert.match(run.stdout, /^ +recorded late, on \d{4}-\d\d-\d\d \d\d:\d\d: this statement was reissued$/m);
    assert.match(run.stdout, /^Reissued on /m);
    assert.match(run.stdout, /^2026-12-01 00:00 +Closing balance +\$18\.88$/m);
  });

  it('opens at the balance as of the first instant and closes at the next month’s opening', async () => {
    for (const month of ['2026-10', '2026-11']) {
      const statement = (await capsul(['statement', '--email', email, '--month', month])).stdout;
      const next = month === '2026-10' ? '2026-11' : '2026-12';
      const opening = (await capsul(['balance', '--email', email, '--as-of', `${month}-01`])).stdout.trim();
      const closing = (await capsul(['balance', '--email', email, '--as-of', `${next}-01`])).stdout.trim();
      assert.match(statement, new RegExp(`Opening balance +\\$${opening.replace('.', '\\.')}\\n`));
      assert.match(statement, new RegExp(`Closing balance +\\$${closing.replace('.', '\\.')}\\n`));
    }
  });

  it('writes HTML and a PDF whose text is real text', async () => {
    const html = await capsul(['statement', '--email', email, '--month', '2026-11', '--format', 'html']);
    assert.equal(html.code, 0, html.stderr);
    assert.match(html.stdout, /^<!doctype html>/);
    assert.match(html.stdout, /<td>Closing balance<\/td><td class="num nowrap">\$18\.88<\/td>/);
    const file = path.join(dataDir, 'november.pdf');
    const pdf = await capsul(['statement', '--email', email, '--month', '2026-11', '--format', 'pdf', '--out', file]);
    assert.equal(pdf.code, 0, pdf.stderr);
    assert.equal(pdf.stdout, '');
    const bytes = readFileSync(file);
    assert.equal(bytes.subarray(0, 5).toString(), '%PDF-');
    const text = pdfText(bytes);
    for (const expected of ['Example Hosting Co-op', 'Statement for November 2026', 'Opening balance', '$18.35', '-$4.47', '$18.88']) {
      assert.ok(text.includes(expected), `${expected} in the PDF's text`);
    }
  });

  it('refuses a bad month, a bad format, an open month and an unknown account in one line', async () => {
    assertRefused(await capsul(['statement', '--email', email, '--month', '2026-13']), 2, /--month: "2026-13" is not a month/);
    assertRefused(await capsul(['statement', '--email', email, '--month', 'last']), 2, /YYYY-MM/);
    assertRefused(await capsul(['statement', '--email', email]), 2, /--month is required/);
    assertRefused(await capsul(['statement', '--email', email, '--month', '2026-11', '--format', 'docx']), 2, /text, html or pdf/);
    assertRefused(await capsul(['statement', '--email', email, '--month', '2026-11', '--format', 'pdf']), 2, /--out/);
    assertRefused(await capsul(['statement', '--email', email, '--month', '2999-01']), 1, /not over yet/);
    assertRefused(await capsul(['statement', '--email', 'nobody@example.org', '--month', '2026-11']), 1, /no account/);
  });
});
