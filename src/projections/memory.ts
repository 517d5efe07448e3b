// Projection rows folded in memory: the fast path of rebuild, verify and as-of.
import type { LedgerEvent } from '../domain/events.ts';
import { project } from './project.ts';
import { assertCompleteRow, keyOf, tableNames, type Row, type RowOp, type TableName } from './tables.ts';

export class MemoryTables {
  readonly tables = new Map<TableName, Map<string, Row>>(tableNames.map((name) => [name, new Map()]));

  async apply(event: LedgerEvent): Promise<void> {
    const ops = await project(event, async (table, id, column) => {
      const value = this.tables.get(table)!.get(keyOf(table, { id }))?.[column];
      return value === undefined || value === null ? null : String(value);
    });
    for (const op of ops) this.applyOp(op);
  }

  applyOp(op: RowOp): void {
    const rows = this.tables.get(op.table)!;
    if (op.kind === 'insert') {
      assertCompleteRow(op.table, op.row);
      const key = keyOf(op.table, op.row);
      if (!rows.has(key)) rows.set(key, { ...op.row });
      return;
    }
    const key = keyOf(op.table, op.key);
    const row = rows.get(key);
    if (row) rows.set(key, { ...row, ...op.set });
  }

  rows(table: TableName): Row[] {
    return [...this.tables.get(table)!.values()];
  }
}
