// C2SP tlog-checkpoint note bodies (c2sp.org/tlog-checkpoint): origin, tree size, base64 root hash,
// then optional extension lines. The signed-note layer (note.ts) signs and opens the whole body.
import { isValidKeyName } from './note.ts';

const rootHashBytes = 32;

export type Checkpoint = {
  readonly origin: string;
  readonly treeSize: number;
  readonly rootHash: Buffer;
  /** Opaque lines after the root hash; the spec discourages them, so we never write any, but keep them. */
  readonly extensions?: readonly string[];
};

/** The checkpoint body: `<origin>\n<size>\n<base64 root>\n` and any extension lines. */
export function formatCheckpoint(checkpoint: Checkpoint): string {
  const { origin, treeSize, rootHash, extensions = [] } = checkpoint;
  // Our origin doubles as the signing key's name (the spec's SHOULD), so it must also be a valid key name.
  if (!isValidKeyName(origin) || hasControlCharacter(origin)) throw new Error(`invalid checkpoint origin ${JSON.stringify(origin)}`);
  if (!Number.isSafeInteger(treeSize) || treeSize < 0) throw new Error(`invalid checkpoint tree size ${treeSize}`);
  if (rootHash.length !== rootHashBytes) throw new Error(`a checkpoint root hash is ${rootHashBytes} bytes, not ${rootHash.length}`);
  for (const line of extensions) assertExtensionLine(line);
  return [origin, String(treeSize), rootHash.toString('base64'), ...extensions].map((line) => `${line}\n`).join('');
}

/** Parses a checkpoint body strictly, per the spec's MUSTs; throws a one-line Error naming what is wrong. */
export function parseCheckpoint(text: string): Required<Checkpoint> {
  if (!text.endsWith('\n')) throw new Error('malformed checkpoint: it must end with a newline');
  const [origin = '', sizeText = '', rootText = '', ...extensions] = text.slice(0, -1).split('\n');
  if (origin === '' || hasControlCharacter(origin)) throw new Error('malformed checkpoint: the first line (origin) must be non-empty text');
  return { origin, treeSize: parseTreeSize(sizeText), rootHash: parseRootHash(rootText), extensions: extensions.map(checkedExtensionLine) };
}

// ASCII decimal, no sign, no leading zeros (except "0" itself), and exact in a JS number.
function parseTreeSize(text: string): number {
  if (!/^(?:0|[1-9][0-9]*)$/.test(text))
    throw new Error(`malformed checkpoint: tree size ${JSON.stringify(text)} is not a decimal number without leading zeros`);
  const treeSize = Number(text);
  if (!Number.isSafeInteger(treeSize)) throw new Error(`malformed checkpoint: tree size ${text} is beyond 2^53−1`);
  return treeSize;
}

function parseRootHash(text: string): Buffer {
  const bytes = Buffer.from(text, 'base64');
  // Only the canonical padded spelling: Buffer.from alone would skip stray characters.
  if (bytes.length !== rootHashBytes || bytes.toString('base64') !== text) {
    throw new Error(`malformed checkpoint: root hash ${JSON.stringify(text)} is not ${rootHashBytes} bytes of standard base64`);
  }
  return bytes;
}

function checkedExtensionLine(line: string): string {
  assertExtensionLine(line);
  return line;
}

function assertExtensionLine(line: string): void {
  if (line === '' || line.includes('\n') || hasControlCharacter(line))
    throw new Error('malformed checkpoint: extension lines must be non-empty single lines of text');
}

function hasControlCharacter(text: string): boolean {
  return /[\u0000-\u001f]/.test(text);
}
