// Projection row operations applied in SQL, inside the transaction that appends the events: one round
// trip per append, through capsul_apply_projection (schema_migrations/04_up_projector.sql), which also
// sets the transaction-local capsul.projector that the projection tables' guards require.
import type pg from 'pg';
import type { LedgerEvent } from '../domain/events.ts';
import { project } from './project.ts';
import { assertCompleteRow, isLookup, projectionTables, type Lookup, type RowOp } from './tables.ts';

type Queryable = Pick<pg.ClientBase, 'query'>;

/** Only the projector may write projections: the guard trigger checks this transaction-local setting. */
export const enableProjectorSQL = `SELECT set_config('capsul.projector', 'on', true)`;

export async function projectInSQL(client: Queryable, events: LedgerEvent[]): Promise<void> {
  const ops = events.flatMap(project);
  if (ops.length === 0) return;
  // Named: parsed and planned once per connection, not on every append.
  await client.query({ name: 'capsul_apply_projection', text: 'SELECT capsul_apply_projection($1::jsonb)', values: [JSON.stringify(ops.map(toWire))] });
}

/** The function's input: the values to write (an update's id included) and the columns to look up. */
function toWire(op: RowOp) {
  if (op.kind === 'insert') assertCompleteRow(op.table, op.row);
  const values = op.kind === 'insert' ? op.row : { ...op.set, ...op.key };
  const columns: readonly string[] = projectionTables[op.table].columns;
  const lookups: Record<string, Lookup['$lookup']> = {};
  for (const [column, value] of Object.entries(values)) {
    if (!columns.includes(column)) throw new Error(`projection bug: ${op.table} has no column ${column}`);
    if (isLookup(value)) lookups[column] = value.$lookup;
  }
  return { kind: op.kind, table: op.table, values, lookups };
}
