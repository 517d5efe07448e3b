// `capsul audit export`: everything an auditor needs to check the log with no database and no capsul —
// the leaves' exact bytes, every signed checkpoint, the verifier key, and a verifier that needs only Node.
import { createWriteStream } from 'node:fs';
import { copyFile, mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { countLeaves, readCheckpoints, readSealedEvents } from '../db/event-store.ts';
import { leafText } from './leaf.ts';

export const standaloneVerifier = fileURLToPath(new URL('./standalone/verify-log.mjs', import.meta.url));

export class ExportError extends Error {}

/**
 * Writes `dir`/leaves.jsonl (line i: leaf i's canonical bytes), `dir`/checkpoints/<size> (each signed
 * note as stored), `dir`/verifier.key, `dir`/verify-log.mjs and a README, from one snapshot.
 */
export async function exportLog(
  pool: pg.Pool,
  dir: string,
  options: { verifierKey: string; onProgress?: (done: number, total: number) => void },
): Promise<{ leaves: number; checkpoints: number }> {
  await mkdir(dir, { recursive: true });
  const existing = await readdir(dir);
  if (existing.length > 0) throw new ExportError(`${dir} is not empty: export into a new folder`);
  await mkdir(path.join(dir, 'checkpoints'));
  const client = await pool.connect();
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const checkpoints = await readCheckpoints(client);
    for (const checkpoint of checkpoints) {
      await writeFile(path.join(dir, 'checkpoints', String(checkpoint.treeSize).padStart(12, '0')), checkpoint.note);
    }
    const total = await countLeaves(client);
    const leaves = await writeLeaves(client, path.join(dir, 'leaves.jsonl'), (done) => options.onProgress?.(done, total));
    await writeFile(path.join(dir, 'verifier.key'), `${options.verifierKey}\n`);
    await copyFile(standaloneVerifier, path.join(dir, 'verify-log.mjs'));
    await writeFile(path.join(dir, 'README.txt'), readme(leaves, checkpoints.length, options.verifierKey));
    return { leaves, checkpoints: checkpoints.length };
  } finally {
    await client.query('ROLLBACK').catch(() => {});
    client.release();
  }
}

async function writeLeaves(client: pg.PoolClient, file: string, onProgress: (done: number) => void): Promise<number> {
  const out = createWriteStream(file);
  const finished = new Promise<void>((resolve, reject) => {
    out.on('finish', resolve);
    out.on('error', reject);
  });
  let written = 0;
  for await (const batch of readSealedEvents(client)) {
    for (const stored of batch) {
      if (stored.leafIndex !== written) throw new ExportError(`leaf ${written} is missing from the log: run capsul audit verify`);
      if (!out.write(`${leafText(stored)}\n`)) await new Promise<void>((resolve) => out.once('drain', () => resolve()));
      written++;
    }
    onProgress(written);
  }
  out.end();
  await finished;
  return written;
}

function readme(leaves: number, checkpoints: number, verifierKey: string): string {
  return `capsul ledger: an export of the signed event log
${leaves} leaves, ${checkpoints} signed checkpoints.

  leaves.jsonl      line i is leaf i: the event's bytes in RFC 8785 canonical JSON; its leaf hash is
                    SHA-256(0x00 || line) (RFC 6962), the tree is RFC 6962's Merkle tree over them
  checkpoints/      each file is a signed checkpoint (C2SP tlog-checkpoint in a signed note, Ed25519,
                    as Go's golang.org/x/mod/sumdb/note): origin, tree size, base64 root hash
  verifier.key      the verifier key the log says it is signed with: compare it with the one the
                    provider published, and pass yours with --key
  verify-log.mjs    a verifier that needs only Node.js 20 or later (no packages, no database)

Check everything:
  node verify-log.mjs . --key '${verifierKey}'
Compare with an export you kept from earlier (names the first leaf that differs):
  node verify-log.mjs . --key '<key>' --against <earlier export>
Check an inclusion proof (capsul audit prove --payment <id> > proof.json):
  node verify-log.mjs --proof proof.json --key '<key>'
`;
}
