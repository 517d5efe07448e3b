// Verifying the log: every event hashed again from the store, compared with its stored leaf, and the
// tree rebuilt from those hashes compared with every signed checkpoint. It names the first leaf that was
// altered, removed or inserted, and every checkpoint the events no longer reproduce. `audit verify`
// runs it alone; rebuild runs the same check (LogCheck) in its own pass over the events.
import type pg from 'pg';
import {
  countEvents,
  countLeaves,
  eventExists,
  isSealed,
  logHead,
  readAllEvents,
  readCheckpoints,
  readLeaves,
  streamsOutOfStep,
  type EventCursor,
  type LeafRow,
  type Queryable,
  type StoredEvent,
} from '../db/event-store.ts';
import { parseCheckpoint } from './checkpoint.ts';
import { eventLeafHash } from './leaf.ts';
import { MerkleFrontier } from './merkle.ts';
import { openNote } from './note.ts';

export type FindingKind = 'altered' | 'removed' | 'inserted' | 'checkpoint' | 'signature' | 'behind' | 'stream';
export type Finding = { kind: FindingKind; message: string; leafIndex?: number; globalPosition?: string };

/** A checkpoint whose signature was checked (or could not be: no key given) and that the events must reproduce. */
type TrustedCheckpoint = { treeSize: number; rootHash: Buffer; source: string };

export type LogReport = {
  ok: boolean;
  findings: Finding[];
  /** leaves in the log, events in the store, and events not sealed yet */
  treeSize: number;
  events: number;
  unsealed: number;
  /** checkpoints checked (signed by the key and reproduced by the events) */
  checkpoints: number;
  /** false when no verifier key was given: roots compared, signatures not checked */
  signaturesChecked: boolean;
};

export type VerifyOptions = {
  /** the log's verifier key(s): the auditor's own copy, or the one derived from the key file */
  verifierKeys: string[];
  /** the latest checkpoint kept outside the database (beside the key), if any */
  outsideCheckpoint?: { note: string; source: string };
  onProgress?: (done: number, total: number) => void;
};

/** Checks the signatures of the stored checkpoints (and the one kept outside): the ones that pass are what the events must match. */
export async function trustedCheckpoints(
  db: Queryable,
  options: VerifyOptions,
): Promise<{ checkpoints: TrustedCheckpoint[]; findings: Finding[] }> {
  const findings: Finding[] = [];
  const checkpoints: TrustedCheckpoint[] = [];
  const consider = (note: string, source: string, stored?: { treeSize: number; rootHash: Buffer }) => {
    const body = options.verifierKeys.length > 0 ? opened(note, options.verifierKeys) : unsigned(note);
    if (typeof body === 'string') {
      findings.push({ kind: 'signature', message: `${source}: ${body}` });
      return;
    }
    if (stored && (stored.treeSize !== body.treeSize || !stored.rootHash.equals(body.rootHash))) {
      findings.push({ kind: 'signature', message: `${source}: the stored size or root differs from what its note signs` });
      return;
    }
    checkpoints.push({ treeSize: body.treeSize, rootHash: body.rootHash, source });
  };
  const stored = await readCheckpoints(db);
  for (const checkpoint of stored)
    consider(checkpoint.note, `checkpoint ${checkpoint.treeSize} (signed ${checkpoint.signedAt})`, checkpoint);
  // The copy kept outside matters when the database lost it (an older backup restored): else it is one of the above.
  const outside = options.outsideCheckpoint;
  if (outside && !stored.some((checkpoint) => checkpoint.note === outside.note))
    consider(outside.note, `the checkpoint kept in ${outside.source}`);
  checkpoints.sort((a, b) => a.treeSize - b.treeSize);
  return { checkpoints, findings };

  function opened(note: string, keys: string[]) {
    try {
      const { text, signatures } = openNote(note, keys);
      const body = parseCheckpoint(text);
      const names = new Set(signatures.map((s) => s.name));
      if (!names.has(body.origin)) return `its origin ${body.origin} is not the name of the key that signed it`;
      return body;
    } catch (error) {
      return (error as Error).message;
    }
  }
  function unsigned(note: string) {
    try {
      return parseCheckpoint(note.slice(0, note.indexOf('\n\n') + 1));
    } catch (error) {
      return (error as Error).message;
    }
  }
}

/**
 * The check itself, fed the events in commit order: each sealed event's hash against its stored leaf,
 * the tree they build against each trusted checkpoint, and no unsealed event inside sealed history.
 * With `leavesFrom` (rebuild's check), stored leaves are read only from that index on (the tail the
 * latest signed checkpoint does not cover yet); before it, the signed roots alone are the evidence.
 */
export class LogCheck {
  readonly findings: Finding[] = [];
  readonly #frontier = new MerkleFrontier();
  #leaves: LeafRow[] = [];
  #leafBatches: AsyncGenerator<LeafRow[]>;
  #index = 0;
  #aligned = true;
  #nextCheckpoint = 0;
  #lastGoodSize = 0;
  #events = 0;
  #unsealed = 0;

  constructor(
    private readonly db: Queryable,
    readonly treeSize: number,
    private readonly last: EventCursor | null,
    private readonly checkpoints: TrustedCheckpoint[],
    private readonly leavesFrom = 0,
  ) {
    this.#leafBatches = readLeaves(db, leavesFrom);
  }

  static async start(db: Queryable, checkpoints: TrustedCheckpoint[], options: { leavesFrom?: number } = {}): Promise<LogCheck> {
    const head = await logHead(db).catch(() => undefined);
    const size = head?.size ?? (await countLeaves(db));
    return new LogCheck(db, size, head?.last ?? null, checkpoints, Math.min(options.leavesFrom ?? 0, size));
  }

  get events(): number {
    return this.#events;
  }

  get unsealed(): number {
    return this.#unsealed;
  }

  get checkpointsMatched(): number {
    return this.#nextCheckpoint;
  }

  /** The next events in commit order (hashed here, before anything else may touch them). */
  async accept(batch: StoredEvent[]): Promise<void> {
    for (const stored of batch) {
      this.#events++;
      if (this.#index >= this.treeSize) {
        this.#afterTheLog(stored);
        continue;
      }
      if (!this.#aligned) continue;
      const hash = eventLeafHash(stored);
      if (this.#index >= this.leavesFrom) {
        const leaf = await this.#nextLeaf();
        if (leaf.globalPosition !== stored.globalPosition) {
          await this.#misaligned(leaf, stored);
          continue;
        }
        if (!hash.equals(leaf.leafHash)) {
          this.#first(
            'altered',
            `leaf ${leaf.leafIndex} (global position ${leaf.globalPosition}, ${stored.event.type} in ${stored.streamId}) was altered: the event no longer hashes to its leaf`,
            leaf,
          );
        }
      }
      this.#frontier.push(hash);
      this.#index++;
      this.#compareCheckpoints();
    }
  }

  async finish(): Promise<Finding[]> {
    // (Before leavesFrom, missing events show as a checkpoint the events no longer reach, below.)
    if (this.#aligned && this.#index < this.treeSize && this.#index >= this.leavesFrom) {
      const leaf = await this.#nextLeaf();
      this.#first(
        'removed',
        `leaf ${leaf.leafIndex} (global position ${leaf.globalPosition}) was removed: no event holds it any more`,
        leaf,
      );
    }
    for (const checkpoint of this.checkpoints.slice(this.#nextCheckpoint)) {
      if (checkpoint.treeSize > this.#frontier.size && this.#aligned) {
        this.findings.push({
          kind: 'behind',
          message:
            `${checkpoint.source} signs ${checkpoint.treeSize} leaves but the events make only ${this.#frontier.size}: ` +
            'events were removed, or this database was restored from an older backup',
        });
      }
    }
    return this.findings;
  }

  #afterTheLog(stored: StoredEvent): void {
    this.#unsealed++;
    const last = this.last;
    if (!last) return;
    const before =
      BigInt(stored.transactionId) < BigInt(last.transactionId) ||
      (stored.transactionId === last.transactionId && BigInt(stored.globalPosition) < BigInt(last.globalPosition));
    if (before) {
      this.#first(
        'inserted',
        `an event was inserted into sealed history: global position ${stored.globalPosition} (${stored.event.type} in ${stored.streamId}) ` +
          'commits before the last sealed event but has no leaf',
        { globalPosition: stored.globalPosition },
      );
    }
  }

  async #misaligned(leaf: LeafRow, stored: StoredEvent): Promise<void> {
    this.#aligned = false;
    if (!(await eventExists(this.db, leaf.globalPosition))) {
      this.#first(
        'removed',
        `leaf ${leaf.leafIndex} (global position ${leaf.globalPosition}) was removed: no event holds it any more`,
        leaf,
      );
    } else if (!(await isSealed(this.db, stored.globalPosition))) {
      this.#first(
        'inserted',
        `an event was inserted at leaf ${leaf.leafIndex}: global position ${stored.globalPosition} ` +
          `(${stored.event.type} in ${stored.streamId}) is not in the log`,
        { leafIndex: leaf.leafIndex, globalPosition: stored.globalPosition },
      );
    } else {
      this.#first(
        'altered',
        `leaf ${leaf.leafIndex} (global position ${leaf.globalPosition}) was moved: another event now commits in its place`,
        leaf,
      );
    }
  }

  #compareCheckpoints(): void {
    while (this.#nextCheckpoint < this.checkpoints.length && this.checkpoints[this.#nextCheckpoint]!.treeSize <= this.#frontier.size) {
      const checkpoint = this.checkpoints[this.#nextCheckpoint]!;
      if (!this.#frontier.root().equals(checkpoint.rootHash)) {
        const first = this.findings.find((f) => f.kind === 'altered');
        const where =
          checkpoint.treeSize > this.leavesFrom
            ? `: an event among leaves ${this.#lastGoodSize} to ${checkpoint.treeSize - 1} was altered together with its stored leaf hash`
            : `: an event among the first ${checkpoint.treeSize} was altered, removed or inserted since it was signed (capsul audit verify names it)`;
        this.findings.push({ kind: 'checkpoint', message: `${checkpoint.source} does not match the events${first ? '' : where}` });
      } else {
        this.#lastGoodSize = checkpoint.treeSize;
      }
      this.#nextCheckpoint++;
    }
  }

  async #nextLeaf(): Promise<LeafRow> {
    if (this.#leaves.length === 0) {
      const next = await this.#leafBatches.next();
      this.#leaves = next.done ? [] : next.value.reverse();
    }
    const leaf = this.#leaves.pop();
    if (!leaf) throw new Error(`the log's leaf ${this.#index} is missing`);
    return leaf;
  }

  #first(kind: FindingKind, message: string, at: { leafIndex?: number; globalPosition?: string }): void {
    if (this.findings.some((f) => f.kind === kind)) return;
    this.findings.push({ kind, message, leafIndex: at.leafIndex, globalPosition: at.globalPosition });
  }
}

/** `capsul audit verify`: the whole check in one snapshot (a read-only transaction on the reader's connection). */
export async function verifyLog(pool: pg.Pool, options: VerifyOptions): Promise<LogReport> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const { checkpoints, findings } = await trustedCheckpoints(client, options);
    const check = await LogCheck.start(client, checkpoints);
    const total = options.onProgress ? await countEvents(client) : 0;
    for await (const batch of readAllEvents(client)) {
      await check.accept(batch);
      options.onProgress?.(check.events, total);
    }
    findings.push(...(await check.finish()));
    for (const stream of await streamsOutOfStep(client)) {
      findings.push({
        kind: 'stream',
        message: `stream ${stream.streamId} says it is at position ${stream.position} but its last event is ${stream.lastEvent}: appends to it would fail`,
      });
    }
    return {
      ok: findings.length === 0,
      findings,
      treeSize: check.treeSize,
      events: check.events,
      unsealed: check.unsealed,
      checkpoints: check.checkpointsMatched,
      signaturesChecked: options.verifierKeys.length > 0,
    };
  } finally {
    await client.query('ROLLBACK').catch(() => {});
    client.release();
  }
}
