// Appending events with their projection: the rows each event changes are worked out here (src/
// projections, the same code rebuild replays through) and written by the event store in the append's
// own statement, so events and tables commit together in one round trip.
import { canonicalJson } from '../audit/canonical.ts';
import { eventsAppended } from '../core/metrics.ts';
import { appendToStream, type AppendResult, type EventMetadata, type Queryable } from '../db/event-store.ts';
import type { LedgerEvent } from '../domain/events.ts';
import { projectionOps } from '../projections/sql.ts';

export type { AppendResult };

/** Appends `events` to `streamId` if the stream is at `expectedVersion` (0 = must be new); see appendToStream. */
export async function appendEvents(
  db: Queryable,
  streamId: string,
  events: LedgerEvent[],
  metadata: EventMetadata,
  expectedVersion: bigint,
): Promise<AppendResult> {
  const data = events.map((event) => storableJson(event.data));
  const result = await appendToStream(db, {
    streamId,
    types: events.map((event) => event.type),
    data,
    metadata: storableJson(metadata),
    expectedVersion,
    projection: projectionOps(events, metadata),
  });
  if (result.ok) for (const event of events) eventsAppended.inc({ type: event.type });
  return result;
}

/**
 * `value` as the JSON text stored. The log's leaf is the event in canonical JSON: nothing goes in that
 * canonicalisation would not keep exactly (a number beyond 2^53, a lone surrogate), so every leaf can
 * be computed again, byte for byte.
 */
function storableJson(value: unknown): string {
  const text = JSON.stringify(value);
  canonicalJson(JSON.parse(text));
  return text;
}
