// RFC 6962 / 9162 Merkle hashing: Certificate Transparency's known answers, Go's checksum database's,
// and properties tying the streaming frontier, stored-hash proofs and the RFC's verifiers together.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  MerkleFrontier,
  consistencyProof,
  consistencyProofSubtrees,
  emptyRoot,
  inclusionProof,
  inclusionProofSubtrees,
  leafHash,
  nodeHash,
  rightEdgeSubtrees,
  rootAt,
  rootOf,
  verifyConsistency,
  verifyInclusion,
  type SubtreeCoordinate,
} from '../../src/audit/merkle.ts';

const hex = (h: string) => Buffer.from(h, 'hex');
const b64 = (h: string) => Buffer.from(h, 'base64');

// Certificate Transparency's RFC 6962 test tree, as transparency-dev/merkle keeps it (testonly/constants.go):
// its eight leaf inputs, the hash of every complete subtree by level, and the root at every size.
const ctLeafInputs = ['', '00', '10', '2021', '3031', '40414243', '5051525354555657', '606162636465666768696a6b6c6d6e6f'].map(hex);
const ctNodeHashes = [
  [
    '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
    '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
    '0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7',
    '07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7',
    'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
    '4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658',
    'b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f',
    '46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1',
  ],
  [
    'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
    '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
    '0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a',
    'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
  ],
  ['d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7', '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4'],
  ['5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328'],
];
const ctRoots = [
  'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
  '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
  'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
  'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77',
  'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
  '4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4',
  '76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef',
  'ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c',
  '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
];
// The happy-path proofs of transparency-dev/merkle's testdata/inclusion/*/ and testdata/consistency/*/.
const ctInclusionProofs = [
  { leafIndex: 0, treeSize: 1, proof: [] },
  {
    leafIndex: 0,
    treeSize: 8,
    proof: [
      '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
    ],
  },
  {
    leafIndex: 5,
    treeSize: 8,
    proof: [
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
      'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ],
  },
  { leafIndex: 2, treeSize: 3, proof: ['fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125'] },
  {
    leafIndex: 1,
    treeSize: 5,
    proof: [
      '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
    ],
  },
];
const ctConsistencyProofs = [
  { oldSize: 1, newSize: 1, proof: [] },
  {
    oldSize: 1,
    newSize: 8,
    proof: [
      '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
    ],
  },
  {
    oldSize: 6,
    newSize: 8,
    proof: [
      '0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a',
      'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ],
  },
  {
    oldSize: 2,
    newSize: 5,
    proof: [
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
    ],
  },
  {
    oldSize: 6,
    newSize: 7,
    proof: [
      '0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a',
      'b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ],
  },
];

/** An in-memory store of complete-subtree hashes, filled from a frontier, that records what is read. */
function storedTree(leaves: readonly Buffer[]) {
  const frontier = new MerkleFrontier();
  const hashes = new Map<string, Buffer>();
  const roots = [frontier.root()];
  for (const leaf of leaves) {
    for (const { level, index, hash } of frontier.append(leaf)) hashes.set(`${level}/${index}`, hash);
    roots.push(frontier.root());
  }
  const reads: SubtreeCoordinate[] = [];
  const getHash = (level: number, index: number): Buffer => {
    reads.push({ level, index });
    const hash = hashes.get(`${level}/${index}`);
    if (!hash) throw new Error(`no stored hash at level ${level}, index ${index}`);
    return hash;
  };
  return { frontier, hashes, roots, reads, getHash };
}

const leavesOf = (n: number) => Array.from({ length: n }, (_, i) => leafHash(Buffer.from(`leaf ${i}`)));
const flipped = (hash: Buffer) => Buffer.from(hash.map((byte, i) => (i === 0 ? byte ^ 1 : byte)));

describe('Merkle hashing known answers', () => {
  const ctLeaves = ctLeafInputs.map(leafHash);

  it('hashes leaves and nodes with the 0x00 / 0x01 prefixes', () => {
    assert.equal(leafHash(new Uint8Array()).toString('hex'), ctNodeHashes[0]![0]);
    assert.equal(nodeHash(ctLeaves[0]!, ctLeaves[1]!).toString('hex'), ctNodeHashes[1]![0]);
    // Go's sumdb/tlog note_test.go: RecordHash([]byte("hello world")).
    assert.equal(leafHash(Buffer.from('hello world')).toString('base64'), 'TszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=');
  });

  it('gives the empty tree the SHA-256 of the empty string, as RFC 6962 and Go’s TestEmptyTree say', () => {
    assert.deepEqual(emptyRoot, createHash('sha256').digest());
    assert.deepEqual(rootOf([]), emptyRoot);
    assert.deepEqual(new MerkleFrontier().root(), emptyRoot);
  });

  it('computes CT’s roots for every size 0..8 three ways: rootOf, the frontier and rootAt', async () => {
    const { roots, getHash } = storedTree(ctLeaves);
    for (let size = 0; size <= 8; size++) {
      assert.equal(rootOf(ctLeaves.slice(0, size)).toString('hex'), ctRoots[size], `rootOf, size ${size}`);
      assert.equal(roots[size]!.toString('hex'), ctRoots[size], `frontier, size ${size}`);
      assert.equal((await rootAt(size, getHash)).toString('hex'), ctRoots[size], `rootAt, size ${size}`);
    }
  });

  it('reports every complete subtree CT lists, at its level and index, as the leaves complete it', () => {
    const { hashes } = storedTree(ctLeaves);
    const expected = ctNodeHashes.flatMap((level, l) => level.map((hash, i) => [`${l}/${i}`, hash]));
    assert.deepEqual([...hashes].map(([key, hash]) => [key, hash.toString('hex')]).sort(), expected.sort());
  });

  it('names the right edge of each size as CT’s compact trees do', () => {
    assert.deepEqual(rightEdgeSubtrees(0), []);
    assert.deepEqual(rightEdgeSubtrees(7), [
      { level: 2, index: 0 },
      { level: 1, index: 2 },
      { level: 0, index: 6 },
    ]);
    assert.deepEqual(rightEdgeSubtrees(8), [{ level: 3, index: 0 }]);
    assert.deepEqual(rightEdgeSubtrees(6), [
      { level: 2, index: 0 },
      { level: 1, index: 2 },
    ]);
  });

  for (const { leafIndex, treeSize, proof } of ctInclusionProofs) {
    it(`builds and verifies CT’s inclusion proof for leaf ${leafIndex} of ${treeSize}`, async () => {
      const { getHash } = storedTree(ctLeaves.slice(0, treeSize));
      const built = await inclusionProof(leafIndex, treeSize, getHash);
      assert.deepEqual(
        built.map((h) => h.toString('hex')),
        proof,
      );
      assert.ok(verifyInclusion(ctLeaves[leafIndex]!, leafIndex, treeSize, built, hex(ctRoots[treeSize]!)));
    });
  }

  for (const { oldSize, newSize, proof } of ctConsistencyProofs) {
    it(`builds and verifies CT’s consistency proof from ${oldSize} to ${newSize}`, async () => {
      const { getHash } = storedTree(ctLeaves.slice(0, newSize));
      const built = await consistencyProof(oldSize, newSize, getHash);
      assert.deepEqual(
        built.map((h) => h.toString('hex')),
        proof,
      );
      assert.ok(verifyConsistency(oldSize, newSize, hex(ctRoots[oldSize]!), hex(ctRoots[newSize]!), built));
    });
  }

  it('verifies the happy-path probe with base64 hashes exactly as transparency-dev stores it', () => {
    const proof = [
      'lqKW0iTyhcZ77pPDD4owkVfw2qNdxbh+QQt4YwoJz8c=',
      'Xwg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4=',
      'a0eq8p7jwq+a+Im8H7klTavTEXfxYjLdaqsDXKOb9uQ=',
    ].map(b64);
    const leaf = b64('bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=');
    assert.ok(verifyInclusion(leaf, 0, 8, proof, b64('XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=')));
  });
});

describe('Merkle proofs refuse what they must', () => {
  const leaves = leavesOf(8);
  const root = rootOf(leaves);

  it('refuses an index outside the tree, a wrong-sized hash and a proof that is too long or too short', async () => {
    const { getHash } = storedTree(leaves);
    const proof = await inclusionProof(3, 8, getHash);
    assert.ok(verifyInclusion(leaves[3]!, 3, 8, proof, root));
    assert.equal(verifyInclusion(leaves[3]!, 8, 8, proof, root), false);
    assert.equal(verifyInclusion(leaves[3]!, -1, 8, proof, root), false);
    assert.equal(verifyInclusion(leaves[3]!, 3, 8, [...proof, proof[0]!], root), false);
    assert.equal(verifyInclusion(leaves[3]!, 3, 8, proof.slice(1), root), false);
    assert.equal(verifyInclusion(leaves[3]!, 3, 8, [proof[0]!.subarray(1), ...proof.slice(1)], root), false);
    assert.equal(verifyInclusion(leaves[3]!, 3, 8, proof, root.subarray(0, 31)), false);
  });

  it('throws for proofs of leaves or trees that do not exist, and for a store returning junk', async () => {
    const { getHash } = storedTree(leaves);
    await assert.rejects(inclusionProof(8, 8, getHash), /leaf 8 is not in a tree of 8 leaves/);
    await assert.rejects(inclusionProof(0, 0, getHash), /leaf 0 is not in a tree of 0 leaves/);
    await assert.rejects(rootAt(1.5, getHash), /not a whole number/);
    await assert.rejects(consistencyProof(5, 4, getHash), /cannot be a prefix/);
    await assert.rejects(
      rootAt(3, () => Buffer.alloc(31)),
      /is not 32 bytes/,
    );
    assert.throws(() => MerkleFrontier.resume(3, () => Buffer.alloc(33)), /is not 32 bytes/);
  });

  it('treats the consistency edge cases as RFC 9162 and transparency-dev do', () => {
    const roots = leaves.map((_, i) => rootOf(leaves.slice(0, i + 1)));
    assert.ok(verifyConsistency(0, 8, emptyRoot, root, []), 'every tree extends the empty one');
    assert.equal(verifyConsistency(0, 8, emptyRoot, root, [root]), false);
    assert.ok(verifyConsistency(8, 8, root, root, []));
    assert.equal(verifyConsistency(8, 8, root, roots[6]!, []), false);
    assert.equal(verifyConsistency(3, 8, roots[2]!, root, []), false);
    assert.equal(verifyConsistency(8, 3, root, roots[2]!, []), false);
  });
});

describe('Merkle properties', () => {
  // Go's TestTree in miniature: every leaf of every size up to 40, each proof hash corrupted in turn.
  it('proves every leaf of every tree up to 40 leaves, and no corrupted proof verifies', async () => {
    const leaves = leavesOf(40);
    const { getHash } = storedTree(leaves);
    for (let size = 1; size <= leaves.length; size++) {
      const root = rootOf(leaves.slice(0, size));
      for (let index = 0; index < size; index++) {
        const proof = await inclusionProof(index, size, getHash);
        assert.ok(verifyInclusion(leaves[index]!, index, size, proof, root), `leaf ${index} of ${size}`);
        proof.forEach((_hash, k) => {
          const corrupt = proof.map((h, j) => (j === k ? flipped(h) : h));
          assert.equal(verifyInclusion(leaves[index]!, index, size, corrupt, root), false, `leaf ${index} of ${size}, hash ${k}`);
        });
      }
    }
  });

  it('proves inclusion for random n and every i < n; changing the leaf, index or any proof hash fails', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 300 }), fc.nat(), async (treeSize, seed) => {
        const leaves = leavesOf(treeSize);
        const root = rootOf(leaves);
        const { getHash } = storedTree(leaves);
        for (let index = 0; index < treeSize; index++) {
          const proof = await inclusionProof(index, treeSize, getHash);
          assert.ok(verifyInclusion(leaves[index]!, index, treeSize, proof, root));
          assert.equal(verifyInclusion(flipped(leaves[index]!), index, treeSize, proof, root), false);
          if (treeSize > 1) {
            const otherIndex = (index + 1 + (seed % (treeSize - 1))) % treeSize;
            assert.equal(verifyInclusion(leaves[index]!, otherIndex, treeSize, proof, root), false);
          }
          if (proof.length > 0) {
            const k = seed % proof.length;
            assert.equal(
              verifyInclusion(
                leaves[index]!,
                index,
                treeSize,
                proof.map((h, j) => (j === k ? flipped(h) : h)),
                root,
              ),
              false,
            );
          }
        }
      }),
      { numRuns: 40 },
    );
  });

  it('reads only the subtrees it names for proofs and roots', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 500 }).chain((n) => fc.tuple(fc.constant(n), fc.nat(n - 1), fc.integer({ min: 0, max: n }))),
        async ([treeSize, leafIndex, oldSize]) => {
          const tree = storedTree(leavesOf(treeSize));
          const key = ({ level, index }: SubtreeCoordinate) => `${level}/${index}`;
          await inclusionProof(leafIndex, treeSize, tree.getHash);
          assert.deepEqual(tree.reads.splice(0).map(key).sort(), inclusionProofSubtrees(leafIndex, treeSize).map(key).sort());
          await consistencyProof(oldSize, treeSize, tree.getHash);
          assert.deepEqual(tree.reads.splice(0).map(key).sort(), consistencyProofSubtrees(oldSize, treeSize).map(key).sort());
          await rootAt(treeSize, tree.getHash);
          assert.deepEqual(tree.reads.splice(0), rightEdgeSubtrees(treeSize));
          assert.ok(rightEdgeSubtrees(treeSize).length <= Math.log2(treeSize) + 1);
        },
      ),
      { numRuns: 100 },
    );
  });

  it('gives the frontier the same root as rootOf for every prefix, and resumes from stored hashes alone', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 200 }), fc.nat(), (treeSize, seed) => {
        const leaves = leavesOf(treeSize);
        const tree = storedTree(leaves);
        tree.roots.forEach((root, size) => {
          assert.deepEqual(root, rootOf(leaves.slice(0, size)), `size ${size}`);
        });
        const resumeAt = treeSize === 0 ? 0 : seed % (treeSize + 1);
        const resumed = MerkleFrontier.resume(resumeAt, tree.getHash);
        assert.deepEqual(tree.reads, rightEdgeSubtrees(resumeAt));
        assert.equal(resumed.size, resumeAt);
        for (let size = resumeAt; size < treeSize; size++) resumed.append(leaves[size]!);
        assert.deepEqual(resumed.root(), rootOf(leaves));
      }),
      { numRuns: 100 },
    );
  });

  it('proves consistency between any two sizes, and no corrupted proof or wrong root verifies', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 200 }).chain((n) => fc.tuple(fc.constant(n), fc.integer({ min: 1, max: n }), fc.nat())),
        async ([newSize, oldSize, seed]) => {
          const leaves = leavesOf(newSize);
          const [oldRoot, newRoot] = [rootOf(leaves.slice(0, oldSize)), rootOf(leaves)];
          const proof = await consistencyProof(oldSize, newSize, storedTree(leaves).getHash);
          assert.ok(verifyConsistency(oldSize, newSize, oldRoot, newRoot, proof));
          assert.equal(verifyConsistency(oldSize, newSize, flipped(oldRoot), newRoot, proof), false);
          assert.equal(verifyConsistency(oldSize, newSize, oldRoot, flipped(newRoot), proof), false);
          if (proof.length > 0) {
            const k = seed % proof.length;
            assert.equal(
              verifyConsistency(
                oldSize,
                newSize,
                oldRoot,
                newRoot,
                proof.map((h, j) => (j === k ? flipped(h) : h)),
              ),
              false,
            );
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});
