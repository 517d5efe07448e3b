// The hub's part in the signed log: seal what has committed every few seconds, and sign a checkpoint
// every AUDIT_CHECKPOINT_SECONDS when the log grew. Several hubs may run it: the database lets one
// sealer at a time append, in commit order, and a checkpoint of a size already signed changes nothing.
import type pg from 'pg';
import { loadOrCreateKey, type LogKey } from '../audit/key.ts';
import { sealOnce, signCheckpoint } from '../audit/log.ts';
import type { AuditConfig } from '../config.ts';
import { Serial } from './serial.ts';

/** Batches per round: a busy ledger is caught up over a few rounds, not in one long transaction. */
const maxBatchesPerRound = 25;

export class AuditLoop {
  private timer: NodeJS.Timeout | undefined;
  private readonly rounds: Serial;
  private key: LogKey | undefined;
  private signedSize = 0;
  private lastSignedMs = 0;

  constructor(
    private readonly deps: { pool: pg.Pool; audit: AuditConfig; log: (line: string) => void; now?: () => number },
    private readonly sealIntervalMs = 2000,
  ) {
    this.rounds = new Serial('sealing the audit log', () => this.round(), deps.log);
  }

  async start(): Promise<void> {
    if (this.deps.audit.checkpointIntervalMs > 0) {
      const key = await loadOrCreateKey(this.deps.audit.keyFile, this.deps.audit.logName);
      this.key = key;
      if (key.created) this.deps.log(`created the audit log's signing key in ${this.deps.audit.keyFile}: back it up`);
      this.deps.log(`audit log: checkpoints signed by ${this.key.verifierKey}`);
    }
    this.timer = setInterval(() => this.rounds.poke(), this.sealIntervalMs);
    this.rounds.poke();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.rounds.stop();
  }

  private async round(): Promise<void> {
    let size = 0;
    for (let batch = 0; batch < maxBatchesPerRound; batch++) {
      const sealed = await sealOnce(this.deps.pool);
      size = sealed.size;
      if (sealed.sealed === 0) break;
    }
    const nowMs = (this.deps.now ?? Date.now)();
    if (!this.key || size <= this.signedSize || nowMs - this.lastSignedMs < this.deps.audit.checkpointIntervalMs) return;
    const checkpoint = await signCheckpoint(this.deps.pool, this.key, this.deps.audit.latestCheckpointFile);
    this.signedSize = checkpoint?.treeSize ?? this.signedSize;
    this.lastSignedMs = nowMs;
  }
}
