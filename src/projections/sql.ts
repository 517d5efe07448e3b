// Projection row operations applied in SQL, inside the transaction that appends the events.
import type pg from 'pg';
import type { LedgerEvent } from '../domain/events.ts';
import { project } from './project.ts';
import { assertCompleteRow, projectionTables, type RowOp, type TableName } from './tables.ts';

type Queryable = Pick<pg.ClientBase, 'query'>;

/** Only the projector may write projections: the guard trigger checks this transaction-local setting. */
export const enableProjectorSQL = `SELECT set_config('capsul.projector', 'on', true)`;

export async function projectInSQL(client: Queryable, events: LedgerEvent[]): Promise<void> {
  await client.query(enableProjectorSQL);
  const lookup = async (table: TableName, id: string, column: string) => {
    assertColumn(table, column);
    const { rows } = await client.query(`SELECT ${column}::text AS value FROM ${table} WHERE id = $1`, [id]);
    return (rows[0]?.value as string | undefined) ?? null;
  };
  for (const event of events) {
    for (const op of await project(event, lookup)) await applyOpInSQL(client, op);
  }
}

export async function applyOpInSQL(client: Queryable, op: RowOp): Promise<void> {
  const { key } = projectionTables[op.table];
  if (op.kind === 'insert') {
    assertCompleteRow(op.table, op.row);
    await client.query(
      `INSERT INTO ${op.table} SELECT * FROM jsonb_populate_record(NULL::${op.table}, $1::jsonb) ON CONFLICT (${key.join(', ')}) DO NOTHING`,
      [JSON.stringify(op.row)],
    );
    return;
  }
  const columns = Object.keys(op.set);
  columns.forEach((column) => assertColumn(op.table, column));
  await client.query(
    `UPDATE ${op.table} SET ${columns.map((c) => `${c} = s.${c}`).join(', ')}
     FROM jsonb_populate_record(NULL::${op.table}, $1::jsonb) s
     WHERE ${key.map((k) => `${op.table}.${k} = s.${k}`).join(' AND ')}`,
    [JSON.stringify({ ...op.set, ...op.key })],
  );
}

function assertColumn(table: TableName, column: string): void {
  if (!(projectionTables[table].columns as readonly string[]).includes(column)) {
    throw new Error(`projection bug: ${table} has no column ${column}`);
  }
}
