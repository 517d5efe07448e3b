// Reports waiting for the hub's acknowledgement, one file each in `<dataDir>/outbox`, written
// atomically before any attempt to send and removed only once the hub answered for them. A report made
// while the hub is down therefore arrives after it returns, even if the spoke restarted in between.
import { mkdirSync, readFileSync, readdirSync, renameSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import type { Report } from './protocol.ts';
import { isTemporaryFile, writeFileAtomic } from './files.ts';

export type OutboxOptions = {
  /** beyond this, the oldest plain observation (else the oldest report) is dropped, with a log line */
  maxReports?: number;
  log: (line: string) => void;
};

type Entry = { file: string; report: Report };

const fileNamePattern = /^(\d{12})-([A-Za-z0-9-]{1,100})\.json$/;

export class Outbox {
  /** in the order the reports were made (a Map keeps insertion order) */
  private readonly entries = new Map<string, Entry>();
  private nextSeq = 1;
  private readonly maxReports: number;
  private readonly rejectedDir: string;

  private constructor(private readonly dir: string, private readonly options: OutboxOptions) {
    this.maxReports = options.maxReports ?? 10_000;
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

  /** Sets aside a report the hub rejects outright, so it cannot block the ones behind it; kept for the operator. */
  reject(reportId: string, reason: string): void {
    const entry = this.entries.get(reportId);
    if (!entry) return;
    mkdirSync(this.rejectedDir, { recursive: true, mode: 0o700 });
    renameSync(entry.file, path.join(this.rejectedDir, path.basename(entry.file)));
    this.entries.delete(reportId);
    this.options.log(`report ${reportId} (${entry.report.type} of capsul ${entry.report.vmId}) rejected by the hub, moved to ${this.rejectedDir}: ${reason}`);
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
        mkdirSync(this.rejectedDir, { recursive: true, mode: 0o700 });
        renameSync(file, path.join(this.rejectedDir, path.basename(file)));
        this.options.log(`outbox: unreadable report ${file} moved to ${this.rejectedDir}: ${(error as Error).message}`);
        continue;
      }
      this.entries.set(id, { file, report });
    }
    if (this.entries.size > 0) this.options.log(`outbox: ${this.entries.size} report(s) from an earlier run waiting for the hub`);
  }
}
