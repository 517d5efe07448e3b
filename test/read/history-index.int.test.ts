// History pages by index (schema 22): an account's history page read through account_events equals the
// old read (the account's and its capsuls' streams filtered out of the whole log), page by page, for
// every kind, with the cursor; the index capsul_append writes is the one the events define; and a
// page of an account with hundreds of capsuls in a larger ledger reads only its own rows.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import type pg from 'pg';
import {
  readAccountEventsBackward,
  readEventsBackward,
  type EventCursor,
  type Queryable,
  type StoredEvent,
} from '../../src/db/event-store.ts';
import { accountStream, type PaymentRecorded } from '../../src/domain/account/events.ts';
import type { Actor, LedgerEvent } from '../../src/domain/events.ts';
import { hostStream } from '../../src/domain/host/events.ts';
import { currentEventVersion } from '../../src/domain/upcast.ts';
import { vmStream, type ObservedState, type VmEvent } from '../../src/domain/vm/events.ts';
import { appendEvents } from '../../src/ledger/append.ts';
import { newVmId } from '../../src/ledger/ledger.ts';
import { accountHistoryPage, accountSelectors, historyKinds, typesOfKind, type HistoryKind } from '../../src/read/history.ts';
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
  const events = await readEventsBackward(db.pool, { limit: page.size + 1, before: page.before, types, selectors });
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

  it('equal the old read of the whole log, page by page, for every kind and page size, as the ledger grows (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(step, { minLength: 1, maxLength: 30 }),
        fc.nat(),
        fc.integer({ min: 1, max: 7 }),
        async (steps, pick, size) => {
          await grow(grown, steps);
          const account = grown.accounts[pick % grown.accounts.length]!;
          for (const kind of historyKinds) await assertSamePages(account.id, kind, size);
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

/** The statement a page runs, caught on its way to the database, and its plan as executed. */
async function pagePlan(accountId: string, options: { limit: number; before: EventCursor | null; types?: string[] }): Promise<PlanNode[]> {
  let statement: { text: string; values: unknown[] } | undefined;
  const catcher = {
    query: async (text: string, values: unknown[]) => {
      statement = { text, values };
      return { rows: [] };
    },
  } as unknown as Queryable;
  await readAccountEventsBackward(catcher, accountId, options);
  const { rows } = await db.admin.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${statement!.text}`, statement!.values);
  return nodesOf(rows[0]['QUERY PLAN'][0].Plan);
}

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
    await ledger.open();
    big = ledger.accounts.at(-1)!;
    for (let n = 0; n < capsulCount; n += 4) await Promise.all([0, 1, 2, 3].map(() => ledger.createCapsul(big)));
    const capsuls = ledger.capsuls.filter((capsul) => capsul.accountId === big.id);
    await grow(
      ledger,
      capsuls.map((capsul) => ({ kind: 'report', capsul: ledger.capsuls.indexOf(capsul), count: 2, state: 0 })),
    );
    for (let n = 0; n < 20; n++) await apply(ledger, { kind: 'pay', account: ledger.accounts.indexOf(big) });
    await db.admin.query('ANALYZE');
  });

  it('pages its whole story like the old read, for every kind', async () => {
    const pages = await assertSamePages(big.id, 'all', 100);
    assert.ok(pages >= 12, `${pages} pages of 100`);
    await assertSamePages(big.id, 'money', 100);
    await assertSamePages(big.id, 'capsuls', 100);
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
      const nodes = await pagePlan(big.id, { limit: 101, before, types });
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
});
