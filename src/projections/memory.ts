// Projection rows folded in memory: the fast path of rebuild, verify and as-of.
import type { LedgerEvent } from '../domain/events.ts';
import type { EventMetadata } from '../db/event-store.ts';
import { project } from './project.ts';
import { assertCompleteRow, isLookup, keyOf, tableNames, type Row, type RowOp, type TableName } from './tables.ts';

export class MemoryTables {
  readonly tables = new Map<TableName, Map<string, Row>>(tableNames.map((name) => [name, new Map()]));

  apply(event: LedgerEvent, metadata: EventMetadata): void {
    for (const op of project(event, metadata)) this.applyOp(op);
  }

  applyOp(op: RowOp): void {
    const rows = this.tables.get(op.table)!;
    if (op.kind === 'insert') {
      assertCompleteRow(op.table, op.row);
      const key = keyOf(op.table, op.row);
      if (!rows.has(key)) rows.set(key, this.resolve(op.row));
      return;
    }
    // Rows belong to this fold alone: an update changes them in place.
    const row = rows.get(keyOf(op.table, op.key));
    if (row) Object.assign(row, this.resolve(op.set));
  }

  /** Lookups read the rows folded so far, as capsul_apply_projection reads the tables. */
  private resolve(values: Row): Row {
    if (!Object.values(values).some(isLookup)) return values; // the ops are fresh objects, ours to keep
    const resolved: Row = {};
    for (const [column, value] of Object.entries(values)) {
      if (!isLookup(value)) {
        resolved[column] = value;
        continue;
      }
      const { table, id, column: from } = value.$lookup;
      const found = this.tables.get(table)!.get(keyOf(table, { id }))?.[from];
      if (found === undefined || found === null) throw new Error(`projection: no ${table} row ${id} to read ${from} from`);
      resolved[column] = found;
    }
    return resolved;
  }

  rows(table: TableName): Row[] {
    return [...this.tables.get(table)!.values()];
  }
}
