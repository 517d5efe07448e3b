// `capsul audit prove --payment ID`: an inclusion proof (RFC 9162 §2.1.3) that the event which
// recorded a payment is in the log as the latest stored checkpoint signed it. The proof is checked
// against that checkpoint before it is printed; verify-log.mjs --proof checks it again elsewhere.
import type pg from 'pg';
import { paymentRecordedEvent, readCheckpoints, readSubtrees } from '../db/event-store.ts';
import { parseCheckpoint } from './checkpoint.ts';
import { eventLeafHash, leafText } from './leaf.ts';
import { inclusionProof, inclusionProofSubtrees, verifyInclusion } from './merkle.ts';

export class ProofError extends Error {}

export type PaymentProof = {
  paymentId: number;
  globalPosition: string;
  leafIndex: number;
  treeSize: number;
  /** the leaf's exact bytes (canonical JSON) */
  leaf: string;
  leafHash: string;
  auditPath: string[];
  /** the signed checkpoint note the proof is against */
  checkpoint: string;
};

export async function provePayment(pool: pg.Pool, paymentId: number): Promise<PaymentProof> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const stored = await paymentRecordedEvent(client, paymentId);
    if (!stored) throw new ProofError(`there is no payment ${paymentId}`);
    const checkpoint = (await readCheckpoints(client)).at(-1);
    const leafIndex = stored.leafIndex ?? null;
    if (leafIndex === null || !checkpoint || checkpoint.treeSize <= leafIndex) {
      throw new ProofError(`payment ${paymentId}'s event is not in a signed checkpoint yet: run capsul audit checkpoint, then ask again`);
    }
    const { treeSize } = checkpoint;
    const hashes = await readSubtrees(client, inclusionProofSubtrees(leafIndex, treeSize));
    const path = await inclusionProof(leafIndex, treeSize, (level, index) => {
      const hash = hashes.get(`${level}/${index}`);
      if (!hash) throw new ProofError(`the log's tree hash ${level}/${index} is missing: run capsul audit verify`);
      return hash;
    });
    const hash = eventLeafHash(stored);
    const root = parseCheckpoint(checkpoint.note.slice(0, checkpoint.note.indexOf('\n\n') + 1)).rootHash;
    if (!verifyInclusion(hash, leafIndex, treeSize, path, root)) {
      throw new ProofError(`the log does not prove payment ${paymentId}'s event against checkpoint ${treeSize}: run capsul audit verify`);
    }
    return {
      paymentId,
      globalPosition: stored.globalPosition,
      leafIndex,
      treeSize,
      leaf: leafText(stored),
      leafHash: hash.toString('base64'),
      auditPath: path.map((h) => h.toString('base64')),
      checkpoint: checkpoint.note,
    };
  } finally {
    await client.query('ROLLBACK').catch(() => {});
    client.release();
  }
}
