// What every CLI command gets: output streams, the environment, and the database on demand.
import os from 'node:os';
import type pg from 'pg';
import { readConfig } from '../config.ts';
import { checkConnection, createPool, resolveDatabase, type Database } from '../db/database.ts';
import { migrate } from '../db/migrate.ts';
import type { Actor } from '../domain/events.ts';
import { Hosts } from '../ledger/hosts.ts';
import { Ledger } from '../ledger/ledger.ts';

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

export type Connection = { pool: pg.Pool; ledger: Ledger; hosts: Hosts; connectionString: string };

export class CliContext {
  private database?: Database;
  private connection?: Connection;

  constructor(readonly io: CliIo) {}

  out(line: string): void {
    this.io.stdout.write(`${line}\n`);
  }

  note(line: string): void {
    this.io.stderr.write(`${line}\n`);
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
    const id = (by ?? this.io.user ?? safeUsername()).trim();
    if (!id || id.length > 100) throw new UsageError('--by takes a name of 1 to 100 characters');
    return { kind: 'operator', id };
  }

  /** Connects (starting or joining the embedded database when DATABASE_URL is unset). */
  async connect(options: { migrate?: boolean } = { migrate: true }): Promise<Connection> {
    if (this.connection) return this.connection;
    const config = readConfig(this.io.env);
    this.database = await resolveDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
    const pool = createPool(this.database.connectionString, 4);
    await checkConnection(pool, this.database.connectionString);
    if (options.migrate !== false) await migrate(pool);
    this.connection = { pool, ledger: new Ledger({ pool }), hosts: new Hosts({ pool }), connectionString: this.database.connectionString };
    return this.connection;
  }

  async close(): Promise<void> {
    if (this.connection) {
      await this.connection.pool.end().catch(() => {});
    }
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
