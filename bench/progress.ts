// Progress on stderr while the bench runs: one `\r`-rewritten line on a terminal, an occasional plain
// line otherwise (CI logs, pipes), so a long phase never looks stuck and logs stay short.
const plainEveryMs = 5_000;
const ttyEveryMs = 100;

export class Progress {
  private readonly tty = Boolean(process.stderr.isTTY);
  private lastMs = 0;
  private lineOpen = false;

  /** A progress update; shown at most every 100 ms on a terminal, every 5 s otherwise. */
  update(text: string): void {
    const nowMs = Date.now();
    if (nowMs - this.lastMs < (this.tty ? ttyEveryMs : plainEveryMs)) return;
    this.lastMs = nowMs;
    if (this.tty) {
      process.stderr.write(`\r\x1b[2K${text}`);
      this.lineOpen = true;
    } else {
      process.stderr.write(`  … ${text}\n`);
    }
  }

  /** A line that stays (a phase started or finished). */
  note(text: string): void {
    this.clear();
    process.stderr.write(`${text}\n`);
    // On a terminal the next update may show at once; in a log, wait the usual interval after a note.
    this.lastMs = this.tty ? 0 : Date.now();
  }

  clear(): void {
    if (this.lineOpen) process.stderr.write('\r\x1b[2K');
    this.lineOpen = false;
  }
}

export const fmtInt = (n: number) => Math.round(n).toLocaleString('en-US');
export const fmtRate = (n: number) => (n >= 100 ? fmtInt(n) : n.toFixed(1));

/** A plain-text table: columns padded, numbers right-aligned. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const isNumeric = (text: string) => /^[-+]?[\d,.]+( ?[a-z/%×]+)?$/i.test(text) && /\d/.test(text);
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i > 0 && isNumeric(c) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}
