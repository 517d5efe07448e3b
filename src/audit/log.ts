// Sealing events into the log and signing checkpoints: what the hub does on a schedule and
// `capsul audit checkpoint` does on demand, on capsul_app's connections (the database checks the order
// of what is sealed: capsul_log_seal in schema_migrations/13_up_audit_log.sql).
import type pg from 'pg';
import {
  addCheckpoint,
  lockSealer,
  logHead,
  logRoot,
  readCheckpoints,
  readSealable,
  sealLeaves,
  transactionHorizon,
  type Queryable,
} from '../db/event-store.ts';
import { inTransaction } from '../db/transaction.ts';
import { formatCheckpoint, parseCheckpoint } from './checkpoint.ts';
import { readLatestCheckpoint, writeLatestCheckpoint, type LogKey } from './key.ts';
import { eventLeafHash } from './leaf.ts';
import { signNote } from './note.ts';

/** Leaves sealed per transaction: bounded work and memory, and a short lock. */
export const sealBatchSize = 2000;

/**
 * Seals the next events (at most one batch) in one transaction: reads them in commit order below the
 * oldest running transaction, hashes them, and appends their leaves and the tree hashes they complete.
 * Returns how many it sealed and the log's size after.
 */
export async function sealOnce(
  pool: pg.Pool,
  options: { batchSize?: number; before?: string } = {},
): Promise<{ sealed: number; size: number }> {
  return inTransaction(pool, async (db) => {
    await lockSealer(db);
    const head = await logHead(db);
    const events = await readSealable(db, head.last, options.batchSize ?? sealBatchSize, options.before);
    if (events.length === 0) return { sealed: 0, size: head.size };
    const size = await sealLeaves(db, {
      firstIndex: head.size,
      positions: events.map((e) => e.globalPosition),
      leafHashes: events.map(eventLeafHash),
    });
    return { sealed: events.length, size };
  });
}

/**
 * Seals everything committed before this call: every transaction older than it, however late it
 * commits, and nothing newer (so it ends while writers keep writing). Waits up to `waitMs` for
 * transactions still in flight; returns what it sealed, and whether some are still awaited.
 */
export async function sealCommitted(
  pool: pg.Pool,
  options: { waitMs?: number; onProgress?: (sealed: number) => void } = {},
): Promise<{ sealed: number; size: number; waiting: boolean }> {
  const { next } = await transactionHorizon(pool);
  const deadline = Date.now() + (options.waitMs ?? 10_000);
  let sealed = 0;
  while (true) {
    // Asked before the round: when every transaction that began before the call had ended by then, a
    // round that finds nothing left below `next` has sealed all they wrote.
    const { oldestRunning } = await transactionHorizon(pool);
    const allEnded = BigInt(oldestRunning) >= BigInt(next);
    const round = await sealOnce(pool, { before: next });
    sealed += round.sealed;
    options.onProgress?.(sealed);
    if (round.sealed > 0) continue;
    if (allEnded) return { sealed, size: round.size, waiting: false };
    if (Date.now() >= deadline) return { sealed, size: round.size, waiting: true };
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The root of the stored tree at `treeSize`. */
export function storedRoot(db: Queryable, treeSize: number): Promise<Buffer> {
  return logRoot(db, treeSize);
}

export type SignedCheckpoint = { treeSize: number; rootHash: Buffer; note: string; added: boolean };

/**
 * Signs a checkpoint of the log as it is now (nothing when it is empty or already signed at this size),
 * stores it, and keeps it as the latest beside the key unless a larger one is there.
 */
export async function signCheckpoint(pool: pg.Pool, key: LogKey, latestFile: string): Promise<SignedCheckpoint | undefined> {
  const { size } = await logHead(pool);
  if (size === 0) return undefined;
  const rootHash = await storedRoot(pool, size);
  const note = signNote(formatCheckpoint({ origin: key.name, treeSize: size, rootHash }), key.signerKey);
  const added = await addCheckpoint(pool, { treeSize: size, rootHash, note });
  const kept = await readLatestCheckpoint(latestFile)
    .then((text) => (text ? sizeOf(text) : 0))
    .catch(() => 0);
  if (size >= kept) await writeLatestCheckpoint(latestFile, note);
  return { treeSize: size, rootHash, note, added };
}

function sizeOf(note: string): number {
  try {
    return parseCheckpoint(note.slice(0, note.indexOf('\n\n') + 1)).treeSize;
  } catch {
    return 0;
  }
}

/** The newest stored checkpoint, if any. */
export async function latestStoredCheckpoint(db: Queryable) {
  return (await readCheckpoints(db)).at(-1);
}
