// capsul's advisory locks (src/db/advisory-lock.ts) against the real database, as capsul_app: a second
// taker is refused or waits, the lock is let go whatever the work did, a transaction's lock lasts until
// it commits, and every key is the one the hand-written statements before it took.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  advisoryLocks,
  lockUntilCommit,
  notTaken,
  takeAdvisoryLock,
  withAdvisoryLock,
  type AdvisoryLockKey,
} from '../../src/db/advisory-lock.ts';
import { createPool } from '../../src/db/database.ts';
import { inTransaction } from '../../src/db/transaction.ts';
import { testDatabase, urlFor, type TestDatabase } from '../support/db.ts';

let db: TestDatabase;
before(async () => {
  db = await testDatabase();
});
after(() => db.close());

const key = advisoryLocks.jobs.drift;

/** Whether another session could take `key` now (taking and letting go of it at once). */
async function free(lock: AdvisoryLockKey = key): Promise<boolean> {
  const { rows } = await db.admin.query(
    `SELECT pg_try_advisory_lock(${lock.args}) AS ok, pg_advisory_unlock(${lock.args}) IS NOT NULL AS unlocked`,
    [...lock.values],
  );
  return rows[0].ok;
}

/** Resolves once some session waits for an advisory lock in this database (bounded). */
function someoneWaits(): Promise<void> {
  return eventually(async () => {
    const { rows } = await db.admin.query(
      `SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = $1)`,
      [db.name],
    );
    return rows.length > 0;
  });
}

/** Resolves once `check` holds (bounded). */
async function eventually(check: () => Promise<boolean>): Promise<void> {
  for (let attempt = 0; attempt < 500; attempt++) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error('never came true');
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

describe('withAdvisoryLock, session scope', () => {
  it('refuses a second taker that only tries, without running its work, and lets go when the work returns', async () => {
    let ranSecond = false;
    const first = await withAdvisoryLock(
      db.pool,
      key,
      async () => {
        const second = await withAdvisoryLock(db.pool, key, async () => (ranSecond = true), { mode: 'try' });
        assert.equal(second, notTaken);
        assert.equal(await free(), false);
        return 'done';
      },
      { mode: 'try' },
    );
    assert.equal(first, 'done');
    assert.equal(ranSecond, false);
    assert.equal(await free(), true);
  });

  it('makes a second taker that waits run after the first has let go', async () => {
    const order: string[] = [];
    const holding = deferred();
    const letGo = deferred();
    const first = withAdvisoryLock(db.pool, key, async () => {
      holding.resolve();
      await letGo.promise;
      order.push('first');
    });
    await holding.promise;
    const second = withAdvisoryLock(db.pool, key, async () => {
      order.push('second');
    });
    await someoneWaits();
    letGo.resolve();
    await Promise.all([first, second]);
    assert.deepEqual(order, ['first', 'second']);
    assert.equal(await free(), true);
  });

  it('lets go when the work throws, and hands its error on', async () => {
    await assert.rejects(
      withAdvisoryLock(db.pool, key, async () => {
        throw new Error('the work failed');
      }),
      /the work failed/,
    );
    assert.equal(await free(), true);
    assert.notEqual(await withAdvisoryLock(db.pool, key, async () => 1, { mode: 'try' }), notTaken);
  });

  it('gives the work the connection that holds the lock', async () => {
    const holder = await withAdvisoryLock(db.pool, key, async (client) => {
      const { rows } = await client.query(
        `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid()`,
      );
      return rows[0].n;
    });
    assert.equal(holder, 1);
  });

  it('destroys a connection that cannot unlock instead of handing it back still holding the lock', async () => {
    const pool = createPool(urlFor(db.name, 'app'), 1);
    try {
      await withAdvisoryLock(pool, key, async (client) => {
        // A transaction left aborted: the unlock that follows fails.
        await client.query('BEGIN');
        await client.query('SELECT 1 / 0').catch(() => {});
      });
      assert.equal(pool.totalCount, 0, 'the connection was destroyed');
      await eventually(free);
      assert.notEqual(await withAdvisoryLock(pool, key, async () => 1, { mode: 'try' }), notTaken);
    } finally {
      await pool.end();
    }
  });
});

describe('withAdvisoryLock, transaction scope', () => {
  it('holds the lock until the transaction commits, and commits the work', async () => {
    await db.admin.query('CREATE TABLE IF NOT EXISTS lock_test (n int)');
    await db.admin.query('GRANT ALL ON lock_test TO capsul_app');
    const result = await withAdvisoryLock(
      db.pool,
      key,
      async (tx) => {
        await tx.query('INSERT INTO lock_test VALUES (1)');
        assert.equal(await free(), false, 'held inside the transaction');
        return 'inserted';
      },
      { scope: 'transaction' },
    );
    assert.equal(result, 'inserted');
    assert.equal(await free(), true, 'released at commit');
    const { rows } = await db.admin.query('SELECT count(*)::int AS n FROM lock_test');
    assert.equal(rows[0].n, 1);
  });

  it('refuses a taker that only tries while another transaction holds it', async () => {
    const outcome = await inTransaction(db.pool, async (tx) => {
      assert.equal(await lockUntilCommit(tx, key), true);
      return withAdvisoryLock(db.pool, key, async () => 'ran', { mode: 'try', scope: 'transaction' });
    });
    assert.equal(outcome, notTaken);
    assert.equal(await free(), true);
  });

  it('releases at rollback when the work throws', async () => {
    await assert.rejects(
      withAdvisoryLock(
        db.pool,
        key,
        async () => {
          throw new Error('the work failed');
        },
        { scope: 'transaction' },
      ),
      /the work failed/,
    );
    assert.equal(await free(), true);
  });

  it('makes a transaction that waits go on once the holder commits', async () => {
    const holding = deferred();
    const letGo = deferred();
    const order: string[] = [];
    const first = inTransaction(db.pool, async (tx) => {
      await lockUntilCommit(tx, key);
      holding.resolve();
      await letGo.promise;
      order.push('first');
    });
    await holding.promise;
    const second = withAdvisoryLock(db.pool, key, async () => order.push('second'), { scope: 'transaction' });
    await someoneWaits();
    letGo.resolve();
    await Promise.all([first, second]);
    assert.deepEqual(order, ['first', 'second']);
  });
});

describe('takeAdvisoryLock', () => {
  it('keeps the lock until released; a second try meanwhile gets nothing', async () => {
    const lock = await takeAdvisoryLock(db.pool, key, 'try');
    assert.ok(lock);
    assert.equal(await takeAdvisoryLock(db.pool, key, 'try'), null);
    await lock.release();
    await lock.release(); // once is enough; again does nothing
    assert.equal(await free(), true);
  });
});

describe('the keys', () => {
  // The statements capsul took these locks with before they had one home: the values must not change,
  // or a hub running the old code would no longer be excluded.
  const before: [string, AdvisoryLockKey, string][] = [
    ['migration', advisoryLocks.migration, 'pg_try_advisory_lock(109270149592428)'],
    ['role passwords', advisoryLocks.rolePasswords, `pg_try_advisory_lock(hashtext('capsul role passwords'))`],
    ['placement', advisoryLocks.placement, 'pg_try_advisory_lock(123610792682861)'],
    ['leadership', advisoryLocks.schedulerLeadership, 'pg_try_advisory_lock(1667330163, 0)'],
    ['reconcile', advisoryLocks.jobs.reconcile, 'pg_try_advisory_lock(1667330163, 1)'],
    ['balance warnings', advisoryLocks.jobs['balance-warnings'], 'pg_try_advisory_lock(1667330163, 2)'],
    ['drift', advisoryLocks.jobs.drift, 'pg_try_advisory_lock(1667330163, 3)'],
    ['receipts', advisoryLocks.jobs.receipts, 'pg_try_advisory_lock(1667330163, 4)'],
    ['warning emails', advisoryLocks.jobs['warning-emails'], 'pg_try_advisory_lock(1667330163, 5)'],
    ['incident emails', advisoryLocks.jobs['incident-emails'], 'pg_try_advisory_lock(1667330163, 6)'],
    ['incidents', advisoryLocks.jobs.incidents, 'pg_try_advisory_lock(1667330163, 7)'],
    ['statement emails', advisoryLocks.jobs['statement-emails'], 'pg_try_advisory_lock(1667330163, 8)'],
    ['a receipt', advisoryLocks.receiptEmail('42'), `pg_try_advisory_lock(1919119476, hashtext('42'))`],
    ['a warning email', advisoryLocks.warningEmail('w-1'), `pg_try_advisory_lock(2002874990, hashtext('w-1'))`],
    ['a statement email', advisoryLocks.statementEmail('a1/2026-11'), `pg_try_advisory_lock(1937011821, hashtext('a1/2026-11'))`],
    ['ssh keys', advisoryLocks.sshKeys('a@example.org'), `pg_try_advisory_lock(hashtextextended('ssh_public_keys:a@example.org', 0))`],
    ['btcpay invoice', advisoryLocks.btcpayInvoice('INV1'), `pg_try_advisory_lock(hashtextextended('btcpay-invoice:INV1', 0))`],
    ['sealer', advisoryLocks.sealer, 'pg_try_advisory_lock(1819240225, 1)'],
  ];
  for (const [name, lock, old] of before) {
    it(`${name}: the same lock as \`${old}\``, async () => {
      const held = await takeAdvisoryLock(db.pool, lock, 'try');
      assert.ok(held);
      try {
        const { rows } = await db.admin.query(`SELECT ${old} AS ok`);
        assert.equal(rows[0].ok, false);
      } finally {
        await held.release();
      }
    });
  }

  it('are all different', async () => {
    const seen = new Map<string, string>();
    for (const [name, lock] of before) {
      const held = await takeAdvisoryLock(db.pool, lock, 'try');
      assert.ok(held);
      try {
        const { rows } = await held.client.query<{ id: string }>(
          `SELECT concat_ws('/', classid, objid, objsubid) AS id FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()`,
        );
        const id = rows[0]!.id;
        assert.equal(seen.get(id), undefined, `${name} and ${seen.get(id)} share a key`);
        seen.set(id, name);
      } finally {
        await held.release();
      }
    }
  });
});
