// C2SP signed notes (c2sp.org/signed-note) with Ed25519, byte for byte as Go's
// golang.org/x/mod/sumdb/note writes and reads them, so Go's tools and witnesses verify ours.
import { createHash, createPrivateKey, createPublicKey, randomBytes, sign, verify, type KeyObject } from 'node:crypto';

const algEd25519 = 0x01;
const ed25519SeedBytes = 32;
const ed25519PublicKeyBytes = 32;
const ed25519SignatureBytes = 64;
const keyHashBytes = 4;
/** Go refuses notes with more signature lines than this, counting duplicates. */
export const maxNoteSignatures = 100;

// DER wrappers that turn raw Ed25519 key bytes into the PKCS#8 / SPKI forms node's crypto takes.
const pkcs8SeedPrefix = Buffer.from('302e020100300506032b657004220420', 'hex');
const spkiPublicKeyPrefix = Buffer.from('302a300506032b6570032100', 'hex');

const signatureSeparator = '\n\n';
const signaturePrefix = '— ';

export type NoteSignature = { readonly name: string; readonly keyHash: number; readonly base64: string };
export type OpenedNote = {
  readonly text: string;
  /** Signatures by the given verifier keys, each verified. */
  readonly signatures: readonly NoteSignature[];
  /** Signatures by keys not given: ignored, as the spec requires, but reported. */
  readonly unknownSignatures: readonly NoteSignature[];
};

type Verifier = { readonly name: string; readonly keyHash: number; readonly publicKey: KeyObject };
type Signer = { readonly name: string; readonly keyHash: number; readonly privateKey: KeyObject };

/** A fresh Ed25519 key pair for `name`, as Go's note.GenerateKey encodes it. */
export function generateSignerKey(name: string): { signerKey: string; verifierKey: string } {
  assertName(name);
  const seed = randomBytes(ed25519SeedBytes);
  const signerKey = encodeSignerKey(name, seed);
  return { signerKey, verifierKey: verifierKeyFor(signerKey) };
}

/** The public verifier key text `<name>+<hash>+<base64(0x01 ‖ public key)>` for a signer key. */
export function verifierKeyFor(signerKey: string): string {
  const signer = parseSignerKey(signerKey);
  return encodeVerifierKey(signer.name, rawPublicKey(createPublicKey(signer.privateKey)));
}

/** Signs `text` (which must end in a newline): text, a blank line, then `— <name> <base64(hash ‖ sig)>`. */
export function signNote(text: string, signerKey: string): string {
  assertNoteText(text);
  if (!text.endsWith('\n')) throw new Error('malformed note: the text must end with a newline');
  const signer = parseSignerKey(signerKey);
  const signature = sign(null, Buffer.from(text, 'utf8'), signer.privateKey);
  return `${text}\n${signaturePrefix}${signer.name} ${Buffer.concat([keyHashBytesOf(signer.keyHash), signature]).toString('base64')}\n`;
}

/**
 * Opens a signed note, as Go's note.Open: signatures by unknown keys are set aside, any signature by a
 * known key must verify, and at least one must. Throws a one-line Error otherwise.
 */
export function openNote(noteText: string, verifierKeys: readonly string[]): OpenedNote {
  const verifiers = verifierKeys.map(parseVerifierKey);
  const { text, signatureLines } = splitNote(noteText);
  const message = Buffer.from(text, 'utf8');
  const signatures: NoteSignature[] = [];
  const unknownSignatures: NoteSignature[] = [];
  for (const line of signatureLines) {
    const signature = parseSignatureLine(line);
    const verifier = findVerifier(verifiers, signature);
    // Go drops repeats: by a known key, any later signature (unchecked); by an unknown one, identical lines.
    const seen = verifier ? signatures : unknownSignatures;
    const repeats = (s: NoteSignature) =>
      s.name === signature.name && s.keyHash === signature.keyHash && (verifier !== undefined || s.base64 === signature.base64);
    if (seen.some(repeats)) continue;
    if (verifier && !verifySignature(verifier, message, signature))
      throw new Error(`invalid signature for key ${keyId(signature.name, signature.keyHash)}`);
    seen.push(signature);
  }
  if (signatures.length === 0) throw new Error(`note has no verifiable signatures (signed by ${describeSigners(unknownSignatures)})`);
  return { text, signatures, unknownSignatures };
}

// The text runs to the last blank line, and includes its own final newline; signature lines follow.
function splitNote(noteText: string): { text: string; signatureLines: string[] } {
  assertNoteText(noteText);
  const split = noteText.lastIndexOf(signatureSeparator);
  if (split < 0) throw new Error('malformed note: no blank line before the signatures');
  const block = noteText.slice(split + 2);
  if (block === '' || !block.endsWith('\n')) throw new Error('malformed note: the signature lines must end with a newline');
  const signatureLines = block.slice(0, -1).split('\n');
  if (signatureLines.length > maxNoteSignatures) throw new Error(`malformed note: more than ${maxNoteSignatures} signatures`);
  return { text: noteText.slice(0, split + 1), signatureLines };
}

/** Go's key names: non-empty, no Unicode white space, no '+', valid Unicode. */
export function isValidKeyName(name: string): boolean {
  return name !== '' && !/[\p{White_Space}+]|\p{Surrogate}/u.test(name);
}

function parseSignatureLine(line: string): NoteSignature {
  if (!line.startsWith(signaturePrefix)) throw new Error('malformed note: a signature line does not start with "— "');
  const rest = line.slice(signaturePrefix.length);
  const space = rest.indexOf(' ');
  const name = space < 0 ? rest : rest.slice(0, space);
  const base64 = space < 0 ? '' : rest.slice(space + 1);
  const bytes = decodeBase64(base64);
  if (!isValidKeyName(name) || !bytes || bytes.length < keyHashBytes + 1) {
    throw new Error(`malformed note: bad signature line for ${JSON.stringify(name)}`);
  }
  return { name, keyHash: bytes.readUInt32BE(0), base64 };
}

function findVerifier(verifiers: readonly Verifier[], signature: NoteSignature): Verifier | undefined {
  const matches = verifiers.filter((v) => v.name === signature.name && v.keyHash === signature.keyHash);
  if (matches.length > 1) throw new Error(`ambiguous key ${keyId(signature.name, signature.keyHash)}`);
  return matches[0];
}

function verifySignature(verifier: Verifier, message: Buffer, signature: NoteSignature): boolean {
  const bytes = decodeBase64(signature.base64)!.subarray(keyHashBytes);
  return bytes.length === ed25519SignatureBytes && verify(null, message, verifier.publicKey, bytes);
}

function parseVerifierKey(verifierKey: string): Verifier {
  const [name = '', hashHex = '', keyBase64 = ''] = cutPlus(verifierKey, 3);
  const key = decodeBase64(keyBase64);
  if (!isValidKeyName(name) || !/^[0-9a-fA-F]{8}$/.test(hashHex) || !key || key.length === 0) {
    throw new Error(`malformed verifier key ${JSON.stringify(verifierKey)}`);
  }
  if (key[0] !== algEd25519) throw new Error(`unknown verifier algorithm ${key[0]} in key ${keyId(name, Number.parseInt(hashHex, 16))}`);
  if (key.length !== 1 + ed25519PublicKeyBytes)
    throw new Error(`malformed verifier key ${JSON.stringify(verifierKey)}: not a 32-byte Ed25519 key`);
  const keyHash = Number.parseInt(hashHex, 16);
  if (keyHash !== computeKeyHash(name, key)) throw new Error(`invalid verifier hash in key ${keyId(name, keyHash)}`);
  const publicKey = createPublicKey({ key: Buffer.concat([spkiPublicKeyPrefix, key.subarray(1)]), format: 'der', type: 'spki' });
  return { name, keyHash, publicKey };
}

// The signer key is a secret: its errors never quote it.
function parseSignerKey(signerKey: string): Signer {
  const [private1, private2, name = '', hashHex = '', keyBase64 = ''] = cutPlus(signerKey, 5);
  const key = decodeBase64(keyBase64);
  if (
    private1 !== 'PRIVATE' ||
    private2 !== 'KEY' ||
    !isValidKeyName(name) ||
    !/^[0-9a-fA-F]{8}$/.test(hashHex) ||
    !key ||
    key.length === 0
  ) {
    throw new Error('malformed signer key: expected PRIVATE+KEY+<name>+<hash>+<key>');
  }
  if (key[0] !== algEd25519) throw new Error(`unknown signer algorithm ${key[0]} for key name ${JSON.stringify(name)}`);
  if (key.length !== 1 + ed25519SeedBytes) throw new Error(`malformed signer key for ${JSON.stringify(name)}: not a 32-byte Ed25519 seed`);
  const privateKey = createPrivateKey({ key: Buffer.concat([pkcs8SeedPrefix, key.subarray(1)]), format: 'der', type: 'pkcs8' });
  const keyHash = Number.parseInt(hashHex, 16);
  // The hash names the public key, so it can only be checked once that is derived from the seed.
  if (keyHash !== computeKeyHash(name, Buffer.concat([Uint8Array.of(algEd25519), rawPublicKey(createPublicKey(privateKey))]))) {
    throw new Error(`invalid signer hash for key name ${JSON.stringify(name)}`);
  }
  return { name, keyHash, privateKey };
}

function encodeSignerKey(name: string, seed: Buffer): string {
  const privateKey = createPrivateKey({ key: Buffer.concat([pkcs8SeedPrefix, seed]), format: 'der', type: 'pkcs8' });
  const publicKey = Buffer.concat([Uint8Array.of(algEd25519), rawPublicKey(createPublicKey(privateKey))]);
  const encodedSeed = Buffer.concat([Uint8Array.of(algEd25519), seed]).toString('base64');
  return `PRIVATE+KEY+${name}+${hex8(computeKeyHash(name, publicKey))}+${encodedSeed}`;
}

function encodeVerifierKey(name: string, publicKey: Buffer): string {
  const encoded = Buffer.concat([Uint8Array.of(algEd25519), publicKey]);
  return `${name}+${hex8(computeKeyHash(name, encoded))}+${encoded.toString('base64')}`;
}

// SHA-256(name ‖ "\n" ‖ algorithm byte ‖ public key), first four bytes big-endian.
function computeKeyHash(name: string, algorithmAndKey: Uint8Array): number {
  return createHash('sha256').update(`${name}\n`, 'utf8').update(algorithmAndKey).digest().readUInt32BE(0);
}

function rawPublicKey(publicKey: KeyObject): Buffer {
  return publicKey.export({ format: 'der', type: 'spki' }).subarray(spkiPublicKeyPrefix.length);
}

// Like Go's repeated strings.Cut on "+": the last part keeps any further '+' (base64 has them).
function cutPlus(text: string, parts: number): string[] {
  const pieces: string[] = [];
  let rest = text;
  for (let i = 1; i < parts; i++) {
    const plus = rest.indexOf('+');
    pieces.push(plus < 0 ? rest : rest.slice(0, plus));
    rest = plus < 0 ? '' : rest.slice(plus + 1);
  }
  return [...pieces, rest];
}

// Padded standard base64 only, in its one canonical spelling: Buffer.from alone would skip junk.
function decodeBase64(text: string): Buffer | undefined {
  if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(text)) return undefined;
  const bytes = Buffer.from(text, 'base64');
  return bytes.toString('base64') === text ? bytes : undefined;
}

// Signed notes are UTF-8 with no ASCII control characters but newline.
function assertNoteText(text: string): void {
  if (/[\u0000-\u0009\u000b-\u001f]/.test(text)) throw new Error('malformed note: it holds a control character other than newline');
  if (/\p{Surrogate}/u.test(text)) throw new Error('malformed note: it holds a lone UTF-16 surrogate, which is not UTF-8 text');
}

function assertName(name: string): void {
  if (!isValidKeyName(name)) throw new Error(`invalid key name ${JSON.stringify(name)}: it must be non-empty, without spaces or '+'`);
}

function keyHashBytesOf(keyHash: number): Buffer {
  const bytes = Buffer.alloc(keyHashBytes);
  bytes.writeUInt32BE(keyHash, 0);
  return bytes;
}

function describeSigners(signatures: readonly NoteSignature[]): string {
  if (signatures.length === 0) return 'no key';
  return signatures.map((s) => keyId(s.name, s.keyHash)).join(', ');
}

function keyId(name: string, keyHash: number): string {
  return `${name}+${hex8(keyHash)}`;
}

function hex8(n: number): string {
  return n.toString(16).padStart(8, '0');
}
