// The log's signing key: an Ed25519 key in Go's signer-key text (PRIVATE+KEY+<name>+<hash>+<base64>),
// kept in a file outside the database (AUDIT_KEY_FILE), created on first use. What the database holds
// can then be checked by anyone with the public verifier key, and forged by no one who lacks the file.
import { constants } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { chmod, link, mkdir, open, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { generateSignerKey, isValidKeyName, verifierKeyFor } from './note.ts';

export type LogKey = { signerKey: string; verifierKey: string; name: string };

export class AuditKeyError extends Error {}

/** The key in `file`, or a new one named `name` written there (mode 0600) when there is none yet. */
export async function loadOrCreateKey(file: string, name: string): Promise<LogKey & { created: boolean }> {
  const existing = await readKey(file);
  if (existing) return { ...existing, created: false };
  if (!isValidKeyName(name)) throw new AuditKeyError(`the log's name "${name}" is not a key name (no spaces, no "+"): set AUDIT_LOG_NAME`);
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const { signerKey } = generateSignerKey(name);
  // Written whole to a file of our own, then linked into place: link() fails if the key exists, so two
  // processes creating it at once cannot both win, and no one ever reads a half-written key.
  const temporary = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const handle = await open(temporary, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  try {
    await handle.writeFile(`${signerKey}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await link(temporary, file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return { ...(await requireKey(file)), created: false };
    throw new AuditKeyError(`cannot create the log's key ${file}: ${(error as Error).message}`);
  } finally {
    await unlink(temporary).catch(() => {});
  }
  return { ...keyFrom(signerKey, file), created: true };
}

/** The key in `file`; an error that says so when there is none. */
export async function requireKey(file: string): Promise<LogKey> {
  const key = await readKey(file);
  if (!key) throw new AuditKeyError(`there is no log key at ${file}: capsul audit key creates one (AUDIT_KEY_FILE)`);
  return key;
}

async function readKey(file: string): Promise<LogKey | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new AuditKeyError(`cannot read the log's key ${file}: ${(error as Error).message}`);
  }
  if (text.trim() === '') throw new AuditKeyError(`the log's key file ${file} is empty`);
  return keyFrom(text.trim(), file);
}

function keyFrom(signerKey: string, file: string): LogKey {
  try {
    const verifierKey = verifierKeyFor(signerKey);
    return { signerKey, verifierKey, name: verifierKey.slice(0, verifierKey.indexOf('+')) };
  } catch (error) {
    throw new AuditKeyError(`${file} does not hold a log key: ${(error as Error).message}`);
  }
}

/** The last checkpoint this machine signed or saw, kept beside the key: a restored older database shows up against it. */
export async function readLatestCheckpoint(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new AuditKeyError(`cannot read ${file}: ${(error as Error).message}`);
  }
}

export async function writeLatestCheckpoint(file: string, note: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, note, { mode: 0o644 });
  await chmod(temporary, 0o644);
  await rename(temporary, file);
}

/**
 * What this machine knows to check the log against: the verifier key given (an auditor's own copy,
 * AUDIT_VERIFIER_KEY) and the one of the key file if it is here, and the latest checkpoint kept beside it.
 */
export async function localEvidence(
  audit: { keyFile: string; latestCheckpointFile: string; verifierKey: string | undefined },
  givenKey?: string,
): Promise<{ verifierKeys: string[]; outsideCheckpoint?: { note: string; source: string } }> {
  const keys = [givenKey, audit.verifierKey].filter((key): key is string => key !== undefined);
  if (keys.length === 0) {
    const key = await readKey(audit.keyFile).catch(() => undefined);
    if (key) keys.push(key.verifierKey);
  }
  const note = await readLatestCheckpoint(audit.latestCheckpointFile).catch(() => undefined);
  return { verifierKeys: keys, ...(note ? { outsideCheckpoint: { note, source: audit.latestCheckpointFile } } : {}) };
}
