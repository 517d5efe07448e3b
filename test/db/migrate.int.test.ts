import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, readdirSync, copyFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { createPool } from '../../src/db/database.ts';
import { latestVersion, listMigrations, migrate, migrationsDir, schemaVersion, SchemaTooNewError } from '../../src/db/migrate.ts';
import { emptyDatabase } from '../support/db.ts';

async function withEmptyDatabase(work: (pool: ReturnType<typeof createPool>, url: string) => Promise<void>) {
  const db = await emptyDatabase();
  const pool = createPool(db.url, 6);
  try {
    await work(pool, db.url);
  } finally {
    await pool.end();
    await db.drop();
  }
}

describe('schema migrations', () => {
  it('numbers migrations 1..N, each with an up and a down file', () => {
    const migrations = listMigrations();
    assert.equal(migrations.length, latestVersion());
    migrations.forEach((m, i) => {
      assert.equal(m.version, i + 1);
    });
  });

  it('migrates an empty database to the latest version and seeds the catalogue', async () => {
    await withEmptyDatabase(async (pool) => {
      assert.equal(await schemaVersion(pool), 0);
      assert.deepEqual(await migrate(pool), { from: 0, to: latestVersion() });
      assert.equal(await schemaVersion(pool), latestVersion());
      const { rows } = await pool.query('SELECT count(*)::int AS n FROM schemaversion');
      assert.equal(rows[0].n, 1, 'schemaversion holds exactly one row');
      const sizes = await pool.query(
        `SELECT id, dollars_per_month::text AS price, vcpus, memory_mb, bandwidth_gb_per_month FROM vm_sizes ORDER BY dollars_per_month`,
      );
      assert.deepEqual(
        sizes.rows.map((r) => [r.id, r.price, r.vcpus, r.memory_mb, r.bandwidth_gb_per_month]),
        [
          ['f1-xs', '5.33', 1, 512, 500],
          ['f1-s', '7.16', 1, 1024, 1000],
          ['f1-m', '12.50', 1, 2048, 2000],
          ['f1-l', '20.50', 2, 3072, 3000],
          ['f1-x', '27.50', 3, 4096, 4000],
          ['f1-xx', '50.00', 4, 8192, 5000],
        ],
      );
      const images = await pool.query('SELECT id FROM os_images WHERE NOT deprecated');
      assert.ok(images.rows.length >= 5);
      // A second run has nothing to do.
      assert.deepEqual(await migrate(pool), { from: latestVersion(), to: latestVersion() });
    });
  });

  it('applies each step once when two processes migrate at the same time', async () => {
    await withEmptyDatabase(async (_pool, url) => {
      const a = createPool(url, 2);
      const b = createPool(url, 2);
      const steps: string[] = [];
      try {
        const results = await Promise.all([
          migrate(a, { log: (line) => steps.push(`a ${line}`) }),
          migrate(b, { log: (line) => steps.push(`b ${line}`) }),
        ]);
        assert.equal(steps.length, latestVersion(), `each step applied once, saw: ${steps.join('; ')}`);
        assert.deepEqual(
          results.map((r) => r.to),
          [latestVersion(), latestVersion()],
        );
        assert.equal(await schemaVersion(a), latestVersion());
      } finally {
        await a.end();
        await b.end();
      }
    });
  });

  it('migrates down to 0 and back up again', async () => {
    await withEmptyDatabase(async (pool) => {
      await migrate(pool);
      assert.deepEqual(await migrate(pool, { target: 0 }), { from: latestVersion(), to: 0 });
      const { rows } = await pool.query(
        `SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schemaversion'`,
      );
      assert.equal(rows[0].n, 0, 'down migrations remove every table they created');
      assert.deepEqual(await migrate(pool), { from: 0, to: latestVersion() });
    });
  });

  it('refuses a database newer than the code, changing nothing', async () => {
    await withEmptyDatabase(async (pool) => {
      await migrate(pool);
      await pool.query('UPDATE schemaversion SET version = $1', [latestVersion() + 1]);
      await assert.rejects(migrate(pool), (error: Error) => {
        assert.ok(error instanceof SchemaTooNewError);
        assert.match(error.message, new RegExp(`schema version ${latestVersion() + 1}, newer than this code`));
        return true;
      });
      assert.equal(await schemaVersion(pool), latestVersion() + 1);
    });
  });

  it('rolls a failing step back whole and keeps the previous version', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'capsul-migrations-'));
    for (const file of readdirSync(migrationsDir)) copyFileSync(path.join(migrationsDir, file), path.join(dir, file));
    const next = String(latestVersion() + 1).padStart(2, '0');
    writeFileSync(path.join(dir, `${next}_up_broken.sql`), 'CREATE TABLE half_done (id int); SELECT no_such_function();');
    writeFileSync(path.join(dir, `${next}_down_broken.sql`), 'DROP TABLE half_done;');
    await withEmptyDatabase(async (pool) => {
      await assert.rejects(migrate(pool, { dir }), /failed, schema stays at version/);
      assert.equal(await schemaVersion(pool), latestVersion());
      const { rows } = await pool.query(`SELECT to_regclass('half_done') IS NULL AS gone`);
      assert.equal(rows[0].gone, true);
    });
  });
});
