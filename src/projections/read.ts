// Reading events back in the order they committed: (transaction_id, global_position). global_position
// alone is a sequence handed out before commit, so it is not commit order (DESIGN.md).
import type pg from 'pg';
import type { Actor, LedgerEvent } from '../domain/events.ts';
import { upcast } from '../domain/upcast.ts';

type Queryable = Pick<pg.ClientBase, 'query'>;

export type StoredEvent = {
  event: LedgerEvent;
  streamId: string;
  streamPosition: number;
  globalPosition: string;
  transactionId: string;
  recordedAt: string;
  metadata: EventMetadata;
};

/** What capsul keeps in every event's metadata. */
export type EventMetadata = { by?: Actor; reason?: string; eventVersion?: number; [key: string]: unknown };

// Every column as text: the parsing stays ours whatever type parsers emmett installed process-wide.
// The aliases differ from the column names so that ORDER BY sorts the numbers, not their text.
const columns = `stream_id, stream_position::text AS position_text, global_position::text AS global_text,
  transaction_id::text AS transaction_text, to_char(created AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created_text,
  message_type, message_data::text AS data_text, message_metadata::text AS metadata_text`;

export function toStoredEvent(row: Record<string, string>): StoredEvent {
  const metadata = JSON.parse(row.metadata_text!) as EventMetadata;
  return {
    event: upcast(row.message_type!, JSON.parse(row.data_text!), Number(metadata.eventVersion ?? 1)),
    streamId: row.stream_id!,
    streamPosition: Number(row.position_text),
    globalPosition: row.global_text!,
    transactionId: row.transaction_text!,
    recordedAt: row.created_text!,
    metadata,
  };
}

/** One stream's events in order, and its version (0 when it does not exist). */
export async function loadStream(db: Queryable, streamId: string): Promise<{ events: StoredEvent[]; version: bigint }> {
  const { rows } = await db.query(
    `SELECT ${columns} FROM emt_messages
     WHERE stream_id = $1 AND partition = 'emt:default' AND NOT is_archived ORDER BY stream_position`,
    [streamId],
  );
  const events = rows.map(toStoredEvent);
  return { events, version: BigInt(events.at(-1)?.streamPosition ?? 0) };
}

export type ReadAllOptions = {
  batchSize?: number;
  /** extra condition on emt_messages (our own SQL, values as $n parameters after the cursor's two) */
  where?: string;
  params?: unknown[];
};

/**
 * Every event in commit order, in keyset-paged batches (bounded memory per batch). The next batch is
 * requested before this one is handed out, so the database reads while the caller works.
 */
export async function* readAllEvents(db: Queryable, options: ReadAllOptions = {}): AsyncGenerator<StoredEvent[]> {
  const batchSize = options.batchSize ?? 5000;
  const fetch = (cursor: [string, string]) =>
    db.query(
      `SELECT ${columns} FROM emt_messages
       WHERE partition = 'emt:default' AND NOT is_archived
         AND (transaction_id, global_position) > ($1::xid8, $2::bigint)
         ${options.where ? `AND (${options.where})` : ''}
       ORDER BY transaction_id, global_position LIMIT ${batchSize}`,
      [...cursor, ...(options.params ?? [])],
    );
  let pending: Promise<pg.QueryResult> | undefined = fetch(['0', '0']);
  while (pending) {
    const { rows }: pg.QueryResult = await pending;
    const batch: StoredEvent[] = rows.map(toStoredEvent);
    const last = batch.at(-1);
    pending = last && rows.length === batchSize ? fetch([last.transactionId, last.globalPosition]) : undefined;
    // A caller that stops early leaves the prefetch unread: its failure must not go unhandled.
    pending?.catch(() => {});
    if (batch.length > 0) yield batch;
  }
}

/** Where a newest-first page starts: just older than this event, in commit order. */
export type EventCursor = { transactionId: string; globalPosition: string };

/** A page of events newest first (commit order reversed), older than `before` when given: a timeline. */
export async function readEventsBackward(
  db: Queryable, options: { limit: number; before?: EventCursor | null; where?: string; params?: unknown[] },
): Promise<StoredEvent[]> {
  const { rows } = await db.query(
    `SELECT ${columns} FROM emt_messages
     WHERE partition = 'emt:default' AND NOT is_archived
       AND ($1::xid8 IS NULL OR (transaction_id, global_position) < ($1::xid8, $2::bigint))
       ${options.where ? `AND (${options.where})` : ''}
     ORDER BY transaction_id DESC, global_position DESC LIMIT ${Math.trunc(options.limit)}`,
    [options.before?.transactionId ?? null, options.before?.globalPosition ?? null, ...(options.params ?? [])],
  );
  return rows.map(toStoredEvent);
}

/** How many events there are (for progress). */
export async function countEvents(db: Queryable): Promise<number> {
  const { rows } = await db.query(`SELECT count(*)::int AS n FROM emt_messages WHERE partition = 'emt:default' AND NOT is_archived`);
  return rows[0].n;
}
