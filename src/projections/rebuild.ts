// Rebuild and verify: the events folded in memory through the same projection code as the append
// path and compared with the live tables by digest (digest.ts), then row by row where they differ;
// only the rows that differ are written. The history index is rebuilt and verified alongside, by the
// database from the same events (history-index.ts).
import type pg from 'pg';
import { LogCheck, trustedCheckpoints, type Finding, type VerifyOptions } from '../audit/verify.ts';
import { MemoryTables, shareOf, type Holds, type Retire } from './memory.ts';
import { columnsOf, liveDigest, ReplayDigests, sameDigest, type Column, type TableDigest } from './digest.ts';
import {
  countEvents,
  currentSnapshot,
  keepSequencesAboveEvents,
  readAllEvents,
  readEventsNotIn,
  streamSharesOf,
  type StoredEvent,
} from '../db/event-store.ts';
import { accountStream } from '../domain/account/events.ts';
import { vmStream } from '../domain/vm/events.ts';
import { historyIndexDifferences, historyIndexRepair, historyIndexTable, repairHistoryIndex } from './history-index.ts';
import { enableProjectorSQL } from './sql.ts';
import { historyTable, tableNames, type Row, type TableName } from './tables.ts';

export type Progress = (done: number, total: number) => void;

/** What rebuild and verify report on: every projection, its row history, and the history index. */
export type ReplayedTable = TableName | ReturnType<typeof historyTable> | typeof historyIndexTable;

/** The events no longer match the signed log: nothing is rebuilt over them (docs/audit.md). */
export class LogMismatchError extends Error {
  constructor(readonly findings: Finding[]) {
    super(
      `the events no longer match the signed log, so nothing was rebuilt: ${findings[0]?.message ?? ''}` +
        `${findings.length > 1 ? ` (and ${findings.length - 1} more: capsul audit verify lists them)` : ''}`,
    );
  }
}

/** What rebuild and verify check the events against. */
export type LogEvidence = Pick<VerifyOptions, 'verifierKeys' | 'outsideCheckpoint'>;

/** No verifier key at hand: the events are still checked against the stored leaves and checkpoint roots. */
const noKeys: LogEvidence = { verifierKeys: [] };
const insertChunkRows = 5000;

/**
 * How many rows and versions of history a rebuild or a verify holds in memory at once, at most: some
 * 500 bytes each, so about 50 MB over the process's own. The events are folded in as many passes as
 * that takes, each holding one share of the rows (foldInPasses), so memory stays within it however
 * large the ledger. Smaller passes cost no more time (measured at a million events: 20 passes took no
 * longer than 10, the collector having less to trace) and keep V8's heap, which grows with what
 * survives, about as small at a million events as at 100,000.
 */
export const rowsPerPass = 100_000;
/** Rows and versions an event makes, for a ledger like the bench's (2.3 at a million events): a fold that keeps them all. */
const allRowsPerEvent = 3;
/**
 * Rows and current versions an event makes, for a fold that retires the rest: an insert makes a row
 * and its version, and an event inserts about one row (1.04 together in the bench's ledger, half this).
 */
const currentRowsPerEvent = 2;
/**
 * Events read at a time by a fold: small enough that a batch (and the one fetched meanwhile) dies
 * young in V8's heap, so a long fold does not fill the old generation with read events.
 */
const foldBatch = 1000;

/** The relations a rebuild compares: every projection and its row history. */
type Relation = TableName | ReturnType<typeof historyTable>;
const relations: Relation[] = tableNames.flatMap((table) => [table, historyTable(table)]);
const isHistory = (relation: Relation) => relation.endsWith('_history');

/** `log`: when given, the first pass checks the events against the signed log. */
type FoldOptions = { onProgress?: Progress; log?: LogEvidence; rowsPerPass?: number };

/** Checks the events against the signed log as they are read: up to the latest signed checkpoint the signed roots are the evidence; after it, the stored leaves. */
async function logCheck(client: pg.PoolClient, log: LogEvidence) {
  const trusted = await trustedCheckpoints(client, log);
  const check = await LogCheck.start(client, trusted.checkpoints, { leavesFrom: trusted.checkpoints.at(-1)?.treeSize ?? 0 });
  return {
    accept: (batch: StoredEvent[]) => check.accept(batch),
    async finish() {
      const findings = [...trusted.findings, ...(await check.finish())];
      if (findings.length > 0) throw new LogMismatchError(findings);
    },
  };
}

/**
 * Every event the caller's snapshot sees, folded in passes, the first also checking the events against
 * the signed log; `atEnd` gets each pass's fold. Passes enough that no pass holds more than
 * `rowsPerPass` rows and versions, for a ledger making `rowsPerEvent` of them an event. Each pass holds
 * one share of the rows (all of them when one pass will do): by default, each pass reads every event
 * and keeps the rows in its share (shareOf); `byAccount`, each pass folds the events of its share of
 * the accounts (AccountShares) and the first reads every event (for the log, and to learn which share
 * each stream is in), the others only their own, so the log is read about twice in all, not once a
 * pass. That rests on every row being written by the events of one account, or of none (hosts, holds);
 * the digest comparison catches a fold that breaks it (it would disagree with the tables).
 */
async function foldInPasses(
  client: pg.PoolClient,
  options: FoldOptions & { rowsPerEvent: number; retire?: Retire; byAccount?: boolean },
  atEnd: (memory: MemoryTables) => Promise<void>,
): Promise<void> {
  const total = await countEvents(client);
  const passes = Math.max(1, Math.ceil((total * options.rowsPerEvent) / (options.rowsPerPass ?? rowsPerPass)));
  const accounts = options.byAccount && passes > 1 ? await AccountShares.start(client, passes) : undefined;
  let done = 0;
  const work = () => (accounts ? accounts.eventsAfterFirstPass() + total : passes * total);
  for (let pass = 0; pass < passes; pass++) {
    // A share with no events has none to read.
    if (accounts && pass > 0 && accounts.eventsIn(pass) === 0) continue;
    const holds: Holds | undefined = passes === 1 || accounts ? undefined : (table, key) => shareOf(table, key, passes) === pass;
    const memory = new MemoryTables(holds, options.retire);
    const check = pass === 0 && options.log ? await logCheck(client, options.log) : undefined;
    const events = accounts && pass > 0 ? accounts.read(pass) : readAllEvents(client, { batchSize: foldBatch });
    for await (const batch of events) {
      // Hashed as read, before anything folds them: the same pass checks the log.
      await check?.accept(batch);
      for (const stored of batch) {
        if (accounts && pass === 0 && accounts.learn(stored) !== 0) continue;
        memory.apply(stored);
      }
      done += batch.length;
      options.onProgress?.(done, work());
    }
    await check?.finish();
    if (accounts && pass === 0) await accounts.learnt();
    await atEnd(memory);
  }
}

/**
 * The share each stream's events are in, learnt from the events in commit order: an account's stream,
 * its account's share (shareOf); a capsul's, the share of the account whose VmCreationRequested opened
 * it (the first one, as capsul_history_index_from_events says); any other stream (hosts, holds), share
 * 0. What the first pass learns (each capsul's share, and the accounts outside share 0) is written to
 * the database when it ends (streamSharesOf) and dropped from memory, so the later passes read their
 * own streams' events by share, naming no stream.
 */
class AccountShares {
  private capsuls = new Map<string, number>();
  private accounts: string[] = [];
  private readonly events: number[];

  private constructor(
    private readonly shares: number,
    private readonly table: Awaited<ReturnType<typeof streamSharesOf>>,
  ) {
    this.events = new Array<number>(shares).fill(0);
  }

  static async start(client: pg.PoolClient, shares: number): Promise<AccountShares> {
    return new AccountShares(shares, await streamSharesOf(client));
  }

  /** The event's share, learning its capsul's share first if it opens one. */
  learn(stored: StoredEvent): number {
    const { event, streamId } = stored;
    if (event.type === 'VmCreationRequested' && !this.capsuls.has(vmStream(event.data.vmId)))
      this.capsuls.set(vmStream(event.data.vmId), this.shareOfAccount(event.data.accountId));
    const isAccount = streamId.startsWith(accountStreamPrefix);
    const share = isAccount ? this.shareOfAccount(streamId.slice(accountStreamPrefix.length)) : (this.capsuls.get(streamId) ?? 0);
    // Share 0's streams need no remembering: the first pass, which reads every event, folds them.
    if (isAccount && share !== 0 && stored.streamPosition === firstStreamPosition) this.accounts.push(streamId);
    this.events[share]!++;
    return share;
  }

  /** Writes what the first pass learnt, once it has read every event (and its connection is idle again). */
  async learnt(): Promise<void> {
    const streams = [
      ...this.accounts.map((streamId) => ({ streamId, share: this.shareOfAccount(streamId.slice(accountStreamPrefix.length)) })),
      ...[...this.capsuls].filter(([, share]) => share !== 0).map(([streamId, share]) => ({ streamId, share })),
    ];
    this.accounts = [];
    this.capsuls = new Map();
    for (let i = 0; i < streams.length; i += rememberedAtOnce) await this.table.remember(streams.slice(i, i + rememberedAtOnce));
    await this.table.learnt();
  }

  /** The events of a share (after the first pass), in commit order, in batches. */
  read(share: number): AsyncGenerator<StoredEvent[]> {
    return this.table.events(share, foldBatch);
  }

  /** How many events a share holds (known once the first pass has read them all). */
  eventsIn(share: number): number {
    return this.events[share]!;
  }

  /** How many events the passes after the first fold (known once the first has read them all). */
  eventsAfterFirstPass(): number {
    return this.events.slice(1).reduce((a, b) => a + b, 0);
  }

  private shareOfAccount(accountId: string): number {
    return shareOf('accounts', accountId, this.shares);
  }
}

const rememberedAtOnce = 10_000;
/** A stream's first event's position (emmett counts from 1). */
const firstStreamPosition = 1;
const accountStreamPrefix = accountStream('');

/**
 * The projections and their row histories as a replay of every event the caller's snapshot sees
 * would make them, as digests (digest.ts) and row counts: the rows are hashed as the fold finishes
 * them and dropped, so a pass holds only the rows and their current versions (about one an event), and
 * the hashes go to the database as they come.
 */
async function foldDigests(client: pg.PoolClient, columns: Map<Relation, Column[]>, options: FoldOptions) {
  const digests = await ReplayDigests.start(client, columns);
  await foldInPasses(
    client,
    {
      ...options,
      rowsPerEvent: currentRowsPerEvent,
      byAccount: true,
      retire: (table, row, ranges) => digests.add(historyTable(table), row, ranges),
    },
    async (memory) => {
      for (const table of tableNames) {
        for (const row of memory.rows(table)) digests.add(table, row);
        for (const version of memory.historyRows(table)) digests.add(historyTable(table), version);
      }
      await digests.flush();
    },
  );
  return digests.digests();
}

/** The live projections' and histories' digests, in the snapshot `db` reads. */
async function liveDigests(db: pg.PoolClient, columns: Map<Relation, Column[]>) {
  const digests = new Map<Relation, TableDigest>();
  for (const [relation, cols] of columns) digests.set(relation, await liveDigest(db, relation, cols));
  return digests;
}

/**
 * Every event the caller's snapshot sees, folded, and the rows of `aside` (projections and histories)
 * written into temporary tables `rebuilt_<relation>` (dropped at commit), to be compared row by row
 * with the live ones.
 */
async function foldAside(client: pg.PoolClient, aside: Relation[], options: FoldOptions): Promise<void> {
  for (const relation of aside) await client.query(`CREATE TEMP TABLE rebuilt_${relation} (LIKE public.${relation}) ON COMMIT DROP`);
  await foldInPasses(client, { ...options, rowsPerEvent: allRowsPerEvent }, async (memory) => {
    for (const table of tableNames) {
      if (aside.includes(table)) await bulkInsert(client, `rebuilt_${table}`, table, memory.rows(table));
      const history = historyTable(table);
      if (aside.includes(history)) await bulkInsert(client, `rebuilt_${history}`, history, memory.historyRows(table));
    }
  });
}

/** The rows of `keys` (by table), folded from every event the caller's snapshot sees: what a rebuild rewrites. */
async function foldRows(client: pg.PoolClient, keys: Map<TableName, Set<string>>): Promise<MemoryTables> {
  const memory = new MemoryTables((table, key) => keys.get(table)!.has(key));
  for await (const batch of readAllEvents(client)) for (const stored of batch) memory.apply(stored);
  return memory;
}

/** Writes `rows` into `target` in chunks; returns how many. */
async function bulkInsert(client: pg.PoolClient, target: string, typeName: string, rows: Iterable<Row>): Promise<number> {
  let count = 0;
  let chunk: Row[] = [];
  const flush = async () => {
    await client.query(`INSERT INTO ${target} SELECT * FROM json_populate_recordset(NULL::${typeName}, $1::json)`, [JSON.stringify(chunk)]);
    count += chunk.length;
    chunk = [];
  };
  for (const row of rows) {
    chunk.push(row);
    if (chunk.length === insertChunkRows) await flush();
  }
  if (chunk.length > 0) await flush();
  return count;
}

/**
 * The rows whose live projection or live history differs from the replay written aside, for each of
 * `compared` (the rest differ in none): a row is compared whole; a history (whose versions have no key
 * of their own) as the hashes of its versions, per row.
 */
async function differingRows(client: pg.PoolClient, compared: Relation[]): Promise<Map<ReplayedTable, string[]>> {
  const differing = new Map<ReplayedTable, string[]>(relations.map((relation) => [relation, []]));
  const hashed = (relation: string) =>
    `SELECT id, md5(string_agg(md5(v::text), '' ORDER BY md5(v::text))) AS versions FROM ${relation} v GROUP BY id`;
  for (const relation of compared) {
    const { rows } = await client.query(
      isHistory(relation)
        ? `SELECT coalesce(l.id, r.id)::text AS id FROM (${hashed(`public.${relation}`)}) l FULL JOIN (${hashed(`rebuilt_${relation}`)}) r
           ON r.id = l.id WHERE l.versions IS DISTINCT FROM r.versions`
        : `SELECT coalesce(l.id, r.id)::text AS id FROM public.${relation} l FULL JOIN rebuilt_${relation} r ON r.id = l.id
           WHERE l.id IS NULL OR r.id IS NULL OR ROW(l.*) IS DISTINCT FROM ROW(r.*)`,
    );
    differing.set(
      relation,
      rows.map((row) => row.id),
    );
  }
  return differing;
}

/** The rows given by id (as text) in the live table, as the replay has them: removed, then put back from `memory`. */
async function rewriteRows(client: pg.PoolClient, table: TableName, ids: string[], memory: MemoryTables): Promise<void> {
  const history = historyTable(table);
  // The ids as the table's own id type, whatever it is (payments: bigint; the rest: text).
  const idsOf = (name: string) => `SELECT (jsonb_populate_record(NULL::${name}, jsonb_build_object('id', k))).id FROM unnest($1::text[]) k`;
  await client.query(`DELETE FROM ${table} WHERE id IN (${idsOf(table)})`, [ids]);
  await client.query(`DELETE FROM ${history} WHERE id IN (${idsOf(history)})`, [ids]);
  const rows = ids.map((id) => memory.row(table, id)).filter((row): row is Row => row !== undefined);
  await bulkInsert(client, table, table, rows);
  await bulkInsert(
    client,
    history,
    history,
    ids.flatMap((id) => memory.history(table, id)),
  );
}

/**
 * `betweenPhases`: a pause between the unlocked fold and the locked write (tests hold it there to
 * append meanwhile); `rowsPerPass`: the memory bound (tests make it small to fold in many passes).
 */
export type RebuildOptions = {
  onProgress?: Progress;
  log?: LogEvidence;
  betweenPhases?: () => Promise<void>;
  rowsPerPass?: number;
};

/**
 * How the live projections and row histories differ from a replay of every event the caller's
 * snapshot (REPEATABLE READ) sees, with what `index` finds of the history index. First by digest:
 * the events folded and hashed here (checking the log), then, in the same snapshot, the live rows
 * hashed and `index` run by the database. Only when a digest differs, row by row: the events folded
 * again and written aside (rebuilt_<table>) to be compared. Returns each relation's rows at the
 * snapshot, the ids that differ (none when the digests agree), the relations whose digests differed
 * (compared row by row), and `index`'s answer.
 *
 * One after the other, not side by side on two connections: a rebuild runs beside the business, and
 * keeps about one core busy, the fold's or the database's. Side by side they took a quarter less time
 * but left appends on a 2-core machine much slower meanwhile (measured in docs/database.md, "Rebuild
 * and verify").
 */
async function compareWithReplay<T>(
  client: pg.PoolClient,
  options: FoldOptions,
  index: (db: pg.PoolClient) => Promise<T>,
): Promise<{ rows: Record<ReplayedTable, number>; differing: Map<ReplayedTable, string[]>; comparedRowByRow: Relation[]; index: T }> {
  const columns = await columnsOf(client, relations);
  const replayed = await foldDigests(client, columns, { ...options, log: options.log ?? noKeys });
  const live = await liveDigests(client, columns);
  const indexAnswer = await index(client);
  const rows = {} as Record<ReplayedTable, number>;
  for (const relation of relations) rows[relation] = replayed.get(relation)!.rows;
  const disagree = relations.filter((relation) => !sameDigest(replayed.get(relation)!, live.get(relation)!));
  if (disagree.length > 0) await foldAside(client, disagree, { onProgress: options.onProgress, rowsPerPass: options.rowsPerPass });
  return { rows, differing: await differingRows(client, disagree), comparedRowByRow: disagree, index: indexAnswer };
}

/**
 * Makes the projection tables, their row history and the history index equal to a replay of every
 * event, without stopping the business and in bounded memory. First, in one snapshot and without
 * locks: the events folded (in passes of at most rowsPerPass rows, the first checking them against
 * the signed log) and compared with the live tables, which appends keep writing meanwhile, by digest
 * and, when a digest differs, row by row (compareWithReplay); the rows that differ are folded again on
 * their own. Then, briefly, under an EXCLUSIVE lock (readers read on; appends wait at their projection
 * write and apply on top after commit, so nothing is lost or doubled): the events committed since the
 * snapshot folded onto those rows, and only they written. Rows the later events touched that did not
 * differ were right, and the appends kept them right. Returns each table's rows (histories: versions)
 * at the snapshot, how many rows were rewritten because they differed, and which relations' digests
 * differed (compared row by row).
 */
export async function rebuildProjections(pool: pg.Pool, options: RebuildOptions = {}) {
  const client = await pool.connect();
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    const snapshot = await currentSnapshot(client);
    const { rows, differing, comparedRowByRow, index: indexRepair } = await compareWithReplay(client, options, historyIndexRepair);
    const stale = new Map(tableNames.map((table) => [table, new Set([...differing.get(table)!, ...differing.get(historyTable(table))!])]));
    const anyStale = [...stale.values()].some((keys) => keys.size > 0);
    const memory = anyStale ? await foldRows(client, stale) : undefined;
    await client.query('COMMIT');
    await options.betweenPhases?.();

    await client.query('BEGIN');
    await client.query(`LOCK TABLE ${[...relations, historyIndexTable].join(', ')} IN EXCLUSIVE MODE`);
    await client.query(enableProjectorSQL);
    if (memory) {
      for (const stored of await readEventsNotIn(client, snapshot)) memory.apply(stored);
      for (const table of tableNames) if (stale.get(table)!.size > 0) await rewriteRows(client, table, [...stale.get(table)!], memory);
    }
    const changed = {} as Record<ReplayedTable, number>;
    for (const [table, ids] of differing) changed[table] = ids.length;
    rows[historyIndexTable] = indexRepair.rows;
    changed[historyIndexTable] = await repairHistoryIndex(client, indexRepair);
    await keepSequencesAboveEvents(client);
    await client.query('COMMIT');
    return { rows, changed, comparedRowByRow };
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}

/**
 * Compares a replay with the live tables (compareWithReplay: by digest, row by row only when they
 * differ), all read in one snapshot. Returns, per table, how many rows (by id) differ, are missing or
 * are extra, per history how many rows' histories differ, for the history index how many rows are
 * missing, extra or retyped, and which relations' digests differed (compared row by row).
 */
export async function verifyProjections(pool: pg.Pool, options: { onProgress?: Progress; log?: LogEvidence; rowsPerPass?: number } = {}) {
  const client = await pool.connect();
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    const { differing, comparedRowByRow, index } = await compareWithReplay(client, options, historyIndexDifferences);
    const differences = {} as Record<ReplayedTable, number>;
    for (const [table, ids] of differing) differences[table] = ids.length;
    differences[historyIndexTable] = index;
    return { matches: Object.values(differences).every((n) => n === 0), differences, comparedRowByRow };
  } finally {
    await client.query('ROLLBACK').catch(() => {});
    client.release();
  }
}
