// The history index (account_events, schema_migrations/22_up_history_index.sql), rebuilt and verified
// with the projections. Its rows are not folded in memory (there is one per event of an account, as
// many as the log): the database derives them from the events with capsul_history_index_from_events(),
// the one definition of the rows, which the migration's backfill used too.
import type pg from 'pg';

export const historyIndexTable = 'account_events';

/** An index row is keyed by its account and its event's commit-order key; what it says is the type. */
const sameKey = (a: string, b: string) =>
  `${a}.account_id = ${b}.account_id AND ${a}.transaction_id = ${b}.transaction_id AND ${a}.global_position = ${b}.global_position`;

/** The rows the events define, in a temporary table dropped at commit. */
async function writeAside(client: pg.PoolClient): Promise<number> {
  const { rowCount } = await client.query(
    `CREATE TEMP TABLE rebuilt_${historyIndexTable} ON COMMIT DROP AS SELECT * FROM capsul_history_index_from_events()`,
  );
  await client.query(`ANALYZE rebuilt_${historyIndexTable}`);
  return rowCount ?? 0;
}

/** Where the live index and the one the events define part: the rows to put back, the keys to remove. */
export type HistoryIndexRepair = { rows: number; missing: Record<string, string>[]; extra: Record<string, string>[] };

/**
 * What a rebuild must change in the index, found in the caller's snapshot (the events and the index
 * read at one moment): rows the events define that the index lacks or holds with another type, and
 * rows it holds that no event defines. Normally none; the rows come back as text.
 */
export async function historyIndexRepair(client: pg.PoolClient): Promise<HistoryIndexRepair> {
  const rows = await writeAside(client);
  const missing = await client.query(
    `SELECT r.account_id, r.transaction_id::text, r.global_position::text, r.message_type FROM rebuilt_${historyIndexTable} r
     WHERE NOT EXISTS (SELECT 1 FROM ${historyIndexTable} a WHERE ${sameKey('a', 'r')} AND a.message_type = r.message_type)`,
  );
  const extra = await client.query(
    `SELECT a.account_id, a.transaction_id::text, a.global_position::text FROM ${historyIndexTable} a
     WHERE NOT EXISTS (SELECT 1 FROM rebuilt_${historyIndexTable} r WHERE ${sameKey('r', 'a')} AND r.message_type = a.message_type)`,
  );
  return { rows, missing: missing.rows, extra: extra.rows };
}

/**
 * Applies a repair found earlier, in the rebuild's locked transaction (the projector's setting on).
 * Rows of events appended since were written by capsul_append with those events, so they are right.
 */
export async function repairHistoryIndex(client: pg.PoolClient, repair: HistoryIndexRepair): Promise<number> {
  const keys = (rows: Record<string, string>[]) => [
    rows.map((r) => r.account_id),
    rows.map((r) => r.transaction_id),
    rows.map((r) => r.global_position),
  ];
  const [accounts, transactions, positions] = keys([...repair.extra, ...repair.missing]);
  const gone = await client.query(
    `DELETE FROM ${historyIndexTable} a USING unnest($1::text[], $2::xid8[], $3::bigint[]) AS k(account_id, transaction_id, global_position)
     WHERE ${sameKey('a', 'k')}`,
    [accounts, transactions, positions],
  );
  const [addAccounts, addTransactions, addPositions] = keys(repair.missing);
  const added = await client.query(
    `INSERT INTO ${historyIndexTable} (account_id, transaction_id, global_position, message_type)
     SELECT * FROM unnest($1::text[], $2::xid8[], $3::bigint[], $4::text[])`,
    [addAccounts, addTransactions, addPositions, repair.missing.map((r) => r.message_type)],
  );
  return (gone.rowCount ?? 0) + (added.rowCount ?? 0);
}

/** How many rows of the index are missing, extra, or say another type than the events define. */
export async function historyIndexDifferences(client: pg.PoolClient): Promise<number> {
  await writeAside(client);
  const { rows } = await client.query(
    `SELECT count(*)::int AS n FROM public.${historyIndexTable} a FULL JOIN rebuilt_${historyIndexTable} r ON ${sameKey('a', 'r')}
     WHERE a.account_id IS NULL OR r.account_id IS NULL OR a.message_type <> r.message_type`,
  );
  return rows[0].n;
}
