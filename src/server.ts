// `npm start` / `capsul serve`: the database (embedded unless DATABASE_URL), migrations, the hub.
import { loadDotEnv, readConfig } from './config.ts';
import { checkConnection, createPool, redact, resolveDatabase } from './db/database.ts';
import { migrate } from './db/migrate.ts';
import type { CliIo } from './cli/context.ts';
import { buildHub } from './hub/app.ts';
import { ReactorLoop } from './hub/reactor-loop.ts';
import { createStreamCache } from './ledger/cache.ts';

export async function serve(io: CliIo): Promise<number> {
  const say = (line: string) => io.stderr.write(`capsul: ${line}\n`);
  let config;
  try {
    loadDotEnv();
    config = readConfig(io.env);
  } catch (error) {
    say(`configuration error: ${(error as Error).message}`);
    return 1;
  }
  let database;
  try {
    database = await resolveDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, log: (line) => say(line) });
  } catch (error) {
    say(`cannot start the database: ${(error as Error).message ?? 'unknown reason'}`);
    return 1;
  }
  const pool = createPool(database.connectionString, 10);
  try {
    await checkConnection(pool, database.connectionString);
    const { from, to } = await migrate(pool, { log: (line) => say(line) });
    say(from === to ? `database schema at version ${to}` : `database schema migrated from version ${from} to ${to}`);
  } catch (error) {
    say((error as Error).message);
    await pool.end().catch(() => {});
    await database.stop();
    return 1;
  }
  const reactions = new ReactorLoop({ pool, cache: createStreamCache(), log: (line) => say(line) });
  const hub = await buildHub({
    pool,
    logger: { level: io.env.LOG_LEVEL ?? 'info', redact: ['req.headers.authorization', 'req.headers.cookie'] },
    afterReports: () => reactions.poke(),
  });
  try {
    await hub.listen({ port: config.port, host: config.host });
  } catch (error) {
    say(`cannot listen on ${config.host}:${config.port}: ${(error as Error).message}`);
    await pool.end().catch(() => {});
    await database.stop();
    return 1;
  }
  reactions.start();
  say(`database: ${database.embedded ? 'embedded PostgreSQL' : redact(database.connectionString)}`);
  io.stdout.write(`capsul hub running at ${config.baseUrl} (listening on http://${config.host}:${config.port})\n`);

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      say(`${signal}: shutting down`);
      await hub.close().catch(() => {});
      await reactions.stop();
      await pool.end().catch(() => {});
      await database.stop().catch(() => {});
      resolve(0);
    };
    process.once('SIGINT', () => void stop('SIGINT'));
    process.once('SIGTERM', () => void stop('SIGTERM'));
  });
}
