// History by index (schema 22): an account's history read through account_events equals the old read
// (the account's and its capsuls' streams filtered out of the whole log), both ways: newest first page
// by page, for every kind, with the cursor (the hub's history page), and oldest first in batches, with
// leaf indexes (capsul history --email); the index capsul_append writes is the one the events define;
// and either read of an account with hundreds of capsuls in a larger ledger reads only its own rows
// (as --vm and --payment, which read their streams by key, read only theirs).
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import type pg from 'pg';
import { sealCommitted, sealOnce } from '../../src/audit/log.ts';
import {
  readAccountEvents,
  readAllEvents,
  readLogPage,
  type EventCursor,
  type Queryable,
  type ReadAllOptions,
  type StoredEvent,
} from '../../src/db/event-store.ts';
import { accountStream, type PaymentRecorded } from '../../src/domain/account/events.ts';
import type { Actor, LedgerEvent } from '../../src/domain/events.ts';
import { hostStream } from '../../src/domain/host/events.ts';
import { currentEventVersion } from '../../src/domain/upcast.ts';
import { vmStream, type ObservedState, type VmEvent } from '../../src/domain/vm/events.ts';
import { appendEvents } from '../../src/ledger/append.ts';
import { newVmId } from '../../src/ledger/ledger.ts';
import {
  accountHistoryPage,
  accountSelectors,
  capsulSelectors,
  historyKinds,
  paymentSelectors,
  typesOfKind,
  type HistoryKind,
} from '../../src/read/history.ts';
import { testDatabase, type TestDatabase } from '../support/db.ts';

let db: TestDatabase;
before(async () => {
  db = await testDatabase({ poolSize: 8 });
});
after(() => db.close());

// ── A ledger grown through capsul_append, as the ledger's own appends write it ───────────────────────

type Account = { id: string; payments: number[] };
type Capsul = { id: string; accountId: string };
const by: Actor = { kind: 'operator', id: 'history-index-test' };
const states: ObservedState[] = ['running', 'stopped', 'crashed'];

/** The streams written so far, and their versions; appends to one stream run one after the other. */
class GrowingLedger {
  readonly accounts: Account[] = [];
  readonly capsuls: Capsul[] = [];
  private readonly versions = new Map<string, bigint>();
  private readonly queues = new Map<string, Promise<unknown>>();
  private clockMs = Date.parse('2026-01-01T00:00:00Z');

  constructor(private readonly pool: pg.Pool) {}

  at(): string {
    this.clockMs += 60_000;
    return new Date(this.clockMs).toISOString();
  }

  append(streamId: string, events: LedgerEvent[]): Promise<void> {
    return this.onStream(streamId, (expected) => appendOrThrow(this.pool, streamId, events, expected));
  }

  /** Runs `work` (an append at the stream's version, returning the next) after the stream's earlier appends. */
  private onStream(streamId: string, work: (expected: bigint) => Promise<bigint>): Promise<void> {
    const queued = (this.queues.get(streamId) ?? Promise.resolve()).then(async () => {
      this.versions.set(streamId, await work(this.versions.get(streamId) ?? 0n));
    });
    this.queues.set(streamId, queued);
    return queued;
  }

  async paymentRecorded(accountId: string): Promise<PaymentRecorded> {
    const { rows } = await this.pool.query(`SELECT nextval('payment_ids')::int AS id`);
    const at = this.at();
    return {
      type: 'PaymentRecorded',
      data: { accountId, paymentId: rows[0].id, amountCents: 1000, provider: 'manual', reference: null, at, recordedAt: at },
    };
  }

  async open(): Promise<void> {
    const id = randomUUID();
    const paid = await this.paymentRecorded(id);
    await this.append(accountStream(id), [
      { type: 'AccountOpened', data: { accountId: id, email: `${id}@example.org`, at: this.at() } },
      paid,
    ]);
    this.accounts.push({ id, payments: [paid.data.paymentId] });
  }

  async createCapsul(account: Account): Promise<void> {
    const vmId = newVmId();
    const at = this.at();
    await this.append(accountStream(account.id), [
      {
        type: 'VmCreationRequested',
        data: { accountId: account.id, vmId, size: 'f1-xs', os: 'debian12', sshPublicKeys: [], priceCentsPerMonth: 500, at },
      },
    ]);
    // Only once its creation is committed does the capsul's own stream start (as in the ledger).
    await this.append(vmStream(vmId), [
      { type: 'VmPlaced', data: { vmId, accountId: account.id, host: 'test-host', operationId: randomUUID(), at } },
    ]);
    this.capsuls.push({ id: vmId, accountId: account.id });
  }

  /**
   * A payment whose transaction took its id before another append and commits after it: its events
   * come later in global position but earlier in commit order (transaction_id first).
   */
  async lateCommit(account: Account, other: () => Promise<void>): Promise<void> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query('SELECT pg_current_xact_id()');
      await other();
      const paid = await this.paymentRecorded(account.id);
      const stream = accountStream(account.id);
      // The stream's next append waits for the commit: until then this one's version is not there.
      await this.onStream(stream, async (expected) => {
        const next = await appendOrThrow(client, stream, [paid], expected);
        await client.query('COMMIT');
        return next;
      });
      account.payments.push(paid.data.paymentId);
    } finally {
      await client.query('ROLLBACK').catch(() => {});
      client.release();
    }
  }

  report(capsul: Capsul, count: number, state: ObservedState): Promise<void> {
    const events: VmEvent[] = Array.from({ length: count }, () => ({
      type: 'VmStateObserved',
      data: { vmId: capsul.id, host: 'test-host', state, reportId: randomUUID(), operationId: null, at: this.at() },
    }));
    return this.append(vmStream(capsul.id), events);
  }
}

async function appendOrThrow(through: Queryable, streamId: string, events: LedgerEvent[], expected: bigint): Promise<bigint> {
  const result = await appendEvents(through, streamId, events, { by, eventVersion: currentEventVersion }, expected);
  if (!result.ok) throw new Error(`unexpected version conflict on ${streamId}`);
  return result.nextVersion;
}

/** One step of a generated ledger; indexes pick among the accounts and capsuls there are by then. */
type Step =
  | { kind: 'open' }
  | { kind: 'pay' | 'invalidate' | 'warn' | 'choose' | 'create'; account: number }
  | { kind: 'report'; capsul: number; count: number; state: number }
  | { kind: 'delete'; capsul: number }
  | { kind: 'late'; account: number }
  | { kind: 'host' };

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.constant({ kind: 'open' as const }),
  fc.record({
    kind: fc.constantFrom('pay' as const, 'invalidate' as const, 'warn' as const, 'choose' as const, 'create' as const),
    account: fc.nat(),
  }),
  fc.record({ kind: fc.constant('report' as const), capsul: fc.nat(), count: fc.integer({ min: 1, max: 4 }), state: fc.nat() }),
  fc.record({ kind: fc.constant('delete' as const), capsul: fc.nat() }),
  fc.record({ kind: fc.constant('late' as const), account: fc.nat() }),
  fc.constant({ kind: 'host' as const }),
);

async function apply(ledger: GrowingLedger, s: Step): Promise<void> {
  if (s.kind === 'open' || ledger.accounts.length === 0) return ledger.open();
  if (s.kind === 'host') {
    const hostId = `h-${randomUUID().slice(0, 8)}`;
    const data = { hostId, memoryMb: 1024, vcpus: 2, tokenHash: 'x'.repeat(64), at: ledger.at() };
    return ledger.append(hostStream(hostId), [{ type: 'HostRegistered', data }]);
  }
  if (s.kind === 'report' || s.kind === 'delete') {
    const capsul = ledger.capsuls[s.capsul % Math.max(1, ledger.capsuls.length)];
    if (!capsul) return;
    if (s.kind === 'report') return ledger.report(capsul, s.count, states[s.state % states.length]!);
    const at = ledger.at();
    await ledger.append(accountStream(capsul.accountId), [
      { type: 'VmDeletionRequested', data: { accountId: capsul.accountId, vmId: capsul.id, at } },
    ]);
    return ledger.append(vmStream(capsul.id), [
      { type: 'VmDeleted', data: { vmId: capsul.id, host: 'test-host', reportId: randomUUID(), operationId: null, at } },
    ]);
  }
  const account = ledger.accounts[s.account % ledger.accounts.length]!;
  const accountId = account.id;
  switch (s.kind) {
    case 'late':
      return ledger.lateCommit(account, () => apply(ledger, { kind: 'pay', account: s.account }));
    case 'pay': {
      const paid = await ledger.paymentRecorded(accountId);
      account.payments.push(paid.data.paymentId);
      return ledger.append(accountStream(accountId), [paid]);
    }
    case 'invalidate': {
      const paymentId = account.payments[s.account % account.payments.length]!;
      return ledger.append(accountStream(accountId), [{ type: 'PaymentInvalidated', data: { accountId, paymentId, at: ledger.at() } }]);
    }
    case 'warn':
      return ledger.append(accountStream(accountId), [
        { type: 'BalanceWarningIssued', data: { accountId, level: 'out-of-funds', balanceCents: 0, at: ledger.at() } },
      ]);
    case 'choose':
      return ledger.append(accountStream(accountId), [
        { type: 'StatementEmailsChosen', data: { accountId, send: false, at: ledger.at() } },
      ]);
    case 'create':
      return ledger.createCapsul(account);
  }
}

/** Runs the steps a few at a time, concurrently: transactions then commit out of global-position order. */
async function grow(ledger: GrowingLedger, steps: Step[]): Promise<void> {
  for (let i = 0; i < steps.length; i += 4) await Promise.all(steps.slice(i, i + 4).map((s) => apply(ledger, s)));
}

// ── The two reads ────────────────────────────────────────────────────────────────────────────────

type Page = { events: StoredEvent[]; older: EventCursor | null };

/** The read before the index: the account's streams filtered out of the whole log. */
async function oldPage(accountId: string, page: { before: EventCursor | null; size: number; kind: HistoryKind }): Promise<Page> {
  const types = typesOfKind(page.kind) ?? undefined;
  const selectors = await accountSelectors(db.pool, accountId);
  const events = await readLogPage(db.pool, { direction: 'backward', limit: page.size + 1, cursor: page.before, types, selectors });
  const shown = events.slice(0, page.size);
  const last = shown.at(-1);
  return {
    events: shown,
    older: events.length > page.size && last ? { transactionId: last.transactionId, globalPosition: last.globalPosition } : null,
  };
}

/** Every page of the account's story of one kind, through both reads: they must agree page by page. */
async function assertSamePages(accountId: string, kind: HistoryKind, size: number): Promise<number> {
  let before: EventCursor | null = null;
  let pages = 0;
  do {
    const expected = await oldPage(accountId, { before, size, kind });
    const actual = await accountHistoryPage(db.pool, accountId, { before, size, kind });
    assert.deepEqual(actual, expected, `account ${accountId}, ${kind}, page ${pages + 1} of size ${size}`);
    before = actual.older;
    pages++;
  } while (before);
  return pages;
}

/** Every batch of a read of the whole story, in order: batch boundaries are part of what must agree. */
async function batchesOf(options: ReadAllOptions): Promise<StoredEvent[][]> {
  const batches: StoredEvent[][] = [];
  for await (const batch of readAllEvents(db.pool, options)) batches.push(batch);
  return batches;
}

/**
 * The account's story oldest first, as capsul history --email reads it (through the index), and as it
 * read it before (its streams' selectors over the whole log): the same events in the same batches, leaf
 * indexes included. The CLI's lines and --as-of / --known-at are functions of these events alone.
 */
async function assertSameStory(accountId: string, batchSize: number): Promise<StoredEvent[]> {
  const options = { batchSize, leafIndexes: true };
  const expected = await batchesOf({ ...options, selectors: await accountSelectors(db.pool, accountId) });
  const actual = await batchesOf({ ...options, account: accountId });
  assert.deepEqual(actual, expected, `account ${accountId} oldest first, batches of ${batchSize}`);
  return actual.flat();
}

/** The index as capsul_append wrote it, and as the events define it (capsul_history_index_from_events). */
async function indexAsWrittenAndDefined(): Promise<[string[], string[]]> {
  const rows = async (from: string) =>
    (
      await db.pool.query(
        `SELECT account_id || ' ' || transaction_id || ' ' || global_position || ' ' || message_type AS r FROM ${from} ORDER BY 1`,
      )
    ).rows.map((row) => row.r as string);
  return [await rows('account_events'), await rows('capsul_history_index_from_events()')];
}

describe('history pages by index', () => {
  const ledger = () => new GrowingLedger(db.pool);
  let grown: GrowingLedger;
  before(() => {
    grown = ledger();
  });

  it('equal the old read of the whole log, page by page for every kind and oldest first in batches, as the ledger grows (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(step, { minLength: 1, maxLength: 30 }),
        fc.nat(),
        fc.integer({ min: 1, max: 7 }),
        fc.nat({ max: 40 }),
        async (steps, pick, size, sealing) => {
          await grow(grown, steps);
          // Part of the log sealed (sometimes none of what was just written): leaf indexes and nulls both.
          await sealOnce(db.pool, { batchSize: sealing });
          const account = grown.accounts[pick % grown.accounts.length]!;
          for (const kind of historyKinds) await assertSamePages(account.id, kind, size);
          await assertSameStory(account.id, size);
        },
      ),
      { numRuns: 25 },
    );
    const [written, defined] = await indexAsWrittenAndDefined();
    assert.deepEqual(written, defined, 'capsul_append wrote the rows the events define');
    const hosts = await db.pool.query(`SELECT count(*)::int AS n FROM account_events WHERE account_id LIKE 'h-%'`);
    assert.equal(hosts.rows[0].n, 0, "hosts' events belong to no account");
  });

  it('an unknown account has an empty history', async () => {
    assert.deepEqual(await accountHistoryPage(db.pool, randomUUID(), { before: null, size: 10, kind: 'all' }), { events: [], older: null });
  });
});

// ── An account with hundreds of capsuls among many others ────────────────────────────────────────

type PlanNode = {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  'Actual Rows': number;
  'Actual Loops': number;
  'Rows Removed by Filter'?: number;
  Plans?: PlanNode[];
};

const nodesOf = (node: PlanNode): PlanNode[] => [node, ...(node.Plans ?? []).flatMap(nodesOf)];

/** The (first) statement a read runs, caught on its way to the database, and its plan as executed. */
async function planOf(read: (catcher: Queryable) => Promise<unknown>): Promise<PlanNode[]> {
  let statement: { text: string; values: unknown[] } | undefined;
  const catcher = {
    query: async (text: string, values: unknown[]) => {
      statement ??= { text, values };
      return { rows: [] };
    },
  } as unknown as Queryable;
  await read(catcher);
  const { rows } = await db.admin.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${statement!.text}`, statement!.values);
  return nodesOf(rows[0]['QUERY PLAN'][0].Plan);
}

const readPlan = (accountId: string, options: Parameters<typeof readAccountEvents>[2]) =>
  planOf((catcher) => readAccountEvents(catcher, accountId, options));

/** The plan of the first batch of readAllEvents (the CLI's read). */
const batchPlan = (options: ReadAllOptions) =>
  planOf(async (catcher) => {
    for await (const batch of readAllEvents(catcher, options)) void batch;
  });

/** Rows a plan read from the relations whose name starts with `prefix`, those filtered away included. */
const rowsRead = (nodes: PlanNode[], prefix: string) =>
  nodes
    .filter((node) => node['Relation Name']?.startsWith(prefix))
    .reduce((sum, node) => sum + (node['Actual Rows'] + (node['Rows Removed by Filter'] ?? 0)) * node['Actual Loops'], 0);

describe('an account with hundreds of capsuls in a larger ledger', () => {
  const capsulCount = 300;
  let big: Account;

  before(async () => {
    const ledger = new GrowingLedger(db.pool);
    const others = Array.from({ length: 150 }, (_, n): Step[] => [
      { kind: 'open' },
      { kind: 'pay', account: n },
      { kind: 'create', account: n },
      { kind: 'report', capsul: n, count: 4, state: n },
      { kind: 'pay', account: n },
    ]);
    // Accounts open one at a time (each step picks among those there are); the rest runs four at a time.
    for (const steps of others) await apply(ledger, steps[0]!);
    await grow(
      ledger,
      others.flatMap((steps) => steps.slice(1)),
    );
    // Many warnings to the others (100 an append, which project to no table: quick to write), so the big
    // account's story is a small part of the log and of the index, as it is among many customers.
    await Promise.all(
      ledger.accounts.map(({ id: accountId }) =>
        ledger.append(
          accountStream(accountId),
          Array.from({ length: 100 }, () => ({
            type: 'BalanceWarningIssued' as const,
            data: { accountId, level: 'out-of-funds' as const, balanceCents: 0, at: ledger.at() },
          })),
        ),
      ),
    );
    await ledger.open();
    big = ledger.accounts.at(-1)!;
    for (let n = 0; n < capsulCount; n += 4) await Promise.all([0, 1, 2, 3].map(() => ledger.createCapsul(big)));
    const capsuls = ledger.capsuls.filter((capsul) => capsul.accountId === big.id);
    await grow(
      ledger,
      capsuls.map((capsul) => ({ kind: 'report', capsul: ledger.capsuls.indexOf(capsul), count: 2, state: 0 })),
    );
    // The log sealed but for the last payments: leaf indexes and nulls in one story.
    await sealCommitted(db.pool);
    for (let n = 0; n < 20; n++) await apply(ledger, { kind: 'pay', account: ledger.accounts.indexOf(big) });
    // Vacuumed, as autovacuum keeps insert-only tables (PostgreSQL 13 on): without it, in a log this
    // small, the planner may read the rest of the account's range for a batch of 100 rather than walk it.
    await db.admin.query('VACUUM ANALYZE');
  });

  it('pages its whole story like the old read, for every kind', async () => {
    const pages = await assertSamePages(big.id, 'all', 100);
    assert.ok(pages >= 12, `${pages} pages of 100`);
    await assertSamePages(big.id, 'money', 100);
    await assertSamePages(big.id, 'capsuls', 100);
  });

  it('reads its whole story oldest first like the old read, leaf indexes included, in batches of any size', async () => {
    const story = await assertSameStory(big.id, 1000);
    assert.ok(story.length > 1200, `${story.length} events`);
    assert.ok(story.some((stored) => stored.leafIndex === null) && story.some((stored) => typeof stored.leafIndex === 'number'));
    await assertSameStory(big.id, 97);
  });

  it('reads from the log only the events a page shows, and from the index at most a page per type: no table read whole', async () => {
    const { rows } = await db.pool.query(`SELECT count(*)::int AS n FROM emt_messages`);
    const first = await accountHistoryPage(db.pool, big.id, { before: null, size: 100, kind: 'all' });
    const deep = (await accountHistoryPage(db.pool, big.id, { before: first.older, size: 500, kind: 'all' })).older;
    assert.ok(deep, 'the story goes on past 600 events');
    for (const [kind, before] of [
      ['all', null],
      ['all', deep],
      ['money', null],
      ['capsuls', deep],
    ] as const) {
      const types = typesOfKind(kind) ?? undefined;
      const nodes = await readPlan(big.id, { direction: 'backward', limit: 101, cursor: before, types });
      const where = `${kind} page ${before ? 'deep in the story' : '1'} of a log of ${rows[0].n} events`;
      assert.ok(rowsRead(nodes, 'emt_messages') <= 101, `${where}: ${rowsRead(nodes, 'emt_messages')} rows of the log read`);
      assert.deepEqual(
        nodes.filter((node) => node['Node Type'] === 'Seq Scan'),
        [],
        `${where}: no table read whole`,
      );
      // Never another account's rows; with a kind, one range per type.
      assert.ok(
        rowsRead(nodes, 'account_events') <= 101 * (types?.length ?? 1),
        `${where}: ${rowsRead(nodes, 'account_events')} index rows`,
      );
    }
  });

  it('reads oldest first from the log only the events a batch holds, and from the index only its own rows: no table read whole', async () => {
    const { rows } = await db.pool.query(`SELECT count(*)::int AS n FROM emt_messages`);
    const own = await db.pool.query(`SELECT count(*)::int AS n FROM account_events WHERE account_id = $1`, [big.id]);
    const deep = (await batchesOf({ account: big.id, batchSize: 500 }))[0]!.at(-1)!;
    for (const [limit, cursor] of [
      [100, null],
      [100, { transactionId: deep.transactionId, globalPosition: deep.globalPosition }],
      [1000, null],
      [1000, { transactionId: deep.transactionId, globalPosition: deep.globalPosition }],
    ] as const) {
      const nodes = await readPlan(big.id, { direction: 'forward', limit, cursor, leafIndexes: true });
      const where = `batch of ${limit} ${cursor ? 'deep in the story' : 'from its start'} of ${own.rows[0].n} events in a log of ${rows[0].n}`;
      assert.ok(rowsRead(nodes, 'emt_messages') <= limit, `${where}: ${rowsRead(nodes, 'emt_messages')} rows of the log read`);
      assert.ok(rowsRead(nodes, 'capsul_log_leaves') <= limit, `${where}: ${rowsRead(nodes, 'capsul_log_leaves')} leaves read`);
      // A batch much smaller than the story is a range of the index; one near its size may read the
      // account's whole range (the planner's choice, no dearer), never another account's rows.
      const indexRows = limit * 4 <= own.rows[0].n ? limit : own.rows[0].n;
      assert.ok(rowsRead(nodes, 'account_events') <= indexRows, `${where}: ${rowsRead(nodes, 'account_events')} index rows`);
      assert.deepEqual(
        nodes.filter((node) => node['Node Type'] === 'Seq Scan'),
        [],
        `${where}: no table read whole`,
      );
    }
  });

  it("--vm and --payment read from the log only their streams' events (the account's, the capsul's), by the streams' key", async () => {
    const { rows } = await db.pool.query(`SELECT id FROM vms WHERE account_id = $1 ORDER BY id LIMIT 1`, [big.id]);
    const vmId: string = rows[0].id;
    const paymentId = big.payments[0]!;
    const count = async (stream: string) =>
      (await db.pool.query(`SELECT count(*)::int AS n FROM emt_messages WHERE stream_id = $1`, [stream])).rows[0].n as number;
    const accountEventCount = await count(accountStream(big.id));
    for (const [what, selectors, streamEvents] of [
      [`capsul ${vmId}`, await capsulSelectors(db.pool, vmId), accountEventCount + (await count(vmStream(vmId)))],
      [`payment ${paymentId}`, await paymentSelectors(db.pool, paymentId), accountEventCount],
    ] as const) {
      const nodes = await batchPlan({ selectors: selectors!, batchSize: 1000, leafIndexes: true });
      assert.ok(rowsRead(nodes, 'emt_messages') <= streamEvents, `${what}: ${rowsRead(nodes, 'emt_messages')} rows of the log read`);
      assert.deepEqual(
        nodes.filter((node) => node['Node Type'] === 'Seq Scan'),
        [],
        `${what}: no table read whole`,
      );
    }
  });
});
