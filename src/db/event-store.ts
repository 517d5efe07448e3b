// The one way to the event store: every statement that names emmett's tables (emt_*) is here —
// appending, reading in commit order, stream versions, and (src/audit) sealing and verifying the log.
// The sealer and the verifier can only promise what they do because nothing else reads or writes events.
//
// Commit order is (transaction_id, global_position): global_position alone is a sequence handed out
// before commit, so a reader of "positions after N" misses a transaction that commits late (DESIGN.md).
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { holdsFrom, type Actor, type LedgerEvent } from '../domain/events.ts';
import { upcast } from '../domain/upcast.ts';
import { advisoryLocks, lockUntilCommit } from './advisory-lock.ts';

export type Queryable = Pick<pg.ClientBase, 'query'>;

export type StoredEvent = {
  event: LedgerEvent;
  streamId: string;
  streamPosition: number;
  globalPosition: string;
  transactionId: string;
  recordedAt: string;
  messageId: string;
  metadata: EventMetadata;
  /** the event's data exactly as stored (before upcasting): what the audit log's leaf holds */
  storedData: unknown;
  /** the event's leaf in the audit log, when read with `leafIndexes` and sealed */
  leafIndex?: number | null;
};

/** What capsul keeps in every event's metadata. */
export type EventMetadata = { by?: Actor; reason?: string; eventVersion?: number; [key: string]: unknown };

// Every column as text: the parsing stays ours whatever type parsers emmett installed process-wide.
// The aliases differ from the column names so that ORDER BY sorts the numbers, not their text.
const eventColumnsAs = {
  stream_id: (t: string) => `${t}stream_id`,
  position_text: (t: string) => `${t}stream_position::text`,
  global_text: (t: string) => `${t}global_position::text`,
  transaction_text: (t: string) => `${t}transaction_id::text`,
  created_text: (t: string) => `to_char(${t}created AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`,
  message_id: (t: string) => `${t}message_id`,
  message_type: (t: string) => `${t}message_type`,
  data_text: (t: string) => `${t}message_data::text`,
  metadata_text: (t: string) => `${t}message_metadata::text`,
};
function eventColumns(table = ''): string {
  const t = table ? `${table}.` : '';
  return Object.entries(eventColumnsAs)
    .map(([alias, column]) => `${column(t)} AS ${alias}`)
    .join(', ');
}
const columns = eventColumns();

/** Only capsul's own partition, never archived events (capsul archives none). */
const live = `partition = 'emt:default' AND NOT is_archived`;

/** Whether a table is one of emmett's own (emt_streams, emt_messages …): the event store, append-only. */
export const isEventStoreTable = (name: string): boolean => name.startsWith('emt_');

export function toStoredEvent(row: Record<string, string>): StoredEvent {
  const metadata = JSON.parse(row.metadata_text!) as EventMetadata;
  const storedData = JSON.parse(row.data_text!);
  return {
    // Upcasters build new objects and never change what they are given: storedData stays as stored.
    event: upcast(row.message_type!, storedData, Number(metadata.eventVersion ?? 1)),
    storedData,
    streamId: row.stream_id!,
    streamPosition: Number(row.position_text),
    globalPosition: row.global_text!,
    transactionId: row.transaction_text!,
    recordedAt: row.created_text!,
    messageId: row.message_id!,
    metadata,
    ...(row.leaf_index_text !== undefined ? { leafIndex: row.leaf_index_text === null ? null : Number(row.leaf_index_text) } : {}),
  };
}

/** An instant of each clock: effective time (`asOf`) and recorded time (`knownAt`); absent: no limit. */
export type Instants = { asOf?: Date; knownAt?: Date };

/**
 * Whether an event counts at `at`: recorded by `knownAt` (compared to the microsecond, as stored) and
 * in effect by `asOf` (an account's opening always is: it holds from no time in particular).
 */
export function isSeenAt(stored: StoredEvent, at: Instants): boolean {
  if (at.knownAt && stored.recordedAt > recordedText(at.knownAt)) return false;
  const from = holdsFrom(stored.event);
  return !at.asOf || from === null || Date.parse(from) <= at.asOf.getTime();
}

/** A Date as `recordedAt` is written (microseconds, UTC), so the two compare as text. */
const recordedText = (date: Date) => `${date.toISOString().slice(0, -1)}000Z`;

// ---- appending

export type AppendResult = { ok: true; nextVersion: bigint } | { ok: false };

/** Events as they are stored: each type with its data as JSON text, and the metadata they share as JSON text. */
export type SerializedAppend = {
  streamId: string;
  types: string[];
  data: string[];
  metadata: string;
  expectedVersion: bigint;
  projection: unknown;
};

/**
 * Appends events to `streamId` if the stream is at `expectedVersion` (0 = must be new), with their
 * projection rows, through capsul_append (schema_migrations/11_up_roles.sql): the events as emmett
 * writes them (stream type from the name, a random message id, schema version 1), so emmett reads these
 * streams as its own, and the projection in the same statement. `{ ok: false }` means another append got
 * there first. A unique violation of a projection (an email or a provider reference taken meanwhile)
 * is thrown as itself. The JSON comes serialized (and checked) by the ledger's append.
 */
export async function appendToStream(db: Queryable, append: SerializedAppend): Promise<AppendResult> {
  const [prefix, ...rest] = append.streamId.split('-');
  const streamType = prefix && rest.length > 0 ? prefix : 'emt:unknown';
  try {
    const { rows } = await db.query({
      name: 'capsul_append',
      text: `SELECT success, next_position::text AS next_position
             FROM capsul_append($1::text, $2::text, $3::bigint, $4::text[], $5::text[], $6::jsonb[], $7::jsonb[], $8::jsonb)`,
      values: [
        append.streamId,
        streamType,
        append.expectedVersion.toString(),
        append.types.map(() => randomUUID()),
        append.types,
        append.data,
        append.types.map(() => append.metadata),
        JSON.stringify(append.projection),
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

// ---- reading

/** One stream's events in order, and its version (0 when it does not exist). */
export async function loadStream(db: Queryable, streamId: string): Promise<{ events: StoredEvent[]; version: bigint }> {
  const { rows } = await db.query(`SELECT ${columns} FROM emt_messages WHERE stream_id = $1 AND ${live} ORDER BY stream_position`, [
    streamId,
  ]);
  const events = rows.map(toStoredEvent);
  return { events, version: BigInt(events.at(-1)?.streamPosition ?? 0) };
}

/** Why a stream's snapshot (stream_snapshots, migration 23) was not used. */
export type SnapshotRefusal = 'another shape' | 'beyond the stream' | 'another event at its version';

export type SnapshotRead = {
  /** the stream's snapshot, if it has one: its version, and its state when usable (null: not used, and why) */
  snapshot: { version: bigint; state: unknown; refused: null } | { version: bigint; state: null; refused: SnapshotRefusal } | null;
  /** the events after the snapshot used (every event when none was) */
  events: StoredEvent[];
  version: bigint;
};

/**
 * A stream read from its snapshot, in one statement: the snapshot, if the code's `shapeVersion` wrote it
 * and the event at its version is still the one it was taken after (same message id); then the events
 * after it (after none when it is refused: every event). The snapshot's state is not sent when refused.
 */
export async function loadStreamFromSnapshot(db: Queryable, streamId: string, shapeVersion: number): Promise<SnapshotRead> {
  const nulls = Object.keys(eventColumnsAs)
    .map((alias) => `NULL::text AS ${alias}`)
    .join(', ');
  const { rows } = await db.query({
    name: 'capsul_load_from_snapshot',
    text: `WITH snapshot AS (
             SELECT s.stream_version, s.state,
                    CASE WHEN s.shape_version <> $2 THEN 'another shape'
                         WHEN m.message_id IS NULL THEN 'beyond the stream'
                         WHEN m.message_id <> s.message_id THEN 'another event at its version' END AS refused
             FROM stream_snapshots s
             LEFT JOIN emt_messages m ON m.stream_id = s.stream_id AND m.stream_position = s.stream_version
               AND m.partition = 'emt:default' AND NOT m.is_archived
             WHERE s.stream_id = $1)
           SELECT 0 AS part, stream_version AS sort_position, stream_version::text AS snapshot_version, refused,
                  CASE WHEN refused IS NULL THEN state::text END AS snapshot_text, ${nulls}
           FROM snapshot
           UNION ALL
           SELECT 1, stream_position, NULL, NULL, NULL, ${columns} FROM emt_messages
           WHERE stream_id = $1 AND ${live}
             AND stream_position > coalesce((SELECT stream_version FROM snapshot WHERE refused IS NULL), 0)
           ORDER BY part, sort_position`,
    values: [streamId, shapeVersion],
  });
  const head = rows[0]?.part === 0 ? rows.shift() : undefined;
  const events = rows.map(toStoredEvent);
  const snapshot = head
    ? head.refused === null
      ? { version: BigInt(head.snapshot_version), state: JSON.parse(head.snapshot_text) as unknown, refused: null }
      : { version: BigInt(head.snapshot_version), state: null, refused: head.refused as SnapshotRefusal }
    : null;
  const from = snapshot?.refused === null ? snapshot.version : 0n;
  return { snapshot, events, version: BigInt(events.at(-1)?.streamPosition ?? from) };
}

/** A stream's state as of its event `version` (`messageId`), replacing the snapshot it had. */
export async function writeSnapshot(
  db: Queryable,
  snapshot: { streamId: string; version: bigint; messageId: string; shapeVersion: number; state: unknown },
): Promise<void> {
  await db.query({
    name: 'capsul_write_snapshot',
    text: `INSERT INTO stream_snapshots (stream_id, stream_version, message_id, shape_version, state, taken)
           VALUES ($1, $2::bigint, $3, $4, $5::jsonb, now())
           ON CONFLICT (stream_id) DO UPDATE SET stream_version = excluded.stream_version, message_id = excluded.message_id,
             shape_version = excluded.shape_version, state = excluded.state, taken = excluded.taken`,
    values: [snapshot.streamId, snapshot.version.toString(), snapshot.messageId, snapshot.shapeVersion, JSON.stringify(snapshot.state)],
  });
}

/** A stream's version (0 when it does not exist yet), without reading its events. */
export async function streamVersion(db: Queryable, streamId: string): Promise<bigint> {
  const { rows } = await db.query({
    name: 'capsul_stream_version',
    text: `SELECT stream_position::text AS version FROM emt_streams WHERE stream_id = $1 AND ${live}`,
    values: [streamId],
  });
  return BigInt(rows[0]?.version ?? 0);
}

/**
 * The same lookup as an SQL expression, for a read model's statement that must show one moment of a
 * stream and its projection (the version a confirm form carries): `param` names the stream id.
 */
export function streamVersionExpression(param: string): string {
  return `coalesce((SELECT stream_position FROM emt_streams WHERE stream_id = ${param} AND ${live}), 0)::text`;
}

/**
 * Which events a reader wants: those of `stream`, or only those of it whose data field `field` is
 * `equals` (a payment's events in its account's stream). None given: every event.
 */
export type EventSelector = { stream: string; field?: 'paymentId' | 'vmId'; equals?: string };

function selectorSql(selectors: EventSelector[] | undefined, firstParam: number): { sql: string; params: unknown[] } {
  if (!selectors || selectors.length === 0) return { sql: '', params: [] };
  const params: unknown[] = [];
  const wholeStreams = selectors.filter((s) => s.field === undefined).map((s) => s.stream);
  const parts: string[] = [];
  if (wholeStreams.length > 0) {
    params.push(wholeStreams);
    parts.push(`stream_id = ANY($${firstParam}::text[])`);
  }
  for (const selector of selectors) {
    if (selector.field === undefined) continue;
    params.push(selector.stream, selector.equals ?? '');
    const n = firstParam + params.length - 1;
    parts.push(`(stream_id = $${n - 1} AND message_data->>'${selector.field}' = $${n})`);
  }
  return { sql: `AND (${parts.join(' OR ')})`, params };
}

/** An event's place in commit order: a page, in either direction, starts just past it. */
export type EventCursor = { transactionId: string; globalPosition: string };

const cursorOf = (stored: StoredEvent): EventCursor => ({ transactionId: stored.transactionId, globalPosition: stored.globalPosition });

/**
 * Each event's leaf index in the audit log (null while not sealed), when asked for: looked up by the
 * event's `position`, one leaf per event, so a batch never makes the planner join the whole log of leaves.
 */
const leafIndexColumn = (wanted: boolean | undefined, position: string) =>
  wanted ? `, (SELECT l.leaf_index::text FROM capsul_log_leaves l WHERE l.global_position = ${position}) AS leaf_index_text` : '';

export type ReadAllOptions = {
  batchSize?: number;
  /** also each event's leaf index in the audit log (null while not sealed) */
  leafIndexes?: boolean;
} & (
  | { selectors?: EventSelector[]; account?: undefined }
  /** one account's events (its stream's and its capsuls'), read through the history index */
  | { account: string; selectors?: undefined }
);

/**
 * Every event (or the selected ones, or one account's) in commit order, in keyset-paged batches
 * (bounded memory per batch). The next batch is requested before this one is handed out, so the
 * database reads while the caller works. An account's events come through the history index
 * (readAccountEvents), so they cost what the account holds, not what the log holds.
 */
export async function* readAllEvents(db: Queryable, options: ReadAllOptions = {}): AsyncGenerator<StoredEvent[]> {
  const batchSize = Math.trunc(options.batchSize ?? 5000);
  const { account, leafIndexes } = options;
  const page = { direction: 'forward', limit: batchSize, leafIndexes } as const;
  const fetch = (cursor: EventCursor | null) =>
    account === undefined
      ? readLogPage(db, { ...page, cursor, selectors: options.selectors })
      : readAccountEvents(db, account, { ...page, cursor });
  yield* prefetched(batchSize, (last) => fetch(last ? cursorOf(last) : null));
}

/**
 * Batches of `size` from `next` (given the last event read, none at first) until one comes short. The
 * next batch is requested before this one is handed out, so the database reads while the caller works.
 */
async function* prefetched(size: number, next: (last: StoredEvent | undefined) => Promise<StoredEvent[]>): AsyncGenerator<StoredEvent[]> {
  let pending: Promise<StoredEvent[]> | undefined = next(undefined);
  try {
    while (pending) {
      const batch: StoredEvent[] = await pending;
      pending = batch.length === size ? next(batch.at(-1)) : undefined;
      // A caller that stops early leaves the prefetch unread: its failure must not go unhandled.
      pending?.catch(() => {});
      if (batch.length > 0) yield batch;
    }
  } finally {
    // Settled before the caller goes on, so nothing else waits behind it on the connection.
    await pending?.catch(() => {});
  }
}

/**
 * A page of the log (or of the selected events) in commit order (`forward`) or its reverse
 * (`backward`), starting just past `cursor` when given. `types`, when given, keeps only events of
 * those message types, so a filtered page is still full.
 */
export async function readLogPage(
  db: Queryable,
  options: {
    direction: Direction;
    limit: number;
    cursor?: EventCursor | null;
    selectors?: EventSelector[];
    types?: readonly string[];
    leafIndexes?: boolean;
  },
): Promise<StoredEvent[]> {
  const { past, order } = directions[options.direction];
  const params: unknown[] = [];
  const param = (value: unknown) => `$${params.push(value)}`;
  const { cursor, types } = options;
  const pastCursor = cursor
    ? `AND (transaction_id, global_position) ${past} (${param(cursor.transactionId)}::xid8, ${param(cursor.globalPosition)}::bigint)`
    : '';
  const ofTypes = types ? `AND message_type = ANY(${param(types)}::text[])` : '';
  const filter = selectorSql(options.selectors, params.length + 1);
  params.push(...filter.params);
  const { rows } = await db.query(
    `SELECT ${columns}${leafIndexColumn(options.leafIndexes, 'emt_messages.global_position')} FROM emt_messages
     WHERE ${live} ${pastCursor} ${ofTypes} ${filter.sql}
     ORDER BY transaction_id ${order}, global_position ${order} LIMIT ${Math.trunc(options.limit)}`,
    params,
  );
  return rows.map(toStoredEvent);
}

/** The temporary table of streamSharesOf: which share each stream is in, for this transaction. */
const streamShares = 'capsul_stream_shares';

/**
 * Which share each stream is in, for a reader that goes through the log in shares within one
 * transaction (a rebuild's passes): `remember` puts streams in shares (each once, as it is learnt);
 * `learnt`, when all are, lets the planner know how many each share holds; `events` reads a share.
 */
export async function streamSharesOf(db: Queryable) {
  await db.query(`CREATE TEMP TABLE ${streamShares} (stream_id text PRIMARY KEY, share int NOT NULL) ON COMMIT DROP`);
  return {
    async remember(streams: { streamId: string; share: number }[]): Promise<void> {
      if (streams.length === 0) return;
      await db.query(`INSERT INTO pg_temp.${streamShares} (stream_id, share) SELECT * FROM unnest($1::text[], $2::int[])`, [
        streams.map((s) => s.streamId),
        streams.map((s) => s.share),
      ]);
    },
    async learnt(): Promise<void> {
      await db.query(`ANALYZE pg_temp.${streamShares}`);
    },
    /**
     * The events of a share's streams in commit order, `batchSize` at a time, through a cursor: the
     * database joins the share's streams with the log and sorts their events once. Paging by keyset
     * instead walks the log in commit order for every page, visiting every event of every share (measured
     * at a million events, one share of 21: 2.3 s of the database's time against 0.7 s).
     */
    async *events(share: number, batchSize: number): AsyncGenerator<StoredEvent[]> {
      const shareNumber = Math.trunc(share);
      const name = `capsul_share_${shareNumber}`;
      const size = Math.trunc(batchSize);
      // Planned for the whole result (one join, one sort), not its first rows (the log's order).
      await db.query('SET LOCAL cursor_tuple_fraction = 1');
      await db.query(
        `DECLARE ${name} NO SCROLL CURSOR FOR SELECT ${eventColumns('m')} FROM emt_messages m
         JOIN pg_temp.${streamShares} s ON s.stream_id = m.stream_id AND s.share = ${shareNumber}
         WHERE ${live} ORDER BY m.transaction_id, m.global_position`,
      );
      await db.query('SET LOCAL cursor_tuple_fraction TO DEFAULT');
      try {
        yield* prefetched(size, () => db.query(`FETCH ${size} FROM ${name}`).then(({ rows }) => rows.map(toStoredEvent)));
      } finally {
        await db.query(`CLOSE ${name}`).catch(() => {});
      }
    },
  };
}

/** The current transaction's snapshot (pg_snapshot as text): which transactions it sees as committed. */
export async function currentSnapshot(db: Queryable): Promise<string> {
  const { rows } = await db.query('SELECT pg_current_snapshot()::text AS snapshot');
  return rows[0].snapshot;
}

/**
 * The events of every transaction `snapshot` did not see as committed (and that has committed since,
 * as this statement sees it), in commit order: what a reader of that snapshot missed.
 */
export async function readEventsNotIn(db: Queryable, snapshot: string): Promise<StoredEvent[]> {
  const { rows } = await db.query(
    `SELECT ${columns} FROM emt_messages
     WHERE ${live} AND transaction_id >= pg_snapshot_xmin($1::pg_snapshot) AND NOT pg_visible_in_snapshot(transaction_id, $1::pg_snapshot)
     ORDER BY transaction_id, global_position`,
    [snapshot],
  );
  return rows.map(toStoredEvent);
}

/** Which way through commit order: oldest first (a replay, an export) or newest first (a timeline). */
export type Direction = 'forward' | 'backward';
const directions = {
  forward: { past: '>', order: 'ASC' },
  backward: { past: '<', order: 'DESC' },
} as const;

/**
 * A page of one account's events (its own stream's and its capsuls'), in commit order (`forward`) or
 * its reverse (`backward`), starting just past `cursor` when given, read through the history index
 * (account_events, schema_migrations/22_up_history_index.sql) rather than by filtering the log: an
 * index range from the cursor, then the page's events by global position, so a page costs the same
 * however large the log. With `types`, one range per type (the by-type index), merged: a page of rare
 * types reads no more than a page's worth of each.
 */
export async function readAccountEvents(
  db: Queryable,
  accountId: string,
  options: { direction: Direction; limit: number; cursor?: EventCursor | null; types?: readonly string[]; leafIndexes?: boolean },
): Promise<StoredEvent[]> {
  const limit = Math.trunc(options.limit);
  const { past, order } = directions[options.direction];
  const params: unknown[] = [accountId];
  const param = (value: unknown) => `$${params.push(value)}`;
  // Only a present cursor becomes a condition, so the range starts at it in the index.
  const { cursor } = options;
  const pastCursor = cursor
    ? `AND (a.transaction_id, a.global_position) ${past} (${param(cursor.transactionId)}::xid8, ${param(cursor.globalPosition)}::bigint)`
    : '';
  const inOrder = `ORDER BY transaction_id ${order}, global_position ${order}`;
  const range = (typeCondition: string) =>
    `SELECT a.transaction_id, a.global_position FROM account_events a
     WHERE a.account_id = $1 ${typeCondition} ${pastCursor} ${inOrder} LIMIT ${limit}`;
  const page = options.types
    ? `SELECT t.transaction_id, t.global_position FROM unnest(${param(options.types)}::text[]) AS k(message_type)
       CROSS JOIN LATERAL (${range('AND a.message_type = k.message_type')}) t ${inOrder} LIMIT ${limit}`
    : range('');
  const leafIndex = leafIndexColumn(options.leafIndexes, 'p.global_position');
  // Each event fetched by its position (LIMIT 1 keeps the planner from joining the whole log instead).
  const { rows } = await db.query(
    `WITH page AS (${page})
     SELECT m.*${leafIndex} FROM page p CROSS JOIN LATERAL (
       SELECT ${columns} FROM emt_messages WHERE global_position = p.global_position AND ${live} LIMIT 1) m
     ORDER BY p.transaction_id ${order}, p.global_position ${order}`,
    params,
  );
  return rows.map(toStoredEvent);
}

/** How many events there are (for progress). */
export async function countEvents(db: Queryable): Promise<number> {
  const { rows } = await db.query(`SELECT count(*)::int AS n FROM emt_messages WHERE ${live}`);
  return rows[0].n;
}

/** The account events the warning-emails job mails: balance warnings, suspensions and resumptions. */
const mailedAccountEvents = `m.message_type IN ('BalanceWarningIssued', 'AccountSuspended', 'AccountResumed')`;
/** A mailed event's kind: the warning's level, or suspended / resumed. */
const mailedLevel = `coalesce(m.message_data->>'level', CASE m.message_type WHEN 'AccountSuspended' THEN 'suspended' ELSE 'resumed' END)`;

/**
 * Balance warnings, suspensions and resumptions at (from, to] no email has been recorded for yet,
 * oldest first, with the account's email: the warning-emails job's work list.
 */
export async function unmailedBalanceWarnings(db: Queryable, window: { from: Date; to: Date; limit: number }) {
  const { rows } = await db.query(
    `SELECT m.global_position::text AS position, m.message_data->>'accountId' AS account_id, ${mailedLevel} AS level,
            m.message_data->>'at' AS at, a.email
     FROM emt_messages m JOIN accounts a ON a.id = m.message_data->>'accountId'
     WHERE ${mailedAccountEvents}
       AND (m.message_data->>'at')::timestamptz > $1 AND (m.message_data->>'at')::timestamptz <= $2
       AND NOT EXISTS (SELECT 1 FROM warning_emails w WHERE w.event_position = m.global_position)
     ORDER BY m.global_position LIMIT ${Math.trunc(window.limit)}`,
    [window.from.toISOString(), window.to.toISOString()],
  );
  return rows as { position: string; account_id: string; level: string; at: string; email: string }[];
}

/** How many of those within (from, to] no email has been recorded for yet (what warning-emails owes). */
export async function countUnmailedBalanceWarnings(db: Queryable, window: { from: Date; to: Date }): Promise<number> {
  const { rows } = await db.query(
    `SELECT count(*)::int AS n
     FROM emt_messages m JOIN accounts a ON a.id = m.message_data->>'accountId'
     WHERE ${mailedAccountEvents}
       AND (m.message_data->>'at')::timestamptz > $1 AND (m.message_data->>'at')::timestamptz <= $2
       AND NOT EXISTS (SELECT 1 FROM warning_emails w WHERE w.event_position = m.global_position)`,
    [window.from.toISOString(), window.to.toISOString()],
  );
  return rows[0].n;
}

// ---- keeping ids ahead of the events

/**
 * Ids handed out by sequences stay above every id the events hold, whatever a migration did to a
 * sequence (a down below the version that made it, then up again, restarts it at 1). Run by the
 * migration runner after it changed the schema, and by rebuild; needs the sequences' owner.
 */
export async function keepSequencesAboveEvents(db: Queryable): Promise<void> {
  const { rows } = await db.query(
    `SELECT to_regclass('emt_messages') IS NOT NULL AS events, to_regclass('payment_ids') IS NOT NULL AS payment_ids`,
  );
  if (!rows[0].events) return;
  const raise = (sequence: string, highest: string) =>
    db.query(
      `SELECT setval('${sequence}', m.highest) FROM ${sequence} s, (${highest}) m
       WHERE m.highest > (CASE WHEN s.is_called THEN s.last_value ELSE s.last_value - 1 END)`,
    );
  await raise('emt_global_message_position', 'SELECT max(global_position) AS highest FROM emt_messages');
  if (rows[0].payment_ids) {
    await raise(
      'payment_ids',
      `SELECT max((message_data->>'paymentId')::bigint) AS highest FROM emt_messages WHERE message_type = 'PaymentRecorded'`,
    );
  }
}

// ---- the audit log (src/audit): sealing events into leaves, and reading the log back

/** Where the log ends: its size and the commit-order key of its last event (null while empty). */
export type LogHead = { size: number; last: EventCursor | null };

/** Serialises sealers, until the transaction ends (the same key capsul_log_seal takes). */
export async function lockSealer(db: Queryable): Promise<void> {
  await lockUntilCommit(db, advisoryLocks.sealer);
}

export async function logHead(db: Queryable): Promise<LogHead> {
  const { rows } = await db.query(
    `SELECT l.leaf_index::text AS leaf_index, l.global_position::text AS global_position, m.transaction_id::text AS transaction_id
     FROM capsul_log_leaves l LEFT JOIN emt_messages m ON m.global_position = l.global_position
     ORDER BY l.leaf_index DESC LIMIT 1`,
  );
  const row = rows[0];
  if (!row) return { size: 0, last: null };
  if (row.transaction_id === null)
    throw new LogBrokenError(
      `the event of leaf ${row.leaf_index} (global position ${row.global_position}) is gone: run capsul audit verify`,
    );
  return { size: Number(row.leaf_index) + 1, last: { transactionId: row.transaction_id, globalPosition: row.global_position } };
}

export class LogBrokenError extends Error {}

/**
 * The next events to seal, in commit order after `last`: only those below the oldest transaction
 * still in flight (pg_snapshot_xmin), so that no event can ever commit before one already sealed, and
 * below `before` (a transaction id) when given: a prefix of commit order too.
 */
export async function readSealable(db: Queryable, last: EventCursor | null, limit: number, before?: string): Promise<StoredEvent[]> {
  const { rows } = await db.query(
    `SELECT ${columns} FROM emt_messages
     WHERE ${live} AND ($1::xid8 IS NULL OR (transaction_id, global_position) > ($1::xid8, $2::bigint))
       AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) AND ($3::xid8 IS NULL OR transaction_id < $3::xid8)
     ORDER BY transaction_id, global_position LIMIT ${Math.trunc(limit)}`,
    [last?.transactionId ?? null, last?.globalPosition ?? null, before ?? null],
  );
  return rows.map(toStoredEvent);
}

/** Events committed but not sealed yet (sealable or waiting for an older transaction). */
export async function countUnsealed(db: Queryable, last: EventCursor | null): Promise<number> {
  const { rows } = await db.query(
    `SELECT count(*)::int AS n FROM emt_messages
     WHERE ${live} AND ($1::xid8 IS NULL OR (transaction_id, global_position) > ($1::xid8, $2::bigint))`,
    [last?.transactionId ?? null, last?.globalPosition ?? null],
  );
  return rows[0].n;
}

/** The id every transaction that started before now is below (committed or not): what "committed now" means. */
export async function transactionHorizon(db: Queryable): Promise<{ next: string; oldestRunning: string }> {
  const { rows } = await db.query(
    `SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS next, pg_snapshot_xmin(pg_current_snapshot())::text AS oldest`,
  );
  return { next: rows[0].next, oldestRunning: rows[0].oldest };
}

/**
 * Appends leaves through capsul_log_seal, which checks their order and computes the tree hashes they
 * complete; returns the log's size after.
 */
export async function sealLeaves(db: Queryable, seal: { firstIndex: number; positions: string[]; leafHashes: Buffer[] }): Promise<number> {
  const { rows } = await db.query('SELECT capsul_log_seal($1::bigint, $2::bigint[], $3::bytea[])::text AS size', [
    seal.firstIndex,
    seal.positions,
    seal.leafHashes,
  ]);
  return Number(rows[0].size);
}

/** The root of the stored tree at `treeSize` (capsul_log_root, from O(log n) stored hashes). */
export async function logRoot(db: Queryable, treeSize: number): Promise<Buffer> {
  const { rows } = await db.query('SELECT capsul_log_root($1::bigint) AS root', [treeSize]);
  return rows[0].root;
}

/** Stored complete-subtree hashes (level 0: leaves), keyed `level/index`. */
export async function readSubtrees(db: Queryable, coordinates: { level: number; index: number }[]): Promise<Map<string, Buffer>> {
  const leaves = coordinates.filter((c) => c.level === 0).map((c) => c.index);
  const nodes = coordinates.filter((c) => c.level > 0);
  const { rows } = await db.query(
    `SELECT 0 AS level, leaf_index::text AS index, leaf_hash AS hash FROM capsul_log_leaves WHERE leaf_index = ANY($1::bigint[])
     UNION ALL
     SELECT n.level, n.node_index::text, n.hash FROM capsul_log_nodes n
       JOIN unnest($2::smallint[], $3::bigint[]) AS w(level, node_index) ON w.level = n.level AND w.node_index = n.node_index`,
    [leaves, nodes.map((n) => n.level), nodes.map((n) => n.index)],
  );
  return new Map(rows.map((row) => [`${row.level}/${row.index}`, row.hash as Buffer]));
}

export type StoredCheckpoint = { treeSize: number; rootHash: Buffer; note: string; signedAt: string };

export async function addCheckpoint(db: Queryable, checkpoint: { treeSize: number; rootHash: Buffer; note: string }): Promise<boolean> {
  const { rows } = await db.query('SELECT capsul_log_add_checkpoint($1::bigint, $2::bytea, $3::text) AS added', [
    checkpoint.treeSize,
    checkpoint.rootHash,
    checkpoint.note,
  ]);
  return rows[0].added;
}

/** Every stored checkpoint, smallest tree first. */
export async function readCheckpoints(db: Queryable): Promise<StoredCheckpoint[]> {
  const { rows } = await db.query(
    `SELECT tree_size::text AS size, root_hash, note, to_char(signed AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS signed
     FROM capsul_log_checkpoints ORDER BY tree_size, signed`,
  );
  return rows.map((row) => ({ treeSize: Number(row.size), rootHash: row.root_hash, note: row.note, signedAt: row.signed }));
}

export type LeafRow = { leafIndex: number; globalPosition: string; leafHash: Buffer };

/** The stored leaves from leaf `first` on, in leaf order, in keyset-paged batches. */
export async function* readLeaves(db: Queryable, first = 0, batchSize = 10_000): AsyncGenerator<LeafRow[]> {
  for (let from = first; ; from += batchSize) {
    const { rows } = await db.query(
      `SELECT leaf_index::text AS i, global_position::text AS g, leaf_hash AS h FROM capsul_log_leaves
       WHERE leaf_index >= $1 ORDER BY leaf_index LIMIT ${Math.trunc(batchSize)}`,
      [from],
    );
    if (rows.length > 0) yield rows.map((row) => ({ leafIndex: Number(row.i), globalPosition: row.g, leafHash: row.h }));
    if (rows.length < batchSize) return;
  }
}

/** The sealed events in leaf order, with their leaf index (an event gone from the store is a gap the caller sees). */
export async function* readSealedEvents(db: Queryable, batchSize = 5000): AsyncGenerator<(StoredEvent & { leafIndex: number })[]> {
  for (let from = 0; ; from += batchSize) {
    const { rows } = await db.query(
      `SELECT ${eventColumns('m')}, l.leaf_index::text AS leaf_index_text
       FROM capsul_log_leaves l LEFT JOIN emt_messages m ON m.global_position = l.global_position
       WHERE l.leaf_index >= $1 ORDER BY l.leaf_index LIMIT ${Math.trunc(batchSize)}`,
      [from],
    );
    const missing = rows.find((row) => row.stream_id === null);
    if (missing) throw new LogBrokenError(`the event of leaf ${missing.leaf_index_text} is gone: run capsul audit verify`);
    if (rows.length > 0) yield rows.map((row) => toStoredEvent(row) as StoredEvent & { leafIndex: number });
    if (rows.length < batchSize) return;
  }
}

/** Whether an event with this global position is in the store (to tell a removed leaf from an inserted event). */
export async function eventExists(db: Queryable, globalPosition: string): Promise<boolean> {
  const { rows } = await db.query(`SELECT EXISTS (SELECT 1 FROM emt_messages WHERE global_position = $1::bigint) AS present`, [
    globalPosition,
  ]);
  return rows[0].present;
}

/** Whether this global position has a leaf. */
export async function isSealed(db: Queryable, globalPosition: string): Promise<boolean> {
  const { rows } = await db.query(`SELECT EXISTS (SELECT 1 FROM capsul_log_leaves WHERE global_position = $1::bigint) AS sealed`, [
    globalPosition,
  ]);
  return rows[0].sealed;
}

/** The event that recorded payment `paymentId`, with its leaf index (null: not sealed yet). */
export async function paymentRecordedEvent(db: Queryable, paymentId: number): Promise<StoredEvent | undefined> {
  const { rows } = await db.query(
    `SELECT ${eventColumns('m')}, l.leaf_index::text AS leaf_index_text
     FROM emt_messages m LEFT JOIN capsul_log_leaves l ON l.global_position = m.global_position
     WHERE m.message_type = 'PaymentRecorded' AND m.message_data->>'paymentId' = $1 AND m.partition = 'emt:default' AND NOT m.is_archived`,
    [String(paymentId)],
  );
  return rows[0] ? toStoredEvent(rows[0]) : undefined;
}

/** Streams whose recorded position is not that of their last event (a wedged stream). */
export async function streamsOutOfStep(db: Queryable): Promise<{ streamId: string; position: string; lastEvent: string }[]> {
  const { rows } = await db.query(
    `SELECT s.stream_id, s.stream_position::text AS position, coalesce(max(m.stream_position), 0)::text AS last_event
     FROM emt_streams s LEFT JOIN emt_messages m ON m.stream_id = s.stream_id AND m.partition = s.partition AND m.is_archived = s.is_archived
     WHERE s.partition = 'emt:default' AND NOT s.is_archived
     GROUP BY s.stream_id, s.stream_position HAVING s.stream_position <> coalesce(max(m.stream_position), 0)
     ORDER BY s.stream_id LIMIT 100`,
  );
  return rows.map((row) => ({ streamId: row.stream_id, position: row.position, lastEvent: row.last_event }));
}

/** The sealed tree's size (leaves are numbered from 0 without gaps): read from the index, not counted. */
export async function sealedTreeSize(db: Queryable): Promise<number> {
  const { rows } = await db.query('SELECT coalesce(max(leaf_index) + 1, 0)::text AS size FROM capsul_log_leaves');
  return Number(rows[0].size);
}

/** When the newest checkpoint was signed (null: none has been) and the largest tree a checkpoint signs (0: none). */
export async function checkpointsReach(db: Queryable): Promise<{ lastSigned: Date | null; treeSize: number }> {
  const { rows } = await db.query('SELECT max(signed) AS signed, coalesce(max(tree_size), 0)::text AS size FROM capsul_log_checkpoints');
  return { lastSigned: rows[0].signed ?? null, treeSize: Number(rows[0].size) };
}

export async function countLeaves(db: Queryable): Promise<number> {
  const { rows } = await db.query('SELECT count(*)::int AS n FROM capsul_log_leaves');
  return rows[0].n;
}

/** How many events of `type` the given streams hold (the bench checks ingestion with it). */
export async function countEventsOfType(db: Queryable, type: string, streams: string[]): Promise<number> {
  const { rows } = await db.query(
    `SELECT count(*)::int AS n FROM emt_messages WHERE message_type = $1 AND stream_id = ANY($2::text[]) AND ${live}`,
    [type, streams],
  );
  return rows[0].n;
}
