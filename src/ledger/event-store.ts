// The event store: emmett 0.42.0 on our pool, with the ledger projection inline. Its schema belongs to
// schema_migrations/ (autoMigration off).
import { projections } from '@event-driven-io/emmett';
import { getPostgreSQLEventStore, type PostgresEventStore } from '@event-driven-io/emmett-postgresql';
import type pg from 'pg';
import { ledgerProjection } from '../projections/inline.ts';

export function createEventStore(pool: pg.Pool, connectionString: string): PostgresEventStore {
  return getPostgreSQLEventStore(connectionString, {
    connectionOptions: { pool },
    schema: { autoMigration: 'None' },
    projections: projections.inline([ledgerProjection]),
  });
}
