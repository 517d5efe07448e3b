// Reports waiting for the hub's acknowledgement, one file each in `<dataDir>/outbox`, written
// atomically before any attempt to send and removed only once the hub answered for them. A report made
// while the hub is down therefore arrives after it returns, even if the spoke restarted in between.
// A report the hub refuses is set aside in `<dataDir>/outbox-rejected`, unchanged, with its reason in
// a `.reason.txt` beside it, so that it holds back no other report and an operator can read it (and,
// once the cause is fixed, move it back into `outbox/` to send it again).
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, statSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import type { Report } from './protocol.ts';
import { fsyncDirectory, isTemporaryFile, writeFileAtomic } from './files.ts';

export type OutboxOptions = {
  /** beyond this, the oldest plain observation (else the oldest report) is dropped, with a log line */
  maxReports?: number;
  /** beyond this many reports set aside, the oldest set-aside one is deleted, with a log line */
  maxSetAside?: number;
  log: (line: string) => void;
};

type Entry = { file: string; report: Report };

const fileNamePattern = /^(\d{12})-([A-Za-z0-9-]{1,100})\.json$/;
const reasonSuffix = '.reason.txt';

export class Outbox {
  /** in the order the reports were made (a Map keeps insertion order) */
  private readonly entries = new Map<string, Entry>();
  private nextSeq = 1;
  private readonly maxReports: number;
  private readonly maxSetAside: number;
  private readonly rejectedDir: string;
  /** report id → file name in rejectedDir, oldest first */
  private readonly setAside = new Map<string, string>();

  private constructor(
    private readonly dir: string,
    private readonly options: OutboxOptions,
  ) {
    this.maxReports = options.maxReports ?? 10_000;
    this.maxSetAside = options.maxSetAside ?? 10_000;
    this.rejectedDir = path.join(path.dirname(dir), 'outbox-rejected');
  }

  /** Opens (creating if needed) the outbox in `dir` and loads the reports a previous run left unsent. */
  static open(dir: string, options: OutboxOptions): Outbox {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const outbox = new Outbox(dir, options);
    outbox.load();
    return outbox;
  }

  get size(): number {
    return this.entries.size;
  }

  has(reportId: string): boolean {
    return this.entries.has(reportId);
  }

  /** Whether the hub refused this report and it was set aside: it is not to be queued again. */
  wasSetAside(reportId: string): boolean {
    return this.setAside.has(reportId);
  }

  /** Where refused reports are set aside. */
  get setAsideDir(): string {
    return this.rejectedDir;
  }

  /** Durably adds a report; a report whose id is already waiting is not added twice. */
  add(report: Report): void {
    if (this.entries.has(report.id)) return;
    if (!/^[A-Za-z0-9-]{1,100}$/.test(report.id)) throw new Error(`report id ${JSON.stringify(report.id)} is not usable as a file name`);
    while (this.entries.size >= this.maxReports) this.dropOne();
    const file = path.join(this.dir, `${String(this.nextSeq++).padStart(12, '0')}-${report.id}.json`);
    writeFileAtomic(file, JSON.stringify(report));
    this.entries.set(report.id, { file, report });
  }

  /** The oldest reports, at most `limit`. */
  oldest(limit: number): Report[] {
    const reports: Report[] = [];
    for (const { report } of this.entries.values()) {
      if (reports.length >= limit) break;
      reports.push(report);
    }
    return reports;
  }

  /** Forgets reports the hub acknowledged. A removal lost in a crash only means the hub sees a duplicate. */
  remove(reportIds: Iterable<string>): void {
    for (const id of reportIds) {
      const entry = this.entries.get(id);
      if (!entry) continue;
      unlinkSync(entry.file);
      this.entries.delete(id);
    }
  }

  /**
   * Sets aside a report the hub refused, so it cannot hold back the ones behind it: moved unchanged to
   * outbox-rejected/, its reason beside it, and logged (once: it is never sent again by itself).
   */
  reject(reportId: string, reason: string): void {
    const entry = this.entries.get(reportId);
    if (!entry) return;
    this.moveAside(entry.file, reportId, reason);
    this.entries.delete(reportId);
    this.options.log(
      `report ${reportId} (${entry.report.type} of capsul ${entry.report.vmId}) refused by the hub, set aside in ${this.rejectedDir}: ${reason}`,
    );
  }

  /** The reason is written first: a crash in between leaves the report queued, to be refused again. */
  private moveAside(file: string, reportId: string, reason: string): void {
    mkdirSync(this.rejectedDir, { recursive: true, mode: 0o700 });
    const name = path.basename(file);
    const at = new Date().toISOString();
    writeFileAtomic(path.join(this.rejectedDir, name.replace(/\.json$/, reasonSuffix)), `${at} ${reason}\n`);
    renameSync(file, path.join(this.rejectedDir, name));
    fsyncDirectory(this.rejectedDir);
    this.setAside.delete(reportId);
    this.setAside.set(reportId, name);
    while (this.setAside.size > this.maxSetAside) this.forgetOldestSetAside();
  }

  private forgetOldestSetAside(): void {
    const [id, name] = this.setAside.entries().next().value as [string, string];
    this.setAside.delete(id);
    for (const file of [name, name.replace(/\.json$/, reasonSuffix)]) {
      const target = path.join(this.rejectedDir, file);
      if (existsSync(target)) unlinkSync(target);
    }
    this.options.log(`${this.rejectedDir} holds more than ${this.maxSetAside} reports: deleted the oldest, ${name}`);
  }

  /** What an earlier run set aside, oldest first, so it is not queued again. */
  private loadSetAside(): void {
    if (!existsSync(this.rejectedDir)) return;
    const found: { id: string; name: string; mtimeMs: number }[] = [];
    for (const name of readdirSync(this.rejectedDir)) {
      const match = fileNamePattern.exec(name);
      if (match) found.push({ id: match[2]!, name, mtimeMs: statSync(path.join(this.rejectedDir, name)).mtimeMs });
    }
    found.sort((a, b) => a.mtimeMs - b.mtimeMs || a.name.localeCompare(b.name));
    for (const { id, name } of found) this.setAside.set(id, name);
  }

  private dropOne(): void {
    let victim: Entry | undefined;
    for (const entry of this.entries.values()) {
      if (entry.report.operationId === null) {
        victim = entry;
        break;
      }
      victim ??= entry;
    }
    if (!victim) return;
    unlinkSync(victim.file);
    this.entries.delete(victim.report.id);
    const { report } = victim;
    this.options.log(
      `outbox full (${this.maxReports} reports waiting for the hub): dropped report ${report.id} (${report.type} of capsul ${report.vmId} observed at ${report.observedAt})`,
    );
  }

  private load(): void {
    this.loadSetAside();
    const found: { seq: number; file: string; id: string }[] = [];
    for (const name of readdirSync(this.dir)) {
      const file = path.join(this.dir, name);
      if (isTemporaryFile(name)) {
        unlinkSync(file); // a write cut short by a crash: never renamed, so never promised
        continue;
      }
      const match = fileNamePattern.exec(name);
      if (!match) {
        this.options.log(`outbox: ignoring unexpected file ${file}`);
        continue;
      }
      found.push({ seq: Number(match[1]), file, id: match[2]! });
    }
    found.sort((a, b) => a.seq - b.seq);
    for (const { seq, file, id } of found) {
      this.nextSeq = Math.max(this.nextSeq, seq + 1);
      let report: Report;
      try {
        report = JSON.parse(readFileSync(file, 'utf8')) as Report;
        if (report.id !== id) throw new Error('its id does not match its file name');
      } catch (error) {
        this.moveAside(file, id, `unreadable: ${(error as Error).message}`);
        this.setAside.delete(id); // not refused by the hub: the journal may queue its operation's outcome again
        this.options.log(`outbox: unreadable report ${file} moved to ${this.rejectedDir}: ${(error as Error).message}`);
        continue;
      }
      this.entries.set(id, { file, report });
    }
    if (this.entries.size > 0) this.options.log(`outbox: ${this.entries.size} report(s) from an earlier run waiting for the hub`);
  }
}
