// One spoke per data dir: two agents sharing a journal could both run the same operation.
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import path from 'node:path';

export class DataDirLockedError extends Error {}

/** Lock files this process holds, so a stale lock left with our own pid (a container's pid 1) is told apart. */
const heldHere = new Set<string>();

/** Takes `<dir>/spoke.lock`; returns the function that releases it. */
export function lockDataDir(dir: string): () => void {
  const file = path.resolve(dir, 'spoke.lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, 'wx', 0o600);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      heldHere.add(file);
      return () => {
        heldHere.delete(file);
        try {
          unlinkSync(file);
        } catch {
          // already gone
        }
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const pid = Number(readFileSync(file, 'utf8').trim());
    const held = heldHere.has(file) || (pid !== process.pid && Number.isSafeInteger(pid) && pid > 0 && isAlive(pid));
    if (held) {
      throw new DataDirLockedError(`${dir} is in use by another spoke (pid ${pid}); if none is running, remove ${file}`);
    }
    unlinkSync(file); // left by a spoke that is gone
  }
  throw new DataDirLockedError(`could not lock ${dir}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
