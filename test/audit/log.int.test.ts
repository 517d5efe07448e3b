// The signed log on a real database: every event sealed once, in commit order, however late its
// transaction commits and however many sealers and writers run; the database refusing any other order
// and any change to what is sealed; verification naming each kind of tampering a superuser can do; and
// rebuild, proofs and the hub's loop built on top of it. Attacks run as the superuser with triggers off
// (session_replication_role = replica), as an attacker with the server's password would.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type pg from 'pg';
import { formatCheckpoint, parseCheckpoint } from '../../src/audit/checkpoint.ts';
import { loadOrCreateKey, localEvidence, type LogKey } from '../../src/audit/key.ts';
import { eventLeafHash } from '../../src/audit/leaf.ts';
import { sealCommitted, sealOnce, signCheckpoint, storedRoot } from '../../src/audit/log.ts';
import { leafHash, nodeHash, rootOf, verifyInclusion } from '../../src/audit/merkle.ts';
import { generateSignerKey, openNote, signNote } from '../../src/audit/note.ts';
import { ProofError, provePayment } from '../../src/audit/prove.ts';
import { verifyLog, type Finding, type LogReport, type VerifyOptions } from '../../src/audit/verify.ts';
import type { AuditConfig } from '../../src/config.ts';
import { createPool } from '../../src/db/database.ts';
import { addCheckpoint, readAllEvents, readSealable, sealLeaves, type StoredEvent } from '../../src/db/event-store.ts';
import { accountStream, type AccountEvent } from '../../src/domain/account/events.ts';
import { currentEventVersion } from '../../src/domain/upcast.ts';
import { AuditLoop } from '../../src/hub/audit-loop.ts';
import { LogMismatchError, rebuildProjections, verifyProjections } from '../../src/projections/rebuild.ts';
import { appendEvents } from '../../src/ledger/append.ts';
import { operator, sshKey, testDatabase, urlFor, type TestDatabase } from '../support/db.ts';

const logName = 'capsul.test/ledger';
/** How long any wait for the database may take on a slow, busy machine before the test gives up. */
const waitLimitMs = 60_000;
/** capsul_log_seal's and lockSealer's advisory lock: "log!" / 1. */
const sealerLock = { classId: 1819240225, objId: 1 };

let workDir: string;
let keyFile: string;
let key: LogKey;
before(async () => {
  workDir = mkdtempSync(path.join(os.tmpdir(), 'capsul-audit-log-'));
  keyFile = path.join(workDir, 'log.key');
  key = await loadOrCreateKey(keyFile, logName);
});
after(() => rmSync(workDir, { recursive: true, force: true }));

// ---- helpers

/** Polls `probe` until it holds; fails naming what it waited for after `waitLimitMs`. */
async function waitFor(what: string, probe: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + waitLimitMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`gave up after ${waitLimitMs / 1000} s waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

const pay = (db: TestDatabase, email: string, amountCents: number) => db.ledger.recordPayment({ email, amountCents, cause: operator });

/** Payments, capsul creations and a second payment on an account: events in several streams and transactions. */
async function someHistory(db: TestDatabase): Promise<void> {
  await pay(db, 'alice@example.org', 2000);
  await db.ledger.createVm({ email: 'alice@example.org', size: 'f1-xs', os: 'debian12', sshPublicKeys: [sshKey], cause: operator });
  await pay(db, 'bob@example.org', 1500);
  await pay(db, 'bob@example.org', 700);
  await pay(db, 'carol@example.org', 3000);
  await db.ledger.createVm({ email: 'carol@example.org', size: 'f1-xs', os: 'alpine322', sshPublicKeys: [sshKey], cause: operator });
  await pay(db, 'alice@example.org', 500);
}

/** Seals everything committed so far, waiting (bounded) for transactions in flight anywhere on the server. */
async function sealAll(db: TestDatabase): Promise<{ sealed: number; size: number }> {
  const result = await sealCommitted(db.pool, { waitMs: waitLimitMs });
  assert.equal(result.waiting, false, 'sealing still waited for a transaction in flight');
  return result;
}

/** Every event's global position in commit order (transaction_id, global_position), read straight from the table. */
async function commitOrder(db: TestDatabase): Promise<string[]> {
  const { rows } = await db.admin.query(
    `SELECT global_position::text AS g FROM emt_messages WHERE partition = 'emt:default' AND NOT is_archived
     ORDER BY transaction_id, global_position`,
  );
  return rows.map((row) => row.g);
}

type Leaf = { leafIndex: number; globalPosition: string; leafHash: Buffer };

async function leaves(db: TestDatabase): Promise<Leaf[]> {
  const { rows } = await db.admin.query(
    'SELECT leaf_index::int AS i, global_position::text AS g, leaf_hash AS h FROM capsul_log_leaves ORDER BY leaf_index',
  );
  return rows.map((row) => ({ leafIndex: row.i, globalPosition: row.g, leafHash: row.h }));
}

const count = async (db: TestDatabase, sql: string, params: unknown[] = []) => (await db.admin.query(sql, params)).rows[0].n as number;
const logRows = (db: TestDatabase) =>
  count(
    db,
    `SELECT ((SELECT count(*) FROM capsul_log_leaves) + (SELECT count(*) FROM capsul_log_nodes) + (SELECT count(*) FROM capsul_log_checkpoints))::int AS n`,
  );

/** Every stored event (as the store reads them), by global position. */
async function storedEvents(db: TestDatabase): Promise<Map<string, StoredEvent>> {
  const events = new Map<string, StoredEvent>();
  for await (const batch of readAllEvents(db.admin)) for (const stored of batch) events.set(stored.globalPosition, stored);
  return events;
}

async function paymentPosition(db: TestDatabase, paymentId: number): Promise<string> {
  const { rows } = await db.admin.query(
    `SELECT global_position::text AS g FROM emt_messages WHERE message_type = 'PaymentRecorded' AND message_data->>'paymentId' = $1`,
    [String(paymentId)],
  );
  assert.equal(rows.length, 1, `payment ${paymentId} has one PaymentRecorded event`);
  return rows[0].g;
}

async function leafIndexOf(db: TestDatabase, globalPosition: string): Promise<number> {
  const { rows } = await db.admin.query('SELECT leaf_index::int AS i FROM capsul_log_leaves WHERE global_position = $1', [globalPosition]);
  assert.equal(rows.length, 1, `global position ${globalPosition} has a leaf`);
  return rows[0].i;
}

/** As an attacker with the superuser's password: triggers off for this session (the connection is discarded after). */
async function asSuperuserWithoutTriggers(db: TestDatabase, work: (client: pg.PoolClient) => Promise<void>): Promise<void> {
  const client = await db.admin.connect();
  try {
    await client.query('SET session_replication_role = replica');
    await work(client);
  } finally {
    client.release(true);
  }
}

/** A ledger with some history, sealed, and a checkpoint signed by the file's key (kept beside it in a file of its own). */
type SignedLedger = { db: TestDatabase; latestFile: string; size: number };

async function signedLedger(): Promise<SignedLedger> {
  const db = await testDatabase();
  await someHistory(db);
  const { size } = await sealAll(db);
  const latestFile = path.join(workDir, `latest-checkpoint-${db.name}`);
  const signed = await signCheckpoint(db.pool, key, latestFile);
  assert.equal(signed?.treeSize, size);
  return { db, latestFile, size };
}

/** What `capsul audit verify` checks against on this machine: the key file's verifier key and the checkpoint kept beside it. */
const evidence = (ledger: SignedLedger) => localEvidence({ keyFile, latestCheckpointFile: ledger.latestFile, verifierKey: undefined });

/** verifyLog as an auditor runs it: on capsul_reader's connections. */
async function verifyAsAuditor(db: TestDatabase, options: VerifyOptions): Promise<LogReport> {
  const reader = createPool(urlFor(db.name, 'reader'), 2);
  try {
    return await verifyLog(reader, options);
  } finally {
    await reader.end();
  }
}

const kinds = (report: LogReport) => report.findings.map((finding) => finding.kind).sort();

function findingOf(report: LogReport, kind: Finding['kind']): Finding {
  const finding = report.findings.find((f) => f.kind === kind);
  assert.ok(finding, `no ${kind} finding among ${JSON.stringify(report.findings, null, 1)}`);
  return finding;
}

// ---- sealing

describe('sealing', () => {
  let db: TestDatabase;
  before(async () => {
    db = await testDatabase();
    await someHistory(db);
  });
  after(() => db.close());

  it('Given payments and capsul creations, when sealCommitted runs, then every event has one leaf, in commit order, hashing the event, and the stored tree has their root', async () => {
    const order = await commitOrder(db);
    const result = await sealCommitted(db.pool, { waitMs: waitLimitMs });

    assert.deepEqual(result, { sealed: order.length, size: order.length, waiting: false });
    const sealed = await leaves(db);
    assert.deepEqual(
      sealed.map((leaf) => leaf.leafIndex),
      order.map((_, i) => i),
    );
    assert.deepEqual(
      sealed.map((leaf) => leaf.globalPosition),
      order,
    );
    const events = await storedEvents(db);
    for (const leaf of sealed) {
      assert.ok(leaf.leafHash.equals(eventLeafHash(events.get(leaf.globalPosition)!)), `leaf ${leaf.leafIndex} hashes its event`);
    }
    assert.ok((await storedRoot(db.pool, order.length)).equals(rootOf(sealed.map((leaf) => leaf.leafHash))));
  });

  it('Given a sealed log, when sealing runs again, then it seals nothing', async () => {
    const before = await leaves(db);

    assert.deepEqual(await sealOnce(db.pool), { sealed: 0, size: before.length });
    assert.deepEqual(await sealCommitted(db.pool, { waitMs: waitLimitMs }), { sealed: 0, size: before.length, waiting: false });
    assert.deepEqual(await leaves(db), before);
  });

  it('Given new events, when they are sealed a few at a time, then the tree resumed from its stored hashes has the root of every prefix', async () => {
    for (let i = 0; i < 6; i++) await pay(db, `batch${i}@example.org`, 100 + i);
    const order = await commitOrder(db);
    let rounds = 0;
    await waitFor('every event sealed, 3 at a time', async () => {
      const { sealed, size } = await sealOnce(db.pool, { batchSize: 3 });
      assert.ok(sealed <= 3);
      if (sealed > 0) rounds++;
      return size === order.length;
    });

    const sealed = await leaves(db);
    assert.deepEqual(
      sealed.map((leaf) => leaf.globalPosition),
      order,
    );
    assert.ok(rounds >= 4, `12 new events in batches of 3 take at least 4 rounds, not ${rounds}`);
    for (let size = 1; size <= sealed.length; size++) {
      const expected = rootOf(sealed.slice(0, size).map((leaf) => leaf.leafHash));
      assert.ok((await storedRoot(db.pool, size)).equals(expected), `the stored tree's root at size ${size}`);
    }
  });

  it('Given appends that never stop, when sealCommitted runs, then it returns once what committed before it is sealed', async () => {
    // Before each transaction a sealer starts, one more payment commits while the log keeps growing: a busy hub.
    const maxAppends = 20;
    let appended = 0;
    let lastSize = -1;
    const busy = new Proxy(db.pool, {
      get(target, property) {
        if (property === 'connect') {
          return async () => {
            const size = await count(db, 'SELECT count(*)::int AS n FROM capsul_log_leaves');
            if (size !== lastSize && appended < maxAppends) {
              appended++;
              await pay(db, `busy${appended}@example.org`, 100);
            }
            lastSize = size;
            return target.connect();
          };
        }
        const value = Reflect.get(target, property, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const before = await commitOrder(db);

    const result = await sealCommitted(busy, { waitMs: waitLimitMs });

    assert.equal(result.waiting, false);
    const sealed = (await leaves(db)).map((leaf) => leaf.globalPosition);
    assert.deepEqual(sealed.slice(0, before.length), before, 'everything committed before the call is sealed');
    assert.ok(
      appended < maxAppends,
      `sealCommitted kept sealing newer events for as long as they came (${appended} rounds, until the writer stopped): ` +
        'under appends that never stop it never returns, and waitMs does not bound it',
    );
  });
});

// ---- the late committer (Marten's gap bug, #3321)

/** Appends in the caller's transaction as the Ledger does: the events and their projection rows in one statement. */
async function appendIn(client: pg.PoolClient, streamId: string, events: AccountEvent[], expectedVersion: bigint): Promise<void> {
  const result = await appendEvents(client, streamId, events, { by: operator.by, eventVersion: currentEventVersion }, expectedVersion);
  assert.equal(result.ok, true);
}

async function nextPaymentId(client: pg.PoolClient): Promise<number> {
  return (await client.query(`SELECT nextval('payment_ids')::int AS id`)).rows[0].id;
}

function paymentRecorded(accountId: string, paymentId: number, amountCents: number): AccountEvent {
  const at = new Date().toISOString();
  return { type: 'PaymentRecorded', data: { accountId, paymentId, amountCents, provider: 'manual', reference: null, at, recordedAt: at } };
}

/** A new account's first payment, appended in the caller's transaction: AccountOpened and PaymentRecorded in a new stream. */
async function openAccountIn(client: pg.PoolClient, email: string, amountCents: number): Promise<string> {
  const accountId = randomUUID();
  const opened: AccountEvent = { type: 'AccountOpened', data: { accountId, email, at: new Date().toISOString() } };
  await appendIn(client, accountStream(accountId), [opened, paymentRecorded(accountId, await nextPaymentId(client), amountCents)], 0n);
  return accountId;
}

/** A naive reader of "events after the global position I saw last": what an outbox or a projection that trusts global_position does. */
async function readAfter(db: TestDatabase, globalPosition: string): Promise<string[]> {
  const { rows } = await db.admin.query(
    'SELECT global_position::text AS g FROM emt_messages WHERE global_position > $1 ORDER BY global_position',
    [globalPosition],
  );
  return rows.map((row) => row.g);
}

describe('a transaction that appends first and commits last', () => {
  let db: TestDatabase;
  let late: pg.PoolClient;
  let lateTransaction: string;
  let latePositions: string[];
  let earlyPositions: string[];
  let sealedBefore: number;
  let naiveSeen: string[];

  before(async () => {
    db = await testDatabase();
    await pay(db, 'before@example.org', 1000);
    ({ size: sealedBefore } = await sealAll(db));
    const naiveCursor = (await commitOrder(db))
      .map(BigInt)
      // biome-ignore lint/complexity/useMathMinMax: bigints, which Math.max does not take
      .reduce((a, b) => (a > b ? a : b))
      .toString();

    // The late transaction takes its transaction id and global positions first…
    late = await db.pool.connect();
    await late.query('BEGIN');
    await openAccountIn(late, 'late-first@example.org', 500);
    lateTransaction = (await late.query('SELECT pg_current_xact_id()::text AS id')).rows[0].id;

    // …then others start later and commit while it is still open…
    for (let i = 0; i < 3; i++) await pay(db, `early${i}@example.org`, 700 + i);
    earlyPositions = (await commitOrder(db)).slice(sealedBefore);
    naiveSeen = await readAfter(db, naiveCursor);

    // (it takes more positions after theirs, and stays open for the tests below)
    await openAccountIn(late, 'late-second@example.org', 600);
    latePositions = (
      await late.query(
        'SELECT global_position::text AS g FROM emt_messages WHERE transaction_id = pg_current_xact_id() ORDER BY global_position',
      )
    ).rows.map((row) => row.g);
  });
  after(async () => {
    await late.query('ROLLBACK').catch(() => {});
    late.release();
    await db.close();
  });

  it('Given it is still open, when later appends have committed and the sealer runs, then nothing at or after it is sealed', async () => {
    assert.equal(earlyPositions.length, 6, 'three new accounts with a payment each');
    for (let round = 0; round < 3; round++) assert.deepEqual(await sealOnce(db.pool), { sealed: 0, size: sealedBefore });
    assert.equal(
      await count(
        db,
        `SELECT count(*)::int AS n FROM capsul_log_leaves l JOIN emt_messages m USING (global_position)
                                   WHERE m.transaction_id >= $1::xid8`,
        [lateTransaction],
      ),
      0,
    );
  });

  it('Given it is still open, when capsul_app seals the events committed after it, then the database refuses', async () => {
    const events = await storedEvents(db);
    const early = earlyPositions.map((g) => events.get(g)!);

    await assert.rejects(
      sealLeaves(db.pool, { firstIndex: sealedBefore, positions: earlyPositions, leafHashes: early.map(eventLeafHash) }),
      (error: { code?: string; message?: string }) =>
        error.code === '40001' && /not the next events in commit order/.test(error.message ?? ''),
    );
    assert.equal(await count(db, 'SELECT count(*)::int AS n FROM capsul_log_leaves'), sealedBefore);
  });

  it('When it commits last and the log is sealed, then every event has one leaf and its events come before those that committed earlier', async () => {
    await late.query('COMMIT');
    await sealAll(db);

    const sealed = (await leaves(db)).map((leaf) => leaf.globalPosition);
    const order = await commitOrder(db);
    assert.deepEqual(sealed, order, 'one leaf per event, in (transaction_id, global_position) order');
    assert.equal(new Set(sealed).size, sealed.length);
    assert.deepEqual(sealed.slice(sealedBefore), [...latePositions, ...earlyPositions]);
  });

  it('Then leaf order is not global position order, and a reader of "positions after the last seen" would have skipped its first events', async () => {
    const sealed = (await leaves(db)).map((leaf) => leaf.globalPosition).slice(sealedBefore);
    const byPosition = [...sealed].sort((a, b) => Number(BigInt(a) - BigInt(b)));
    assert.notDeepEqual(sealed, byPosition);
    assert.equal(latePositions.length, 4, 'two new accounts with a payment each');
    assert.deepEqual(byPosition, [...latePositions.slice(0, 2), ...earlyPositions, ...latePositions.slice(2)]);

    const naiveCursor = naiveSeen.at(-1)!;
    const naive = [...naiveSeen, ...(await readAfter(db, naiveCursor))];
    assert.deepEqual(naive, [...earlyPositions, ...latePositions.slice(2)]);
    for (const skipped of latePositions.slice(0, 2)) {
      assert.ok(!naive.includes(skipped), `the naive reader never saw ${skipped}`);
      assert.ok(sealed.includes(skipped), `the log sealed ${skipped}`);
    }
  });
});

describe('a transaction that appends to one stream twice', () => {
  it('Given a stream created and appended to again in one transaction, when it commits, then both appends stand and are sealed', async (t) => {
    const db = await testDatabase();
    const client = await db.pool.connect();
    t.after(async () => {
      client.release();
      await db.close();
    });
    await client.query('BEGIN');
    const accountId = await openAccountIn(client, 'twice@example.org', 500);
    await appendIn(client, accountStream(accountId), [paymentRecorded(accountId, await nextPaymentId(client), 600)], 2n);

    const refusal = await client.query('COMMIT').then(
      () => undefined,
      (error: Error & { code?: string }) => `${error.code}: ${error.message}`,
    );

    assert.equal(
      refusal,
      undefined,
      'the commit was refused: capsul_stream_position_matches_events (schema_migrations/11_up_roles.sql) checks the row as each ' +
        'append left it (position 2), not as it is at commit (3)',
    );
    assert.equal(await count(db, 'SELECT count(*)::int AS n FROM emt_messages WHERE stream_id = $1', [accountStream(accountId)]), 3);
    await sealAll(db);
    assert.deepEqual(
      (await leaves(db)).map((leaf) => leaf.globalPosition),
      await commitOrder(db),
    );
  });
});

// ---- concurrency

describe('writers and sealers at once', () => {
  let db: TestDatabase;
  before(async () => {
    db = await testDatabase({ poolSize: 12 });
  });
  after(() => db.close());

  it('Given four writers and two sealers running together, when the log is sealed at the end, then its leaves are contiguous, one per event, in commit order, and verify', async () => {
    const paymentsPerWriter = 40;
    const initialLeaves = (await sealAll(db)).size;
    let writing = true;
    let sealedByLoops = 0;
    const sealers = [0, 1].map(async () => {
      while (writing) {
        const { sealed } = await sealOnce(db.pool);
        sealedByLoops += sealed;
      }
    });
    const writer = async (w: number) => {
      for (let i = 0; i < paymentsPerWriter; i++) {
        await pay(db, `writer${w}@example.org`, 100 + i);
        // Halfway, wait for the sealers to have sealed some payments: sealing and writing interleave.
        if (i === paymentsPerWriter / 2) {
          await waitFor(
            'the sealers to seal some payments',
            async () => (await count(db, 'SELECT count(*)::int AS n FROM capsul_log_leaves')) > initialLeaves,
          );
        }
      }
    };
    try {
      await Promise.all([0, 1, 2, 3].map(writer));
    } finally {
      writing = false;
      await Promise.all(sealers);
    }
    const final = await sealAll(db);

    const order = await commitOrder(db);
    const sealed = await leaves(db);
    assert.equal(order.length, initialLeaves + 4 * (paymentsPerWriter + 1), 'each writer opened an account and paid 40 times');
    assert.ok(sealedByLoops > 0);
    assert.equal(initialLeaves + sealedByLoops + final.sealed, order.length, 'every event sealed exactly once');
    assert.deepEqual(
      sealed.map((leaf) => leaf.leafIndex),
      order.map((_, i) => i),
    );
    assert.deepEqual(
      sealed.map((leaf) => leaf.globalPosition),
      order,
    );

    const latestFile = path.join(workDir, `latest-checkpoint-${db.name}`);
    await signCheckpoint(db.pool, key, latestFile);
    const report = await verifyAsAuditor(db, { verifierKeys: [key.verifierKey] });
    assert.deepEqual(report, {
      ok: true,
      findings: [],
      treeSize: order.length,
      events: order.length,
      unsealed: 0,
      checkpoints: 1,
      signaturesChecked: true,
    });
  });
});

// ---- the database's own guards

describe('the database keeps the log in commit order, whoever calls', () => {
  let db: TestDatabase;
  let events: StoredEvent[];
  before(async () => {
    db = await testDatabase();
    await someHistory(db);
    // (sealable once no older transaction anywhere on the server is in flight)
    await waitFor('three sealable events', async () => (events = await readSealable(db.pool, null, 3)).length === 3);
  });
  after(() => db.close());

  const seal = (firstIndex: number, chosen: StoredEvent[], leafHashes = chosen.map(eventLeafHash)) =>
    sealLeaves(db.pool, { firstIndex, positions: chosen.map((e) => e.globalPosition), leafHashes });

  const attempts: { name: string; attempt: () => Promise<number>; code: string; message: RegExp }[] = [
    {
      name: 'an event skipped',
      attempt: () => seal(0, [events[0]!, events[2]!]),
      code: '40001',
      message: /not the next events in commit order/,
    },
    {
      name: 'events out of order',
      attempt: () => seal(0, [events[1]!, events[0]!]),
      code: '40001',
      message: /not the next events in commit order/,
    },
    {
      name: 'a first index past the end of the log',
      attempt: () => seal(1, [events[0]!]),
      code: '40001',
      message: /the log has 0 leaves, not 1/,
    },
    { name: 'no events', attempt: () => seal(0, []), code: 'P0001', message: /one leaf hash per event/ },
    {
      name: 'fewer leaf hashes than events',
      attempt: () => seal(0, [events[0]!, events[1]!], [eventLeafHash(events[0]!)]),
      code: 'P0001',
      message: /one leaf hash per event/,
    },
  ];
  for (const { name, attempt, code, message } of attempts) {
    it(`Given unsealed events, when capsul_app seals with ${name}, then it is refused and nothing is written`, async () => {
      await assert.rejects(attempt(), (error: { code?: string; message?: string }) => {
        assert.equal(error.code, code, String(error));
        assert.match(error.message ?? '', message);
        return true;
      });
      assert.equal(await logRows(db), 0);
    });
  }

  it('Given unsealed events, when capsul_app seals the next ones in order, then the database adds the tree hashes they complete', async () => {
    const hashes = events.slice(0, 2).map(eventLeafHash);

    const size = await sealLeaves(db.pool, {
      firstIndex: 0,
      positions: events.slice(0, 2).map((e) => e.globalPosition),
      leafHashes: hashes,
    });

    assert.equal(size, 2);
    const { rows } = await db.admin.query('SELECT hash FROM capsul_log_nodes WHERE level = 1 AND node_index = 0');
    assert.ok(rows[0]?.hash.equals(nodeHash(hashes[0]!, hashes[1]!)), 'node 1/0 is H(leaf 0, leaf 1), computed by the database');
    assert.ok((await storedRoot(db.pool, 2)).equals(rootOf(hashes)));
  });

  it("Given a sealed log, when capsul_app stores a checkpoint whose root is not the log's, then it is refused", async () => {
    await assert.rejects(
      addCheckpoint(db.pool, { treeSize: 2, rootHash: Buffer.alloc(32, 7), note: 'forged\n' }),
      /not the log's root at size 2/,
    );
    await assert.rejects(addCheckpoint(db.pool, { treeSize: 3, rootHash: Buffer.alloc(32, 7), note: 'forged\n' }), /fewer than 3 leaves/);
    assert.equal(await count(db, 'SELECT count(*)::int AS n FROM capsul_log_checkpoints'), 0);
  });

  it('Given a note stored for a size, when another note for the same size comes, then both are kept (none keeps another out)', async () => {
    const root = await storedRoot(db.pool, 2);
    assert.equal(await addCheckpoint(db.pool, { treeSize: 2, rootHash: root, note: 'first\n' }), true);
    assert.equal(await addCheckpoint(db.pool, { treeSize: 2, rootHash: root, note: 'second\n' }), true);
    assert.equal(await addCheckpoint(db.pool, { treeSize: 2, rootHash: root, note: 'first\n' }), false, 'the same note again adds nothing');
    assert.equal(await count(db, 'SELECT count(*)::int AS n FROM capsul_log_checkpoints WHERE tree_size = 2'), 2);
  });

  it('Given sealed leaves, when capsul_app seals again from an index behind the end, or an event already sealed, then it is refused', async () => {
    await assert.rejects(seal(0, [events[2]!]), { code: '40001', message: /the log has 2 leaves, not 0/ });
    await assert.rejects(seal(2, [events[1]!]), { code: '40001', message: /not the next events in commit order/ });
    assert.equal(await count(db, 'SELECT count(*)::int AS n FROM capsul_log_leaves'), 2);
  });

  describe('and nobody changes what is written', () => {
    before(async () => {
      await sealAll(db);
      await signCheckpoint(db.pool, key, path.join(workDir, `latest-checkpoint-${db.name}`));
    });

    const tables = ['capsul_log_leaves', 'capsul_log_nodes', 'capsul_log_checkpoints'] as const;
    const inserts: Record<(typeof tables)[number], string> = {
      capsul_log_leaves: `INSERT INTO capsul_log_leaves (leaf_index, global_position, leaf_hash) VALUES (9999, 9999, sha256(''))`,
      capsul_log_nodes: `INSERT INTO capsul_log_nodes (level, node_index, hash) VALUES (9, 9999, sha256(''))`,
      capsul_log_checkpoints: `INSERT INTO capsul_log_checkpoints (tree_size, root_hash, note) VALUES (9999, sha256(''), 'forged')`,
    };
    const updates: Record<(typeof tables)[number], string> = {
      capsul_log_leaves: `UPDATE capsul_log_leaves SET leaf_hash = sha256('x')`,
      capsul_log_nodes: `UPDATE capsul_log_nodes SET hash = sha256('x')`,
      capsul_log_checkpoints: `UPDATE capsul_log_checkpoints SET note = 'forged'`,
    };
    const snapshot = async () =>
      JSON.stringify(await Promise.all(tables.map(async (table) => (await db.admin.query(`SELECT * FROM ${table} ORDER BY 1, 2`)).rows)));

    for (const table of tables) {
      for (const sql of [inserts[table], updates[table], `DELETE FROM ${table}`, `TRUNCATE ${table}`]) {
        it(`refuses capsul_app: ${sql.split(' (')[0]}`, async () => {
          const before = await snapshot();
          await assert.rejects(db.pool.query(sql), (error: { code?: string }) => {
            assert.equal(error.code, '42501', `${sql} → ${String(error)}`);
            return true;
          });
          assert.equal(await snapshot(), before);
        });
      }
      for (const sql of [updates[table], `DELETE FROM ${table}`, `TRUNCATE ${table}`]) {
        it(`refuses the superuser, by the append-only trigger: ${sql}`, async () => {
          const before = await snapshot();
          assert.ok((await count(db, `SELECT count(*)::int AS n FROM ${table}`)) > 0, `${table} has rows for the trigger to guard`);
          await assert.rejects(db.admin.query(sql), (error: { code?: string; message?: string }) => {
            assert.equal(error.code, 'CS002', `${sql} → ${String(error)}`);
            assert.match(error.message ?? '', /the audit log is append-only/);
            return true;
          });
          assert.equal(await snapshot(), before);
        });
      }
    }
  });
});

// ---- verification finds each kind of tampering

describe('verifyLog', () => {
  it('Given an intact log, then it is ok with every leaf, event and checkpoint counted, and counts events not sealed yet', async (t) => {
    const ledger = await signedLedger();
    t.after(() => ledger.db.close());

    const report = await verifyAsAuditor(ledger.db, await evidence(ledger));
    assert.deepEqual(report, {
      ok: true,
      findings: [],
      treeSize: ledger.size,
      events: ledger.size,
      unsealed: 0,
      checkpoints: 1,
      signaturesChecked: true,
    });

    await pay(ledger.db, 'bob@example.org', 100);
    const later = await verifyAsAuditor(ledger.db, await evidence(ledger));
    assert.deepEqual({ ok: later.ok, events: later.events, unsealed: later.unsealed }, { ok: true, events: ledger.size + 1, unsealed: 1 });
  });

  it('Given no verifier key, then it compares the roots but says signatures were not checked', async (t) => {
    const ledger = await signedLedger();
    t.after(() => ledger.db.close());

    const report = await verifyAsAuditor(ledger.db, { verifierKeys: [] });

    assert.deepEqual(
      { ok: report.ok, checkpoints: report.checkpoints, signaturesChecked: report.signaturesChecked },
      { ok: true, checkpoints: 1, signaturesChecked: false },
    );
  });

  it("Given a payment's amount altered, then it names that leaf and global position as altered, and the checkpoint as not matching", async (t) => {
    const ledger = await signedLedger();
    t.after(() => ledger.db.close());
    const { paymentId } = await pay(ledger.db, 'dave@example.org', 2000);
    await sealAll(ledger.db);
    await signCheckpoint(ledger.db.pool, key, ledger.latestFile);
    const position = await paymentPosition(ledger.db, paymentId);

    await asSuperuserWithoutTriggers(ledger.db, (c) =>
      c
        .query(`UPDATE emt_messages SET message_data = jsonb_set(message_data, '{amountCents}', '500000') WHERE global_position = $1`, [
          position,
        ])
        .then(() => {}),
    );

    const report = await verifyAsAuditor(ledger.db, await evidence(ledger));
    assert.equal(report.ok, false);
    assert.deepEqual(kinds(report), ['altered', 'checkpoint']);
    const altered = findingOf(report, 'altered');
    assert.deepEqual(
      { leafIndex: altered.leafIndex, globalPosition: altered.globalPosition },
      { leafIndex: await leafIndexOf(ledger.db, position), globalPosition: position },
    );
    assert.match(altered.message, /PaymentRecorded/);
    assert.match(findingOf(report, 'checkpoint').message, new RegExp(`checkpoint ${ledger.size + 2} .*does not match the events$`));
  });

  it('Given an event deleted from the middle, then it names that leaf as removed', async (t) => {
    const ledger = await signedLedger();
    t.after(() => ledger.db.close());
    // bob's first payment: his stream still ends with his second one, so only the log can tell.
    const {
      rows: [bob],
    } = await ledger.db.admin.query(
      `SELECT global_position::text AS g FROM emt_messages m JOIN accounts a ON m.stream_id = 'account-' || a.id
       WHERE a.email = 'bob@example.org' AND m.message_type = 'PaymentRecorded' ORDER BY m.stream_position LIMIT 1`,
    );
    const leafIndex = await leafIndexOf(ledger.db, bob.g);

    await asSuperuserWithoutTriggers(ledger.db, (c) =>
      c.query('DELETE FROM emt_messages WHERE global_position = $1', [bob.g]).then(() => {}),
    );

    const report = await verifyAsAuditor(ledger.db, await evidence(ledger));
    assert.deepEqual(kinds(report), ['removed']);
    const removed = findingOf(report, 'removed');
    assert.deepEqual({ leafIndex: removed.leafIndex, globalPosition: removed.globalPosition }, { leafIndex, globalPosition: bob.g });
    assert.ok(leafIndex > 0 && leafIndex < ledger.size - 1, 'a leaf in the middle');
  });

  it('Given the newest event deleted (and its stream moved back to match), then it names the last leaf as removed, and the checkpoint as ahead of the events', async (t) => {
    const ledger = await signedLedger();
    t.after(() => ledger.db.close());
    const last = (await leaves(ledger.db)).at(-1)!;

    await asSuperuserWithoutTriggers(ledger.db, async (c) => {
      const {
        rows: [event],
      } = await c.query('DELETE FROM emt_messages WHERE global_position = $1 RETURNING stream_id', [last.globalPosition]);
      await c.query('UPDATE emt_streams SET stream_position = stream_position - 1 WHERE stream_id = $1', [event.stream_id]);
    });

    const report = await verifyAsAuditor(ledger.db, await evidence(ledger));
    assert.deepEqual(kinds(report), ['behind', 'removed']);
    const removed = findingOf(report, 'removed');
    assert.deepEqual(
      { leafIndex: removed.leafIndex, globalPosition: removed.globalPosition },
      { leafIndex: ledger.size - 1, globalPosition: last.globalPosition },
    );
    assert.match(
      findingOf(report, 'behind').message,
      new RegExp(`signs ${ledger.size} leaves but the events make only ${ledger.size - 1}`),
    );
  });

  it('Given an event inserted with the transaction id of a sealed transaction, then it names where it was inserted', async (t) => {
    const ledger = await signedLedger();
    t.after(() => ledger.db.close());
    // alice's first transaction (her account and payment) lies in the middle of the log.
    const {
      rows: [first],
    } = await ledger.db.admin.query(
      `SELECT m.transaction_id::text AS transaction_id, max(m.global_position)::text AS last_position, m.stream_id
       FROM emt_messages m JOIN accounts a ON m.stream_id = 'account-' || a.id WHERE a.email = 'alice@example.org'
       GROUP BY m.transaction_id, m.stream_id ORDER BY m.transaction_id LIMIT 1`,
    );
    const insertedAt = (await leafIndexOf(ledger.db, first.last_position)) + 1;

    let forged = '';
    await asSuperuserWithoutTriggers(ledger.db, async (c) => {
      const {
        rows: [row],
      } = await c.query(
        `INSERT INTO emt_messages (stream_position, transaction_id, stream_id, message_schema_version, message_id, message_type, message_data, message_metadata)
         SELECT s.stream_position + 1, m.transaction_id, m.stream_id, m.message_schema_version, gen_random_uuid()::text, m.message_type,
                jsonb_set(m.message_data, '{amountCents}', '100000'), m.message_metadata
         FROM emt_messages m JOIN emt_streams s USING (stream_id)
         WHERE m.global_position = $1
         RETURNING global_position::text AS g`,
        [first.last_position],
      );
      forged = row.g;
      await c.query('UPDATE emt_streams SET stream_position = stream_position + 1 WHERE stream_id = $1', [first.stream_id]);
    });

    const report = await verifyAsAuditor(ledger.db, await evidence(ledger));
    assert.deepEqual(kinds(report), ['inserted']);
    const inserted = findingOf(report, 'inserted');
    assert.deepEqual(
      { leafIndex: inserted.leafIndex, globalPosition: inserted.globalPosition },
      { leafIndex: insertedAt, globalPosition: forged },
    );
    assert.ok(insertedAt < ledger.size, 'inside sealed history');
  });

  it('Given an event altered together with its stored leaf hash, then only the signed root catches it, naming the leaves between the checkpoints', async (t) => {
    const ledger = await signedLedger();
    t.after(() => ledger.db.close());
    const { paymentId } = await pay(ledger.db, 'dave@example.org', 2000);
    await pay(ledger.db, 'erin@example.org', 900);
    const { size } = await sealAll(ledger.db);
    await signCheckpoint(ledger.db.pool, key, ledger.latestFile);
    const position = await paymentPosition(ledger.db, paymentId);

    await asSuperuserWithoutTriggers(ledger.db, async (c) => {
      await c.query(
        `UPDATE emt_messages SET message_data = jsonb_set(message_data, '{amountCents}', '500000') WHERE global_position = $1`,
        [position],
      );
      const altered = (await storedEvents(ledger.db)).get(position)!;
      await c.query('UPDATE capsul_log_leaves SET leaf_hash = $1 WHERE global_position = $2', [eventLeafHash(altered), position]);
    });

    const report = await verifyAsAuditor(ledger.db, await evidence(ledger));
    assert.deepEqual(kinds(report), ['checkpoint']);
    assert.match(
      findingOf(report, 'checkpoint').message,
      new RegExp(
        `checkpoint ${size} .*does not match the events: an event among leaves ${ledger.size} to ${size - 1} was altered together with its stored leaf hash`,
      ),
    );
  });

  it('Given a checkpoint signed by another key of the same name (capsul_app may store any note), then it names its signature', async (t) => {
    const ledger = await signedLedger();
    t.after(() => ledger.db.close());
    const impostor = generateSignerKey(logName);
    const treeSize = ledger.size - 1;
    const rootHash = await storedRoot(ledger.db.pool, treeSize);
    const note = signNote(formatCheckpoint({ origin: logName, treeSize, rootHash }), impostor.signerKey);

    assert.equal(await addCheckpoint(ledger.db.pool, { treeSize, rootHash, note }), true);

    const report = await verifyAsAuditor(ledger.db, await evidence(ledger));
    assert.deepEqual(kinds(report), ['signature']);
    assert.match(findingOf(report, 'signature').message, new RegExp(`^checkpoint ${treeSize} .*no verifiable signatures`));
  });

  it('Given a checkpoint whose text was edited after signing, then it names its signature', async (t) => {
    const ledger = await signedLedger();
    t.after(() => ledger.db.close());

    await asSuperuserWithoutTriggers(ledger.db, (c) =>
      c
        .query(
          `UPDATE capsul_log_checkpoints SET note = replace(note, E'\\n' || $1 || E'\\n', E'\\n' || $2 || E'\\n') WHERE tree_size = $1`,
          [String(ledger.size), String(ledger.size - 1)],
        )
        .then(() => {}),
    );

    const {
      rows: [edited],
    } = await ledger.db.admin.query('SELECT note FROM capsul_log_checkpoints');
    assert.match(edited.note, new RegExp(`^${logName}\\n${ledger.size - 1}\\n`));
    const report = await verifyAsAuditor(ledger.db, await evidence(ledger));
    assert.deepEqual(kinds(report), ['signature']);
    assert.match(findingOf(report, 'signature').message, new RegExp(`^checkpoint ${ledger.size} .*invalid signature`));
  });

  it('Given a database restored from before the latest checkpoint, then the checkpoint kept beside the key shows it behind', async (t) => {
    const ledger = await signedLedger();
    t.after(() => ledger.db.close());
    const { paymentId } = await pay(ledger.db, 'dave@example.org', 2000);
    const { size } = await sealAll(ledger.db);
    await signCheckpoint(ledger.db.pool, key, ledger.latestFile);
    assert.equal(parseCheckpoint(`${readFileSync(ledger.latestFile, 'utf8').split('\n\n')[0]!}\n`).treeSize, size);
    const dave = (await ledger.db.admin.query('SELECT account_id FROM payments WHERE id = $1', [paymentId])).rows[0].account_id as string;

    // What the older backup holds: the log and the events as they stood at the earlier checkpoint.
    await asSuperuserWithoutTriggers(ledger.db, async (c) => {
      await c.query('DELETE FROM capsul_log_checkpoints WHERE tree_size > $1', [ledger.size]);
      await c.query('DELETE FROM capsul_log_nodes WHERE (node_index + 1) * (1::bigint << level) > $1', [ledger.size]);
      await c.query('DELETE FROM capsul_log_leaves WHERE leaf_index >= $1', [ledger.size]);
      await c.query('DELETE FROM emt_messages WHERE stream_id = $1', [accountStream(dave)]);
      await c.query('DELETE FROM emt_streams WHERE stream_id = $1', [accountStream(dave)]);
      await c.query('DELETE FROM payments WHERE account_id = $1', [dave]);
      await c.query('DELETE FROM accounts WHERE id = $1', [dave]);
    });

    const inside = await verifyAsAuditor(ledger.db, { verifierKeys: [key.verifierKey] });
    assert.equal(inside.ok, true, 'the database alone looks intact');
    const report = await verifyAsAuditor(ledger.db, await evidence(ledger));
    assert.deepEqual(kinds(report), ['behind']);
    assert.match(
      findingOf(report, 'behind').message,
      new RegExp(`${ledger.latestFile} signs ${size} leaves but the events make only ${ledger.size}`),
    );
  });

  it("Given a stream's position moved ahead of its events, then it names the stream", async (t) => {
    const ledger = await signedLedger();
    t.after(() => ledger.db.close());
    const bob = accountStream((await ledger.db.admin.query(`SELECT id FROM accounts WHERE email = 'bob@example.org'`)).rows[0].id);

    await asSuperuserWithoutTriggers(ledger.db, (c) =>
      c.query('UPDATE emt_streams SET stream_position = stream_position + 5 WHERE stream_id = $1', [bob]).then(() => {}),
    );

    const report = await verifyAsAuditor(ledger.db, await evidence(ledger));
    assert.deepEqual(kinds(report), ['stream']);
    assert.match(findingOf(report, 'stream').message, new RegExp(`stream ${bob} says it is at position 8 but its last event is 3`));
  });
});

// ---- rebuild over the log

describe('rebuilding the projections checks the log first', () => {
  /** Every row of the money projections, as text: what a rebuild would change. */
  const fingerprint = async (db: TestDatabase) =>
    (
      await db.admin.query(
        `SELECT (SELECT coalesce(string_agg(p::text, '|' ORDER BY p.id), '') FROM payments p)
         || (SELECT coalesce(string_agg(a::text, '|' ORDER BY a.id), '') FROM accounts a) AS rows`,
      )
    ).rows[0].rows as string;

  it("Given a payment's event altered, when rebuild and verify run, then both throw LogMismatchError naming the checkpoint and change nothing", async (t) => {
    const ledger = await signedLedger();
    t.after(() => ledger.db.close());
    const {
      rows: [payment],
    } = await ledger.db.admin.query(`SELECT min(id)::int AS id FROM payments`);
    const position = await paymentPosition(ledger.db, payment.id);
    await asSuperuserWithoutTriggers(ledger.db, (c) =>
      c
        .query(`UPDATE emt_messages SET message_data = jsonb_set(message_data, '{amountCents}', '500000') WHERE global_position = $1`, [
          position,
        ])
        .then(() => {}),
    );
    const before = await fingerprint(ledger.db);
    const log = { verifierKeys: [key.verifierKey] };

    // Rebuild checks the events against the signed roots only; audit verify names the leaf.
    const refused = (error: unknown) => {
      assert.ok(error instanceof LogMismatchError, String(error));
      assert.equal(error.findings[0]?.kind, 'checkpoint');
      assert.match(
        error.message,
        /^the events no longer match the signed log, so nothing was rebuilt: checkpoint \d+ .*does not match the events: .*capsul audit verify names it/,
      );
      return true;
    };
    await assert.rejects(rebuildProjections(ledger.db.admin, { log }), refused);
    await assert.rejects(rebuildProjections(ledger.db.admin), refused, "without a key too: the checkpoints' roots still disagree");
    await assert.rejects(verifyProjections(ledger.db.pool, { log }), refused);

    assert.equal(await fingerprint(ledger.db), before);
    assert.equal((await ledger.db.admin.query('SELECT dollars::text AS d FROM payments WHERE id = $1', [payment.id])).rows[0].d, '20.00');
  });

  it('Given intact events and a projection edited behind the projector, when verify and rebuild run, then they report and repair it as before', async (t) => {
    const ledger = await signedLedger();
    t.after(() => ledger.db.close());
    const log = { verifierKeys: [key.verifierKey] };
    const intact = await fingerprint(ledger.db);
    await asSuperuserWithoutTriggers(ledger.db, (c) =>
      c.query(`UPDATE payments SET dollars = 5000 WHERE id = (SELECT min(id) FROM payments)`).then(() => {}),
    );

    const verified = await verifyProjections(ledger.db.pool, { log });
    assert.equal(verified.matches, false);
    assert.equal(verified.differences.payments, 1);
    const rebuilt = await rebuildProjections(ledger.db.admin, { log });
    assert.equal(rebuilt.changed.payments, 1);
    assert.equal(await fingerprint(ledger.db), intact);
    assert.equal((await verifyProjections(ledger.db.pool, { log })).matches, true);
  });
});

// ---- inclusion proofs

describe('provePayment', () => {
  let ledger: SignedLedger;
  let reader: pg.Pool;
  before(async () => {
    ledger = await signedLedger();
    reader = createPool(urlFor(ledger.db.name, 'reader'), 2);
  });
  after(async () => {
    await reader.end();
    await ledger.db.close();
  });

  it("Given a sealed payment in a signed checkpoint, then its proof verifies against the checkpoint's root", async () => {
    const {
      rows: [payment],
    } = await ledger.db.admin.query(
      `SELECT p.id::int AS id FROM payments p JOIN accounts a ON a.id = p.account_id WHERE a.email = 'bob@example.org' ORDER BY p.id LIMIT 1`,
    );

    const proof = await provePayment(reader, payment.id);

    const { text } = openNote(proof.checkpoint, [key.verifierKey]);
    const { treeSize, rootHash } = parseCheckpoint(text);
    const position = await paymentPosition(ledger.db, payment.id);
    assert.deepEqual(
      { leafIndex: proof.leafIndex, treeSize: proof.treeSize, globalPosition: proof.globalPosition },
      { leafIndex: await leafIndexOf(ledger.db, position), treeSize: ledger.size, globalPosition: position },
    );
    assert.equal(treeSize, ledger.size);
    const hash = leafHash(Buffer.from(proof.leaf, 'utf8'));
    assert.equal(hash.toString('base64'), proof.leafHash);
    assert.equal(JSON.parse(proof.leaf).data.paymentId, payment.id);
    const path = proof.auditPath.map((h) => Buffer.from(h, 'base64'));
    assert.equal(verifyInclusion(hash, proof.leafIndex, treeSize, path, rootHash), true);
    assert.equal(verifyInclusion(hash, proof.leafIndex + 1, treeSize, path, rootHash), false, 'the proof is for that leaf only');
  });

  it('Given a payment not sealed yet, then it is refused with one line', async () => {
    const { paymentId } = await pay(ledger.db, 'frank@example.org', 300);

    await assert.rejects(provePayment(reader, paymentId), (error: Error) => {
      assert.ok(error instanceof ProofError, String(error));
      assert.match(error.message, new RegExp(`^payment ${paymentId}'s event is not in a signed checkpoint yet`));
      assert.doesNotMatch(error.message, /\n/);
      return true;
    });
  });

  it('Given a payment sealed after the latest checkpoint, then it is refused with one line, and proved once a checkpoint covers it', async () => {
    const { paymentId } = await pay(ledger.db, 'grace@example.org', 400);
    await sealAll(ledger.db);

    await assert.rejects(
      provePayment(reader, paymentId),
      (error: Error) =>
        error instanceof ProofError && /not in a signed checkpoint yet/.test(error.message) && !error.message.includes('\n'),
    );

    await signCheckpoint(ledger.db.pool, key, ledger.latestFile);
    assert.equal(
      (await provePayment(reader, paymentId)).leafIndex,
      await leafIndexOf(ledger.db, await paymentPosition(ledger.db, paymentId)),
    );
  });

  it('Given no such payment, then it says so in one line', async () => {
    await assert.rejects(
      provePayment(reader, 987_654),
      (error: Error) => error instanceof ProofError && error.message === 'there is no payment 987654',
    );
  });
});

// ---- the hub's loop

describe("the hub's AuditLoop", () => {
  const auditConfig = (dir: string, checkpointIntervalMs: number): AuditConfig => ({
    keyFile: path.join(dir, 'keys', 'log.key'),
    latestCheckpointFile: path.join(dir, 'keys', 'latest-checkpoint'),
    logName,
    verifierKey: undefined,
    checkpointIntervalMs,
  });
  const checkpointSizes = async (db: TestDatabase) =>
    (await db.admin.query('SELECT tree_size::int AS size FROM capsul_log_checkpoints ORDER BY tree_size')).rows.map(
      (row) => row.size as number,
    );
  const eventCount = (db: TestDatabase) => count(db, 'SELECT count(*)::int AS n FROM emt_messages');

  it('Given appends and a checkpoint interval of 1 ms, when started, then it creates the key, seals every event and signs a checkpoint of them, and again as the log grows', async (t) => {
    const db = await testDatabase();
    const dir = mkdtempSync(path.join(workDir, 'loop-'));
    const audit = auditConfig(dir, 1);
    const lines: string[] = [];
    const loop = new AuditLoop({ pool: db.pool, audit, log: (line) => lines.push(line) }, 25);
    t.after(async () => {
      await loop.stop();
      await db.close();
    });
    await someHistory(db);

    await loop.start();
    const events = await eventCount(db);
    await waitFor(`a checkpoint of all ${events} events`, async () => (await checkpointSizes(db)).includes(events));
    await pay(db, 'later@example.org', 100);
    await waitFor(`a checkpoint of all ${events + 2} events`, async () => (await checkpointSizes(db)).includes(events + 2));
    await loop.stop();

    assert.equal(statSync(audit.keyFile).mode & 0o777, 0o600);
    const created = await loadOrCreateKey(audit.keyFile, logName);
    assert.equal(created.created, false);
    assert.ok(
      lines.some((line) => line.startsWith(`created the audit log's signing key in ${audit.keyFile}`)),
      lines.join('\n'),
    );
    assert.ok(lines.includes(`audit log: checkpoints signed by ${created.verifierKey}`), lines.join('\n'));
    assert.deepEqual(
      lines.filter((line) => /failed/.test(line)),
      [],
    );
    const {
      rows: [latest],
    } = await db.admin.query('SELECT note FROM capsul_log_checkpoints ORDER BY tree_size DESC LIMIT 1');
    assert.equal(readFileSync(audit.latestCheckpointFile, 'utf8'), latest.note);
    const report = await verifyAsAuditor(db, await localEvidence(audit));
    assert.deepEqual(
      { ok: report.ok, treeSize: report.treeSize, unsealed: report.unsealed },
      { ok: true, treeSize: events + 2, unsealed: 0 },
    );
  });

  it("Given two hubs, when the second starts with the same key file, then it says nothing; with another key, then it says in one line that the newest checkpoint is not its key's", async (t) => {
    const db = await testDatabase();
    const dirA = mkdtempSync(path.join(workDir, 'loop-a-'));
    const dirB = mkdtempSync(path.join(workDir, 'loop-b-'));
    const first = new AuditLoop({ pool: db.pool, audit: auditConfig(dirA, 1), log: () => {} }, 25);
    t.after(async () => {
      await first.stop();
      await db.close();
    });
    await someHistory(db);
    await first.start();
    const events = await eventCount(db);
    await waitFor(`a checkpoint of all ${events} events`, async () => (await checkpointSizes(db)).includes(events));
    await first.stop();

    const sameKey = { ...auditConfig(dirB, 1), keyFile: auditConfig(dirA, 1).keyFile };
    const sameLines: string[] = [];
    const same = new AuditLoop({ pool: db.pool, audit: sameKey, log: (line) => sameLines.push(line) }, 600_000);
    await same.start();
    await same.stop();
    assert.deepEqual(
      sameLines.filter((line) => /not signed by this hub's key/.test(line)),
      [],
    );

    const otherLines: string[] = [];
    const other = new AuditLoop({ pool: db.pool, audit: auditConfig(dirB, 1), log: (line) => otherLines.push(line) }, 600_000);
    await other.start();
    await other.stop();
    const otherKey = await loadOrCreateKey(auditConfig(dirB, 1).keyFile, logName);
    assert.deepEqual(
      otherLines.filter((line) => /not signed by this hub's key/.test(line)),
      [
        `audit log: the newest stored checkpoint (size ${events}) was not signed by this hub's key ${otherKey.verifierKey}: hubs that sign must share ` +
          "one AUDIT_KEY_FILE (or set AUDIT_CHECKPOINT_SECONDS=0 on all but one), else audit verify with the published key reports the other key's checkpoints",
      ],
    );
  });

  it('Given a checkpoint interval of 0, when started, then it seals but never signs, and makes no key', async (t) => {
    const db = await testDatabase();
    const dir = mkdtempSync(path.join(workDir, 'loop-'));
    const audit = auditConfig(dir, 0);
    const lines: string[] = [];
    const loop = new AuditLoop({ pool: db.pool, audit, log: (line) => lines.push(line) }, 25);
    t.after(async () => {
      await loop.stop();
      await db.close();
    });
    await someHistory(db);

    await loop.start();
    const events = await eventCount(db);
    await waitFor(
      `all ${events} events sealed`,
      async () => (await count(db, 'SELECT count(*)::int AS n FROM capsul_log_leaves')) === events,
    );
    await loop.stop();

    assert.deepEqual(await checkpointSizes(db), []);
    assert.equal(existsSync(audit.keyFile), false);
    assert.deepEqual(lines, []);
  });

  it('Given a round under way, when stop() is called, then it resolves only after that round has finished', async (t) => {
    const db = await testDatabase();
    const dir = mkdtempSync(path.join(workDir, 'loop-'));
    const loop = new AuditLoop({ pool: db.pool, audit: auditConfig(dir, 1), log: () => {} }, 600_000);
    const holder = await db.pool.connect();
    t.after(async () => {
      await holder.query('ROLLBACK').catch(() => {});
      holder.release();
      await loop.stop();
      await db.close();
    });
    await someHistory(db);
    const { size } = await sealAll(db);
    // Another sealer holds the sealer's lock, so the loop's first round waits for it.
    await holder.query('BEGIN');
    await holder.query('SELECT pg_advisory_xact_lock($1, $2)', [sealerLock.classId, sealerLock.objId]);

    await loop.start();
    await waitFor(
      "the round to wait for the sealer's lock",
      async () =>
        (await count(
          db,
          `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = $1 AND objid = $2
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
          [sealerLock.classId, sealerLock.objId],
        )) === 1,
    );
    let stopped = false;
    const stopping = loop.stop().then(() => {
      stopped = true;
    });
    await db.admin.query('SELECT 1');
    assert.equal(stopped, false, 'stop() resolved while its round was still waiting');
    await holder.query('COMMIT');
    await stopping;

    assert.deepEqual(await checkpointSizes(db), [size], 'the round that was under way finished: it signed the log');
  });
});
