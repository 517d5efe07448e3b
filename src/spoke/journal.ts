// The operations this spoke has taken on, in `<dataDir>/journal.jsonl`: each one is marked started
// (fsynced) before the driver is called, marked called once the driver accepted it, and finished with
// the reports that tell its outcome. An operation id found here is never run again.
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, writeSync } from 'node:fs';
import type { Operation, Report } from './protocol.ts';
import { writeFileAtomic } from './files.ts';

export type JournalEntry = {
  operation: Operation;
  startedAtMs: number;
  /** the driver accepted the request (the capsul may still be on its way to the wanted state) */
  called: boolean;
  /** the reports that tell the hub the outcome; null while unfinished */
  reports: Report[] | null;
};

type Line =
  | { type: 'started'; operation: Operation; atMs: number }
  | { type: 'called'; operationId: string }
  | { type: 'finished'; operationId: string; reports: Report[] };

export class JournalCorruptError extends Error {}

export type JournalOptions = {
  /** finished operations remembered; the hub stops delivering an operation long before this many follow it */
  maxFinished?: number;
  log: (line: string) => void;
};

export class Journal {
  /** in the order the operations were started */
  private readonly entries = new Map<string, JournalEntry>();
  private fd: number | null = null;
  private linesWritten = 0;
  private readonly maxFinished: number;

  private constructor(
    private readonly file: string,
    private readonly options: JournalOptions,
  ) {
    this.maxFinished = options.maxFinished ?? 10_000;
  }

  static open(file: string, options: JournalOptions): Journal {
    const journal = new Journal(file, options);
    const cleanEnd = journal.load();
    if (!cleanEnd || journal.finishedCount() > journal.maxFinished) journal.compact();
    journal.fd = openSync(file, 'a', 0o600);
    return journal;
  }

  get(operationId: string): JournalEntry | undefined {
    return this.entries.get(operationId);
  }

  unfinished(): JournalEntry[] {
    return [...this.entries.values()].filter((entry) => entry.reports === null);
  }

  start(operation: Operation, atMs: number): void {
    if (this.entries.has(operation.id)) throw new Error(`operation ${operation.id} was already started`);
    this.append({ type: 'started', operation, atMs });
    this.entries.set(operation.id, { operation, startedAtMs: atMs, called: false, reports: null });
  }

  called(operationId: string): void {
    const entry = this.mustGet(operationId);
    this.append({ type: 'called', operationId });
    entry.called = true;
  }

  finish(operationId: string, reports: Report[]): void {
    const entry = this.mustGet(operationId);
    if (entry.reports !== null) throw new Error(`operation ${operationId} was already finished`);
    this.append({ type: 'finished', operationId, reports });
    entry.reports = reports;
    if (this.linesWritten > 3 * this.maxFinished) this.compact();
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }

  private mustGet(operationId: string): JournalEntry {
    const entry = this.entries.get(operationId);
    if (!entry) throw new Error(`operation ${operationId} was never started`);
    return entry;
  }

  private append(line: Line): void {
    if (this.fd === null) throw new Error('the journal is closed');
    writeSync(this.fd, `${JSON.stringify(line)}\n`);
    fsyncSync(this.fd);
    this.linesWritten++;
  }

  private finishedCount(): number {
    let count = 0;
    for (const entry of this.entries.values()) if (entry.reports !== null) count++;
    return count;
  }

  /** Reads the file; returns false when its last line was cut short by a crash (then it must be rewritten). */
  private load(): boolean {
    if (!existsSync(this.file)) return true;
    const lines = readFileSync(this.file, 'utf8').split('\n');
    const last = lines.pop(); // '' when the file ends with a newline, as every complete append does
    for (const [index, text] of lines.entries()) {
      let line: Line;
      try {
        line = JSON.parse(text) as Line;
      } catch {
        throw new JournalCorruptError(
          `${this.file} line ${index + 1} is not JSON: the journal is damaged, refusing to risk running an operation twice`,
        );
      }
      this.apply(line, index + 1);
    }
    if (last === '') return true;
    this.options.log(`journal: ignoring an incomplete last line in ${this.file} (written when the spoke stopped abruptly)`);
    return false;
  }

  private apply(line: Line, lineNumber: number): void {
    if (line.type === 'started') {
      this.entries.set(line.operation.id, { operation: line.operation, startedAtMs: line.atMs, called: false, reports: null });
      return;
    }
    const entry = this.entries.get(line.operationId);
    if (!entry) throw new JournalCorruptError(`${this.file} line ${lineNumber} names operation ${line.operationId}, never started`);
    if (line.type === 'called') entry.called = true;
    else entry.reports = line.reports;
  }

  /** Rewrites the file with every unfinished operation and the latest finished ones. */
  private compact(): void {
    let toForget = this.finishedCount() - this.maxFinished;
    for (const [id, entry] of this.entries) {
      if (toForget <= 0) break;
      if (entry.reports === null) continue;
      this.entries.delete(id);
      toForget--;
    }
    const lines: Line[] = [];
    for (const entry of this.entries.values()) {
      lines.push({ type: 'started', operation: entry.operation, atMs: entry.startedAtMs });
      if (entry.called) lines.push({ type: 'called', operationId: entry.operation.id });
      if (entry.reports !== null) lines.push({ type: 'finished', operationId: entry.operation.id, reports: entry.reports });
    }
    const reopen = this.fd !== null;
    this.close();
    writeFileAtomic(this.file, lines.map((line) => `${JSON.stringify(line)}\n`).join(''));
    this.linesWritten = 0;
    if (reopen) this.fd = openSync(this.file, 'a', 0o600);
  }
}
