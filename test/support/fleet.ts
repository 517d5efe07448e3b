// What the end-to-end tests of hubs and spokes as separate processes share: launching `bin/capsul.js`
// and ending it, bounded waits, and reading what a spoke keeps in its data dir (journal, outbox, the
// simulated driver's capsuls). Used by test/e2e/spokes.e2e.test.ts and test/e2e/two-hubs.e2e.test.ts.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type pg from 'pg';
import type { Report } from '../../src/spoke/protocol.ts';
import { isAlive, projectRoot } from './processes.ts';

export type Launched = { name: string; child: ChildProcess; output: () => string; exited: Promise<number | null> };

const maxOutputChars = 200_000;

/** `node bin/capsul.js <args>`, its output kept (the newest part) for a failing test to show. */
export function launch(name: string, args: string[], env: NodeJS.ProcessEnv): Launched {
  const child = spawn(process.execPath, ['bin/capsul.js', ...args], { cwd: projectRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (chunk: Buffer) => {
    output += chunk.toString();
    if (output.length > maxOutputChars) output = output.slice(-maxOutputChars / 2);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { name, child, output: () => output, exited };
}

/** The environment of a child: the test's, without what would make it a test or point it at a database it was not given. */
export function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  delete env.NODE_TEST_CONTEXT;
  delete env.NODE_OPTIONS;
  if (!extra.DATABASE_URL) delete env.DATABASE_URL;
  return env;
}

export function isRunning(proc: Launched | undefined): boolean {
  return proc !== undefined && proc.child.exitCode === null && proc.child.signalCode === null;
}

export async function killHard(proc: Launched, timeoutMs: number): Promise<void> {
  proc.child.kill('SIGKILL');
  await bounded(`${proc.name} to die`, proc.exited, timeoutMs);
  assert.equal(proc.child.signalCode, 'SIGKILL');
  assert.equal(isAlive(proc.child.pid!), false);
}

export async function stopHard(proc: Launched, timeoutMs: number): Promise<void> {
  if (!isRunning(proc)) return;
  proc.child.kill('SIGKILL');
  await bounded(`${proc.name} to die`, proc.exited, timeoutMs).catch(() => {});
}

/** The last lines of each process: where an end-to-end failure is read. */
export function outputTails(procs: readonly Launched[], lines = 25): string {
  return procs
    .map((proc) => `── ${proc.name} (pid ${proc.child.pid}) ──\n${proc.output().split('\n').slice(-lines).join('\n')}`)
    .join('\n');
}

// ── waiting ───────────────────────────────────────────────────────────────────────────────────────

/** Polls `probe` until it returns something other than false or undefined; fails after `timeoutMs`. */
export async function waitFor<T>(what: string, probe: () => Promise<T | false | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== false && value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`gave up after ${timeoutMs / 1000} s waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

export async function bounded<T>(what: string, promise: Promise<T>, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`gave up after ${timeoutMs / 1000} s waiting for ${what}`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// ── a spoke's data dir ────────────────────────────────────────────────────────────────────────────

/** The operation ids a spoke's journal started and finished, one entry per line. */
export function readJournal(dataDir: string): { started: string[]; finished: string[] } {
  const file = path.join(dataDir, 'journal.jsonl');
  const lines = existsSync(file)
    ? readFileSync(file, 'utf8')
        .split('\n')
        .filter((line) => line.endsWith('}'))
    : [];
  const parsed = lines.map((line) => JSON.parse(line) as { type: string; operation?: { id: string }; operationId?: string });
  return {
    started: parsed.filter((line) => line.type === 'started').map((line) => line.operation!.id),
    finished: parsed.filter((line) => line.type === 'finished').map((line) => line.operationId!),
  };
}

/** What the simulated driver saved in a spoke's data dir (it rewrites the file whole, by rename). */
export function simulatedCapsuls(dataDir: string): { vmId: string; state: string; readyAtMs?: number }[] {
  const file = path.join(dataDir, 'simulated-capsuls.json');
  if (!existsSync(file)) return [];
  return (JSON.parse(readFileSync(file, 'utf8')) as { capsuls: { vmId: string; state: string; readyAtMs?: number }[] }).capsuls;
}

/** The reports waiting in a spoke's outbox. */
export function outboxReports(dataDir: string): Report[] {
  const dir = path.join(dataDir, 'outbox');
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((name) => name.endsWith('.json'))
    .flatMap((name) => {
      try {
        return [JSON.parse(readFileSync(path.join(dir, name), 'utf8')) as Report];
      } catch {
        return []; // sent and removed between the listing and the read
      }
    });
}

export function countBy(values: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const value of values) counts[value] = (counts[value] ?? 0) + 1;
  return counts;
}

export type CapsulFacts = {
  id: string;
  host: string | null;
  state: string;
  ipv4: string | null;
  placed: number;
  creates: number;
  createsCompleted: number;
  provisioned: number;
  failed: number;
  deletedEvents: number;
  deletes: number;
};

/** A capsul's row in `vms`, with how many times each fact about it was recorded. */
export async function capsulFacts(pool: pg.Pool, vmIds: string[]): Promise<CapsulFacts[]> {
  const events = (type: string) =>
    `(SELECT count(*)::int FROM emt_messages m WHERE m.stream_id = 'vm-' || v.id AND m.message_type = '${type}')`;
  const { rows } = await pool.query(
    `SELECT v.id, v.host, v.state, v.last_seen_ipv4 AS ipv4,
            ${events('VmPlaced')} AS placed, ${events('VmProvisioned')} AS provisioned,
            ${events('VmFailed')} AS failed, ${events('VmDeleted')} AS "deletedEvents",
            (SELECT count(*)::int FROM operations o WHERE o.vm_id = v.id AND o.kind = 'create') AS creates,
            (SELECT count(*)::int FROM operations o WHERE o.vm_id = v.id AND o.kind = 'create' AND o.completed IS NOT NULL) AS "createsCompleted",
            (SELECT count(*)::int FROM operations o WHERE o.vm_id = v.id AND o.kind = 'delete') AS deletes
     FROM vms v WHERE v.id = ANY($1::text[]) ORDER BY v.id`,
    [vmIds],
  );
  assert.equal(rows.length, vmIds.length, 'every capsul has its row in vms');
  return rows as CapsulFacts[];
}
