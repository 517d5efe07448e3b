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

/**
 * Makes the index equal to what the events define, writing only the rows that differ. Runs in the
 * rebuild's transaction, which has locked the table and set the projector's setting.
 */
export async function rebuildHistoryIndex(client: pg.PoolClient): Promise<{ rows: number; changed: number }> {
  const rows = await writeAside(client);
  const gone = await client.query(
    `DELETE FROM ${historyIndexTable} a WHERE NOT EXISTS (
       SELECT 1 FROM rebuilt_${historyIndexTable} r WHERE ${sameKey('r', 'a')} AND r.message_type = a.message_type)`,
  );
  const added = await client.query(
    `INSERT INTO ${historyIndexTable} SELECT r.* FROM rebuilt_${historyIndexTable} r
     WHERE NOT EXISTS (SELECT 1 FROM ${historyIndexTable} a WHERE ${sameKey('a', 'r')})`,
  );
  return { rows, changed: (gone.rowCount ?? 0) + (added.rowCount ?? 0) };
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
