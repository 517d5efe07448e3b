#!/usr/bin/env node
// An auditor's verifier for capsul's tamper-evident log, written to stand alone: Node ≥ 20 built-ins
// only, no capsul code, no packages, no database. It re-implements RFC 8785 canonical JSON, RFC 6962
// Merkle hashing and C2SP signed notes / checkpoints from the specifications, independently of the
// server's TypeScript, so a bug in one is not silently shared by the other.
import { createHash, createPublicKey, verify } from 'node:crypto';
import { createReadStream, readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

const usage = `Usage:
  node verify-log.mjs <export-dir> [--key <verifier key or file>] [--against <earlier-export-dir>]
  node verify-log.mjs --proof <proof.json> --key <verifier key or file>

Checks an export of capsul's audit log: <export-dir>/leaves.jsonl (one canonical JSON leaf per line),
<export-dir>/checkpoints/* (signed checkpoint notes) and <export-dir>/verifier.key. Every checkpoint must
be signed by the key and its root must be the Merkle root of that many leaves. Pass --key with the key
you obtained yourself: the export's own verifier.key proves nothing. --against compares the leaves with
an earlier export you kept and names the first leaf that was altered, removed or inserted.

--proof checks one inclusion proof {leafIndex, treeSize, leaf, auditPath, checkpoint} and prints the leaf.

Exit status: 0 everything verified, 1 something did not, 2 usage error.`;

const hashBytes = 32;
const maxLeafBytes = 4 * 1024 * 1024; // a guard against a runaway line, far above any real event
const maxNoteBytes = 64 * 1024;
const maxProofFileBytes = 64 * 1024 * 1024;
const maxProofHashes = 64; // a tree of 2^53 leaves needs at most 53
const maxNoteSignatures = 100;
const maxCanonicalDepth = 100;
const maxPrintedProblems = 100;
const quoteChars = 200;

class UsageError extends Error {}
class Problem extends Error {}

// ---------- hashing (RFC 6962 §2.1) ----------

const sha256 = (...parts) => parts.reduce((h, part) => h.update(part), createHash('sha256')).digest();
const hashLeaf = (bytes) => sha256(Buffer.of(0), bytes);
const hashChildren = (left, right) => sha256(Buffer.of(1), left, right);

// The right edge of the tree: one complete-subtree hash per 1 bit of the size, largest first.
class Frontier {
  edge = [];
  size = 0;

  add(leafHash) {
    let hash = leafHash;
    for (let carry = this.size; carry % 2 === 1; carry = Math.floor(carry / 2)) hash = hashChildren(this.edge.pop(), hash);
    this.edge.push(hash);
    this.size += 1;
  }

  root() {
    if (this.edge.length === 0) return sha256();
    return this.edge.reduceRight((right, left) => hashChildren(left, right));
  }
}

// RFC 9162 §2.1.3.2: the root implied by a leaf hash and its audit path, or null if the path is malformed.
function rootFromInclusionProof(leafIndex, treeSize, leafHash, auditPath) {
  if (leafIndex >= treeSize) return null;
  let fn = leafIndex;
  let sn = treeSize - 1;
  let r = leafHash;
  for (const p of auditPath) {
    if (sn === 0) return null;
    if (fn % 2 === 1 || fn === sn) {
      r = hashChildren(p, r);
      while (fn % 2 === 0 && fn !== 0) [fn, sn] = [fn / 2, Math.floor(sn / 2)];
    } else {
      r = hashChildren(r, p);
    }
    [fn, sn] = [Math.floor(fn / 2), Math.floor(sn / 2)];
  }
  return sn === 0 ? r : null;
}

// ---------- canonical JSON (RFC 8785), for values JSON.parse produced ----------

function canonicalize(value, depth = 0) {
  if (value === null || typeof value === 'boolean') return String(value);
  if (typeof value === 'number') return canonicalNumber(value);
  if (typeof value === 'string') return canonicalString(value);
  if (depth >= maxCanonicalDepth) throw new Problem(`nests deeper than ${maxCanonicalDepth} levels`);
  if (Array.isArray(value)) return `[${value.map((item) => canonicalize(item, depth + 1)).join(',')}]`;
  // Members sorted by UTF-16 code units, which is what the default string sort compares.
  const members = Object.keys(value)
    .sort()
    .map((key) => `${canonicalString(key)}:${canonicalize(value[key], depth + 1)}`);
  return `{${members.join(',')}}`;
}

function canonicalNumber(n) {
  if (!Number.isFinite(n)) throw new Problem('holds a number too large for a double');
  if (Number.isInteger(n) && !Number.isSafeInteger(n)) throw new Problem(`holds the integer ${n}, beyond ±(2^53−1)`);
  return String(n); // ES Number.prototype.toString, as RFC 8785 §3.2.2.3 prescribes (so -0 is "0")
}

function canonicalString(s) {
  if (/\p{Surrogate}/u.test(s)) throw new Problem('holds a lone UTF-16 surrogate');
  return JSON.stringify(s); // its escaping is exactly RFC 8785 §3.2.2.2's for well-formed strings
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

// Why `bytes` is not the canonical JSON of a value, or null when it is.
function canonicalProblem(bytes) {
  if (bytes.length === 0) return 'is empty';
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) return 'starts with a byte order mark';
  let text;
  try {
    text = utf8.decode(bytes);
  } catch {
    return 'is not valid UTF-8';
  }
  if (/\s$/.test(text)) return 'ends with white space';
  let value;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return `is not JSON (${error.message})`;
  }
  try {
    const canonical = canonicalize(value);
    return canonical === text ? null : `is JSON but not canonical; canonical form: ${quote(canonical)}`;
  } catch (error) {
    if (error instanceof Problem) return `is not I-JSON: it ${error.message}`;
    throw error;
  }
}

// ---------- signed notes (c2sp.org/signed-note, Ed25519) ----------

function decodeBase64(text) {
  if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(text)) return null;
  const bytes = Buffer.from(text, 'base64');
  return bytes.toString('base64') === text ? bytes : null;
}

const isKeyName = (name) => name !== '' && !/[\p{White_Space}+]|\p{Surrogate}/u.test(name);

function parseVerifierKey(text) {
  const match = /^([^+]+)\+([0-9a-fA-F]{8})\+(.+)$/s.exec(text);
  const key = match && decodeBase64(match[3]);
  if (!match || !isKeyName(match[1]) || !key || key.length !== 33 || key[0] !== 0x01) {
    throw new Problem('not an Ed25519 verifier key of the form <name>+<8 hex digits>+<base64>');
  }
  const [, name, hashHex] = match;
  const keyHash = Number.parseInt(hashHex, 16);
  if (sha256(Buffer.from(`${name}\n`, 'utf8'), key).readUInt32BE(0) !== keyHash)
    throw new Problem(`the key hash ${hashHex} does not match the key`);
  const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), key.subarray(1)]);
  return { name, keyHash, id: `${name}+${hashHex.toLowerCase()}`, publicKey: createPublicKey({ key: spki, format: 'der', type: 'spki' }) };
}

// The note's text if `key` signed it; throws a Problem saying why not. Unknown keys' signatures are
// ignored, as the spec requires; a bad signature by our key fails the whole note.
function openNote(bytes, key) {
  let note;
  try {
    note = utf8.decode(bytes);
  } catch {
    throw new Problem('the note is not valid UTF-8');
  }
  if (/[\u0000-\u0009\u000b-\u001f]/.test(note)) throw new Problem('the note holds a control character other than newline');
  const split = note.lastIndexOf('\n\n');
  if (split < 0) throw new Problem('the note has no blank line before its signatures');
  const text = note.slice(0, split + 1);
  const block = note.slice(split + 2);
  if (!block.endsWith('\n')) throw new Problem('the note does not end with a newline after its signatures');
  const lines = block.slice(0, -1).split('\n');
  if (lines.length > maxNoteSignatures) throw new Problem(`the note has more than ${maxNoteSignatures} signatures`);
  const others = [];
  let verified = false;
  for (const line of lines) {
    const signature = parseSignatureLine(line);
    if (signature.name !== key.name || signature.keyHash !== key.keyHash) {
      others.push(`${signature.name}+${signature.keyHash.toString(16).padStart(8, '0')}`);
      continue;
    }
    const ok = signature.bytes.length === 64 && verify(null, Buffer.from(text, 'utf8'), key.publicKey, signature.bytes);
    if (!ok) throw new Problem(`invalid signature by ${key.id}`);
    verified = true;
  }
  if (!verified) throw new Problem(`not signed by ${key.id}${others.length ? ` (signed only by ${[...new Set(others)].join(', ')})` : ''}`);
  return text;
}

function parseSignatureLine(line) {
  const match = /^— ([^ ]+) (.+)$/s.exec(line);
  const bytes = match && decodeBase64(match[2]);
  if (!match || !isKeyName(match[1]) || !bytes || bytes.length < 5) throw new Problem(`malformed signature line ${quote(line)}`);
  return { name: match[1], keyHash: bytes.readUInt32BE(0), bytes: bytes.subarray(4) };
}

// ---------- checkpoints (c2sp.org/tlog-checkpoint) ----------

function parseCheckpoint(text) {
  const lines = text.slice(0, -1).split('\n');
  if (!text.endsWith('\n') || lines.length < 3 || lines.some((line) => line === '')) {
    throw new Problem('the checkpoint body is not "origin, size, root" lines (plus non-empty extension lines)');
  }
  const [origin, sizeText, rootText] = lines;
  if (!/^(?:0|[1-9][0-9]*)$/.test(sizeText) || !Number.isSafeInteger(Number(sizeText))) {
    throw new Problem(`the tree size ${quote(sizeText)} is not a decimal without leading zeros`);
  }
  const root = decodeBase64(rootText);
  if (!root || root.length !== hashBytes) throw new Problem(`the root ${quote(rootText)} is not a base64 SHA-256 hash`);
  return { origin, size: Number(sizeText), root };
}

// The size a checkpoint claims, read without trusting it, to name a checkpoint that failed.
function claimedSize(bytes) {
  const match = /^[^\n]*\n(0|[1-9][0-9]*)\n/.exec(bytes.toString('utf8'));
  return match ? Number(match[1]) : null;
}

// ---------- the export ----------

// Streams a file's lines as bytes without their "\n"; `terminated` is false for a last line lacking one.
async function* readLines(file) {
  let pending = [];
  let pendingBytes = 0;
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) {
    let start = 0;
    for (let end = chunk.indexOf(0x0a); end >= 0; end = chunk.indexOf(0x0a, start)) {
      pending.push(chunk.subarray(start, end));
      yield { bytes: Buffer.concat(pending), terminated: true };
      [pending, pendingBytes, start] = [[], 0, end + 1];
    }
    pending.push(chunk.subarray(start));
    pendingBytes += chunk.length - start;
    if (pendingBytes > maxLeafBytes) throw new Problem(`${file} has a line longer than ${maxLeafBytes} bytes`);
  }
  if (pendingBytes > 0) yield { bytes: Buffer.concat(pending), terminated: false };
}

class Report {
  problems = [];
  failingCheckpoints = [];
  leafDifference = null;

  fail(message) {
    this.problems.push(message);
    if (this.problems.length <= maxPrintedProblems) console.log(`FAIL ${message}`);
  }

  failCheckpoint(file, size, reason) {
    this.failingCheckpoints.push({ file, size });
    this.fail(`checkpoint ${file}${size === null ? '' : ` (size ${size})`}: ${reason}`);
  }
}

function loadCheckpoints(dir, key, report) {
  const checkpointDir = path.join(dir, 'checkpoints');
  let names;
  try {
    names = readdirSync(checkpointDir).sort();
  } catch {
    report.fail(`${checkpointDir} is missing: no signed checkpoint vouches for these leaves`);
    return [];
  }
  const files = names.map((name) => path.join('checkpoints', name)).filter((file) => isFile(path.join(dir, file)));
  if (files.length === 0) report.fail(`${checkpointDir} holds no checkpoint: nothing vouches for these leaves`);
  const checkpoints = [];
  for (const file of files) {
    const full = path.join(dir, file);
    if (statSync(full).size > maxNoteBytes) {
      report.failCheckpoint(file, null, `larger than ${maxNoteBytes} bytes, not a checkpoint note`);
      continue;
    }
    const bytes = readFileSync(full);
    try {
      const checkpoint = parseCheckpoint(openNote(bytes, key));
      if (checkpoint.origin !== key.name)
        throw new Problem(`its origin ${quote(checkpoint.origin)} is not the key's name ${quote(key.name)}`);
      checkpoints.push({ file, ...checkpoint });
    } catch (error) {
      if (!(error instanceof Problem)) throw error;
      report.failCheckpoint(file, claimedSize(bytes), error.message);
    }
  }
  return checkpoints.sort((a, b) => a.size - b.size); // stable: equal sizes stay in file-name order
}

function checkRoot(checkpoint, frontier, report) {
  const root = frontier.root();
  if (root.equals(checkpoint.root)) return true;
  report.failCheckpoint(
    checkpoint.file,
    checkpoint.size,
    `root mismatch: the first ${checkpoint.size} leaves hash to ${root.toString('base64')}, the checkpoint signs ${checkpoint.root.toString('base64')}`,
  );
  return false;
}

// One pass over the leaves: each line's canonical form, and the root at every checkpoint's size.
async function checkLeaves(dir, checkpoints, report) {
  const leavesFile = path.join(dir, 'leaves.jsonl');
  const frontier = new Frontier();
  const verified = [];
  let next = 0;
  const settle = () => {
    for (; next < checkpoints.length && checkpoints[next].size === frontier.size; next++) {
      if (checkRoot(checkpoints[next], frontier, report)) verified.push(checkpoints[next]);
    }
  };
  settle();
  if (!isFile(leavesFile)) report.fail(`${leavesFile} is missing`);
  try {
    for await (const { bytes, terminated } of isFile(leavesFile) ? readLines(leavesFile) : []) {
      const problem = canonicalProblem(bytes);
      if (problem) report.fail(`leaf ${frontier.size} ${problem}: ${quote(bytes.toString('utf8'))}`);
      if (!terminated) report.fail(`leaves.jsonl does not end with a newline: leaf ${frontier.size} may be cut short`);
      frontier.add(hashLeaf(bytes));
      settle();
    }
  } catch (error) {
    if (!(error instanceof Problem)) throw error;
    report.fail(`${error.message}; stopped reading at leaf ${frontier.size}`);
    return { leafCount: frontier.size, verified };
  }
  for (const checkpoint of checkpoints.slice(next)) {
    report.failCheckpoint(
      checkpoint.file,
      checkpoint.size,
      `the export has ${frontier.size} leaves but the checkpoint signs ${checkpoint.size}`,
    );
  }
  return { leafCount: frontier.size, verified };
}

// Line by line against an export kept earlier; at the first difference, a one-line look-ahead in both
// tells an altered leaf from a removed, an inserted or a swapped one.
async function compareWithEarlier(dir, earlierDir, report) {
  const now = readLines(path.join(dir, 'leaves.jsonl'))[Symbol.asyncIterator]();
  const was = readLines(path.join(earlierDir, 'leaves.jsonl'))[Symbol.asyncIterator]();
  try {
    for (let index = 0; ; index++) {
      const [current, earlier] = await Promise.all([now.next(), was.next()]);
      if (earlier.done) return;
      if (current.done) return reportDifference(report, index, 'removed', `the earlier export goes on, this one ends at ${index} leaves`);
      if (!current.value.bytes.equals(earlier.value.bytes)) {
        const [nextCurrent, nextEarlier] = await Promise.all([now.next(), was.next()]);
        return describeDifference(
          report,
          index,
          current.value.bytes,
          earlier.value.bytes,
          nextCurrent.value?.bytes,
          nextEarlier.value?.bytes,
        );
      }
    }
  } finally {
    await Promise.all([now.return(), was.return()]);
  }
}

function describeDifference(report, index, current, earlier, nextCurrent, nextEarlier) {
  const shifted = nextEarlier?.equals(current) ?? false; // this export skips the earlier leaf `index`
  const pushed = nextCurrent?.equals(earlier) ?? false; // this export has an extra leaf at `index`
  const was = `was ${quote(earlier.toString('utf8'))}`;
  const now = `now ${quote(current.toString('utf8'))}`;
  if (shifted && pushed) return reportDifference(report, index, 'reordered', `leaves ${index} and ${index + 1} are swapped`);
  if (shifted)
    return reportDifference(
      report,
      index,
      'removed',
      `this export's leaf ${index} is the earlier leaf ${index + 1}; the removed leaf ${was}`,
    );
  if (pushed)
    return reportDifference(
      report,
      index,
      'inserted',
      `this export's leaf ${index + 1} is the earlier leaf ${index}; the inserted leaf is ${quote(current.toString('utf8'))}`,
    );
  return reportDifference(report, index, 'altered', `${now}, ${was}`);
}

function reportDifference(report, index, kind, detail) {
  report.leafDifference = `leaf ${index} differs from the earlier export (${kind})`;
  report.fail(`${report.leafDifference}: ${detail}`);
}

async function verifyExport(dir, keyOption, earlierDir) {
  const key = loadExportKey(dir, keyOption);
  if (earlierDir !== undefined && !isFile(path.join(earlierDir, 'leaves.jsonl')))
    throw new UsageError(`--against ${earlierDir} holds no leaves.jsonl`);
  const report = new Report();
  const checkpoints = loadCheckpoints(dir, key, report);
  const { leafCount, verified } = await checkLeaves(dir, checkpoints, report);
  if (earlierDir !== undefined && isFile(path.join(dir, 'leaves.jsonl'))) await compareWithEarlier(dir, earlierDir, report);
  const largest = verified.at(-1)?.size ?? 0;
  if (report.problems.length === 0) {
    if (leafCount > largest)
      console.log(`note: the last ${leafCount - largest} leaves (from index ${largest}) are not covered by a checkpoint yet`);
    console.log(
      `OK: ${leafCount} leaves; ${verified.length} checkpoint${verified.length === 1 ? '' : 's'} signed by ${key.id}, all matching (largest size ${largest})`,
    );
    return 0;
  }
  console.log(`FAILED: ${failureSummary(report, verified)}`);
  return 1;
}

function failureSummary(report, verified) {
  const parts = [];
  if (report.leafDifference) parts.push(report.leafDifference);
  const first = [...report.failingCheckpoints].sort((a, b) => (a.size ?? Infinity) - (b.size ?? Infinity))[0];
  if (first) {
    const sized = first.size === null ? 'size unknown' : `size ${first.size}`;
    const lastGood = first.size === null ? undefined : verified.filter((c) => c.size < first.size).at(-1);
    const bound = lastGood
      ? `; the first ${lastGood.size} leaves still match ${lastGood.file}, so the change is at a leaf index in [${lastGood.size}, ${first.size})`
      : '';
    parts.push(`the first failing checkpoint is ${first.file} (${sized})${bound}`);
  }
  const hidden = report.problems.length - maxPrintedProblems;
  parts.push(`${report.problems.length} problem${report.problems.length === 1 ? '' : 's'}${hidden > 0 ? ` (${hidden} not shown)` : ''}`);
  return parts.join('; ');
}

// ---------- inclusion proofs ----------

async function verifyProof(proofFile, keyOption) {
  if (keyOption === undefined) throw new UsageError('--proof needs --key <verifier key or file>');
  const key = loadKey(keyOption, '--key');
  const proof = readProof(proofFile);
  const report = new Report();
  try {
    const checkpoint = parseCheckpoint(openNote(Buffer.from(proof.checkpoint, 'utf8'), key));
    if (checkpoint.origin !== key.name)
      throw new Problem(`the checkpoint's origin ${quote(checkpoint.origin)} is not the key's name ${quote(key.name)}`);
    if (checkpoint.size !== proof.treeSize)
      throw new Problem(`the proof is for size ${proof.treeSize} but the checkpoint signs size ${checkpoint.size}`);
    const leafBytes = Buffer.from(proof.leaf, 'utf8');
    const problem = canonicalProblem(leafBytes);
    if (problem) throw new Problem(`the leaf ${problem}`);
    const root = rootFromInclusionProof(proof.leafIndex, proof.treeSize, hashLeaf(leafBytes), proof.auditPath);
    if (!root?.equals(checkpoint.root))
      throw new Problem(`leaf ${proof.leafIndex} with this audit path does not hash to the checkpoint's root at size ${proof.treeSize}`);
    console.log(
      `OK: leaf ${proof.leafIndex} is in ${key.name}'s log at size ${proof.treeSize} (root ${checkpoint.root.toString('base64')}, signed by ${key.id})`,
    );
    console.log(proof.leaf);
    return 0;
  } catch (error) {
    if (!(error instanceof Problem)) throw error;
    report.fail(`proof ${proofFile}: ${error.message}`);
    console.log(`FAILED: the proof does not verify`);
    return 1;
  }
}

function readProof(file) {
  let proof;
  try {
    if (statSync(file).size > maxProofFileBytes) throw new UsageError(`${file} is larger than ${maxProofFileBytes} bytes`);
    proof = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError(`cannot read the proof ${file}: ${oneLine(error)}`);
  }
  const isCount = (n) => Number.isSafeInteger(n) && n >= 0;
  const auditPath =
    Array.isArray(proof?.auditPath) && proof.auditPath.length <= maxProofHashes
      ? proof.auditPath.map((h) => (typeof h === 'string' ? decodeBase64(h) : null))
      : null;
  if (
    !isCount(proof?.leafIndex) ||
    !isCount(proof?.treeSize) ||
    typeof proof?.leaf !== 'string' ||
    typeof proof?.checkpoint !== 'string' ||
    !auditPath ||
    auditPath.some((h) => !h || h.length !== hashBytes)
  ) {
    throw new UsageError(
      `${file} is not an inclusion proof {"leafIndex": n, "treeSize": n, "leaf": "...", "auditPath": ["<base64>", ...], "checkpoint": "..."}`,
    );
  }
  return { leafIndex: proof.leafIndex, treeSize: proof.treeSize, leaf: proof.leaf, auditPath, checkpoint: proof.checkpoint };
}

// ---------- command line ----------

// A verifier key is accepted as text or as a file holding it; which one is decided by what parses.
function loadKey(option, source) {
  try {
    return parseVerifierKey(option.trim());
  } catch (textError) {
    let text;
    try {
      text = readFileSync(option, 'utf8');
    } catch {
      throw new UsageError(`${source} is neither a verifier key (${textError.message}) nor a readable file`);
    }
    try {
      return parseVerifierKey(text.trim());
    } catch (fileError) {
      throw new UsageError(`${source} ${option}: ${fileError.message}`);
    }
  }
}

function loadExportKey(dir, keyOption) {
  assertDirectory(dir, 'the export');
  const keyFile = path.join(dir, 'verifier.key');
  const exported = readExportedKey(keyFile);
  if (keyOption === undefined) {
    if (exported instanceof Error) throw new UsageError(`no --key given, and ${keyFile}: ${exported.message}`);
    return exported;
  }
  const key = loadKey(keyOption, '--key');
  if (!(exported instanceof Error) && exported.id !== key.id)
    console.log(`note: the export's verifier.key is ${exported.id}; checking against --key ${key.id} instead`);
  return key;
}

function readExportedKey(keyFile) {
  let text;
  try {
    text = readFileSync(keyFile, 'utf8');
  } catch {
    return new Error('cannot be read');
  }
  try {
    return parseVerifierKey(text.trim());
  } catch (error) {
    return error;
  }
}

function isFile(file) {
  try {
    return statSync(file).isFile();
  } catch {
    return false;
  }
}

function assertDirectory(dir, what) {
  let isDirectory = false;
  try {
    isDirectory = statSync(dir).isDirectory();
  } catch {
    // reported below
  }
  if (!isDirectory) throw new UsageError(`${what} ${dir} is not a directory`);
}

function quote(text) {
  const json = JSON.stringify(text);
  return json.length > quoteChars ? `${json.slice(0, quoteChars)}…` : json;
}

function oneLine(error) {
  return String(error instanceof Error ? error.message : error).split('\n')[0];
}

async function main(argv) {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { key: { type: 'string' }, against: { type: 'string' }, proof: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    });
  } catch (error) {
    throw new UsageError(oneLine(error).split('. ')[0]); // node's message goes on about '--'
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(usage);
    return 0;
  }
  if (values.proof !== undefined) {
    if (positionals.length > 0 || values.against !== undefined) throw new UsageError('--proof takes no export directory and no --against');
    return verifyProof(values.proof, values.key);
  }
  if (positionals.length !== 1) throw new UsageError('give exactly one export directory');
  return verifyExport(positionals[0], values.key, values.against);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error) => {
    const usageError = error instanceof UsageError;
    console.error(`verify-log: ${oneLine(error)}${usageError ? ' (--help for usage)' : ''}`);
    process.exitCode = usageError ? 2 : 1;
  },
);
