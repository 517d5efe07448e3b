// The standalone auditor's verifier, run as a child process on exports built here with the TypeScript
// modules: the two independent implementations check each other, and every kind of tampering is named.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { canonicalJson } from '../../src/audit/canonical.ts';
import { formatCheckpoint } from '../../src/audit/checkpoint.ts';
import { MerkleFrontier, inclusionProof, leafHash } from '../../src/audit/merkle.ts';
import { generateSignerKey, signNote } from '../../src/audit/note.ts';

const verifier = fileURLToPath(new URL('../../src/audit/standalone/verify-log.mjs', import.meta.url));
const origin = 'capsul.example/audit';
const realKey = generateSignerKey(origin);
const impostorKey = generateSignerKey(origin); // same name, different key: what a forger would make
const checkpointSizes = [4, 8, 13, 20];
const workDir = mkdtempSync(path.join(os.tmpdir(), 'capsul-verify-log-'));
after(() => rmSync(workDir, { recursive: true, force: true }));

type Export = { lines: string[]; notes: Map<string, string>; verifierKey: string };

const leafValue = (i: number) => ({
  type: 'VmCreated',
  data: { vmId: `vm-${i}`, owner: 'José Ünïcode', priceCentsPerMonth: 500 + i },
  seq: i,
});
const leafLines = (count: number) => Array.from({ length: count }, (_, i) => canonicalJson(leafValue(i)));

/** Checkpoints over `lines` at each size, signed by `signerKey`; file names deliberately not in size order. */
function signedExport(lines: readonly string[], sizes: readonly number[], signerKey = realKey.signerKey): Export {
  const frontier = new MerkleFrontier();
  const roots = [frontier.root()];
  for (const line of lines) {
    frontier.append(leafHash(Buffer.from(line, 'utf8')));
    roots.push(frontier.root());
  }
  const notes = new Map(
    sizes.map((size) => [`cp-${size}.note`, signNote(formatCheckpoint({ origin, treeSize: size, rootHash: roots[size]! }), signerKey)]),
  );
  return { lines: [...lines], notes, verifierKey: realKey.verifierKey };
}

let exportCount = 0;
function writeExport({ lines, notes, verifierKey }: Export, leavesText = lines.map((line) => `${line}\n`).join('')): string {
  const dir = path.join(workDir, `export-${++exportCount}`);
  mkdirSync(path.join(dir, 'checkpoints'), { recursive: true });
  writeFileSync(path.join(dir, 'leaves.jsonl'), leavesText);
  writeFileSync(path.join(dir, 'verifier.key'), `${verifierKey}\n`);
  for (const [name, note] of notes) writeFileSync(path.join(dir, 'checkpoints', name), note);
  return dir;
}

function verify(...args: string[]) {
  const result = spawnSync(process.execPath, [verifier, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr, output: result.stdout + result.stderr };
}

function assertFails(result: ReturnType<typeof verify>, ...expected: Array<string | RegExp>) {
  assert.equal(result.status, 1, result.output);
  for (const text of expected) {
    if (typeof text === 'string') assert.ok(result.stdout.includes(text), `expected ${JSON.stringify(text)} in:\n${result.output}`);
    else assert.match(result.stdout, text);
  }
  assert.doesNotMatch(result.output, /\n\s+at /, 'no stack trace');
}

const goodLines = leafLines(20);
const good = signedExport(goodLines, checkpointSizes);

describe('verify-log on an export', () => {
  it('passes a good export, whatever the checkpoint files are called', () => {
    const result = verify(writeExport(good));
    assert.equal(result.status, 0, result.output);
    assert.match(
      result.stdout,
      new RegExp(
        `^OK: 20 leaves; 4 checkpoints signed by ${origin.replace('.', '\\.')}\\+[0-9a-f]{8}, all matching \\(largest size 20\\)$`,
        'm',
      ),
    );
  });

  it('passes an empty log with a checkpoint of size 0, and notes leaves no checkpoint covers yet', () => {
    assert.equal(verify(writeExport(signedExport([], [0]))).status, 0);
    const result = verify(writeExport(signedExport(goodLines, [4, 13])));
    assert.equal(result.status, 0, result.output);
    assert.match(result.stdout, /note: the last 7 leaves \(from index 13\) are not covered by a checkpoint yet/);
  });

  it('streams an export spanning several read chunks', () => {
    const lines = leafLines(40_000);
    const result = verify(writeExport(signedExport(lines, [1, 20_000, 39_999, 40_000])));
    assert.equal(result.status, 0, result.output);
    assert.match(result.stdout, /OK: 40000 leaves; 4 checkpoints/);
  });

  it('names the first checkpoint an altered leaf breaks, and the range it lies in', () => {
    const lines = [...goodLines];
    lines[9] = canonicalJson({ ...leafValue(9), data: { ...leafValue(9).data, priceCentsPerMonth: 1 } });
    assertFails(
      verify(writeExport({ ...good, lines })),
      'FAIL checkpoint checkpoints/cp-13.note (size 13): root mismatch',
      'FAIL checkpoint checkpoints/cp-20.note (size 20): root mismatch',
      'FAILED: the first failing checkpoint is checkpoints/cp-13.note (size 13); the first 8 leaves still match checkpoints/cp-8.note, so the change is at a leaf index in [8, 13)',
    );
  });

  it('names the first checkpoint a removed leaf breaks, and that the export is now short', () => {
    const lines = goodLines.filter((_, i) => i !== 9);
    assertFails(
      verify(writeExport({ ...good, lines })),
      'FAIL checkpoint checkpoints/cp-13.note (size 13): root mismatch',
      'FAIL checkpoint checkpoints/cp-20.note (size 20): the export has 19 leaves but the checkpoint signs 20',
      'the first failing checkpoint is checkpoints/cp-13.note (size 13)',
    );
  });

  it('names the first checkpoint an inserted leaf breaks', () => {
    const lines = [...goodLines.slice(0, 9), canonicalJson({ type: 'Forged' }), ...goodLines.slice(9)];
    assertFails(verify(writeExport({ ...good, lines })), 'the first failing checkpoint is checkpoints/cp-13.note (size 13)', '[8, 13)');
  });

  it('names the first checkpoint a reordered pair breaks', () => {
    const lines = [...goodLines];
    [lines[4], lines[5]] = [lines[5]!, lines[4]!];
    assertFails(
      verify(writeExport({ ...good, lines })),
      'the first failing checkpoint is checkpoints/cp-8.note (size 8); the first 4 leaves still match checkpoints/cp-4.note',
    );
  });

  it('refuses a forged checkpoint: a new root under the old signature', () => {
    const notes = new Map(good.notes);
    const forgedRoot = Buffer.alloc(32, 7).toString('base64');
    notes.set('cp-13.note', notes.get('cp-13.note')!.replace(/^(.*\n13\n)[^\n]+\n/, `$1${forgedRoot}\n`));
    assertFails(
      verify(writeExport({ ...good, notes })),
      /^FAIL checkpoint checkpoints\/cp-13\.note \(size 13\): invalid signature by capsul\.example\/audit\+[0-9a-f]{8}$/m,
      'FAILED: the first failing checkpoint is checkpoints/cp-13.note (size 13)',
    );
  });

  it('refuses a checkpoint signed by another key of the same name, naming both keys', () => {
    const notes = new Map(good.notes);
    notes.set('cp-8.note', signedExport(goodLines, [8], impostorKey.signerKey).notes.get('cp-8.note')!);
    const impostorId = impostorKey.verifierKey.split('+').slice(0, 2).join('+');
    const realId = realKey.verifierKey.split('+').slice(0, 2).join('+');
    assertFails(
      verify(writeExport({ ...good, notes })),
      `FAIL checkpoint checkpoints/cp-8.note (size 8): not signed by ${realId} (signed only by ${impostorId})`,
      'the first failing checkpoint is checkpoints/cp-8.note (size 8)',
    );
  });

  it('refuses a checkpoint whose origin is not the key’s name', () => {
    const other = generateSignerKey('elsewhere.example/log');
    const note = signNote(formatCheckpoint({ origin: 'elsewhere.example/log', treeSize: 0, rootHash: Buffer.alloc(32) }), other.signerKey);
    const twice = signNote(note.slice(0, note.indexOf('\n\n') + 1), realKey.signerKey);
    assertFails(
      verify(writeExport({ ...good, notes: new Map([...good.notes, ['other.note', twice]]) })),
      'its origin "elsewhere.example/log" is not the key\'s name "capsul.example/audit"',
    );
  });

  it('reports a truncated export: fewer leaves than a checkpoint signs, or a last line cut short', () => {
    assertFails(
      verify(writeExport({ ...good, lines: goodLines.slice(0, 15) })),
      'FAIL checkpoint checkpoints/cp-20.note (size 20): the export has 15 leaves but the checkpoint signs 20',
      'the first failing checkpoint is checkpoints/cp-20.note (size 20)',
    );
    const cut = goodLines
      .map((line) => `${line}\n`)
      .join('')
      .slice(0, -20);
    assertFails(
      verify(writeExport(good, cut)),
      'leaves.jsonl does not end with a newline: leaf 19 may be cut short',
      'leaf 19 is not JSON',
    );
  });

  it('names each leaf line that is not canonical JSON', () => {
    const lines = [...goodLines];
    lines[2] = `${goodLines[2]} `;
    lines[3] = `\ufeff${goodLines[3]}`;
    lines[5] = '{"seq":5,"type":"VmCreated","data":{}}';
    lines[6] = '{"a":1e400}';
    lines[7] = '';
    assertFails(
      verify(writeExport(signedExport(lines, [20]))),
      'FAIL leaf 2 ends with white space',
      'FAIL leaf 3 starts with a byte order mark',
      'FAIL leaf 5 is JSON but not canonical; canonical form: "{\\"data\\":{},\\"seq\\":5,\\"type\\":\\"VmCreated\\"}"',
      'FAIL leaf 6 is not I-JSON: it holds a number too large for a double',
      'FAIL leaf 7 is empty',
    );
  });

  it('stops at a runaway line instead of buffering it whole', () => {
    const huge = `{"pad":"${'x'.repeat(5 * 1024 * 1024)}"}`;
    const lines = [...goodLines.slice(0, 3), huge, ...goodLines.slice(4)];
    assertFails(verify(writeExport({ ...good, lines })), /has a line longer than 4194304 bytes; stopped reading at leaf 3$/m);
  });

  it('trusts --key over the export’s own verifier.key, which a forger can replace', () => {
    const rewritten = [...goodLines];
    rewritten[1] = canonicalJson({ type: 'Rewritten' });
    const forged = { ...signedExport(rewritten, checkpointSizes, impostorKey.signerKey), verifierKey: impostorKey.verifierKey };
    const dir = writeExport(forged);
    assert.equal(verify(dir).status, 0, 'self-consistent on its own terms');
    const keyFile = path.join(workDir, 'real.key');
    writeFileSync(keyFile, `${realKey.verifierKey}\n`);
    for (const key of [realKey.verifierKey, keyFile]) {
      const result = verify(dir, '--key', key);
      assertFails(result, 'not signed by', 'the first failing checkpoint is checkpoints/cp-4.note (size 4)');
      assert.match(result.stdout, /^note: the export's verifier\.key is capsul\.example\/audit\+[0-9a-f]{8}; checking against --key/m);
    }
  });
});

describe('verify-log --against an earlier export', () => {
  const earlier = writeExport(signedExport(goodLines.slice(0, 13), [4, 8, 13]));
  // A rewrite by someone holding the real key: every checkpoint re-signed, so only the earlier copy tells.
  const resigned = (lines: string[]) => writeExport(signedExport(lines, [4, 8, lines.length]));

  it('passes a log that only grew since', () => {
    assert.equal(verify(writeExport(good), '--against', earlier).status, 0);
  });

  it('names the exact altered leaf', () => {
    const lines = [...goodLines];
    lines[9] = canonicalJson({ ...leafValue(9), seq: 99 });
    assertFails(
      verify(resigned(lines), '--against', earlier),
      /^FAIL leaf 9 differs from the earlier export \(altered\): now .*"seq\\":99.*, was /m,
      'FAILED: leaf 9 differs from the earlier export (altered)',
    );
  });

  it('names the exact removed, inserted and swapped leaves', () => {
    assertFails(
      verify(resigned(goodLines.filter((_, i) => i !== 10)), '--against', earlier),
      'FAILED: leaf 10 differs from the earlier export (removed)',
    );
    assertFails(
      verify(resigned([...goodLines.slice(0, 11), canonicalJson({ type: 'Forged' }), ...goodLines.slice(11)]), '--against', earlier),
      'leaf 11 differs from the earlier export (inserted)',
    );
    const swapped = [...goodLines];
    [swapped[6], swapped[7]] = [swapped[7]!, swapped[6]!];
    assertFails(
      verify(resigned(swapped), '--against', earlier),
      'leaf 6 differs from the earlier export (reordered): leaves 6 and 7 are swapped',
    );
    assertFails(verify(resigned(goodLines.slice(0, 12)), '--against', earlier), 'leaf 12 differs from the earlier export (removed)');
  });
});

describe('verify-log --proof', () => {
  const treeSize = 13;
  const proofFor = async (leafIndex: number) => {
    const frontier = new MerkleFrontier();
    const stored = new Map<string, Buffer>();
    for (const line of goodLines.slice(0, treeSize))
      for (const { level, index, hash } of frontier.append(leafHash(Buffer.from(line)))) stored.set(`${level}/${index}`, hash);
    const auditPath = await inclusionProof(leafIndex, treeSize, (level, index) => stored.get(`${level}/${index}`)!);
    return {
      leafIndex,
      treeSize,
      leaf: goodLines[leafIndex]!,
      auditPath: auditPath.map((h) => h.toString('base64')),
      checkpoint: good.notes.get('cp-13.note')!,
      note: 'ignored',
    };
  };
  let proofCount = 0;
  const writeProof = (proof: object) => {
    const file = path.join(workDir, `proof-${++proofCount}.json`);
    writeFileSync(file, JSON.stringify(proof));
    return file;
  };

  it('passes a good proof and prints the leaf', async () => {
    for (const leafIndex of [0, 7, 12]) {
      const result = verify('--proof', writeProof(await proofFor(leafIndex)), '--key', realKey.verifierKey);
      assert.equal(result.status, 0, result.output);
      assert.match(result.stdout, new RegExp(`^OK: leaf ${leafIndex} is in capsul\\.example/audit's log at size 13`, 'm'));
      assert.ok(result.stdout.includes(`\n${goodLines[leafIndex]}\n`));
    }
  });

  it('fails an altered proof: leaf, index, path hash, checkpoint, size or key', async () => {
    const proof = await proofFor(7);
    const flippedHash = Buffer.from(proof.auditPath[1]!, 'base64').map((b, i) => (i === 0 ? b ^ 1 : b));
    const altered: Array<[object, string]> = [
      [{ ...proof, leaf: canonicalJson({ ...leafValue(7), seq: 70 }) }, 'does not hash to the checkpoint'],
      [{ ...proof, leafIndex: 6 }, 'does not hash to the checkpoint'],
      [
        { ...proof, auditPath: proof.auditPath.map((h, i) => (i === 1 ? Buffer.from(flippedHash).toString('base64') : h)) },
        'does not hash to the checkpoint',
      ],
      [{ ...proof, auditPath: proof.auditPath.slice(1) }, 'does not hash to the checkpoint'],
      [{ ...proof, checkpoint: proof.checkpoint.replace('\n13\n', '\n12\n') }, 'invalid signature'],
      [{ ...proof, treeSize: 14 }, 'the proof is for size 14 but the checkpoint signs size 13'],
      [{ ...proof, checkpoint: signedExport(goodLines, [13], impostorKey.signerKey).notes.get('cp-13.note')! }, 'not signed by'],
      [{ ...proof, leaf: `${proof.leaf} ` }, 'the leaf ends with white space'],
    ];
    for (const [bad, message] of altered) {
      const result = verify('--proof', writeProof(bad), '--key', realKey.verifierKey);
      assertFails(result, message, 'FAILED: the proof does not verify');
    }
  });
});

describe('verify-log usage', () => {
  it('prints usage for --help', () => {
    const result = verify('--help');
    assert.equal(result.status, 0);
    assert.match(result.stdout, /^Usage:/);
  });

  const usageErrors: Array<[string, string[], RegExp]> = [
    ['no arguments', [], /give exactly one export directory/],
    ['two directories', ['a', 'b'], /give exactly one export directory/],
    ['an unknown option', ['--frobnicate'], /Unknown option '--frobnicate'/],
    ['a directory that does not exist', [path.join(workDir, 'nowhere')], /is not a directory/],
    ['a bad --key', ['.', '--key', 'not-a-key'], /--key is neither a verifier key/],
    ['--proof without --key', ['--proof', 'p.json'], /--proof needs --key/],
    ['--proof with a missing file', ['--proof', path.join(workDir, 'missing.json'), '--key', realKey.verifierKey], /cannot read the proof/],
  ];
  for (const [what, args, message] of usageErrors) {
    it(`exits 2 with one line for ${what}`, () => {
      const result = verify(...args);
      assert.equal(result.status, 2, result.output);
      assert.match(result.stderr, message);
      assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
    });
  }

  it('exits 2 when the export has no verifier.key and none is given', () => {
    const dir = writeExport(good);
    rmSync(path.join(dir, 'verifier.key'));
    const result = verify(dir);
    assert.equal(result.status, 2);
    assert.match(result.stderr, /no --key given, and .*verifier\.key: cannot be read/);
  });

  it('fails an export with no checkpoints or no leaves file', () => {
    assertFails(verify(writeExport({ ...good, notes: new Map() })), 'holds no checkpoint: nothing vouches for these leaves');
    const dir = writeExport(good);
    rmSync(path.join(dir, 'leaves.jsonl'));
    assertFails(verify(dir), 'leaves.jsonl is missing', 'the export has 0 leaves but the checkpoint signs 4');
  });
});
