// One spoke per data dir.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { DataDirLockedError, lockDataDir } from '../../src/spoke/lock.ts';
import { tempDataDir } from './support.ts';

let data: ReturnType<typeof tempDataDir>;
beforeEach(() => {
  data = tempDataDir();
  mkdirSync(data.dir, { recursive: true });
});
afterEach(() => data.remove());

describe('data dir lock', () => {
  it('is held until released', () => {
    const release = lockDataDir(data.dir);
    assert.throws(() => lockDataDir(data.dir), DataDirLockedError);
    release();
    assert.equal(existsSync(path.join(data.dir, 'spoke.lock')), false);
    lockDataDir(data.dir)();
  });

  it('is refused while a live process holds it', () => {
    writeFileSync(path.join(data.dir, 'spoke.lock'), `${process.ppid}\n`);
    assert.throws(() => lockDataDir(data.dir), /in use by another spoke \(pid \d+\); if none is running, remove/);
  });

  it('is taken over from a process that is gone, or from our own pid left by an earlier life', () => {
    writeFileSync(path.join(data.dir, 'spoke.lock'), '999999999\n');
    lockDataDir(data.dir)();
    writeFileSync(path.join(data.dir, 'spoke.lock'), `${process.pid}\n`);
    lockDataDir(data.dir)();
  });
});
