// Runs one of the driver's shell scripts: arguments as an argv array (never a command line a shell
// parses), a time limit that ends the script's whole process group, bounded output, and a failure
// turned into a DriverError that carries the script's last line on stderr.
import { spawn } from 'node:child_process';
import { DriverError } from '../driver.ts';
import { limits } from '../protocol.ts';

export type ScriptRun = {
  script: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  timeoutMs: number;
  /** what is being done, for the error message: "starting capsul-a1b2c3d4e5" */
  doing: string;
};

const maxStdoutBytes = 1_048_576;
const maxStderrBytes = 65_536;
/** between asking a timed-out script to stop (it may undo its work) and killing it */
const killGraceMs = 5_000;

export function runScript({ script, args, env, timeoutMs, doing }: ScriptRun): Promise<string> {
  return new Promise((resolve, reject) => {
    // Its own process group, so a timeout also ends the virsh or qemu-img it is waiting for.
    const child = spawn('/bin/sh', [script, ...args], { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const stdout: Buffer[] = [];
    let stdoutBytes = 0;
    let stderr = '';
    let failure: string | null = null;
    const signalGroup = (signal: NodeJS.Signals) => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, signal);
      } catch {
        // already gone
      }
    };
    let killTimer: NodeJS.Timeout | undefined;
    const stopGroup = (why: string) => {
      if (failure !== null) return;
      failure = why;
      signalGroup('SIGTERM');
      killTimer = setTimeout(() => signalGroup('SIGKILL'), killGraceMs);
    };
    const timeoutTimer = setTimeout(() => stopGroup(`timed out after ${timeoutMs / 1000} s`), timeoutMs);

    child.stdout.on('data', (chunk: Buffer) => {
      stdoutBytes += chunk.length;
      if (stdoutBytes > maxStdoutBytes) return stopGroup(`printed more than ${maxStdoutBytes} bytes`);
      stdout.push(chunk);
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString('utf8')).slice(-maxStderrBytes);
    });
    child.on('error', (error) => {
      if (child.pid !== undefined) return stopGroup(`could not run ${script}: ${error.message}`);
      clearTimeout(timeoutTimer);
      reject(new DriverError(`${doing} failed: could not run ${script}: ${error.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timeoutTimer);
      clearTimeout(killTimer);
      if (failure === null && code === 0) return resolve(Buffer.concat(stdout).toString('utf8'));
      const reason = failure ?? lastLine(stderr) ?? (signal ? `killed by ${signal}` : `exit status ${code}`);
      reject(new DriverError(`${doing} failed: ${reason}`.slice(0, limits.maxErrorLength)));
    });
  });
}

function lastLine(text: string): string | null {
  const lines = text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '');
  return lines.at(-1) ?? null;
}
