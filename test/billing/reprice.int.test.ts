// A catalogue price change shipped as a schema migration (the way an operator changes prices) leaves
// every existing capsul's price and charges as they were: only capsuls created afterwards pay the new
// price. Checked on the tables, on the ledger's fold, on the balance page's source, and after a rebuild.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { latestVersion, migrate } from '../../src/db/migrate.ts';
import { balanceAt } from '../../src/read/accounts.ts';
import { rebuildProjections, verifyProjections } from '../../src/projections/rebuild.ts';
import { operator, sshKey, testDatabase, type TestDatabase } from '../support/db.ts';

const migrationsDir = fileURLToPath(new URL('../../schema_migrations/', import.meta.url));
let db: TestDatabase;
let dir: string;
let now = new Date('2026-06-01T00:00:00Z');

before(async () => {
  db = await testDatabase({ now: () => now });
  dir = mkdtempSync(path.join(os.tmpdir(), 'capsul-reprice-'));
  cpSync(migrationsDir, dir, { recursive: true });
  const next = String(latestVersion() + 1).padStart(2, '0');
  writeFileSync(path.join(dir, `${next}_up_reprice.sql`), `UPDATE vm_sizes SET dollars_per_month = dollars_per_month * 2;\n`);
  writeFileSync(path.join(dir, `${next}_down_reprice.sql`), `UPDATE vm_sizes SET dollars_per_month = dollars_per_month / 2;\n`);
});
after(async () => {
  await db.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('a price change by migration', () => {
  it('rewrites no existing charge; new capsuls pay the new price', async () => {
    const email = 'reprice@example.org';
    await db.ledger.recordPayment({ email, amountCents: 10_000, cause: operator });
    const { vmId: old } = await db.ledger.createVm({ email, size: 'f1-s', os: 'debian12', sshPublicKeys: [sshKey], cause: operator });
    const accountId = (await db.ledger.accountIdFor(email))!;
    const later = new Date('2026-07-01T00:00:00Z');
    const before = await db.ledger.balanceCents(email, later);

    const { from, to } = await migrate(db.admin, { dir });
    assert.equal(to, from + 1);
    assert.equal((await db.pool.query(`SELECT dollars_per_month::text AS p FROM vm_sizes WHERE id = 'f1-s'`)).rows[0].p, '14.32');

    assert.equal(await db.ledger.balanceCents(email, later), before, 'the ledger fold');
    assert.equal(await balanceAt(db.pool, accountId, later), before, 'the projections');
    const price = async (vmId: string) =>
      (await db.pool.query('SELECT dollars_per_month::text AS p FROM vms WHERE id = $1', [vmId])).rows[0].p;
    assert.equal(await price(old), '7.16');

    now = new Date('2026-06-02T00:00:00Z');
    const { vmId: fresh } = await db.ledger.createVm({ email, size: 'f1-s', os: 'debian12', sshPublicKeys: [sshKey], cause: operator });
    assert.equal(await price(fresh), '14.32', 'a capsul created after the change pays the new price');

    await rebuildProjections(db.admin);
    assert.equal(await price(old), '7.16', 'a rebuild replays the captured price');
    assert.equal((await verifyProjections(db.pool)).matches, true);
    await migrate(db.admin, { dir, target: from });
    assert.equal(await price(old), '7.16');
  });
});
