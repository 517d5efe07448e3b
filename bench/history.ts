// The history page (src/read/history.ts, read through the history index): page 1 of an account with
// hundreds of capsuls in the big seeded ledger, versus the same-shaped account alone in a small
// database of its own on the same server, alternating slices. The page must cost the same however
// large the log is around it: target ≥ 0.5 (at most twice the time). For contrast, in the big
// ledger: page 1 of a small seeded account, and the read before the index (the account's streams
// filtered out of the whole log, newest first), timed over a few pages.
import { performance } from 'node:perf_hooks';
import type pg from 'pg';
import { createPool } from '../src/db/database.ts';
import { countEvents, readLogPage } from '../src/db/event-store.ts';
import { migrate } from '../src/db/migrate.ts';
import { historyPageSize } from '../src/hub/web/account.ts';
import { accountHistoryPage, accountSelectors } from '../src/read/history.ts';
import { benchDatabase } from './database.ts';
import { comparePair, Tally } from './measure.ts';
import { fmtInt } from './progress.ts';
import type { SeededAccount } from './seed.ts';
import { seedWebAccount, type AccountShape } from './web.ts';

/** A customer with hundreds of capsuls, each with its life on a host, and a few hundred payments. */
export const historyShape: AccountShape = { capsuls: 300, deleted: 40, failed: 10, stopped: 30, payments: 300, invalidated: 6 };
const oldReadPages = 5;

export type HistoryResult = {
  /** the big account's page in the big ledger, and in the small one */
  big: Tally;
  small: Tally;
  /** contrasts in the big ledger: a small account's page; the old whole-log read of the big account's */
  smallAccount: Tally;
  oldRead: Tally;
  bigLedgerEvents: number;
  smallLedgerEvents: number;
  accountEvents: number;
};

const firstPage = (pool: pg.Pool, accountId: string) => () =>
  accountHistoryPage(pool, accountId, { before: null, size: historyPageSize, kind: 'all' });

/**
 * Seeds the account into the big ledger (`pool`) and into a fresh database on the same server, then
 * measures. The small database is dropped at the end, whatever happens.
 */
export async function measureHistoryPage(options: {
  pool: pg.Pool;
  serverUrl: string | undefined;
  smallAccount: SeededAccount;
  seconds: number;
  warmupSeconds: number;
  note: (line: string) => void;
  onProgress: (text: string) => void;
}): Promise<HistoryResult> {
  const { pool, note } = options;
  const started = performance.now();
  const bigAccount = await seedWebAccount(pool, historyShape);
  const smallDb = await benchDatabase(options.serverUrl, note);
  const smallPool = createPool(smallDb.url, 4);
  try {
    await migrate(smallPool);
    const sameShape = await seedWebAccount(smallPool, historyShape);
    // Statistics as autovacuum would have them after such a load.
    for (const p of [pool, smallPool]) await p.query('ANALYZE');
    const [bigLedgerEvents, smallLedgerEvents] = [await countEvents(pool), await countEvents(smallPool)];
    note(
      `history: an account of ${historyShape.capsuls} capsuls and ${historyShape.payments} payments (${fmtInt(bigAccount.events)} events) ` +
        `seeded into the ledger (${fmtInt(bigLedgerEvents)} events) and alone into a database of its own ` +
        `(${fmtInt(smallLedgerEvents)} events) in ${((performance.now() - started) / 1000).toFixed(1)}s`,
    );
    const label = (where: string) => `history page 1, ${historyShape.capsuls}-capsul account, ${where}`;
    const [big, small] = await comparePair({
      pool,
      workers: 1,
      seconds: options.seconds,
      warmupSeconds: options.warmupSeconds,
      a: { label: label(`${fmtInt(bigLedgerEvents)}-event ledger`), op: firstPage(pool, bigAccount.accountId) },
      b: { label: label(`${fmtInt(smallLedgerEvents)}-event ledger`), op: firstPage(smallPool, sameShape.accountId), pool: smallPool },
      onProgress: options.onProgress,
    });
    const [, smallAccount] = await comparePair({
      pool,
      workers: 1,
      seconds: Math.max(1, options.seconds / 2),
      warmupSeconds: options.warmupSeconds,
      a: { label: big.label, op: firstPage(pool, bigAccount.accountId) },
      b: { label: 'history page 1, a small account of the same ledger', op: firstPage(pool, options.smallAccount.accountId) },
      onProgress: options.onProgress,
    });
    const oldRead = new Tally(`the old read of that page: its ${historyShape.capsuls + 1} streams filtered out of the whole log`);
    await oldRead.measure(pool, async () => {
      const selectors = await accountSelectors(pool, bigAccount.accountId);
      for (let n = 0; n < oldReadPages; n++) await readLogPage(pool, { direction: 'backward', limit: historyPageSize + 1, selectors });
      return oldReadPages;
    });
    return { big, small, smallAccount, oldRead, bigLedgerEvents, smallLedgerEvents, accountEvents: bigAccount.events };
  } finally {
    await smallPool.end().catch(() => {});
    await smallDb.drop().catch((error) => note(`could not drop the history bench's small database: ${(error as Error).message}`));
  }
}
