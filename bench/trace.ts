// Where an operation's time goes, seen from the client: every statement sent on a pool's connections
// is counted (one statement = one round trip with node-postgres, which never pipelines) and timed from
// send to result, grouped by a short label of its SQL.
import { performance } from 'node:perf_hooks';
import type pg from 'pg';
import { createPool } from '../src/db/database.ts';

export type StatementStats = { label: string; count: number; totalMs: number };

export class StatementTrace {
  private readonly stats = new Map<string, StatementStats>();
  recording = false;

  /** A pool whose connections report every statement to this trace while `recording` is on. */
  pool(connectionString: string, max: number): pg.Pool {
    const pool = createPool(connectionString, max);
    pool.on('connect', (client) => this.instrument(client));
    return pool;
  }

  reset(): void {
    this.stats.clear();
  }

  /** Statements per operation, most frequent first. */
  perOperation(operations: number): { label: string; perOp: number; msPerOp: number }[] {
    return [...this.stats.values()]
      .sort((a, b) => b.count - a.count || b.totalMs - a.totalMs)
      .map((s) => ({ label: s.label, perOp: s.count / operations, msPerOp: s.totalMs / operations }));
  }

  private instrument(client: pg.PoolClient): void {
    const original = client.query.bind(client) as (...args: unknown[]) => unknown;
    (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
      if (!this.recording) return original(...args);
      const first = args[0] as string | { text?: string };
      const label = labelOf(typeof first === 'string' ? first : (first?.text ?? '?'));
      const started = performance.now();
      const record = () => {
        const entry = this.stats.get(label) ?? { label, count: 0, totalMs: 0 };
        entry.count++;
        entry.totalMs += performance.now() - started;
        this.stats.set(label, entry);
      };
      // pool.query passes a callback; emmett (through dumbo) awaits the returned promise.
      const last = args.at(-1);
      if (typeof last === 'function') {
        args[args.length - 1] = (...results: unknown[]) => {
          record();
          return (last as (...r: unknown[]) => unknown)(...results);
        };
        return original(...args);
      }
      const result = original(...args);
      if (isPromise(result)) result.then(record, record);
      return result;
    };
  }
}

function isPromise(value: unknown): value is Promise<unknown> {
  return typeof (value as Promise<unknown> | undefined)?.then === 'function';
}

/** A short, stable name for a statement: the first words, the table or function it touches. */
export function labelOf(sql: string): string {
  const text = sql.replace(/\s+/g, ' ').trim();
  const fn = /\b((?:emt|capsul)_[a-z_]+|set_config|nextval|pg_(?:try_)?advisory_[a-z_]+)\s*\(/i.exec(text);
  if (/^(BEGIN|COMMIT|ROLLBACK)\b/i.test(text)) return text.split(' ')[0]!.toUpperCase();
  if (fn && /^SELECT/i.test(text)) {
    const what = fn[1]!.toLowerCase();
    return what === 'set_config' ? 'SELECT set_config(capsul.projector)' : `SELECT ${what}(…)`;
  }
  const verb = text.split(' ')[0]!.toUpperCase();
  const table = /\b(?:FROM|INTO|UPDATE)\s+([a-z_][a-z0-9_.]*)/i.exec(text)?.[1];
  const where = /\bWHERE\s+([a-z_][a-z0-9_.]*)/i.exec(text)?.[1];
  return [verb, table, where ? `by ${where}` : ''].filter(Boolean).join(' ');
}
