// The projection tables: column lists in table order, and their keys (every one is `id`, which
// capsul_apply_projection relies on). Projection code writes rows only through these definitions,
// so SQL identifiers never come from data.
export const projectionTables = {
  accounts: { key: ['id'], columns: ['id', 'email', 'created', 'suspended', 'delete_after'] },
  payments: {
    key: ['id'],
    columns: [
      'id',
      'created',
      'email',
      'dollars',
      'invalidated',
      'account_id',
      'provider',
      'reference',
      'recorded',
      'invalidated_at',
      'invalidation_reason',
      'refunded_dollars',
      'refunded_at',
    ],
  },
  vms: {
    key: ['id'],
    columns: [
      'id',
      'email',
      'os',
      'size',
      'created',
      'deleted',
      'last_seen_ipv4',
      'last_seen_ipv6',
      'host',
      'state',
      'account_id',
      'dollars_per_month',
      'ssh_public_keys',
      'ssh_host_key_fingerprints',
      'state_observed',
      'deletion_reason',
      'failure',
      'vanished',
      'accrual_ended',
      'suspended',
      'start_on_resume',
    ],
  },
  hosts: { key: ['id'], columns: ['id', 'memory_mb', 'vcpus', 'token_hash', 'registered', 'removed'] },
  operations: { key: ['id'], columns: ['id', 'vm_id', 'host', 'kind', 'created', 'completed', 'outcome'] },
  drift: { key: ['id'], columns: ['id', 'host', 'vm_id', 'kind', 'detected', 'resolved'] },
  // Older than its id (a projection since schema 15): the id is its last column.
  payment_holds: {
    key: ['id'],
    columns: [
      'provider',
      'reference',
      'email',
      'amount_cents',
      'expected_cents',
      'reason',
      'held',
      'resolved',
      'resolved_by',
      'resolution',
      'id',
    ],
  },
} as const;

export type TableName = keyof typeof projectionTables;
export const tableNames = Object.keys(projectionTables) as TableName[];

/**
 * Each projection's row history (schema_migrations/21_up_row_history.sql): the table's columns, then
 * `valid` (effective time) and `known` (recorded time), both tstzrange.
 */
export const historyTable = (table: TableName) => `${table}_history` as const;

/** A row as JSON values: timestamps as ISO strings, money as decimal strings, arrays and objects as JSON. */
export type Row = Record<string, unknown>;

/** A value read from a row already projected, e.g. the account's email for a new payment row. */
export type Lookup = { $lookup: { table: TableName; id: string; column: string } };
export const lookup = (table: TableName, id: string, column: string): Lookup => ({ $lookup: { table, id, column } });
export const isLookup = (value: unknown): value is Lookup => typeof value === 'object' && value !== null && '$lookup' in value;

/** What a projection does to a table; the same ops run in SQL (with each append) and in memory (rebuild, as-of). */
export type RowOp = { kind: 'insert'; table: TableName; row: Row } | { kind: 'update'; table: TableName; key: Row; set: Row };

export function keyOf(table: TableName, row: Row): string {
  return projectionTables[table].key.map((column) => String(row[column])).join('\u0000');
}

/** Every insert names every column: a missing one is a projection bug, caught in tests and in rebuild. */
export function assertCompleteRow(table: TableName, row: Row): void {
  const columns: readonly string[] = projectionTables[table].columns;
  for (const column of columns) {
    if (!(column in row)) throw new Error(`projection bug: ${table} row lacks column ${column}`);
  }
  for (const column of Object.keys(row)) {
    if (!columns.includes(column)) throw new Error(`projection bug: ${table} has no column ${column}`);
  }
}
