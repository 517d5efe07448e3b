// The inline projection: emmett calls it inside the append's transaction, so events and tables commit
// together. A plain, unnamed definition: no registration row, no lock query, never silently skipped.
import type { PostgreSQLProjectionDefinition } from '@event-driven-io/emmett-postgresql';
import { ledgerEventTypes, type LedgerEvent } from '../domain/events.ts';
import { projectInSQL } from './sql.ts';

export const ledgerProjection: PostgreSQLProjectionDefinition<LedgerEvent> = {
  canHandle: ledgerEventTypes,
  handle: async (events, context) => {
    // `handle` receives every event of the append; all of ours are ledger events.
    const ledgerEvents = events.filter((e) => ledgerEventTypes.includes(e.type)) as unknown as LedgerEvent[];
    await projectInSQL(context.connection.client as never, ledgerEvents);
  },
};
