// The hub's watch on its database. A server of DATABASE_URL that restarts needs nothing: the pool opens
// new connections once it answers again. The embedded one may have gone with the process that ran it
// (or been killed): then the hub starts or joins it again, on its old port, and carries on.
import type pg from 'pg';
import type { Database } from '../db/database.ts';
import { Serial } from '../core/serial.ts';

export class DatabaseWatch {
  private timer: NodeJS.Timeout | undefined;
  private readonly rounds: Serial;
  private down = false;

  constructor(
    private readonly deps: { pool: pg.Pool; database: Database; log: (line: string) => void },
    private readonly intervalMs = 5000,
  ) {
    this.rounds = new Serial('watching the database', () => this.round(), deps.log);
  }

  start(): void {
    this.timer = setInterval(() => this.rounds.poke(), this.intervalMs);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.rounds.stop();
  }

  private async round(): Promise<void> {
    try {
      await this.deps.pool.query('SELECT 1');
      if (this.down) this.deps.log('the database answers again');
      this.down = false;
      return;
    } catch (error) {
      if (!this.down)
        this.deps.log(
          `the database does not answer (${(error as Error).message})${this.deps.database.recover ? ': starting the embedded one again' : ''}`,
        );
      this.down = true;
    }
    if (!this.deps.database.recover) return;
    const samePort = await this.deps.database.recover();
    if (!samePort) this.deps.log('the embedded database could only start again on another port: restart capsul');
  }
}
