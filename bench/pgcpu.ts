// CPU time spent by the PostgreSQL backends serving the bench database, read from /proc (Linux, and the
// server on this machine). With node and PostgreSQL sharing two cores, CPU per operation on both sides
// explains most of what concurrency can and cannot buy.
import { readFileSync } from 'node:fs';
import type pg from 'pg';

/** Linux reports utime/stime in clock ticks; USER_HZ is 100 on every mainstream architecture. */
const ticksPerSecond = 100;

export type BackendCpu = { ms: Map<number, number> };

/** A snapshot of every backend of this database: pid → CPU ms so far; undefined when /proc is not readable. */
export async function backendCpu(pool: pg.Pool): Promise<BackendCpu | undefined> {
  const { rows } = await pool.query(`SELECT pid FROM pg_stat_activity WHERE datname = current_database()`);
  const ms = new Map<number, number>();
  for (const { pid } of rows as { pid: number }[]) {
    const value = processCpuMs(pid);
    if (value === undefined) return undefined;
    ms.set(pid, value);
  }
  return { ms };
}

/** CPU ms the backends used between two snapshots (backends that started in between count from zero). */
export function backendCpuSince(before: BackendCpu | undefined, after: BackendCpu | undefined): number | undefined {
  if (!before || !after) return undefined;
  let total = 0;
  for (const [pid, ms] of after.ms) total += ms - (before.ms.get(pid) ?? 0);
  return total;
}

function processCpuMs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / ticksPerSecond;
  } catch {
    return undefined;
  }
}
