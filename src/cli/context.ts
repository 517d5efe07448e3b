// What every CLI command gets: output streams, the environment, and the database on demand.
import os from 'node:os';
import type { ParseArgsConfig } from 'node:util';
import type pg from 'pg';
import { readConfig, type Config } from '../config.ts';
import { resolveDatabase, type Database, type Role } from '../db/database.ts';
import type { Actor } from '../domain/events.ts';
import { escapeHidden, lineOfText, maxActorIdLength } from '../domain/shared/text.ts';
import type { Hosts } from '../ledger/hosts.ts';
import type { Ledger } from '../ledger/ledger.ts';
import { ledgerServices } from '../ledger/services.ts';
import type { Clock } from '../core/clock.ts';
import type { StreamCache } from '../ledger/cache.ts';
import { openPool, prepareDatabase } from '../ledger/open.ts';
import { localEvidence } from '../audit/key.ts';

/** One `capsul` command: its help, its flags (node:util parseArgs), and what it does. */
export type CommandSpec = {
  summary: string;
  usage: string;
  options: NonNullable<ParseArgsConfig['options']>;
  positionals?: number;
  // biome-ignore lint/suspicious/noConfusingVoidType: a command's run returns an exit code, or nothing for 0
  run(ctx: CliContext, values: Record<string, string | boolean | string[] | undefined>, positionals: string[]): Promise<number | void>;
};

export type Output = { write(text: string): unknown };

export type CliIo = {
  stdout: Output;
  stderr: Output;
  env: NodeJS.ProcessEnv;
  /** the operating-system user, the default for --by */
  user?: string;
  /** whether stderr is a terminal (progress lines) */
  interactive?: boolean;
};

export class UsageError extends Error {}
/** An error whose message is the whole story for the operator: printed as one line. */
export class CliError extends Error {}

/** A command's composition root: its pool and what src/ledger/services.ts builds on it. */
export type Connection = { pool: pg.Pool; ledger: Ledger; hosts: Hosts; now: Clock; streams: StreamCache; database: Database };

/** Pool sizes per role: a command does one thing at a time, the sealer and a read beside it at most. */
const poolSize: Record<Role, number> = { admin: 2, app: 4, reader: 2 };

export class CliContext {
  private database?: Database;
  private prepared = false;
  private readonly connections = new Map<Role, Connection>();
  private configRead?: Config;

  constructor(readonly io: CliIo) {}

  /** The configuration from the environment, read once per command (a bad setting throws its one line). */
  get config(): Config {
    this.configRead ??= readConfig(this.io.env);
    return this.configRead;
  }

  /** One line on stdout; characters that could forge or hide output are shown escaped. */
  out(line: string): void {
    this.io.stdout.write(`${escapeHidden(line)}\n`);
  }

  note(line: string): void {
    this.io.stderr.write(`${escapeHidden(line)}\n`);
  }

  progress(label: string): ((done: number, total: number) => void) | undefined {
    if (!this.io.interactive) return undefined;
    let lastMs = 0;
    return (done, total) => {
      const nowMs = Date.now();
      if (nowMs - lastMs < 200 && done < total) return;
      lastMs = nowMs;
      const percent = total ? Math.floor((done / total) * 100) : 100;
      this.io.stderr.write(`\r${label}: ${done.toLocaleString('en-US')} / ${total.toLocaleString('en-US')} events (${percent}%)`);
      if (done >= total) this.io.stderr.write('\n');
    };
  }

  actor(by: string | undefined): Actor {
    try {
      return { kind: 'operator', id: lineOfText(by ?? this.io.user ?? safeUsername(), '--by', maxActorIdLength) };
    } catch (error) {
      throw new UsageError(`${(error as Error).message} (a name of 1 to ${maxActorIdLength} visible characters)`);
    }
  }

  /**
   * Connects as `role` (docs/database.md, "Who may do what"): `app` for commands that change things,
   * `reader` for those that only look, `admin` (DATABASE_URL itself) for migrations and rebuild. The
   * schema is brought up to date first unless `migrate` is false. The embedded database is started or
   * joined when DATABASE_URL is unset.
   */
  async connect(role: Role = 'app', options: { migrate?: boolean } = {}): Promise<Connection> {
    const open = this.connections.get(role);
    if (open) return open;
    const database = await this.resolve();
    if (options.migrate !== false && !this.prepared) {
      const evidence = await localEvidence(this.config.audit);
      await prepareDatabase(database, { log: (line) => this.note(line), onProgress: this.progress('rebuilding'), evidence });
      this.prepared = true;
    }
    const pool = await openPool(database, role, poolSize[role]);
    const { ledger, hosts, now, streams } = ledgerServices(pool, { providerStart: this.config.providerStart });
    const connection = { pool, ledger, hosts, now, streams, database };
    this.connections.set(role, connection);
    return connection;
  }

  private async resolve(): Promise<Database> {
    if (!this.database) {
      const config = this.config;
      this.database = await resolveDatabase({
        databaseUrl: config.databaseUrl,
        appUrl: config.databaseAppUrl,
        readerUrl: config.databaseReaderUrl,
        dataDir: config.dataDir,
      });
    }
    return this.database;
  }

  async close(): Promise<void> {
    for (const connection of this.connections.values()) await connection.pool.end().catch(() => {});
    this.connections.clear();
    await this.database?.stop();
  }
}

function safeUsername(): string {
  try {
    return os.userInfo().username;
  } catch {
    return 'unknown';
  }
}
