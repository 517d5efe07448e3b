// RFC 6962 / RFC 9162 Merkle tree hashing (SHA-256), as Certificate Transparency and Go's checksum
// database compute it, so their tools check our roots and proofs byte for byte.
//
// Storage model: a log stores the hash of every complete subtree once it is complete (level k, index j =
// leaves [j·2^k, (j+1)·2^k)). Everything else — roots, proofs — is computed from O(log n) of those.
import { createHash, hash } from 'node:crypto';

export const hashBytes = 32;

/** A complete subtree: `level` 0 is a single leaf at leaf index `index`. */
export type SubtreeCoordinate = { readonly level: number; readonly index: number };
export type SubtreeHash = SubtreeCoordinate & { readonly hash: Buffer };

/** Reads a stored complete-subtree hash (from memory or a database). */
export type HashReader = (level: number, index: number) => Buffer | Promise<Buffer>;
export type SyncHashReader = (level: number, index: number) => Buffer;

/** A half-open leaf range [start, end). */
type LeafRange = { readonly start: number; readonly end: number };

/** MTH of the empty tree (RFC 6962 §2.1): SHA-256 of the empty string. Functions return copies of it. */
export const emptyRoot: Buffer = createHash('sha256').digest();

// One-shot hashing (crypto.hash) over one buffer: about twice as fast as a Hash object per leaf, which
// matters when every event of a large ledger is hashed again (audit verify, rebuild). The digest comes
// back as a latin1 ('binary') string and becomes a Buffer cut from Node's shared pool: a 'buffer' digest is an
// ArrayBuffer of its own each time, which costs the garbage collector more than the hashing (measured:
// a third less time for a hash and its Buffer).
const sha256 = (data: string | Uint8Array): Buffer => Buffer.from(hash('sha256', data, 'binary'), 'latin1');

/** SHA-256(0x00 ‖ bytes): the leaf hash (RFC 6962 §2.1). */
export function leafHash(bytes: Uint8Array): Buffer {
  const input = Buffer.allocUnsafe(bytes.length + 1);
  input[0] = 0x00;
  input.set(bytes, 1);
  return sha256(input);
}

/** leafHash of `text`'s UTF-8 bytes, without copying them first. */
export function leafHashOfText(text: string): Buffer {
  return sha256(`\u0000${text}`);
}

/** SHA-256(0x01 ‖ left ‖ right): an interior node's hash (RFC 6962 §2.1). */
export function nodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  const input = Buffer.allocUnsafe(1 + left.length + right.length);
  input[0] = 0x01;
  input.set(left, 1);
  input.set(right, 1 + left.length);
  return sha256(input);
}

/** MTH(D[n]) straight from RFC 6962 §2.1, for any n including 0: the reference the rest is tested against. */
export function rootOf(leafHashes: readonly Buffer[]): Buffer {
  if (leafHashes.length === 0) return Buffer.from(emptyRoot);
  return mth(leafHashes, { start: 0, end: leafHashes.length });
}

function mth(leafHashes: readonly Buffer[], range: LeafRange): Buffer {
  if (range.end - range.start === 1) return leafHashes[range.start]!;
  const middle = range.start + largestPowerOfTwoBelow(range.end - range.start);
  return nodeHash(mth(leafHashes, { start: range.start, end: middle }), mth(leafHashes, { start: middle, end: range.end }));
}

/**
 * The complete subtrees a tree of `treeSize` leaves is made of, largest (leftmost) first: one per 1 bit
 * of the size. They are all a log needs to resume appending or to compute its root, in one query.
 */
export function rightEdgeSubtrees(treeSize: number): SubtreeCoordinate[] {
  assertTreeSize(treeSize);
  return completeSubtrees({ start: 0, end: treeSize });
}

/** The stored hashes an inclusion proof for `leafIndex` in a tree of `treeSize` leaves is computed from. */
export function inclusionProofSubtrees(leafIndex: number, treeSize: number): SubtreeCoordinate[] {
  assertLeafInTree(leafIndex, treeSize);
  return inclusionRanges(leafIndex, { start: 0, end: treeSize }).flatMap(completeSubtrees);
}

/** The stored hashes a consistency proof from `oldSize` to `newSize` is computed from. */
export function consistencyProofSubtrees(oldSize: number, newSize: number): SubtreeCoordinate[] {
  assertSizes(oldSize, newSize);
  return consistencyRanges(oldSize, newSize).flatMap(completeSubtrees);
}

/**
 * Appends leaves one at a time keeping only the right edge (a "compact range"): O(log n) hashes,
 * however long the log. Each append reports the complete subtrees it finished, for storage.
 */
export class MerkleFrontier {
  // Hashes of the right edge's complete subtrees, largest (leftmost) first: one per 1 bit of `size`.
  readonly #edge: Buffer[] = [];
  #size = 0;

  /** Resumes after `size` leaves, reading only the right edge's complete subtrees (see rightEdgeSubtrees). */
  static resume(size: number, getHash: SyncHashReader): MerkleFrontier {
    const frontier = new MerkleFrontier();
    // Copies, so no caller's buffer aliases the frontier's state (nor the reverse, in root() and append()).
    for (const { level, index } of rightEdgeSubtrees(size))
      frontier.#edge.push(Buffer.from(checkedHash(getHash(level, index), level, index)));
    frontier.#size = size;
    return frontier;
  }

  get size(): number {
    return this.#size;
  }

  /** Adds the next leaf, reporting nothing: the hot path of verification, which needs only the roots. */
  push(hashOfLeaf: Buffer): void {
    if (this.#size >= Number.MAX_SAFE_INTEGER) throw new Error('the log is full: leaf indexes would lose precision');
    let hash = checkedHash(hashOfLeaf, 0, this.#size);
    for (let rest = this.#size; rest % 2 === 1; rest = Math.floor(rest / 2)) hash = nodeHash(this.#edge.pop()!, hash);
    // nodeHash returns a fresh buffer; only a leaf hash the caller owns is copied.
    this.#edge.push(hash === hashOfLeaf ? Buffer.from(hash) : hash);
    this.#size++;
  }

  /** Adds the next leaf; returns the leaf itself and every subtree it completed, smallest first. */
  append(hashOfLeaf: Buffer): SubtreeHash[] {
    if (this.#size >= Number.MAX_SAFE_INTEGER) throw new Error('the log is full: leaf indexes would lose precision');
    const leafIndex = this.#size;
    let hash = checkedHash(hashOfLeaf, 0, leafIndex);
    const completed: SubtreeHash[] = [{ level: 0, index: leafIndex, hash }];
    // Each trailing 1 bit of the old size is a same-sized sibling on the edge that this leaf now completes.
    for (let level = 0, rest = leafIndex; rest % 2 === 1; level++, rest = Math.floor(rest / 2)) {
      hash = nodeHash(this.#edge.pop()!, hash);
      completed.push({ level: level + 1, index: Math.floor(leafIndex / 2 ** (level + 1)), hash });
    }
    this.#edge.push(Buffer.from(hash));
    this.#size = leafIndex + 1;
    return completed;
  }

  /** The tree head: the right edge folded from its smallest subtree leftwards. */
  root(): Buffer {
    if (this.#edge.length === 0) return Buffer.from(emptyRoot);
    return Buffer.from(this.#edge.reduceRight((right, left) => nodeHash(left, right)));
  }
}

/** MTH of the first `treeSize` leaves, from the O(log n) stored subtrees of its right edge. */
export async function rootAt(treeSize: number, getHash: HashReader): Promise<Buffer> {
  assertTreeSize(treeSize);
  if (treeSize === 0) return Buffer.from(emptyRoot);
  const [root] = await rangeHashes([{ start: 0, end: treeSize }], getHash);
  return root!;
}

/** RFC 6962 §2.1.1 PATH(leafIndex, D[treeSize]): the audit path, leaf's sibling first. */
export async function inclusionProof(leafIndex: number, treeSize: number, getHash: HashReader): Promise<Buffer[]> {
  assertLeafInTree(leafIndex, treeSize);
  return rangeHashes(inclusionRanges(leafIndex, { start: 0, end: treeSize }), getHash);
}

/** RFC 9162 §2.1.4.1 PROOF(oldSize, D[newSize]); empty when the sizes are equal or the old tree is empty. */
export async function consistencyProof(oldSize: number, newSize: number, getHash: HashReader): Promise<Buffer[]> {
  assertSizes(oldSize, newSize);
  return rangeHashes(consistencyRanges(oldSize, newSize), getHash);
}

/** RFC 9162 §2.1.3.2: does `proof` show `leaf` at `leafIndex` in the tree of `treeSize` leaves with `root`? */
export function verifyInclusion(leaf: Buffer, leafIndex: number, treeSize: number, proof: readonly Buffer[], root: Buffer): boolean {
  if (!isSize(leafIndex) || !isSize(treeSize) || leafIndex >= treeSize) return false;
  if (![leaf, root, ...proof].every(isHash)) return false;
  let fn = leafIndex;
  let sn = treeSize - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      // Skip the levels where this node has no right sibling: the right edge of an unbalanced tree.
      while (fn % 2 === 0 && fn !== 0) [fn, sn] = [fn / 2, Math.floor(sn / 2)];
    } else {
      r = nodeHash(r, p);
    }
    [fn, sn] = [Math.floor(fn / 2), Math.floor(sn / 2)];
  }
  return sn === 0 && r.equals(root);
}

/** RFC 9162 §2.1.4.2: does `proof` show the tree of `oldSize` (`oldRoot`) is a prefix of `newSize` (`newRoot`)? */
export function verifyConsistency(oldSize: number, newSize: number, oldRoot: Buffer, newRoot: Buffer, proof: readonly Buffer[]): boolean {
  if (!isSize(oldSize) || !isSize(newSize) || oldSize > newSize) return false;
  if (![oldRoot, newRoot, ...proof].every(isHash)) return false;
  if (oldSize === newSize) return proof.length === 0 && oldRoot.equals(newRoot);
  if (oldSize === 0) return proof.length === 0; // every tree extends the empty one
  if (proof.length === 0) return false;
  const path = isPowerOfTwo(oldSize) ? [oldRoot, ...proof] : [...proof];
  let fn = oldSize - 1;
  let sn = newSize - 1;
  while (fn % 2 === 1) [fn, sn] = [Math.floor(fn / 2), Math.floor(sn / 2)];
  let fr = path[0]!;
  let sr = path[0]!;
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      while (fn % 2 === 0 && fn !== 0) [fn, sn] = [fn / 2, Math.floor(sn / 2)];
    } else {
      sr = nodeHash(sr, c);
    }
    [fn, sn] = [Math.floor(fn / 2), Math.floor(sn / 2)];
  }
  return sn === 0 && fr.equals(oldRoot) && sr.equals(newRoot);
}

// The ranges whose MTH make up PATH(m, D[start:end]), deepest first (RFC 6962 §2.1.1).
function inclusionRanges(leafIndex: number, range: LeafRange): LeafRange[] {
  const size = range.end - range.start;
  if (size === 1) return [];
  const middle = range.start + largestPowerOfTwoBelow(size);
  return leafIndex < middle
    ? [...inclusionRanges(leafIndex, { start: range.start, end: middle }), { start: middle, end: range.end }]
    : [...inclusionRanges(leafIndex, { start: middle, end: range.end }), { start: range.start, end: middle }];
}

// The ranges whose MTH make up PROOF(m, D[n]) = SUBPROOF(m, D[n], true) (RFC 9162 §2.1.4.1).
function consistencyRanges(oldSize: number, newSize: number): LeafRange[] {
  if (oldSize === 0 || oldSize === newSize) return [];
  return subproofRanges(oldSize, { start: 0, end: newSize }, true);
}

function subproofRanges(oldEnd: number, range: LeafRange, oldTreeIsKnown: boolean): LeafRange[] {
  if (oldEnd === range.end) return oldTreeIsKnown ? [] : [range];
  const middle = range.start + largestPowerOfTwoBelow(range.end - range.start);
  return oldEnd <= middle
    ? [...subproofRanges(oldEnd, { start: range.start, end: middle }, oldTreeIsKnown), { start: middle, end: range.end }]
    : [...subproofRanges(oldEnd, { start: middle, end: range.end }, false), { start: range.start, end: middle }];
}

// Every range in these proofs starts on a multiple of a power of two no smaller than its length, so it
// splits greedily into complete subtrees, largest first.
function completeSubtrees(range: LeafRange): SubtreeCoordinate[] {
  const subtrees: SubtreeCoordinate[] = [];
  for (let start = range.start; start < range.end; ) {
    let level = 0;
    while (2 ** (level + 1) <= range.end - start) level++;
    subtrees.push({ level, index: start / 2 ** level });
    start += 2 ** level;
  }
  return subtrees;
}

// Reads every stored hash the ranges need at once, then folds each range right to left into its MTH.
async function rangeHashes(ranges: readonly LeafRange[], getHash: HashReader): Promise<Buffer[]> {
  const plans = ranges.map(completeSubtrees);
  const hashes = await Promise.all(
    plans.map((plan) => Promise.all(plan.map(async ({ level, index }) => checkedHash(await getHash(level, index), level, index)))),
  );
  return hashes.map((subtreeHashes) => subtreeHashes.reduceRight((right, left) => nodeHash(left, right)));
}

function largestPowerOfTwoBelow(n: number): number {
  return largestPowerOfTwoAtMost(n - 1);
}

function largestPowerOfTwoAtMost(n: number): number {
  let power = 1;
  while (power * 2 <= n) power *= 2;
  return power;
}

function isPowerOfTwo(n: number): boolean {
  return n === largestPowerOfTwoAtMost(n);
}

function checkedHash(hash: Buffer, level: number, index: number): Buffer {
  if (!isHash(hash)) throw new Error(`the stored hash for subtree (level ${level}, index ${index}) is not ${hashBytes} bytes`);
  return hash;
}

function isHash(value: unknown): value is Buffer {
  return Buffer.isBuffer(value) && value.length === hashBytes;
}

function isSize(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}

function assertTreeSize(treeSize: number): void {
  if (!isSize(treeSize)) throw new Error(`tree size ${treeSize} is not a whole number of leaves`);
}

function assertLeafInTree(leafIndex: number, treeSize: number): void {
  assertTreeSize(treeSize);
  if (!isSize(leafIndex) || leafIndex >= treeSize) throw new Error(`leaf ${leafIndex} is not in a tree of ${treeSize} leaves`);
}

function assertSizes(oldSize: number, newSize: number): void {
  assertTreeSize(oldSize);
  assertTreeSize(newSize);
  if (oldSize > newSize) throw new Error(`a tree of ${oldSize} leaves cannot be a prefix of one of ${newSize}`);
}
