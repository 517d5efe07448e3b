// The hub's part in the signed log: seal what has committed every few seconds, and sign a checkpoint
// every AUDIT_CHECKPOINT_SECONDS when the log grew. Several hubs may run it: the database lets one
// sealer at a time append, in commit order, and a checkpoint of a size already signed changes nothing.
// Hubs that sign must share one key (AUDIT_KEY_FILE): a hub that finds the newest stored checkpoint
// signed by another key says so at start, since an auditor with the published key would flag the rest.
import type pg from 'pg';
import { loadOrCreateKey, type LogKey } from '../audit/key.ts';
import { latestStoredCheckpoint, sealOnce, signCheckpoint } from '../audit/log.ts';
import { openNote } from '../audit/note.ts';
import type { AuditConfig } from '../config.ts';
import { Serial } from '../core/serial.ts';

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
      await this.checkLatestSigner(key);
    }
    this.timer = setInterval(() => this.rounds.poke(), this.sealIntervalMs);
    this.rounds.poke();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.rounds.stop();
  }

  /** Warns when the newest stored checkpoint was signed by another key: two hubs with different AUDIT_KEY_FILEs. */
  private async checkLatestSigner(key: LogKey): Promise<void> {
    const latest = await latestStoredCheckpoint(this.deps.pool);
    if (!latest) return;
    try {
      openNote(latest.note, [key.verifierKey]);
    } catch {
      this.deps.log(
        `audit log: the newest stored checkpoint (size ${latest.treeSize}) was not signed by this hub's key ${key.verifierKey}: ` +
          'hubs that sign must share one AUDIT_KEY_FILE (or set AUDIT_CHECKPOINT_SECONDS=0 on all but one), else audit verify with ' +
          "the published key reports the other key's checkpoints",
      );
    }
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
