// Projection row operations applied in SQL, in the statement that appends the events (src/ledger/
// append.ts), through capsul_apply_projection (schema_migrations/04_up_projector.sql), which also sets
// the transaction-local capsul.projector that the projection tables' guards require.
import { holdsFrom, type LedgerEvent } from '../domain/events.ts';
import type { EventMetadata } from '../db/event-store.ts';
import { project } from './project.ts';
import { assertCompleteRow, isLookup, projectionTables, type Lookup, type RowOp } from './tables.ts';

/** Only the projector may write projections: the guard trigger checks this transaction-local setting. */
export const enableProjectorSQL = `SELECT set_config('capsul.projector', 'on', true)`;

/**
 * The projection of `events` (which share `metadata`), as capsul_apply_projection takes it: each
 * operation with its event's effective time, where the row's history takes the change from.
 */
export function projectionOps(events: LedgerEvent[], metadata: EventMetadata) {
  return events.flatMap((event) => {
    const at = holdsFrom(event) ?? '-infinity';
    return project(event, metadata).map((op) => ({ ...toWire(op), at }));
  });
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
