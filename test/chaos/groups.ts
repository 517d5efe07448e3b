// The process groups a chaos run started (each child is a group leader, so kill -9 of the group takes
// what it started too), killed at once if this process exits before the run could stop them.
import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';

/** Every process group a run started and has not seen end: killed at once if this process exits first. */
const liveGroups = new Set<number>();
/** the runs' scratch directories, removed with them */
const scratchDirs = new Set<string>();

/** kill -9 of everything the runs in this process started (an interrupt, a runner's timeout). */
export function killEverythingNow(): void {
  for (const pid of liveGroups) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
  liveGroups.clear();
  for (const dir of scratchDirs) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // a backend still writing as it dies: a temp dir left behind
    }
  }
  scratchDirs.clear();
}
process.once('exit', killEverythingNow);

export function trackDir(dir: string): void {
  scratchDirs.add(dir);
}

export function untrackDir(dir: string): void {
  scratchDirs.delete(dir);
}

export function track(child: ChildProcess): void {
  if (child.pid === undefined) return;
  const pid = child.pid;
  liveGroups.add(pid);
  child.once('exit', () => liveGroups.delete(pid));
}
