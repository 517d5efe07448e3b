// `npm run bench`: how much our ledger costs on top of emmett, measured in one run on one database.
//
//   1. Commands/s through our whole command path (Ledger.recordPayment: look-ups, load the account
//      stream (or its cached state), decide, append with the expected version and project, in one statement)
//      on existing accounts, versus emmett's raw `appendToStream` of the same event (PaymentRecorded)
//      to fresh streams with no read and no projections. Sequential, then with concurrent workers;
//      the two sides alternate in one-second slices so background load hits both alike.
//      Target: ours ≥ 0.6 × raw.
//   2. Rebuild of the projections (`rebuildProjections`) over a realistic seeded ledger, versus a plain
//      read of the same events (`readAllEvents`, draining every batch, nothing else), passes
//      alternating. Target ≥ 0.5. `verifyProjections` runs before the rebuild (inline tables vs a
//      replay) and after it; a mismatch fails the bench.
//   3. Spoke reports ingested by the hub: the hub (buildHub, wired as server.ts wires it) on a free
//      loopback port in this process, one registered and heartbeating host per worker, capsuls created
//      through the Ledger and placed by the reactor; each spoke posts batches of `state` reports with
//      the real HubClient, every one accepted as one VmStateObserved. Versus emmett's raw
//      `appendToStream` of one VmStateObserved to fresh streams, the same number of workers, alternating
//      slices. Target: reports/s ≥ 0.5 × raw appends/s. A report not accepted, or an accepted count that
//      differs from the VmStateObserved events in the store, fails the bench.
//   4. Customer pages under load: one account with 50 capsuls and 500 payments seeded into the ledger,
//      a session for its email, the hub (buildHub, logger off) on a free loopback port in this process,
//      and autocannon in a worker thread: GET /console and GET /console/account-balance with the
//      session cookie and `accept: text/html`, versus GET /health, alternating slices; requests/s and
//      latencies (p50, p99). Target: each page ≥ 0.3 × /health's requests/s. Any response but a 200
//      (a redirect to the login page measures nothing) fails the bench.
//   5. The signed log (docs/audit.md): sealing the seeded backlog into the log (events hashed and
//      appended as leaves, in commit order), and `audit verify` (every event hashed again, compared
//      with its leaf, the tree checked against the signed checkpoint), each versus the plain read.
//      Targets: sealing ≥ 2 × emmett's raw appends with 4 workers (events/s: the sealer must outrun
//      the fastest writer, twice over), verify ≥ 0.25 × read. The rebuild above already checks the log in its pass
//      (every event sealed by then), and the hub's sealer (seal every 2 s, sign every 5 s) runs through
//      the command and report measurements, as in production; the log must verify at the end.
//   6. Folding long streams (bench/folds.ts): the decider's fold, in memory, of an account stream of 20k
//      events (mostly payments, some corrected) and of a capsul stream of 20k (mostly state reports)
//      versus 2k-event streams, passes alternating: the time per fold may grow at most 12× (linear). And
//      the same long streams in the database loaded from their snapshot plus 250 recent events, versus
//      from their first event. Target: ≥ 2× faster. A load from the snapshot that differs from the fold
//      from the start fails the bench.
//   7. As-of from the row history (docs/audit.md, "Two clocks"): `select count(*) from payments` (and
//      running capsuls from vms) on the history's views at the middle of the seeded ledger's time, as
//      `capsul sql --as-of` runs it, versus the same query on the live tables. Target: ≥ 0.2 × (≤ 5× the
//      time), and flat in the ledger's size (compare runs at BENCH_EVENTS=100000 and 1000000).
//   8. Appends during a rebuild: `record-payment` one at a time, timed one by one, alternately alone and
//      while rebuilds run back to back. Target: p99 during ≤ 2 × p99 alone.
//      And a rebuild's peak RSS, in a process of its own, against a plain read's: target ≤ 3×, and flat
//      in the ledger's size (the fold runs in passes of bounded memory; compare 100000 and 1000000).
//   9. Where the time goes: CPU per operation in node and in the PostgreSQL backends (from /proc when
//      the server runs on this machine), and every statement of one command, one raw append, one
//      spoke report through the hub and one rebuild, counted and timed from the client.
//   7. The history page (bench/history.ts): page 1 of an account with 300 capsuls in the seeded ledger
//      versus the same-shaped account alone in a small database on the same server, alternating
//      slices. Target ≥ 0.5 (at most twice the time, however large the log). For contrast: a small
//      account's page in the same ledger, and the old read (the account's streams filtered out of the
//      whole log).
//
// A ratio below target is a finding, not an error: the exit code is 0 unless something fails.
//
// Environment:
//   DATABASE_URL    a PostgreSQL server: the bench creates a fresh database `capsul_bench_<random>` on
//                   it, migrates it and drops it at the end. Unset: a throwaway embedded PostgreSQL in a
//                   temp dir (fsync off), stopped and deleted at the end.
//   BENCH_EVENTS    how many events to seed for the rebuild measurement (default 100000, at least 1000)
//   BENCH_SECONDS   seconds each side of a comparison is measured (default 5, at least 1), after a
//                   warm-up of 30% of that (at least 1 s); rebuild and read repeat whole passes until
//                   each has run this long.
//   BENCH_WORKERS   concurrent workers for the concurrent command line, and spokes for the report line (default 4)
//   BENCH_CONNECTIONS  concurrent connections of the page load (default 10)
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { getPostgreSQLEventStore, type PostgresEventStore } from '@event-driven-io/emmett-postgresql';
import type pg from 'pg';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadOrCreateKey } from '../src/audit/key.ts';
import { formatMemory } from '../src/core/format.ts';
import { sealCommitted, signCheckpoint } from '../src/audit/log.ts';
import { verifyLog } from '../src/audit/verify.ts';
import { createPool, roleNames, roleUrl, setRolePasswords } from '../src/db/database.ts';
import { AuditLoop } from '../src/hub/audit-loop.ts';
import { migrate } from '../src/db/migrate.ts';
import { accountDecider } from '../src/domain/account/decider.ts';
import type { Actor, LedgerEvent } from '../src/domain/events.ts';
import { vmDecider } from '../src/domain/vm/decider.ts';
import type { Decider } from '../src/ledger/load.ts';
import { formatCents } from '../src/domain/shared/money.ts';
import { currentEventVersion } from '../src/domain/upcast.ts';
import { Ledger } from '../src/ledger/ledger.ts';
import { countEvents, readAllEvents } from '../src/db/event-store.ts';
import { historyPageSize } from '../src/hub/web/account.ts';
import { rebuildProjections, verifyProjections } from '../src/projections/rebuild.ts';
import { shadowProjectionsAt } from '../src/projections/as-of.ts';
import { HubClient } from '../src/spoke/hub-client.ts';
import { benchDatabase, type BenchDatabase } from './database.ts';
import {
  capsulsPerHost,
  IngestionCount,
  IngestionError,
  postReportsOp,
  prepareSpokes,
  rawObservedOp,
  reportsPerRequest,
  startHub,
  verifyIngestion,
} from './hub.ts';
import { longEvents, measureFold, measureSnapshotLoad, seedLongStreams, shortEvents, accountHistory, capsulHistory } from './folds.ts';
import { alternatePasses, comparePair, Tally, type Op } from './measure.ts';
import { fmtInt, fmtRate, Progress, table } from './progress.ts';
import { historyShape, measureHistoryPage, type HistoryResult } from './history.ts';
import { Rng, seedLedger, type SeededAccount } from './seed.ts';
import { StatementTrace } from './trace.ts';
import {
  loadEndpoints,
  seedWebAccount,
  sessionFor,
  startWebHub,
  webCapsuls,
  webPayments,
  WebBenchError,
  type EndpointLoad,
} from './web.ts';

/**
 * asOf: an as-of query's rate at least a fifth of the same query's on the live tables (≤ 5× its time).
 * appendDuringRebuild: p99 of appends while rebuilds run at most twice their p99 alone.
 * rebuildRss: a rebuild's peak RSS at most three times a plain read's, whatever the ledger's size (the
 * rebuild folds in passes of bounded memory; compare runs at BENCH_EVENTS=100000 and 1000000).
 */
const targets = {
  commands: 0.6,
  rebuild: 0.5,
  reports: 0.5,
  pages: 0.3,
  seal: 2,
  verifyLog: 0.25,
  foldGrowth: 12,
  snapshotLoad: 2,
  asOf: 0.2,
  appendDuringRebuild: 2,
  rebuildRss: 3,
  historyPage: 0.5,
};
const operator: Actor = { kind: 'operator', id: 'bench' };
const commandAccounts = 1000;
const traceOperations = 300;

type Config = { events: number; seconds: number; warmupSeconds: number; workers: number; connections: number };
/** `ratio` 'time': ours' time per operation over the baseline's, at most `target` (else throughput, at least). */
type ResultRow = {
  metric: string;
  ours: Tally;
  baseline: Tally;
  unit: string;
  baselineUnit?: string;
  target: number;
  ratio?: 'time';
  /** a comparison of other figures than rates (latencies): printed as given, with its ratio */
  shown?: { ours: string; baseline: string; ratio: number };
};
type Traced = { label: string; operations: number; msPerOp: number; statements: ReturnType<StatementTrace['perOperation']>; note?: string };

function readConfig(env: NodeJS.ProcessEnv): Config {
  const number = (name: string, fallback: number, min: number) => {
    const text = env[name]?.trim();
    if (!text) return fallback;
    const value = Number(text);
    if (!Number.isFinite(value) || value < min) throw new ConfigError(`${name} must be a number ≥ ${min}, not "${text}"`);
    return value;
  };
  const seconds = number('BENCH_SECONDS', 5, 1);
  return {
    events: Math.round(number('BENCH_EVENTS', 100_000, 1000)),
    seconds,
    warmupSeconds: Math.max(1, seconds * 0.3),
    workers: Math.round(number('BENCH_WORKERS', 4, 2)),
    connections: Math.round(number('BENCH_CONNECTIONS', 10, 1)),
  };
}

const progress = new Progress();
const note = (line: string) => progress.note(line);

async function main(): Promise<number> {
  const started = performance.now();
  let db: BenchDatabase | undefined;
  let pool: pg.Pool | undefined;
  let tracePool: pg.Pool | undefined;
  let appPool: pg.Pool | undefined;
  const sealers: AuditLoop[] = [];
  const cleanups: (() => void)[] = [];
  const stores: PostgresEventStore[] = [];
  const hubs: { close(): Promise<void> }[] = [];
  let interrupted = false;
  const cleanup = once(async () => {
    progress.clear();
    for (const hub of hubs) await hub.close().catch(() => {});
    for (const sealer of sealers) await sealer.stop().catch(() => {});
    await appPool?.end().catch(() => {});
    for (const clean of cleanups) clean();
    for (const store of stores) await store.close().catch(() => {});
    await pool?.end().catch(() => {});
    await tracePool?.end().catch(() => {});
    await db?.drop().catch((error) => note(`could not clean up the bench database: ${(error as Error).message}`));
  });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      interrupted = true;
      note(`\n${signal}: cleaning up`);
      void cleanup().finally(() => process.exit(130));
    });
  }

  try {
    const config = readConfig(process.env);
    note(
      `capsul bench: ${fmtInt(config.events)} events to seed, ${config.seconds}s per measured side ` +
        `(+${config.warmupSeconds.toFixed(1)}s warm-up), ${config.workers} concurrent workers, ${config.connections} connections for the pages`,
    );
    db = await benchDatabase(process.env.DATABASE_URL || undefined, note);
    pool = createPool(db.url, 10);
    const migrated = await migrate(pool);
    if (db.rolePasswords) await setRolePasswords(pool, db.rolePasswords);
    note(`schema migrated to version ${migrated.to}`);
    // Our side works as the hub does, as capsul_app; emmett's raw appends need the owner's rights.
    appPool = createPool(roleUrl(db.url, roleNames.app, db.rolePasswords?.[roleNames.app]), 10);
    const auditDir = mkdtempSync(path.join(os.tmpdir(), 'capsul-bench-audit-'));
    cleanups.push(() => rmSync(auditDir, { recursive: true, force: true }));
    const audit = {
      keyFile: path.join(auditDir, 'log.key'),
      latestCheckpointFile: path.join(auditDir, 'latest-checkpoint'),
      logName: 'bench.capsul/log',
      verifierKey: undefined,
    };
    const logKey = await loadOrCreateKey(audit.keyFile, audit.logName);
    // Creating a store switches pg's int8 parsing to BigInt process-wide: our own queries cast to int/text.
    const rawStore = getPostgreSQLEventStore(db.url, { connectionOptions: { pool }, schema: { autoMigration: 'None' } });
    stores.push(rawStore);
    const ledger = new Ledger({ pool: appPool });

    // ── Folding long streams in memory ─────────────────────────────────────────────────────────────
    // First, while the heap holds little else: the line measures the fold, not the collection of a
    // heap the hub, the seeding and the caches filled.
    const foldLines = await foldRows(pool, config);

    // ── Seed ───────────────────────────────────────────────────────────────────────────────────────
    const seedStarted = performance.now();
    const seeded = await seedLedger({
      pool,
      targetEvents: config.events,
      workers: config.workers,
      onProgress: (done) => {
        const s = (performance.now() - seedStarted) / 1000;
        const percent = Math.min(100, Math.floor((done / config.events) * 100));
        progress.update(`seeding: ${fmtInt(done)} / ${fmtInt(config.events)} events (${percent}%), ${fmtInt(done / s)} events/s`);
      },
    });
    const seedS = (performance.now() - seedStarted) / 1000;
    const totalEvents = await countEvents(pool);
    note(
      `seeded ${fmtInt(seeded.events)} events in ${fmtInt(seeded.appends)} appends (${fmtInt(seeded.accounts.length)} accounts) ` +
        `in ${seedS.toFixed(1)}s, ${fmtInt(seeded.events / seedS)} events/s, projections written with each append`,
    );
    note(
      `  mix: ${[...seeded.byType]
        .sort((a, b) => b[1] - a[1])
        .map(([t, n]) => `${t} ${fmtInt(n)}`)
        .join(', ')}`,
    );
    if (totalEvents !== seeded.events) throw new Error(`the store holds ${totalEvents} events, the seed appended ${seeded.events}`);
    // A live database has been analysed by autovacuum. Right after a bulk load it has no statistics, and
    // the keyset read then plans a bitmap scan + sort of the whole table for every batch (2–3× slower,
    // and depending on when autovacuum happens to run). Measure the steady state.
    const vacuumStarted = performance.now();
    await pool.query('VACUUM ANALYZE');
    note(`VACUUM ANALYZE after the bulk load (as autovacuum would do): ${((performance.now() - vacuumStarted) / 1000).toFixed(1)}s`);

    // ── The log: sealing the backlog ───────────────────────────────────────────────────────────────
    note('warming up: one plain read');
    await plainRead(pool);
    const sealing = new Tally(`sealing a backlog of ${fmtInt(totalEvents)} events`);
    await sealing.measure(appPool, async () => {
      const sealed = await sealCommitted(appPool!, {
        onProgress: (n) => progress.update(`sealing: ${fmtInt(n)} / ${fmtInt(totalEvents)} events`),
      });
      if (sealed.size !== totalEvents) throw new LogBenchError(`sealing left ${totalEvents - sealed.size} events unsealed`);
      return sealed.sealed;
    });
    const firstCheckpoint = await signCheckpoint(appPool, logKey, audit.latestCheckpointFile);
    note(
      `sealed ${fmtInt(sealing.operations)} events in ${sealing.seconds.toFixed(1)}s: ${fmtInt(sealing.perSecond)} events/s; checkpoint of size ${fmtInt(firstCheckpoint!.treeSize)} signed`,
    );

    // ── Rebuild vs plain read ──────────────────────────────────────────────────────────────────────
    const verifiedBefore = await verify(pool, 'projections written with the appends');
    if (!verifiedBefore.matches) throw new VerificationError('after seeding', verifiedBefore.differences);
    note('warming up: one plain read, one rebuild');
    await plainRead(pool);
    await rebuildProjections(pool);

    let rebuiltRows = '';
    const [rebuild, read] = await alternatePasses({
      pool,
      seconds: config.seconds,
      a: {
        label: 'rebuildProjections',
        // No onProgress inside a measured pass: it would add a count(*) the plain read does not do.
        run: async () => {
          const { rows, comparedRowByRow } = await rebuildProjections(pool!);
          // The tables are right: the rebuild must find it by digest, not by writing every row aside.
          if (comparedRowByRow.length > 0) throw new Error(`the rebuild compared ${comparedRowByRow.join(', ')} row by row`);
          rebuiltRows = Object.entries(rows)
            .map(([t, n]) => `${t} ${fmtInt(n)}`)
            .join(', ');
          return totalEvents;
        },
      },
      b: { label: 'readAllEvents', run: () => plainRead(pool!) },
      onPass: (tally, items, s) => progress.update(`${tally.label} pass ${tally.rounds}: ${fmtInt(items / s)} events/s`),
    });
    note(
      `rebuildProjections: ${fmtInt(rebuild.perSecond)} events/s (${rebuild.rounds} passes, each checking the log); rows: ${rebuiltRows}`,
    );
    note(`readAllEvents:      ${fmtInt(read.perSecond)} events/s (${read.rounds} passes)`);
    // Peak memory of a rebuild and of a plain read, each in a process of its own as the CLI runs them.
    const [rebuildRss, readRss] = [await peakRssOf(db.url, '--once'), await peakRssOf(db.url, '--read')];
    note(`peak RSS: rebuild ${rssText(rebuildRss)}, plain read ${rssText(readRss)} (processes of their own)`);

    // ── The log: audit verify vs plain read ────────────────────────────────────────────────────────
    const [verifying, readForVerify] = await alternatePasses({
      pool,
      seconds: config.seconds,
      a: {
        label: 'audit verify',
        run: async () => {
          const report = await verifyLog(appPool!, { verifierKeys: [logKey.verifierKey] });
          if (!report.ok || report.checkpoints < 1) throw new LogBenchError(`the log does not verify: ${report.findings[0]?.message}`);
          return report.events;
        },
      },
      b: { label: 'readAllEvents', run: () => plainRead(pool!) },
      onPass: (tally, items, s) => progress.update(`${tally.label} pass ${tally.rounds}: ${fmtInt(items / s)} events/s`),
    });
    note(
      `audit verify: ${fmtInt(verifying.perSecond)} events/s (${verifying.rounds} passes); readAllEvents ${fmtInt(readForVerify.perSecond)} events/s`,
    );

    // ── As-of from the row history vs the same query on the live tables ───────────────────────────
    const asOfLines = await measureAsOf(pool, config);
    // ── Appends while a rebuild runs vs appends alone ──────────────────────────────────────────────
    const duringRebuild = await measureAppendsDuringRebuild(db.url, pool, new Ledger({ pool: appPool }), seeded.accounts, config);

    // Every statement of one more rebuild, counted and timed (before the raw appends below, which
    // leave streams a replay cannot project). A separate pool whose connections report statements.
    const trace = new StatementTrace();
    tracePool = trace.pool(db.url, 4);
    const traceRaw = getPostgreSQLEventStore(db.url, { connectionOptions: { pool: tracePool }, schema: { autoMigration: 'None' } });
    stores.push(traceRaw);
    const traceLedger = new Ledger({ pool: tracePool });
    const traced = [
      await traceOps(trace, `rebuildProjections (${fmtInt(totalEvents)} events)`, () => rebuildProjections(tracePool!), 1, 0),
    ];

    const verifiedAfter = await verify(pool, 'rebuilt projections');
    if (!verifiedAfter.matches) throw new VerificationError('after the rebuild', verifiedAfter.differences);

    // ── Commands vs raw appends ────────────────────────────────────────────────────────────────────
    // Raw appends leave unprojected streams behind (no AccountOpened, no rows), so they come after the
    // rebuild and its verification; the database is thrown away at the end.
    const accounts = seeded.accounts.slice(0, commandAccounts);
    const rows: ResultRow[] = [
      { metric: 'audit verify, events/s', ours: verifying, baseline: readForVerify, unit: 'events/s', target: targets.verifyLog },
      ...asOfLines,
      duringRebuild,
      {
        metric: `rebuild peak RSS (${fmtInt(totalEvents)} events)`,
        ours: rebuild,
        baseline: read,
        unit: 'B',
        target: targets.rebuildRss,
        ratio: 'time',
        shown: { ours: rssText(rebuildRss), baseline: `${rssText(readRss)} (read)`, ratio: rebuildRss / readRss },
      },
    ];
    // The hub's sealer runs from here on, as in production (signing more often, so checkpoints land in the run).
    const sealer = new AuditLoop({
      pool: appPool,
      audit: { ...audit, checkpointIntervalMs: 5000 },
      log: (line) => note(`audit loop: ${line}`),
    });
    sealers.push(sealer);
    await sealer.start();
    for (const workers of [1, config.workers]) {
      const label = workers === 1 ? 'sequential' : `${workers} workers`;
      const [ours, raw] = await comparePair({
        pool,
        workers,
        seconds: config.seconds,
        warmupSeconds: config.warmupSeconds,
        a: { label: `recordPayment, ${label}`, op: recordPaymentOp(ledger, accounts, workers) },
        b: { label: `raw appendToStream, ${label}`, op: rawAppendOp(rawStore) },
        onProgress: (text) => progress.update(text),
      });
      for (const t of [ours, raw]) note(`${t.label}: ${fmtRate(t.perSecond)}/s (${fmtInt(t.operations)} in ${t.seconds.toFixed(1)}s)`);
      rows.push({ metric: `commands/s, ${label}`, ours, baseline: raw, unit: 'cmd/s', target: targets.commands });
      if (workers > 1) {
        rows.unshift({
          metric: `sealing (${fmtInt(totalEvents)} backlog) vs appends, ${label}`,
          ours: sealing,
          baseline: raw,
          unit: 'events/s',
          baselineUnit: 'appends/s',
          target: targets.seal,
        });
      }
    }
    rows.push({
      metric: `rebuild, events/s (${fmtInt(totalEvents)} events)`,
      ours: rebuild,
      baseline: read,
      unit: 'events/s',
      target: targets.rebuild,
    });

    // ── Spoke reports through the hub vs raw appends ───────────────────────────────────────────────
    const hubSetupStarted = performance.now();
    const hub = await startHub(appPool);
    hubs.push(hub);
    const spokes = await prepareSpokes({
      pool: appPool,
      hubUrl: hub.url,
      count: config.workers,
      onProgress: (text) => progress.update(text),
    });
    note(
      `hub listening on ${hub.url}: ${spokes.length} hosts registered and heartbeating, ` +
        `${fmtInt(spokes.reduce((n, s) => n + s.vmIds.length, 0))} capsuls created and placed ` +
        `(${spokes.map((s) => s.vmIds.length).join(' / ')} per host) in ${((performance.now() - hubSetupStarted) / 1000).toFixed(1)}s`,
    );
    const ingestion = new IngestionCount();
    const spokesLabel = `${spokes.length} spokes`;
    const [reports, rawObserved] = await comparePair({
      pool,
      workers: spokes.length,
      seconds: config.seconds,
      warmupSeconds: config.warmupSeconds,
      a: { label: `spoke reports via the hub, ${spokesLabel}`, op: postReportsOp(spokes, ingestion), itemsPerOp: reportsPerRequest },
      b: { label: `raw appendToStream VmStateObserved, ${spokes.length} workers`, op: rawObservedOp(rawStore) },
      onProgress: (text) => progress.update(text),
    });
    await hub.close();
    const ingested = await verifyIngestion(pool, spokes, ingestion);
    for (const t of [reports, rawObserved])
      note(`${t.label}: ${fmtRate(t.perSecond)}/s (${fmtInt(t.operations)} in ${t.seconds.toFixed(1)}s)`);
    note(
      `  ${fmtInt(ingestion.accepted)} reports in ${fmtInt(ingestion.requests)} requests (warm-up included), all accepted; ` +
        `${fmtInt(ingested.events)} VmStateObserved events in the store; vms projection matches the last reports`,
    );
    rows.push({
      metric: `reports/s, ${spokesLabel} (${reportsPerRequest}/request)`,
      ours: reports,
      baseline: rawObserved,
      unit: 'reports/s',
      baselineUnit: 'appends/s',
      target: targets.reports,
    });

    // ── Customer pages vs /health ──────────────────────────────────────────────────────────────────
    const webSetupStarted = performance.now();
    const webAccount = await seedWebAccount(pool);
    const webHub = await startWebHub(appPool);
    hubs.push(webHub);
    const cookie = await sessionFor(webHub, pool, webAccount.email);
    note(
      `web hub listening on ${webHub.url}: ${webAccount.email} seeded with ${webCapsuls} capsuls and ${webPayments} payments ` +
        `(${fmtInt(webAccount.events)} events, balance $${formatCents(webAccount.balanceCents)}), logged in, ` +
        `in ${((performance.now() - webSetupStarted) / 1000).toFixed(1)}s`,
    );
    const web = await loadEndpoints({
      pool,
      hub: webHub,
      account: webAccount,
      cookie,
      seconds: config.seconds,
      warmupSeconds: config.warmupSeconds,
      connections: config.connections,
      onProgress: (text) => progress.update(text),
    });
    await webHub.close();
    for (const load of [web.health, ...web.pages]) {
      note(
        `${load.label}: ${fmtRate(load.tally.perSecond)}/s, p99 ${load.p99Ms.toFixed(1)} ms (${fmtInt(load.tally.operations)} in ${load.tally.seconds.toFixed(1)}s)`,
      );
    }
    for (const page of web.pages) {
      rows.push({
        metric: `${page.label}, requests/s`,
        ours: page.tally,
        baseline: web.health.tally,
        unit: 'req/s',
        target: targets.pages,
      });
    }

    // ── History pages: a big account's page in a big ledger vs in a small one ──────────────────────
    const history = await measureHistoryPage({
      pool,
      serverUrl: process.env.DATABASE_URL || undefined,
      smallAccount: seeded.accounts[0]!,
      seconds: config.seconds,
      warmupSeconds: config.warmupSeconds,
      note,
      onProgress: (text) => progress.update(text),
    });
    for (const t of [history.big, history.small, history.smallAccount, history.oldRead])
      note(`${t.label}: ${fmtRate(t.perSecond)}/s, ${(1000 / t.perSecond).toFixed(2)} ms per page`);
    rows.push({
      metric: `history page (${historyShape.capsuls}-capsul account), ${fmtInt(history.bigLedgerEvents)} vs ${fmtInt(history.smallLedgerEvents)} events`,
      ours: history.big,
      baseline: history.small,
      unit: 'pages/s',
      target: targets.historyPage,
    });

    // ── Where a command's time goes ────────────────────────────────────────────────────────────────
    traced.unshift(
      await traceOps(trace, 'recordPayment (sequential)', recordPaymentOp(traceLedger, accounts.slice(-200), 1), traceOperations),
      await traceOps(trace, 'raw appendToStream (sequential)', rawAppendOp(traceRaw), traceOperations),
    );
    // One spoke's reports through a second hub on the traced pool (its own stream cache and reaction
    // loop, warmed by the first requests); statements per report, the reactions' included.
    const traceHub = await startHub(tracePool);
    hubs.push(traceHub);
    const traceSpoke = spokes[0]!;
    traceSpoke.client = new HubClient({ hubUrl: traceHub.url, hostId: traceSpoke.hostId, token: traceSpoke.token });
    const traceRequests = Math.ceil(traceOperations / reportsPerRequest);
    const tracedReports = await traceOps(
      trace,
      `spoke reports via the hub (one spoke, ${reportsPerRequest} per request, figures per report)`,
      postReportsOp([traceSpoke], ingestion),
      traceRequests,
      Math.ceil(capsulsPerHost / reportsPerRequest),
      reportsPerRequest,
    );
    tracedReports.note =
      'per request: the token check, and a round of the reaction loop (poked after every report request) on another connection,\n' +
      'alongside the next request: statement time can exceed the wall time.';
    traced.splice(2, 0, tracedReports);
    await traceHub.close();
    await verifyIngestion(pool, spokes, ingestion);

    // Everything written during the run, sealed and signed, and the log verifies.
    await sealer.stop();
    // ── Loading long streams from their snapshots ──────────────────────────────────────────────────
    rows.push(...foldLines, ...(await snapshotLoadRows(pool, appPool, config)));

    const finalSeal = await sealCommitted(appPool);
    const finalCheckpoint = await signCheckpoint(appPool, logKey, audit.latestCheckpointFile);
    const finalReport = await verifyLog(appPool, {
      verifierKeys: [logKey.verifierKey],
      outsideCheckpoint: { note: finalCheckpoint!.note, source: 'the last checkpoint' },
    });
    if (!finalReport.ok) throw new LogBenchError(`the log does not verify after the run: ${finalReport.findings[0]?.message}`);
    const logLine =
      `signed log: ${fmtInt(finalReport.treeSize)} leaves (${fmtInt(finalSeal.sealed)} left for the final seal after the hub's sealer stopped), ` +
      `${finalReport.checkpoints} checkpoints, verified`;
    note(logLine);

    printSummary(db, config, rows, web, [verifiedBefore, verifiedAfter], traced, (performance.now() - started) / 1000, logLine, history);
    return 0;
  } catch (error) {
    progress.clear();
    if (interrupted) return 130;
    const plain =
      error instanceof VerificationError ||
      error instanceof LogBenchError ||
      error instanceof ConfigError ||
      error instanceof IngestionError ||
      error instanceof WebBenchError;
    const message = plain ? (error as Error).message : ((error as Error)?.stack ?? String(error));
    process.stderr.write(`\nBENCH FAILED: ${message}\n`);
    return 1;
  } finally {
    await cleanup();
  }
}

// ── Operations ───────────────────────────────────────────────────────────────────────────────────

/** Ledger.recordPayment on existing accounts; each worker keeps to its own accounts (no conflicts). */
function recordPaymentOp(ledger: Ledger, accounts: SeededAccount[], workers: number): Op {
  const usable = Math.floor(accounts.length / workers) * workers;
  if (usable === 0) throw new Error('not enough seeded accounts for the command bench: raise BENCH_EVENTS');
  let cents = 0;
  return async (worker, iteration) => {
    const account = accounts[(worker + iteration * workers) % usable]!;
    await ledger.recordPayment({ email: account.email, amountCents: 500 + (cents++ % 9500), provider: 'manual', cause: { by: operator } });
  };
}

/** emmett's appendToStream of one PaymentRecorded to a fresh stream: no read, no projections. */
function rawAppendOp(rawStore: PostgresEventStore): Op {
  let paymentId = 1_000_000_000;
  let cents = 0;
  const metadata = { by: operator, eventVersion: currentEventVersion };
  return async () => {
    const accountId = randomUUID();
    const now = new Date().toISOString();
    await rawStore.appendToStream(
      `account-${accountId}`,
      [
        {
          type: 'PaymentRecorded',
          data: {
            accountId,
            paymentId: paymentId++,
            amountCents: 500 + (cents++ % 9500),
            provider: 'manual',
            reference: null,
            at: now,
            recordedAt: now,
          },
          metadata,
        },
      ],
      { expectedStreamVersion: 0n },
    );
  };
}

/** The queries the `as-of query` lines time, from the issue's `sql --as-of … -c "select count(*) from payments"`. */
const asOfQueries = {
  payments: 'SELECT count(*) FROM payments',
  vms: `SELECT count(*) FROM vms WHERE state = 'running'`,
};

/**
 * `capsul sql --as-of <mid-history>`: each query on a session whose projections are the row history's
 * views at the middle of the ledger's effective time (shadowProjectionsAt, as the CLI does), versus the
 * same query on the live tables, alternating slices on one connection each.
 */
async function measureAsOf(pool: pg.Pool, config: Config): Promise<ResultRow[]> {
  const { rows } = await pool.query(`SELECT created FROM payments ORDER BY created OFFSET (SELECT count(*) / 2 FROM payments) LIMIT 1`);
  const middle: Date = rows[0].created;
  const past = await pool.connect();
  const live = await pool.connect();
  try {
    await shadowProjectionsAt(past, { asOf: middle });
    const lines: ResultRow[] = [];
    for (const [table, sql] of Object.entries(asOfQueries)) {
      const [asOf, now] = await comparePair({
        pool,
        workers: 1,
        seconds: config.seconds,
        warmupSeconds: config.warmupSeconds,
        a: { label: `as-of query (${table}), ${middle.toISOString()}`, op: () => past.query(sql) },
        b: { label: `live query (${table})`, op: () => live.query(sql) },
        onProgress: (text) => progress.update(text),
      });
      note(`${asOf.label}: ${fmtRate(asOf.perSecond)}/s; ${now.label}: ${fmtRate(now.perSecond)}/s — ${sql}`);
      lines.push({ metric: `as-of query, ${table} (queries/s)`, ours: asOf, baseline: now, unit: 'q/s', target: targets.asOf });
    }
    return lines;
  } finally {
    past.release(true);
    live.release();
  }
}

/**
 * `record-payment` on seeded accounts, one at a time, timed one by one: alternately alone and while
 * rebuilds run back to back in a process of their own (bench/rebuilder.ts, as `capsul
 * rebuild-projections` runs beside the hub; each round `seconds` long, two rounds each); the p99 of
 * each. A rebuild that stopped the business would hold the appends for its whole fold.
 */
async function measureAppendsDuringRebuild(
  url: string,
  pool: pg.Pool,
  ledger: Ledger,
  accounts: SeededAccount[],
  config: Config,
): Promise<ResultRow> {
  const alone = new Tally('appends alone');
  const during = new Tally('appends during rebuilds');
  const latencies = { alone: [] as number[], during: [] as number[] };
  const append = recordPaymentOp(ledger, accounts, 1);
  let rebuilds = 0;
  for (let round = 1; round <= 2; round++) {
    for (const side of ['alone', 'during'] as const) {
      const rebuilder = side === 'during' ? startRebuilder(url, () => rebuilds++) : undefined;
      // The first rebuild under way before the clock starts.
      await rebuilder?.started;
      const tally = side === 'alone' ? alone : during;
      await tally.measure(pool, async () => {
        const until = performance.now() + config.seconds * 1000;
        let done = 0;
        while (performance.now() < until) {
          const started = performance.now();
          await append(0, done++);
          latencies[side].push(performance.now() - started);
          progress.update(`record-payment ${side === 'alone' ? 'alone' : 'during rebuilds'}, round ${round}: ${done} appends`);
        }
        return done;
      });
      await rebuilder?.stop();
    }
  }
  const p99 = (values: number[]) => values.sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor(values.length * 0.99))]!;
  const [withoutMs, withMs] = [p99(latencies.alone), p99(latencies.during)];
  note(
    `record-payment p99: ${withoutMs.toFixed(1)} ms alone (${latencies.alone.length} appends), ${withMs.toFixed(1)} ms during ${rebuilds} rebuilds (${latencies.during.length} appends)`,
  );
  return {
    metric: 'append during rebuild, p99 latency',
    ours: during,
    baseline: alone,
    unit: 'ms',
    target: targets.appendDuringRebuild,
    ratio: 'time',
    shown: { ours: `${withMs.toFixed(1)} ms`, baseline: `${withoutMs.toFixed(1)} ms`, ratio: withMs / withoutMs },
  };
}

const rssText = (bytes: number) => formatMemory(Math.round(bytes / 2 ** 20));

/** bench/rebuilder.ts in a process of its own on `url`, with `args`; each line it prints goes to `onLine`. */
function rebuilderProcess(url: string, args: string[], onLine: (line: string) => void) {
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./rebuilder.ts', import.meta.url)), ...args], {
    env: { ...process.env, BENCH_REBUILD_URL: url },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  child.stdout.on('data', (chunk: Buffer) => {
    for (const line of chunk.toString().split('\n')) if (line) onLine(line);
  });
  return child;
}

/** bench/rebuilder.ts run once (`--once`: a rebuild; `--read`: a plain read): its peak RSS in bytes. */
async function peakRssOf(url: string, mode: '--once' | '--read'): Promise<number> {
  let rss: string | undefined;
  const child = rebuilderProcess(url, [mode], (line) => (rss = /^rss (\d+)$/.exec(line)?.[1] ?? rss));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  if (code !== 0 || !rss) throw new Error(`the rebuilder (${mode}) exited with ${code}`);
  return Number(rss);
}

/** bench/rebuilder.ts rebuilding back to back: `started` once it has connected, `stop()` after the rebuild under way. */
function startRebuilder(url: string, onRebuilt: () => void): { started: Promise<void>; stop(): Promise<void> } {
  let connected: () => void = () => {};
  const started = new Promise<void>((resolve) => (connected = resolve));
  const child = rebuilderProcess(url, [], (line) => (line === 'started' ? connected() : line === 'rebuilt' && onRebuilt()));
  const exited = new Promise<void>((resolve, reject) =>
    child.on('exit', (code, signal) =>
      code === 0 || signal === 'SIGTERM' ? resolve() : reject(new Error(`the rebuilder exited with ${code}`)),
    ),
  );
  return {
    started,
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

async function plainRead(pool: pg.Pool): Promise<number> {
  const client = await pool.connect();
  try {
    let events = 0;
    for await (const batch of readAllEvents(client)) events += batch.length;
    return events;
  } finally {
    client.release();
  }
}

async function verify(pool: pg.Pool, what: string) {
  const result = await verifyProjections(pool, {
    onProgress: (done, total) => progress.update(`verifying the ${what}: ${fmtInt(done)} / ${fmtInt(total)} events`),
  });
  note(`verifyProjections, ${what}: ${result.matches ? 'match' : `MISMATCH ${JSON.stringify(result.differences)}`}`);
  return { what, ...result };
}

/**
 * Runs `op` sequentially with every statement counted and timed (after a short warm-up). With
 * `itemsPerOp` (the reports of one request) the figures are per item.
 */
async function traceOps(trace: StatementTrace, label: string, op: Op, operations: number, warmup = 30, itemsPerOp = 1): Promise<Traced> {
  for (let i = 0; i < warmup; i++) await op(0, i);
  trace.reset();
  trace.recording = true;
  const started = performance.now();
  for (let i = 0; i < operations; i++) {
    await op(0, warmup + i);
    progress.update(`tracing ${label}: ${i + 1} / ${operations}`);
  }
  const items = operations * itemsPerOp;
  const msPerOp = (performance.now() - started) / items;
  trace.recording = false;
  return { label, operations: items, msPerOp, statements: trace.perOperation(items) };
}

/** The fold lines (bench/folds.ts), in memory: 20k vs 2k events, an account stream and a capsul stream. */
async function foldRows(pool: pg.Pool, config: Config): Promise<ResultRow[]> {
  const rng = new Rng(20261207);
  const startMs = Date.now() - 3 * 365 * 24 * 3_600_000;
  const accountId = randomUUID();
  const vmId = 'capsul-foldbench0';
  const streams = [
    { label: 'account stream (payments)', decider: accountDecider, events: accountHistory(accountId, vmId, longEvents, startMs, rng) },
    { label: 'capsul stream (reports)', decider: vmDecider, events: capsulHistory(accountId, vmId, longEvents, startMs, rng) },
  ] as const;
  const rows: ResultRow[] = [];
  for (const stream of streams) {
    const decider = stream.decider as Decider<unknown, unknown, LedgerEvent>;
    const events = stream.events as LedgerEvent[];
    const [long, short] = await measureFold({
      pool,
      seconds: config.seconds,
      warmupSeconds: config.warmupSeconds,
      label: stream.label,
      decider,
      long: events,
      short: events.slice(0, shortEvents),
    });
    note(`${long.label}: ${(1000 / long.perSecond).toFixed(1)} ms per fold; ${short.label}: ${(1000 / short.perSecond).toFixed(2)} ms`);
    rows.push({
      metric: `fold 20k-event stream vs 2k, ${stream.label}`,
      ours: long,
      baseline: short,
      unit: 'folds/s',
      target: targets.foldGrowth,
      ratio: 'time',
    });
  }
  return rows;
}

/** A 20k-event account and capsul in the database, loaded from their snapshot (+ recent events) vs from the start. */
async function snapshotLoadRows(pool: pg.Pool, appPool: pg.Pool, config: Config): Promise<ResultRow[]> {
  const rows: ResultRow[] = [];
  const seedStarted = performance.now();
  const seeded = await seedLongStreams(pool, new Rng(20261208));
  note(
    `long streams appended: ${fmtInt(seeded.events)} events in ${((performance.now() - seedStarted) / 1000).toFixed(1)}s, a snapshot of each written by a load`,
  );
  for (const [label, streamId, decider] of [
    ['20k-event account stream', seeded.account.streamId, accountDecider],
    ['20k-event capsul stream', seeded.capsul.streamId, vmDecider],
  ] as const) {
    const [viaSnapshot, fromStart] = await measureSnapshotLoad({
      pool: appPool,
      seconds: config.seconds,
      label,
      streamId,
      decider: decider as Decider<unknown, unknown, LedgerEvent>,
    });
    note(
      `${viaSnapshot.label}: ${(1000 / viaSnapshot.perSecond).toFixed(1)} ms; ${fromStart.label}: ${(1000 / fromStart.perSecond).toFixed(1)} ms`,
    );
    rows.push({
      metric: `load ${label} from its snapshot vs from the start`,
      ours: viaSnapshot,
      baseline: fromStart,
      unit: 'loads/s',
      target: targets.snapshotLoad,
    });
  }
  return rows;
}

// ── Output ───────────────────────────────────────────────────────────────────────────────────────

function printSummary(
  db: BenchDatabase,
  config: Config,
  rows: ResultRow[],
  web: { health: EndpointLoad; pages: EndpointLoad[] },
  verifications: { what: string; matches: boolean }[],
  traced: Traced[],
  totalS: number,
  logLine: string,
  history: HistoryResult,
): void {
  progress.clear();
  const out: string[] = [];
  out.push('', `capsul bench — ${db.description}`);
  out.push(`node ${process.version}, ${config.seconds}s measured per side, ${config.workers} workers, whole run ${totalS.toFixed(0)}s`, '');
  out.push(
    table(
      ['metric', 'ours', 'baseline', 'ratio', 'target', 'result'],
      rows.map((r) => {
        const byTime = r.ratio === 'time';
        const ratio = r.shown?.ratio ?? (byTime ? r.baseline.perSecond / r.ours.perSecond : r.ours.perSecond / r.baseline.perSecond);
        const met = byTime ? ratio <= r.target : ratio >= r.target;
        return [
          r.metric,
          r.shown?.ours ?? `${fmtRate(r.ours.perSecond)} ${r.unit}`,
          r.shown?.baseline ?? `${fmtRate(r.baseline.perSecond)} ${r.baselineUnit ?? r.unit}`,
          ratio.toFixed(2),
          `${byTime ? '≤' : '≥'} ${r.target.toFixed(2)}`,
          met ? 'PASS' : byTime ? 'ABOVE TARGET' : 'BELOW TARGET',
        ];
      }),
    ),
  );
  out.push('');
  out.push('ours:     Ledger.recordPayment on existing accounts (look-ups, load stream, decide, append with expected');
  out.push('          version and projection in one statement); rebuildProjections (fold in a snapshot without locks, compare by digest');
  out.push(
    "          with the live rows, then briefly lock, fold what was appended meanwhile, write the rows that differ); as-of queries on the row history's views;",
  );
  out.push(
    `          state reports posted by ${config.workers} in-process spokes (HubClient over loopback HTTP, ${reportsPerRequest} per request, one`,
  );
  out.push('          request at a time each) to the hub in this process (token check, validation, per report: cached stream state,');
  out.push('          decide, append + projection; one transaction per request), every report accepted as one VmStateObserved.');
  out.push(
    `          GET of a customer page by ${config.connections} connections (autocannon in a worker thread) logged in as an account with`,
  );
  out.push(`          ${webCapsuls} capsuls and ${webPayments} payments, every response a 200.`);
  out.push('baseline: emmett appendToStream of one PaymentRecorded (reports: one VmStateObserved) to a fresh stream, no read,');
  out.push('          no projections; readAllEvents draining every batch, nothing else; GET /health (the schema version) under the');
  out.push('          same load, alternating slices with the pages.');
  out.push('          The log: sealing hashes each event (RFC 8785 bytes, SHA-256) and appends its leaf and tree hashes through');
  out.push('          capsul_log_seal; audit verify hashes every event again and rebuilds the tree against the signed checkpoints.');
  out.push("          The hub's sealer ran through the command, report and page measurements.");
  out.push(
    `fold:     the decider's fold in memory of a ${fmtInt(longEvents)}-event stream vs a ${fmtInt(shortEvents)}-event one (ratio: time per fold,`,
  );
  out.push('          linear ≈ 10); load: the same long streams from the database, from their snapshot + the recent events vs from');
  out.push('          their first event (ratio: how many times faster).');
  out.push(
    `          History page: page 1 (${historyPageSize} events, kind all) of an account with ${historyShape.capsuls} capsuls and ${historyShape.payments} payments`,
  );
  out.push(
    `          (${fmtInt(history.accountEvents)} events) read through the history index; baseline: the same-shaped account alone in a database`,
  );
  out.push('          of its own on the same server. For contrast, in the big ledger (ms per page):');
  for (const t of [history.big, history.smallAccount, history.oldRead])
    out.push(`            ${(1000 / t.perSecond).toFixed(2)}  ${t.label}`);
  out.push(...verifications.map((v) => `verifyProjections, ${v.what}: ${v.matches ? 'match' : 'MISMATCH'}`));
  out.push(logLine);

  out.push(
    '',
    `Customer pages under load: ${config.connections} connections, ${config.seconds}s each in alternating slices, latencies in ms:`,
  );
  out.push(
    table(
      ['endpoint', 'requests/s', 'p50 ms', 'p99 ms', 'max ms', 'vs /health', 'target', 'result'],
      [web.health, ...web.pages].map((load) => {
        const ratio = load.tally.perSecond / web.health.tally.perSecond;
        const isBaseline = load === web.health;
        return [
          load.label,
          fmtRate(load.tally.perSecond),
          load.p50Ms.toFixed(1),
          load.p99Ms.toFixed(1),
          load.maxMs.toFixed(1),
          isBaseline ? 'baseline' : ratio.toFixed(2),
          isBaseline ? '' : `≥ ${targets.pages.toFixed(2)}`,
          isBaseline ? '' : ratio >= targets.pages ? 'PASS' : 'BELOW TARGET',
        ];
      }),
    ),
  );

  out.push('', 'Cost per operation (a command, an append, a request, or one event of a rebuild/read), µs:');
  const us = (ms: number | undefined) => (ms === undefined ? 'n/a' : fmtInt(ms * 1000));
  out.push(
    table(
      ['loop', 'ops/s', 'wall µs/op', 'node CPU µs/op', 'postgres CPU µs/op'],
      [...new Set(rows.flatMap((r) => [r.ours, r.baseline]))].map((t) => [
        t.label,
        fmtRate(t.perSecond),
        us(1000 / t.perSecond),
        us(t.nodeCpuMsPerOp),
        us(t.pgCpuMsPerOp),
      ]),
    ),
  );
  out.push('wall µs/op = elapsed / operations (with N workers: 1 / throughput). postgres CPU: the backends of the');
  out.push('bench database, from /proc (n/a when the server is not on this machine). 2 cores serve both sides.');
  out.push("For spoke reports, node CPU is the hub and the spokes' HTTP clients together (one process); for pages, the hub");
  out.push("thread's event-loop busy time (the load generator has its own thread; on a busy machine it includes time descheduled).");

  for (const t of traced) {
    const roundTrips = t.statements.reduce((sum, s) => sum + s.perOp, 0);
    const waitMs = t.statements.reduce((sum, s) => sum + s.msPerOp, 0);
    const per = t.operations === 1 ? 'in total' : 'per operation';
    out.push(
      '',
      `${t.label}: ${fmtRate(roundTrips)} round trips, ${t.msPerOp.toFixed(3)} ms ${per} ` +
        `(${waitMs.toFixed(3)} ms waiting for statements, ${(t.msPerOp - waitMs).toFixed(3)} ms elsewhere: node CPU, pool checkouts)`,
    );
    if (t.note) out.push(t.note);
    out.push(
      table(
        ['statement (client view: send → result)', t.operations === 1 ? 'count' : 'per op', 'ms'],
        t.statements.map((s) => [s.label, t.operations === 1 ? fmtInt(s.perOp) : s.perOp.toFixed(2), s.msPerOp.toFixed(3)]),
      ),
    );
  }
  process.stdout.write(`${out.join('\n')}\n`);
}

class ConfigError extends Error {}

class LogBenchError extends Error {}

class VerificationError extends Error {
  constructor(when: string, differences: Record<string, number>) {
    super(`verifyProjections ${when}: the projection tables differ from a replay of the events ${JSON.stringify(differences)}`);
  }
}

function once(fn: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined;
  return () => (running ??= fn());
}

process.exit(await main());
