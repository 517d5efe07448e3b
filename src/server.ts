// `npm start` / `capsul serve`. CAPSUL_MODE picks what runs: `hub` (production: the database,
// migrations, the HTTP app and the reactions), `spoke` (a host agent alone, see src/spoke/main.ts), or
// `both` (the default for development: the hub plus an in-process spoke with the simulated driver on
// a host it registers for itself).
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import type { CliIo } from './cli/context.ts';
import { loadDotEnv, readConfig, type Config } from './config.ts';
import { resolveDatabase, type Database } from './db/database.ts';
import { describeDatabase, openPool, prepareDatabase } from './ledger/open.ts';
import { buildHub } from './hub/app.ts';
import { AuditLoop } from './hub/audit-loop.ts';
import { DatabaseWatch } from './hub/database-watch.ts';
import { localEvidence } from './audit/key.ts';
import { ReactorLoop } from './hub/reactor-loop.ts';
import { jobDeps } from './jobs/runner.ts';
import { startSchedule } from './jobs/schedule.ts';
import { ledgerServices, type LedgerServices } from './ledger/services.ts';
import { paymentProviders } from './payments/index.ts';
import { topUpLimitsCheck } from './payments/provider.ts';
import { cheapestMonth } from './read/catalogue.ts';
import { configuredMailer } from './mail/mailer.ts';

const localHost = { id: 'local', memoryMb: 16_384, vcpus: 8 };

/**
 * The configured top-up limits against the catalogue: says a warning (the forms raise the minimum to a
 * month of the cheapest capsul) or an error (not even the largest top-up pays for one); true on the error.
 */
async function checkTopUpLimits(pool: pg.Pool, config: Config, say: (line: string) => void): Promise<boolean> {
  const check = topUpLimitsCheck(config, await cheapestMonth(pool));
  if (check === null) return false;
  if ('warning' in check) {
    say(`warning: ${check.warning}`);
    return false;
  }
  say(`configuration error: ${check.error}`);
  return true;
}

/**
 * pino's options for the hub: JSON lines for a log collector, or (LOG_FORMAT=pretty, npm start's
 * default) one readable line each, written by pino-pretty off the main thread.
 */
export function hubLogger(config: Pick<Config, 'logLevel' | 'logFormat'>) {
  const options = { level: config.logLevel, redact: ['req.headers.authorization', 'req.headers.cookie'] };
  if (config.logFormat === 'json') return options;
  return {
    ...options,
    transport: { target: 'pino-pretty', options: { translateTime: 'SYS:HH:MM:ss', ignore: 'pid,hostname,reqId', singleLine: true } },
  };
}

export async function serve(io: CliIo): Promise<number> {
  const say = (line: string) => io.stderr.write(`capsul: ${line}\n`);
  let config: Config;
  try {
    loadDotEnv();
    config = readConfig(io.env);
  } catch (error) {
    say(`configuration error: ${(error as Error).message}`);
    return 1;
  }
  if (config.mode === 'spoke') {
    const { runSpoke } = await import('./spoke/main.ts');
    return runSpoke(io.env, (line) => say(line));
  }

  let database: Database;
  try {
    database = await resolveDatabase({
      databaseUrl: config.databaseUrl,
      appUrl: config.databaseAppUrl,
      readerUrl: config.databaseReaderUrl,
      dataDir: config.dataDir,
      log: (line) => say(line),
    });
  } catch (error) {
    say(`cannot start the database: ${(error as Error).message ?? 'unknown reason'}`);
    return 1;
  }
  // The schema is migrated on the admin connection, which is then closed; the hub works as capsul_app.
  let pool: pg.Pool;
  try {
    const evidence = await localEvidence(config.audit);
    const { from, to } = await prepareDatabase(database, { log: (line) => say(line), evidence });
    say(from === to ? `database schema at version ${to}` : `database schema migrated from version ${from} to ${to}`);
    pool = await openPool(database, 'app', 10);
  } catch (error) {
    say((error as Error).message);
    await database.stop();
    return 1;
  }
  // The composition root: one clock, one stream cache, one ledger and hosts for the whole process.
  const services = ledgerServices(pool, { providerStart: config.providerStart });
  const { now, ledger } = services;
  const reactions = new ReactorLoop({ pool, cache: services.streams, now, log: onceEach(say) });
  const mailer = configuredMailer(config, (line) => say(line));
  // Receipts go out as soon as a provider credits a payment: the schedule starts after the hub, so late-bound.
  let paymentsChanged = () => {};
  const providers = paymentProviders(config, { pool, ledger, now, mailer, afterPayments: () => paymentsChanged() });
  if (providers.length > 0) {
    say(`payment providers: ${providers.map((provider) => provider.id).join(', ')}`);
    const refusal = await checkTopUpLimits(pool, config, say);
    if (refusal) {
      await pool.end().catch(() => {});
      await database.stop();
      return 1;
    }
  }
  const hub = await buildHub({
    services,
    pool,
    logger: hubLogger(config),
    requestLogLevel: config.requestLogLevel,
    metricsToken: config.metricsToken,
    afterReports: () => reactions.poke(),
    afterCommands: () => reactions.poke(),
    supportEmail: config.supportEmail,
    issuer: config.provider,
    baseUrl: config.baseUrl,
    secretKey: config.secretKey ?? (await developmentSecretKey(config)),
    adminEmails: config.adminEmails,
    opsEmails: config.opsEmails,
    mailer,
    announce: (line) => say(line),
    trustProxy: config.trustProxy,
    providers,
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
  const watch = new DatabaseWatch({ pool, database, log: (line) => say(line) });
  watch.start();
  const audit = new AuditLoop({ pool, audit: config.audit, log: onceEach(say) });
  try {
    await audit.start();
  } catch (error) {
    say(`the audit log cannot sign: ${(error as Error).message}`);
    await hub.close().catch(() => {});
    await reactions.stop();
    await pool.end().catch(() => {});
    await database.stop();
    return 1;
  }
  const jobs = startSchedule(
    jobDeps(config, {
      pool,
      hosts: services.hosts,
      cache: services.streams,
      mailer,
      providers,
      now,
      afterDeletions: () => reactions.poke(),
    }),
    {
      log: (line) => say(line),
    },
  );
  paymentsChanged = () => jobs.paymentsChanged();
  say(`database: ${describeDatabase(database)} (working as capsul_app)`);

  const stopSpoke = new AbortController();
  let spoke: Promise<number> | undefined;
  if (config.mode === 'both') {
    const token = await localHostToken(services, config, say);
    const { runSpoke } = await import('./spoke/main.ts');
    spoke = runSpoke(
      {
        HUB_URL: `http://127.0.0.1:${config.port}`,
        SPOKE_HOST_ID: localHost.id,
        SPOKE_HOST_TOKEN: token,
        SPOKE_DRIVER: 'simulated',
        SPOKE_DATA_DIR: path.join(config.dataDir, `spoke-${localHost.id}`),
        ...(io.env.SPOKE_SIMULATED_PROVISION_MS ? { SPOKE_SIMULATED_PROVISION_MS: io.env.SPOKE_SIMULATED_PROVISION_MS } : {}),
      },
      (line) => say(`spoke ${localHost.id}: ${line}`),
      { signal: stopSpoke.signal, handleSignals: false },
    );
  }
  io.stdout.write(`capsul hub running at ${config.baseUrl} (listening on http://${config.host}:${config.port})\n`);

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      say(`${signal}: shutting down`);
      stopSpoke.abort();
      await spoke?.catch(() => 1);
      await jobs.stop().catch(() => {});
      await hub.close().catch(() => {});
      await reactions.stop();
      await audit.stop();
      await watch.stop();
      await pool.end().catch(() => {});
      await database.stop().catch(() => {});
      resolve(0);
    };
    process.once('SIGINT', () => void stop('SIGINT'));
    process.once('SIGTERM', () => void stop('SIGTERM'));
  });
}

/**
 * The in-process spoke's host: registered on first start, its token kept in the data dir (mode 0600).
 * A lost token file gets a new token.
 */
async function localHostToken({ pool, hosts }: LedgerServices, config: Config, say: (line: string) => void): Promise<string> {
  const cause = { by: { kind: 'job' as const, id: 'serve' }, reason: 'the development spoke of npm start' };
  const tokenFile = path.join(config.dataDir, `spoke-${localHost.id}.token`);
  const registered = (await pool.query('SELECT 1 FROM hosts WHERE id = $1 AND removed IS NULL', [localHost.id])).rowCount === 1;
  if (registered) {
    const saved = await readFile(tokenFile, 'utf8')
      .then((text) => text.trim())
      .catch(() => '');
    if (saved && (await hosts.authenticate(localHost.id, saved))) return saved;
  }
  const { token } = registered
    ? await hosts.rotateToken(localHost.id, cause)
    : await hosts.add({ hostId: localHost.id, memoryMb: localHost.memoryMb, vcpus: localHost.vcpus, cause });
  if (!registered) say(`registered host "${localHost.id}" (${localHost.memoryMb} MiB, ${localHost.vcpus} vCPUs) for the simulated spoke`);
  await mkdir(config.dataDir, { recursive: true });
  await writeFile(tokenFile, `${token}\n`, { mode: 0o600 });
  await chmod(tokenFile, 0o600);
  return token;
}

/** Without SECRET_KEY (development only: config refuses it for https): a random key kept in the data dir. */
async function developmentSecretKey(config: Config): Promise<string> {
  const file = path.join(config.dataDir, 'secret-key');
  const saved = await readFile(file, 'utf8')
    .then((text) => text.trim())
    .catch(() => '');
  if (saved.length >= 32) return saved;
  const key = randomBytes(32).toString('hex');
  await mkdir(config.dataDir, { recursive: true });
  await writeFile(file, `${key}\n`, { mode: 0o600 });
  return key;
}

/** The same line again and again (a capsul waiting for a host) is said once. */
function onceEach(say: (line: string) => void): (line: string) => void {
  const said = new Set<string>();
  return (line) => {
    if (said.has(line)) return;
    if (said.size > 1000) said.clear();
    said.add(line);
    say(line);
  };
}
