// As-of: the projections as they were at an instant of either clock, read from the row history the
// append path keeps (schema_migrations/21_up_row_history.sql), with no replay.
import type pg from 'pg';
import type { Instants } from '../db/event-store.ts';
import { historyTable, projectionTables, tableNames } from './tables.ts';

/**
 * Shadows each projection table, for the rest of this session, with a temporary view of the same name
 * over its row history at `at` (absent: the latest, as the live tables): the rows as they were at
 * `asOf` (effective time), as the ledger knew them at `knownAt` (recorded time). Nothing is replayed:
 * as known now, the views read the history's as-of index; as known earlier, the history whole. The
 * caller must discard the connection after use (`client.release(true)`).
 */
export async function shadowProjectionsAt(client: pg.PoolClient, at: Instants): Promise<void> {
  // The instants are Dates written by toISOString: nothing of the user's text reaches the SQL.
  const instant = (date: Date | undefined) => `'${date ? date.toISOString() : 'infinity'}'::timestamptz`;
  // As known now, in the words of the as-of index's condition (upper_inf), so the planner can use it.
  const known = at.knownAt ? `known @> ${instant(at.knownAt)}` : 'upper_inf(known)';
  for (const table of tableNames) {
    await client.query(
      `CREATE TEMP VIEW ${table} AS SELECT ${projectionTables[table].columns.join(', ')} FROM public.${historyTable(table)}
       WHERE valid @> ${instant(at.asOf)} AND ${known}`,
    );
  }
}
