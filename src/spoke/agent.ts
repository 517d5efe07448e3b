// The spoke agent: dials out to the hub, runs the operations assigned to its host through the driver,
// and reports what it observes. Three loops share one outbox and one journal in the data dir:
//   heartbeat — every heartbeatIntervalMs: capacity and every capsul the driver lists; state changes
//               seen outside operations (a crash, an operator's virsh) become `state` reports;
//   poll      — long-polls for operations and runs each new one, at most once per operation id;
//   flush     — sends the outbox to the hub, oldest first, backing off while the hub is away.
import { setMaxListeners } from 'node:events';
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import pLimit, { type LimitFunction } from 'p-limit';
import { backoffMs, systemClock, type Clock } from './clock.ts';
import { DriverError, type CapsulInfo, type Driver } from './driver.ts';
import { writeFileAtomic } from './files.ts';
import { HubRejectedError, HubUnavailableError, TokenRefusedError, type HubClient, type MalformedOperation } from './hub-client.ts';
import { Journal } from './journal.ts';
import { lockDataDir } from './lock.ts';
import { Outbox } from './outbox.ts';
import { capsulIdPattern, cleanText } from './protocol-check.ts';
import { limits, type ObservedState, type Operation, type Report, type ReportResult } from './protocol.ts';

export type HubApi = Pick<HubClient, 'heartbeat' | 'operations' | 'postReports'>;

export type SpokeAgentOptions = {
  hub: HubApi;
  driver: Driver;
  /** journal, outbox and last observed states live here; one agent per data dir */
  dataDir: string;
  log: (line: string) => void;
  clock?: Clock;
  /** for backoff jitter */
  random?: () => number;
  agentVersion?: string;
  heartbeatIntervalMs?: number;
  pollWaitMs?: number;
  /** pause before polling again when a poll brought nothing new (the hub re-delivers operations in progress) */
  pollIdleMs?: number;
  watchIntervalMs?: number;
  /** how long a capsul may take to reach the state an operation asked for */
  watchTimeoutMs?: number;
  maxConcurrentOperations?: number;
  maxOutboxReports?: number;
  backoffBaseMs?: number;
  backoffCapMs?: number;
  /** how long stop() waits for driver calls in progress; ones still running are checked on the next start */
  stopGraceMs?: number;
};

type Settings = Required<Omit<SpokeAgentOptions, 'hub' | 'driver' | 'dataDir' | 'log'>>;

const defaults: Settings = {
  clock: systemClock,
  random: Math.random,
  agentVersion: 'unknown',
  heartbeatIntervalMs: 15_000,
  pollWaitMs: 25_000,
  pollIdleMs: 1_000,
  watchIntervalMs: 1_000,
  watchTimeoutMs: 300_000,
  maxConcurrentOperations: 16,
  maxOutboxReports: 10_000,
  backoffBaseMs: 1_000,
  backoffCapMs: 60_000,
  stopGraceMs: 10_000,
};

type Outcome = { reports: Report[]; summary: string };
type Mode = 'new' | 'resume';

export class SpokeAgent {
  private readonly settings: Settings;
  private readonly abort = new AbortController();
  /** cuts the report sender's backoff short once another loop reaches the hub */
  private wakeReports: (() => void) | undefined;
  private journal?: Journal;
  private outbox?: Outbox;
  private releaseLock?: () => void;
  private started = false;
  private closed = false;
  private stopping?: Promise<void>;
  private fatal: Error | null = null;
  private loops: Promise<void>[] = [];

  /** last state reported per capsul, so only changes are reported */
  private observed = new Map<string, ObservedState>();
  private readonly running = new Map<string, Promise<void>>();
  /** capsuls with operations scheduled and not settled: each capsul's run one after another, in arrival order */
  private readonly busyVms = new Map<string, { turns: LimitFunction; operations: number }>();
  /** bumped whenever an operation settles a capsul, so a heartbeat's older listing does not contradict it */
  private readonly touched = new Map<string, number>();
  private touchSeq = 0;
  /** at most maxConcurrentOperations operations in the driver's hands; the rest wait their turn in arrival order */
  private readonly slots: LimitFunction;
  private readonly reportAdded = new Wakeup();
  private hubReachable: boolean | null = null;
  private readonly lastLoopError = new Map<string, string>();
  private readonly malformedSeen = new Set<string>();
  /** operations whose outcome the hub refused, already logged as delivered again */
  private readonly refusedOutcomeLogged = new Set<string>();
  private heartbeatTruncationLogged = false;
  private foreignListingLogged = false;
  /** whether this host's clock was last seen further from the hub's than the hub allows */
  private clockOff = false;
  private resolveDone!: (error: Error | null) => void;

  /** Resolves once the agent stopped: null after stop(), the error when it stopped itself (a refused token). */
  readonly done: Promise<Error | null>;

  constructor(private readonly options: SpokeAgentOptions) {
    this.settings = { ...defaults, ...stripUndefined(options) } as Settings;
    this.settings.agentVersion = printableAscii(this.settings.agentVersion, 100) || 'unknown';
    // Every running operation and hub request listens for the stop: more than node's default of 10.
    setMaxListeners(this.settings.maxConcurrentOperations * 4 + 16, this.abort.signal);
    this.slots = pLimit(this.settings.maxConcurrentOperations);
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
  }

  /** Opens the data dir, resumes operations a previous run left unfinished, and starts the loops. */
  async start(): Promise<void> {
    if (this.started) throw new Error('the spoke agent was already started');
    this.started = true;
    const { dataDir, log } = this.options;
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    this.releaseLock = lockDataDir(dataDir);
    try {
      this.journal = Journal.open(path.join(dataDir, 'journal.jsonl'), { log });
      this.outbox = Outbox.open(path.join(dataDir, 'outbox'), { log, maxReports: this.settings.maxOutboxReports });
      this.observed = this.loadObserved();
    } catch (error) {
      this.journal?.close();
      this.releaseLock();
      throw error;
    }
    log(`spoke agent started (driver ${this.options.driver.name}, data dir ${dataDir})`);
    const unfinished = this.journal.unfinished();
    if (unfinished.length > 0) log(`${unfinished.length} operation(s) interrupted by the last stop: checking them before anything else`);
    for (const entry of unfinished) this.schedule(entry.operation, 'resume');
    this.loops = [this.heartbeatLoop(), this.pollLoop(), this.flushLoop()];
  }

  /** Stops the loops promptly; waits up to stopGraceMs for driver calls in progress. */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    this.abort.abort();
    await Promise.all(this.loops);
    if (this.running.size > 0) {
      const grace = new AbortController();
      const settled = Promise.allSettled(this.running.values()).then(() => true);
      const inTime = await Promise.race([settled, this.settings.clock.sleep(this.settings.stopGraceMs, grace.signal).then(() => false)]);
      grace.abort();
      if (!inTime)
        this.options.log(`stopping with ${this.running.size} operation(s) still in the driver's hands; they are checked on the next start`);
    }
    this.closed = true;
    this.journal?.close();
    this.releaseLock?.();
    this.resolveDone(this.fatal);
  }

  private get signal(): AbortSignal {
    return this.abort.signal;
  }

  // ── heartbeat ────────────────────────────────────────────────────────────────────────────────────

  private async heartbeatLoop(): Promise<void> {
    while (!this.signal.aborted) {
      try {
        await this.heartbeat();
        this.loopSucceeded('heartbeat');
      } catch (error) {
        this.loopFailed('heartbeat', error);
      }
      await this.settings.clock.sleep(this.settings.heartbeatIntervalMs, this.signal);
    }
  }

  private async heartbeat(): Promise<void> {
    const { driver } = this.options;
    const seqBefore = this.touchSeq;
    const listedAtMs = this.settings.clock.nowMs();
    const listing = await driver.list().catch((error) => {
      throw new DriverError(`cannot list the capsuls on this host: ${(error as Error).message}`);
    });
    // The hub refuses a heartbeat naming anything but capsul ids: one odd name must not take the host offline.
    const vms = listing.filter((vm) => capsulIdPattern.test(vm.vmId));
    if (vms.length < listing.length && !this.foreignListingLogged) {
      this.foreignListingLogged = true;
      this.options.log(`the driver lists ${listing.length - vms.length} name(s) that are not capsul ids; heartbeats leave them out`);
    }
    const capacity = await driver.capacity().catch((error) => {
      throw new DriverError(`cannot read this host's capacity: ${(error as Error).message}`);
    });
    if (this.closed) return;
    this.observeListing(vms, listedAtMs, seqBefore);
    if (vms.length > limits.maxVmsPerHeartbeat && !this.heartbeatTruncationLogged) {
      this.heartbeatTruncationLogged = true;
      this.options.log(`this host has ${vms.length} capsuls; heartbeats carry only the first ${limits.maxVmsPerHeartbeat}`);
    }
    const sentAtMs = this.settings.clock.nowMs();
    const { serverTime } = await this.options.hub.heartbeat(
      { capacity, vms: vms.slice(0, limits.maxVmsPerHeartbeat), agentVersion: this.settings.agentVersion },
      this.signal,
    );
    this.hubIsUp();
    this.checkClock((sentAtMs + this.settings.clock.nowMs()) / 2 - Date.parse(serverTime));
  }

  /** Says once when this host's clock is further from the hub's than the hub allows, and once when it is back. */
  private checkClock(offsetMs: number): void {
    const allowedSeconds = limits.maxClockSkewMs / 1000;
    const off = Math.abs(offsetMs) > limits.maxClockSkewMs;
    if (off && !this.clockOff) {
      this.options.log(
        `this host's clock is ${Math.round(Math.abs(offsetMs) / 1000)} s ${offsetMs > 0 ? 'ahead of' : 'behind'} the hub's: the hub refuses ` +
          `reports observed more than ${allowedSeconds} s ahead of its clock or before their capsul was requested; set this host's clock right (NTP)`,
      );
    } else if (!off && this.clockOff) {
      this.options.log(`this host's clock agrees with the hub's again (within ${allowedSeconds} s)`);
    }
    this.clockOff = off;
  }

  /** Reports the state changes a listing shows for capsuls no operation is handling. */
  private observeListing(vms: { vmId: string; state: ObservedState }[], listedAtMs: number, seqBefore: number): void {
    const settledSinceListing = (vmId: string) => (this.touched.get(vmId) ?? 0) > seqBefore;
    const seen = new Set<string>();
    let changed = false;
    for (const { vmId, state } of vms) {
      seen.add(vmId);
      if (this.busyVms.has(vmId) || settledSinceListing(vmId) || this.observed.get(vmId) === state) continue;
      const before = this.observed.get(vmId);
      this.observed.set(vmId, state);
      changed = true;
      this.options.log(`capsul ${vmId} is ${state}${before ? ` (was ${before})` : ''}`);
      this.enqueue([this.makeReport(vmId, null, listedAtMs, { type: 'state', state })]);
    }
    for (const [vmId, state] of this.observed) {
      if (seen.has(vmId) || this.busyVms.has(vmId) || settledSinceListing(vmId)) continue;
      this.observed.delete(vmId);
      changed = true;
      this.options.log(`capsul ${vmId} (last seen ${state}) is no longer on this host; the hub sees it missing from the heartbeat`);
    }
    if (changed) this.saveObserved();
  }

  // ── operations ───────────────────────────────────────────────────────────────────────────────────

  private async pollLoop(): Promise<void> {
    let attempt = 0;
    while (!this.signal.aborted) {
      try {
        const { operations, malformed } = await this.options.hub.operations(this.settings.pollWaitMs, this.signal);
        this.hubIsUp();
        this.loopSucceeded('operations poll');
        attempt = 0;
        for (const bad of malformed) this.refuseMalformed(bad);
        const fresh = operations.filter((operation) => this.receive(operation)).length;
        if (fresh === 0) await this.settings.clock.sleep(this.settings.pollIdleMs, this.signal);
      } catch (error) {
        if (this.signal.aborted) break;
        this.loopFailed('operations poll', error);
        await this.settings.clock.sleep(this.backoff(attempt++), this.signal);
      }
    }
  }

  /** Takes an operation the hub delivered; returns whether it is new to this spoke. */
  private receive(operation: Operation): boolean {
    if (this.closed || this.running.has(operation.id)) return false;
    const entry = this.journal!.get(operation.id);
    if (!entry) {
      this.schedule(operation, 'new');
      return true;
    }
    if (entry.reports === null) {
      // Started, then left by an unexpected error: settle it as after a restart, never by running it again.
      this.schedule(entry.operation, 'resume');
      return false;
    }
    // Done already: the hub has not seen the outcome yet. Queue it again if it is no longer waiting,
    // unless the hub refused it: sent again it would only be refused again.
    const outbox = this.outbox!;
    const missing = entry.reports.filter((report) => !outbox.has(report.id) && !outbox.wasSetAside(report.id));
    if (missing.length > 0) {
      this.options.log(
        `operation ${operation.id} (${operation.kind} capsul ${operation.vmId}) delivered again: already done, its outcome is queued again`,
      );
      this.enqueue(missing);
    } else if (entry.reports.some((report) => outbox.wasSetAside(report.id)) && !this.refusedOutcomeLogged.has(operation.id)) {
      this.refusedOutcomeLogged.add(operation.id);
      this.options.log(
        `operation ${operation.id} (${operation.kind} capsul ${operation.vmId}) delivered again: the hub refused its outcome ` +
          `(set aside in ${outbox.setAsideDir}); it stays pending on the hub until an operator settles it`,
      );
    }
    return false;
  }

  private refuseMalformed({ id, vmId, problem }: MalformedOperation): void {
    if (this.closed || this.journal!.get(id)) return;
    // The same report id every time, so re-deliveries before the hub sees it change nothing.
    const report: Report = {
      ...this.makeReport(vmId, id, this.settings.clock.nowMs(), {
        type: 'failed',
        error: errorText(`the spoke cannot run this operation: ${problem}`),
      }),
      id: stableUuid(`malformed:${id}`),
    };
    if (!this.malformedSeen.has(id)) this.options.log(`operation ${id} for capsul ${vmId} is malformed (${problem}): reported as failed`);
    this.malformedSeen.add(id);
    this.enqueue([report]);
  }

  /** Runs operations on one capsul one after another, at most maxConcurrentOperations at a time overall. */
  private schedule(operation: Operation, mode: Mode): void {
    const { vmId } = operation;
    const capsul = this.busyVms.get(vmId) ?? { turns: pLimit(1), operations: 0 };
    capsul.operations++;
    this.busyVms.set(vmId, capsul);
    const run = capsul
      .turns(() => this.slots(() => this.runOperation(operation, mode)))
      .catch((error) =>
        this.options.log(`operation ${operation.id}: unexpected error, settled when next delivered: ${(error as Error).message ?? error}`),
      )
      .finally(() => {
        this.running.delete(operation.id);
        if (--capsul.operations === 0) this.busyVms.delete(vmId);
      });
    this.running.set(operation.id, run);
  }

  private async runOperation(operation: Operation, mode: Mode): Promise<void> {
    if (this.closed || this.signal.aborted) return;
    const journal = this.journal!;
    const { id, kind, vmId } = operation;
    if (mode === 'new') {
      journal.start(operation, this.settings.clock.nowMs());
      this.options.log(`operation ${id}: ${kind} capsul ${vmId}`);
      try {
        await this.callDriver(operation);
      } catch (error) {
        if (this.closed) return;
        this.finish(operation, this.failure(operation, driverMessage(error)));
        return;
      }
      if (this.closed) return;
      journal.called(id);
    } else if (!journal.get(id)!.called) {
      const refusal = await this.checkInterrupted(operation);
      if (this.closed) return;
      if (refusal) {
        this.finish(operation, this.failure(operation, refusal));
        return;
      }
      this.options.log(`operation ${id}: ${kind} capsul ${vmId} was interrupted by the last stop; its effect is visible, watching it`);
    } else {
      this.options.log(`operation ${id}: ${kind} capsul ${vmId} was accepted by the driver before the last stop; watching it`);
    }
    const outcome = await this.watch(operation);
    if (outcome && !this.closed) this.finish(operation, outcome);
  }

  private callDriver({ kind, vmId, spec }: Operation): Promise<void> {
    const { driver } = this.options;
    switch (kind) {
      case 'create':
        if (!spec) throw new DriverError('a create operation without a spec');
        return driver.create(vmId, spec);
      case 'start':
        return driver.start(vmId);
      case 'stop':
        return driver.stop(vmId);
      case 'force-stop':
        return driver.forceStop(vmId);
      case 'delete':
        return driver.delete(vmId);
      default: {
        const unknown: never = kind;
        throw new DriverError(`unknown operation ${String(unknown)}`);
      }
    }
  }

  /**
   * An operation started before the last stop, the driver's answer never recorded: it is not run
   * again. If the host already shows its effect, it is watched to its end; otherwise it failed.
   */
  private async checkInterrupted({ kind, vmId }: Operation): Promise<string | null> {
    let info: CapsulInfo | null;
    try {
      info = await this.options.driver.inspect(vmId);
    } catch (error) {
      return `interrupted by a spoke restart and the capsul cannot be inspected (${driverMessage(error)}); not run again`;
    }
    const visible = kind === 'create' ? info !== null : kind === 'delete' ? info === null : info !== null && reached(kind, info);
    if (visible) return null;
    const now = info === null ? 'the capsul is not on this host' : `the capsul is ${info.state}`;
    return `interrupted by a spoke restart before the driver confirmed it and ${now}; not run again`;
  }

  /** Inspects the capsul until it shows what the operation asked for; null when the agent stops first. */
  private async watch(operation: Operation): Promise<Outcome | null> {
    const { clock, watchIntervalMs, watchTimeoutMs } = this.settings;
    const deadlineMs = clock.nowMs() + watchTimeoutMs;
    let lastInfo: CapsulInfo | null | undefined;
    let lastError: string | null = null;
    for (;;) {
      if (this.signal.aborted) return null;
      let info: CapsulInfo | null | undefined;
      try {
        info = await this.options.driver.inspect(operation.vmId);
        lastError = null;
      } catch (error) {
        lastError = driverMessage(error);
      }
      const observedAtMs = clock.nowMs();
      if (this.closed) return null;
      if (info !== undefined) {
        lastInfo = info;
        const outcome = this.evaluate(operation, info, observedAtMs, false);
        if (outcome) return outcome;
      }
      if (observedAtMs >= deadlineMs) {
        const seconds = Math.round(watchTimeoutMs / 1000);
        if (lastError !== null) return this.failure(operation, `cannot inspect the capsul for ${seconds} s: ${lastError}`);
        return this.evaluate(operation, lastInfo ?? null, observedAtMs, true) ?? this.failure(operation, `no outcome within ${seconds} s`);
      }
      await clock.sleep(watchIntervalMs, this.signal);
    }
  }

  /** The reports that end an operation once `info` shows its outcome; null to keep watching. */
  private evaluate(operation: Operation, info: CapsulInfo | null, atMs: number, final: boolean): Outcome | null {
    const { id, kind, vmId } = operation;
    const seconds = Math.round(this.settings.watchTimeoutMs / 1000);
    const report = (body: ReportBody) => this.makeReport(vmId, id, atMs, body);
    if (kind === 'delete') {
      if (info === null) return { reports: [report({ type: 'deleted' })], summary: 'deleted' };
      return final ? this.failure(operation, `still on the host (${info.state}) after ${seconds} s`) : null;
    }
    if (info === null) {
      if (kind === 'create' && !final) return null; // the hypervisor accepted it; it may take a moment to show
      return this.failure(operation, 'the capsul is not on this host');
    }
    if (kind === 'create' || kind === 'start') {
      const addressed = (info.ipv4 !== null || info.ipv6 !== null) && info.sshHostKeys.length > 0;
      if (info.state !== 'running' || (kind === 'create' && !addressed && !final)) {
        return final ? this.failure(operation, `did not reach running within ${seconds} s (it is ${info.state})`) : null;
      }
      if (kind === 'create' && !addressed)
        this.options.log(
          `operation ${id}: capsul ${vmId} runs but shows no address or host keys after ${seconds} s; reporting it as it is`,
        );
      const provisioned = report({ type: 'provisioned', ipv4: info.ipv4, ipv6: info.ipv6, sshHostKeys: info.sshHostKeys });
      const reports = kind === 'create' || info.ipv4 !== null || info.ipv6 !== null ? [provisioned] : [];
      return {
        reports: [...reports, report({ type: 'state', state: 'running' })],
        summary: `running (${info.ipv4 ?? '-'} ${info.ipv6 ?? '-'})`,
      };
    }
    if (reached(kind, info)) return { reports: [report({ type: 'state', state: info.state })], summary: info.state };
    return final ? this.failure(operation, `still ${info.state} after ${seconds} s`) : null;
  }

  private failure(operation: Operation, message: string): Outcome {
    const error = errorText(message);
    return {
      reports: [this.makeReport(operation.vmId, operation.id, this.settings.clock.nowMs(), { type: 'failed', error })],
      summary: `failed: ${error}`,
    };
  }

  /** Journals the outcome first: if the spoke dies before the outbox has it, a re-delivery queues it again. */
  private finish(operation: Operation, outcome: Outcome): void {
    this.journal!.finish(operation.id, outcome.reports);
    let changed = false;
    for (const report of outcome.reports) {
      if (report.type === 'state' && this.observed.get(report.vmId) !== report.state) {
        this.observed.set(report.vmId, report.state);
        changed = true;
      }
      if (report.type === 'deleted' && this.observed.delete(report.vmId)) changed = true;
    }
    if (changed) this.saveObserved();
    this.touched.set(operation.vmId, ++this.touchSeq);
    this.options.log(`operation ${operation.id}: ${operation.kind} capsul ${operation.vmId} → ${outcome.summary}`);
    this.enqueue(outcome.reports);
  }

  // ── reports ──────────────────────────────────────────────────────────────────────────────────────

  private makeReport(vmId: string, operationId: string | null, observedAtMs: number, body: ReportBody): Report {
    return { id: randomUUID(), vmId, operationId, observedAt: new Date(observedAtMs).toISOString(), ...body } as Report;
  }

  /** Writes reports to the outbox (durably) and wakes the sender; one the hub refused before is not queued again. */
  private enqueue(reports: Report[]): void {
    for (const report of reports) {
      if (!this.outbox!.wasSetAside(report.id)) this.outbox!.add(report);
    }
    this.reportAdded.notify();
  }

  private async flushLoop(): Promise<void> {
    let attempt = 0;
    while (!this.signal.aborted) {
      if (this.outbox!.size === 0) {
        const idle = new AbortController();
        const onAbort = () => idle.abort();
        this.signal.addEventListener('abort', onAbort, { once: true });
        await Promise.race([this.reportAdded.wait(), this.settings.clock.sleep(60_000, idle.signal)]);
        this.signal.removeEventListener('abort', onAbort);
        idle.abort();
        continue;
      }
      try {
        await this.sendBatch();
        this.loopSucceeded('reports');
        attempt = 0;
      } catch (error) {
        if (this.signal.aborted) break;
        this.loopFailed('reports', error);
        // Waits out the backoff, unless a heartbeat or poll shows the hub is back first.
        const retry = new AbortController();
        const onAbort = () => retry.abort();
        this.signal.addEventListener('abort', onAbort, { once: true });
        this.wakeReports = () => retry.abort();
        await this.settings.clock.sleep(this.backoff(attempt++), retry.signal);
        this.wakeReports = undefined;
        this.signal.removeEventListener('abort', onAbort);
      }
    }
  }

  private async sendBatch(): Promise<void> {
    const batch = fitRequest(this.outbox!.oldest(limits.maxReportsPerRequest));
    try {
      this.acknowledge(batch, await this.options.hub.postReports(batch, this.signal));
    } catch (error) {
      if (!(error instanceof HubRejectedError)) throw error;
      if (batch.length === 1) {
        this.outbox!.reject(batch[0]!.id, error.message);
      } else {
        // Something in it is malformed to the hub: send them one by one and set aside only what the hub refuses alone.
        this.options.log(`the hub refused a batch of ${batch.length} reports (${error.message}): sending them one at a time`);
        for (const report of batch) {
          try {
            this.acknowledge([report], await this.options.hub.postReports([report], this.signal));
          } catch (alone) {
            if (!(alone instanceof HubRejectedError)) throw alone;
            this.outbox!.reject(report.id, alone.message);
          }
        }
      }
    }
    this.hubIsUp();
  }

  /** Removes every report the hub accepted (or had already, or found stale) and sets aside those it refused. */
  private acknowledge(batch: Report[], results: ReportResult[]): void {
    const sent = new Map(batch.map((report) => [report.id, report]));
    const acknowledged = new Set<string>();
    let answered = 0;
    for (const result of results) {
      if (!sent.has(result.id)) continue;
      sent.delete(result.id);
      answered++;
      if (result.status === 'refused') this.outbox!.reject(result.id, result.error ?? 'no reason given');
      else acknowledged.add(result.id);
    }
    this.outbox!.remove(acknowledged);
    if (answered < batch.length)
      throw new HubUnavailableError(`the hub answered for ${answered} of ${batch.length} reports; the others are sent again`, 200);
  }

  // ── bookkeeping ──────────────────────────────────────────────────────────────────────────────────

  private backoff(attempt: number): number {
    return backoffMs(attempt, this.settings.random, this.settings.backoffBaseMs, this.settings.backoffCapMs);
  }

  private hubIsUp(): void {
    if (this.hubReachable === false) this.options.log('hub reachable again');
    this.hubReachable = true;
  }

  private loopSucceeded(loop: string): void {
    this.lastLoopError.delete(loop);
    if (loop !== 'reports') this.wakeReports?.();
  }

  /** Logs a loop's failure once per distinct cause; a refused token stops the agent. */
  private loopFailed(loop: string, error: unknown): void {
    if (this.signal.aborted) return;
    if (error instanceof TokenRefusedError) {
      if (this.fatal) return;
      this.fatal = error;
      this.options.log(`${error.message}: stopping the spoke (check SPOKE_HOST_ID and SPOKE_HOST_TOKEN)`);
      void this.stop();
      return;
    }
    if (error instanceof HubUnavailableError && error.status === null) {
      if (this.hubReachable !== false) this.options.log(`hub unreachable (${loop}): ${error.message}; retrying with backoff`);
      this.hubReachable = false;
      return;
    }
    const message = error instanceof Error ? error.message : String(error);
    if (this.lastLoopError.get(loop) === message) return;
    this.lastLoopError.set(loop, message);
    this.options.log(`${loop}: ${message}`);
  }

  private loadObserved(): Map<string, ObservedState> {
    const file = path.join(this.options.dataDir, 'observed.json');
    if (!existsSync(file)) return new Map();
    try {
      return new Map(Object.entries(JSON.parse(readFileSync(file, 'utf8')) as Record<string, ObservedState>));
    } catch (error) {
      this.options.log(`${file} is unreadable (${(error as Error).message}): every capsul's state is reported afresh`);
      return new Map();
    }
  }

  private saveObserved(): void {
    writeFileAtomic(path.join(this.options.dataDir, 'observed.json'), JSON.stringify(Object.fromEntries(this.observed)));
  }
}

type ReportBody =
  | { type: 'provisioned'; ipv4: string | null; ipv6: string | null; sshHostKeys: CapsulInfo['sshHostKeys'] }
  | { type: 'state'; state: ObservedState }
  | { type: 'failed'; error: string }
  | { type: 'deleted' };

/** Whether a capsul shows what a start, stop or force-stop asked for. */
function reached(kind: Operation['kind'], info: CapsulInfo): boolean {
  if (kind === 'start') return info.state === 'running';
  if (kind === 'stop' || kind === 'force-stop') return info.state === 'stopped' || info.state === 'crashed';
  return false;
}

function driverMessage(error: unknown): string {
  if (error instanceof DriverError) return error.message;
  return `driver error: ${error instanceof Error ? error.message : String(error)}`;
}

/** A failure's text as the hub takes it: no control characters but tab and line feed, at most maxErrorLength. */
function errorText(message: string): string {
  return cleanText(message, limits.maxErrorLength);
}

function printableAscii(text: string, maxLength: number): string {
  return text.replace(/[^\x20-\x7e]/g, '?').slice(0, maxLength);
}

/** The oldest reports that fit in one request body (one alone always goes: the hub says if it is too large). */
function fitRequest(reports: Report[]): Report[] {
  const budgetBytes = limits.maxRequestBytes - 1024; // the envelope, with room to spare
  const batch: Report[] = [];
  let bytes = 0;
  for (const report of reports) {
    const size = Buffer.byteLength(JSON.stringify(report)) + 1;
    if (batch.length > 0 && bytes + size > budgetBytes) break;
    batch.push(report);
    bytes += size;
  }
  return batch;
}

/** A UUID-shaped id derived from `text`, the same every time. */
function stableUuid(text: string): string {
  const hex = createHash('sha256').update(text).digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-5${hex.slice(13, 16)}-${((parseInt(hex.slice(16, 18), 16) & 0x3f) | 0x80).toString(16)}${hex.slice(18, 20)}-${hex.slice(20, 32)}`;
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** A one-shot signal many can wait on; notify() releases every current waiter. */
class Wakeup {
  private promise: Promise<void> | null = null;
  private release: (() => void) | null = null;

  wait(): Promise<void> {
    this.promise ??= new Promise((resolve) => (this.release = resolve));
    return this.promise;
  }

  notify(): void {
    const release = this.release;
    this.promise = null;
    this.release = null;
    release?.();
  }
}
