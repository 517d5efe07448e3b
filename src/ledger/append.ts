// Appending events and projecting them as one statement: emmett's emt_append_to_stream (the store's
// own SQL function, which checks the expected version) and capsul_apply_projection run in a single
// autocommitted statement, so events and tables commit together in one round trip. Written like
// emmett's appendToStream writes (stream type from the name, a random message id, schema version 1),
// so emmett reads these streams as its own.
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { LedgerEvent } from '../domain/events.ts';
import { projectionOps } from '../projections/sql.ts';

export type AppendResult = { ok: true; nextVersion: bigint } | { ok: false };

const appendSQL = `
  WITH appended AS (
    SELECT * FROM emt_append_to_stream($1::text[], $2::jsonb[], $3::jsonb[], $4::text[], $5::text[], $6::text[],
                                       $7::text, $8::text, $9::bigint, 'emt:default')
  ), projected AS (
    SELECT capsul_apply_projection($10::jsonb) FROM appended WHERE appended.success
  )
  SELECT success, next_stream_position::text AS next_position, (SELECT count(*) FROM projected)::int AS projected
  FROM appended`;

/**
 * Appends `events` to `streamId` if the stream is at `expectedVersion` (0 = must be new), with their
 * projection. `{ ok: false }` means another append got there first. A unique violation of a
 * projection (an email or a provider reference taken meanwhile) is thrown as itself.
 */
export async function appendEvents(
  pool: pg.Pool,
  streamId: string,
  events: LedgerEvent[],
  metadata: Record<string, unknown>,
  expectedVersion: bigint,
): Promise<AppendResult> {
  const [prefix, ...rest] = streamId.split('-');
  const streamType = prefix && rest.length > 0 ? prefix : 'emt:unknown';
  try {
    const { rows } = await pool.query({
      name: 'capsul_append',
      text: appendSQL,
      values: [
        events.map(() => randomUUID()),
        events.map((event) => JSON.stringify(event.data)),
        events.map(() => JSON.stringify(metadata)),
        events.map(() => '1'),
        events.map((event) => event.type),
        events.map(() => 'E'),
        streamId,
        streamType,
        expectedVersion.toString(),
        JSON.stringify(projectionOps(events)),
      ],
    });
    const row = rows[0];
    return row?.success ? { ok: true, nextVersion: BigInt(row.next_position) } : { ok: false };
  } catch (error) {
    // Two appends creating the same stream collide on the stream's key: a version conflict.
    const e = error as { code?: string; table?: string };
    if (e.code === '23505' && e.table?.startsWith('emt_streams')) return { ok: false };
    throw error;
  }
}
