// Configuration from the environment (and an optional `.env`), validated once at start.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { isValidKeyName } from './audit/note.ts';
import { defaultProviderStart } from './domain/account/decider.ts';
import { canonicalEmail } from './domain/shared/email.ts';

export type Mode = 'hub' | 'spoke' | 'both';

export type Config = {
  /** unset → the embedded development database in `dataDir/pg` */
  databaseUrl: string | undefined;
  /** how the hub and the commands connect as capsul_app; unset → DATABASE_URL as capsul_app, no password */
  databaseAppUrl: string | undefined;
  /** how capsul sql and the audit connect as capsul_reader; unset → DATABASE_URL as capsul_reader, no password */
  databaseReaderUrl: string | undefined;
  dataDir: string;
  port: number;
  host: string;
  baseUrl: string;
  /** hub: the hub alone (production); spoke: a host agent alone; both: hub + simulated spoke (development) */
  mode: Mode;
  /** shown on the support page */
  supportEmail: string;
  /** signs session and CSRF cookies; unset → a random key kept in `dataDir/secret-key` (refused when BASE_URL is https) */
  secretKey: string | undefined;
  /** canonical emails of the operators who may use /admin */
  adminEmails: string[];
  /** who is emailed of incidents (OPS_EMAILS); unset → adminEmails */
  opsEmails: string[];
  /** when a condition becomes an incident (docs/operations.md, "Alerts") */
  alerts: AlertLimits;
  /** unset → no SMTP: each message is written to `dataDir/outbox/` as an .eml file */
  mail: MailConfig | undefined;
  mailFrom: string;
  /** fastify's trustProxy: false, true, or a list of proxy addresses/CIDRs whose X-Forwarded-For is believed */
  trustProxy: boolean | string;
  /** Stripe top-ups: on when both keys are set */
  stripe: StripeConfig | undefined;
  /** BTCPay Server top-ups: on when its URL, API key, store and webhook secret are set */
  btcpay: BtcpayConfig | undefined;
  /**
   * the smallest and largest top-up the add-funds forms accept, in cents; the forms raise the smallest to
   * a month of the cheapest capsul (src/payments/provider.ts), which is all it is when unset (null)
   */
  topUpMinCents: number | null;
  topUpMaxCents: number;
  /** past this negative balance (cents, e.g. -1000 for -$10) the account's capsuls are deleted */
  overdraftCents: number;
  /** at or below this balance (cents, zero or negative, not below the overdraft; at it: no suspension) an account's capsuls are suspended */
  suspensionPointCents: number;
  /** days a suspended account has to add funds before its capsuls are deleted (unless the overdraft comes first) */
  graceDays: number;
  audit: AuditConfig;
  /** the hub's log level (pino's names) */
  logLevel: LogLevel;
  /** `pretty`: lines for a person (npm start's default); `json`: one object a line, for a log collector (a hub's default) */
  logFormat: LogFormat;
  /** the level each HTTP request is logged at (`silent`: not logged); `debug` for npm start, `info` for a hub */
  requestLogLevel: LogLevel;
  /** the day the provider began: no payment can have been received before it */
  providerStart: Date;
  /** who issues the monthly statements: a name and the address lines printed under it */
  provider: ProviderIdentity;
  /** a Prometheus scrape's bearer token: /metrics is served only when it is set, only to requests bearing it */
  metricsToken: string | undefined;
};

export type AlertLimits = {
  /** a host whose last heartbeat is older than this is offline: an incident */
  hostOfflineMinutes: number;
  /** an operation a host has not reported on, or a capsul not placed on a host, for longer than this */
  waitingMinutes: number;
  /** a provider's failed webhook deliveries in a row */
  webhookFailures: number;
  /** a scheduled job's failed runs in a row */
  jobFailures: number;
};

export type ProviderIdentity = { name: string; addressLines: string[] };

export const logLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export const logFormats = ['pretty', 'json'] as const;
export type LogFormat = (typeof logFormats)[number];
export type LogLevel = (typeof logLevels)[number];

/** The signed log (docs/audit.md). */
export type AuditConfig = {
  /** the signing key, kept outside the database; created on first use */
  keyFile: string;
  /** the latest checkpoint signed here, beside the key: a database restored from an older backup shows against it */
  latestCheckpointFile: string;
  /** the name a new key gets, which is also every checkpoint's origin line */
  logName: string;
  /** the verifier key to check signatures with where the key file is not (an auditor's or a second machine's) */
  verifierKey: string | undefined;
  /** how often the hub signs a checkpoint when the log grew; 0: this hub never signs (another hub or cron does) */
  checkpointIntervalMs: number;
};

export type StripeConfig = {
  secretKey: string;
  webhookSecret: string;
  /** tests and stripe-mock: another API host, e.g. http://127.0.0.1:12111 (default Stripe's own) */
  apiBase: string | undefined;
};

export type BtcpayConfig = { url: string; apiKey: string; storeId: string; webhookSecret: string };

/** tls: `starttls` (required), `tls` (from the first byte) or `none` (plain: a relay on the same machine) */
export type MailConfig = {
  host: string;
  port: number;
  tls: 'starttls' | 'tls' | 'none';
  user: string | undefined;
  password: string | undefined;
};

export class ConfigError extends Error {}

export function loadDotEnv(file = '.env'): void {
  if (existsSync(file)) process.loadEnvFile(file);
}

export function readConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const port = parsePort(env.PORT ?? '3000');
  const host = env.HOST ?? '127.0.0.1';
  const databaseUrl = postgresUrl(env, 'DATABASE_URL');
  const databaseAppUrl = postgresUrl(env, 'DATABASE_APP_URL');
  const databaseReaderUrl = postgresUrl(env, 'DATABASE_READER_URL');
  if ((databaseAppUrl || databaseReaderUrl) && !databaseUrl) {
    throw new ConfigError('DATABASE_APP_URL and DATABASE_READER_URL name roles on the server of DATABASE_URL: set DATABASE_URL too');
  }
  const mode = (env.CAPSUL_MODE?.trim() || 'both') as Mode;
  if (!['hub', 'spoke', 'both'].includes(mode)) throw new ConfigError(`CAPSUL_MODE must be hub, spoke or both, not "${env.CAPSUL_MODE}"`);
  const baseUrl = (env.BASE_URL ?? `http://localhost:${port}`).replace(/\/+$/, '');
  if (!/^https?:\/\/[^/]+/.test(baseUrl)) throw new ConfigError(`BASE_URL must be an http(s) URL, not "${baseUrl}"`);
  const supportEmail = env.SUPPORT_EMAIL?.trim() || `support@${new URL(baseUrl).hostname}`;
  if (!/^[^\s@<>"]+@[^\s@<>"]+$/.test(supportEmail)) throw new ConfigError(`SUPPORT_EMAIL must be an email address, not "${supportEmail}"`);
  const secretKey = env.SECRET_KEY?.trim() || undefined;
  if (secretKey !== undefined && secretKey.length < 32)
    throw new ConfigError('SECRET_KEY must be at least 32 characters (e.g. openssl rand -hex 32)');
  if (secretKey === undefined && baseUrl.startsWith('https:') && mode !== 'spoke') {
    throw new ConfigError(
      'SECRET_KEY is required when BASE_URL is https (a production hub): set it to a long random text, e.g. openssl rand -hex 32',
    );
  }
  const adminEmails = readEmails(env, 'ADMIN_EMAILS') ?? [];
  const opsEmails = readEmails(env, 'OPS_EMAILS') ?? adminEmails;
  const mailFrom = env.MAIL_DEFAULT_SENDER?.trim() || `capsul <no-reply@${new URL(baseUrl).hostname}>`;
  const config: Config = {
    databaseUrl,
    databaseAppUrl,
    databaseReaderUrl,
    dataDir: env.CAPSUL_DATA_DIR ?? '.data',
    port,
    host,
    baseUrl,
    mode,
    supportEmail,
    secretKey,
    adminEmails,
    opsEmails,
    alerts: readAlertLimits(env),
    mail: readMailConfig(env),
    mailFrom,
    trustProxy: readTrustProxy(env.TRUST_PROXY),
    stripe: readStripeConfig(env),
    btcpay: readBtcpayConfig(env),
    topUpMinCents: env.TOP_UP_MIN_DOLLARS?.trim() ? dollarsSetting(env, 'TOP_UP_MIN_DOLLARS', '') : null,
    topUpMaxCents: dollarsSetting(env, 'TOP_UP_MAX_DOLLARS', '1000'),
    overdraftCents: -dollarsSetting(env, 'OVERDRAFT_DOLLARS', '10'),
    suspensionPointCents: dollarsSetting(env, 'SUSPENSION_POINT_DOLLARS', '0', { signed: true }),
    graceDays: wholeSetting(env, 'GRACE_DAYS', 14, 1, 365),
    audit: readAuditConfig(env, env.CAPSUL_DATA_DIR ?? '.data', baseUrl),
    logLevel: readLogLevel(env.LOG_LEVEL, 'LOG_LEVEL', 'info'),
    logFormat: readLogFormat(env.LOG_FORMAT, mode === 'both' ? 'pretty' : 'json'),
    requestLogLevel: readLogLevel(env.LOG_REQUESTS, 'LOG_REQUESTS', mode === 'both' ? 'debug' : 'info'),
    providerStart: readProviderStart(env.PROVIDER_START_DATE),
    metricsToken: readMetricsToken(env.METRICS_TOKEN),
    provider: readProvider(env, new URL(baseUrl).hostname),
  };
  if (config.suspensionPointCents > 0 || config.suspensionPointCents < config.overdraftCents) {
    throw new ConfigError(
      `SUSPENSION_POINT_DOLLARS must be zero or below, and not below the overdraft (-${(-config.overdraftCents / 100).toFixed(2)}, OVERDRAFT_DOLLARS), not ${(config.suspensionPointCents / 100).toFixed(2)}`,
    );
  }
  if (config.topUpMinCents !== null && (config.topUpMinCents < 1 || config.topUpMinCents > config.topUpMaxCents)) {
    throw new ConfigError('TOP_UP_MIN_DOLLARS must be at least 0.01 and no more than TOP_UP_MAX_DOLLARS');
  }
  return config;
}

/** A comma-separated list of email addresses, canonical; undefined when the setting is unset or blank. */
function readEmails(env: NodeJS.ProcessEnv, setting: string): string[] | undefined {
  const text = env[setting]?.trim();
  if (!text) return undefined;
  return text
    .split(',')
    .map((email) => email.trim())
    .filter(Boolean)
    .map((email) => {
      try {
        return canonicalEmail(email);
      } catch {
        throw new ConfigError(`${setting} must be a comma-separated list of email addresses; "${email}" is not one`);
      }
    });
}

function readAlertLimits(env: NodeJS.ProcessEnv): AlertLimits {
  return {
    hostOfflineMinutes: wholeSetting(env, 'ALERT_HOST_OFFLINE_MINUTES', 10, 1, 10_080),
    waitingMinutes: wholeSetting(env, 'ALERT_WAITING_MINUTES', 10, 1, 10_080),
    webhookFailures: wholeSetting(env, 'ALERT_WEBHOOK_FAILURES', 5, 1, 10_000),
    jobFailures: wholeSetting(env, 'ALERT_JOB_FAILURES', 3, 1, 10_000),
  };
}

/** A whole number setting within [min, max], or its default when unset. */
function wholeSetting(env: NodeJS.ProcessEnv, setting: string, fallback: number, min: number, max: number): number {
  const text = env[setting]?.trim();
  if (!text) return fallback;
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < min || value > max)
    throw new ConfigError(`${setting} must be a whole number from ${min} to ${max}, not "${text}"`);
  return value;
}

function readMetricsToken(text: string | undefined): string | undefined {
  const token = text?.trim() || undefined;
  if (token !== undefined && (token.length < 16 || /\s/.test(token)))
    throw new ConfigError(
      'METRICS_TOKEN must be at least 16 characters without spaces (e.g. openssl rand -hex 32), or unset for no /metrics',
    );
  return token;
}

const maxAddressLines = 6;
const maxIdentityLength = 100;

/** PROVIDER_NAME and PROVIDER_ADDRESS (lines separated by "|"): printed on every statement. */
function readProvider(env: NodeJS.ProcessEnv, hostname: string): ProviderIdentity {
  const name = env.PROVIDER_NAME?.trim() || hostname;
  const addressLines = (env.PROVIDER_ADDRESS ?? '')
    .split('|')
    .map((line) => line.trim())
    .filter(Boolean);
  const bad = [name, ...addressLines].find((line) => line.length > maxIdentityLength || /[\p{Cc}]/u.test(line));
  if (bad !== undefined)
    throw new ConfigError(`PROVIDER_NAME and each line of PROVIDER_ADDRESS must be one line of at most ${maxIdentityLength} characters`);
  if (addressLines.length > maxAddressLines)
    throw new ConfigError(`PROVIDER_ADDRESS has at most ${maxAddressLines} lines, separated by "|"`);
  return { name, addressLines };
}

function readProviderStart(text: string | undefined): Date {
  const value = text?.trim() || defaultProviderStart.toISOString().slice(0, 10);
  const date = new Date(`${value}T00:00:00Z`);
  if (!/^\d{4}-\d{2}-\d{2}$/.test(value) || Number.isNaN(date.getTime()) || date.toISOString().slice(0, 10) !== value) {
    throw new ConfigError(`PROVIDER_START_DATE must be a date like 2020-05-01, not "${text}"`);
  }
  return date;
}

function readLogLevel(text: string | undefined, setting: string, fallback: LogLevel): LogLevel {
  const level = text?.trim().toLowerCase() || fallback;
  if (!(logLevels as readonly string[]).includes(level))
    throw new ConfigError(`${setting} must be one of ${logLevels.join(', ')}, not "${text}"`);
  return level as LogLevel;
}

function readLogFormat(text: string | undefined, fallback: LogFormat): LogFormat {
  const format = text?.trim().toLowerCase() || fallback;
  if (!(logFormats as readonly string[]).includes(format)) throw new ConfigError(`LOG_FORMAT must be pretty or json, not "${text}"`);
  return format as LogFormat;
}

function readAuditConfig(env: NodeJS.ProcessEnv, dataDir: string, baseUrl: string): AuditConfig {
  const keyFile = env.AUDIT_KEY_FILE?.trim() || path.join(dataDir, 'audit', 'log.key');
  const logName = env.AUDIT_LOG_NAME?.trim() || `${new URL(baseUrl).host}/capsul`;
  if (!isValidKeyName(logName))
    throw new ConfigError(`AUDIT_LOG_NAME must be a name without spaces or "+", like capsul.example.org/ledger, not "${logName}"`);
  const verifierKey = env.AUDIT_VERIFIER_KEY?.trim() || undefined;
  if (verifierKey !== undefined && !/^[^\s+]+\+[0-9a-f]{8}\+[A-Za-z0-9+/]+=*$/.test(verifierKey)) {
    throw new ConfigError('AUDIT_VERIFIER_KEY must be a verifier key as capsul audit key prints it (<name>+<8 hex digits>+<base64>)');
  }
  const seconds = env.AUDIT_CHECKPOINT_SECONDS?.trim() || '60';
  if (!/^\d{1,6}$/.test(seconds))
    throw new ConfigError(`AUDIT_CHECKPOINT_SECONDS must be a whole number of seconds (0: never), not "${seconds}"`);
  return {
    keyFile,
    latestCheckpointFile: path.join(path.dirname(keyFile), 'latest-checkpoint'),
    logName,
    verifierKey,
    checkpointIntervalMs: Number(seconds) * 1000,
  };
}

function postgresUrl(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const url = env[name]?.trim() || undefined;
  if (url === undefined) return undefined;
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch {
    parsed = undefined;
  }
  if (!parsed || !/^postgres(ql)?:$/.test(parsed.protocol))
    throw new ConfigError(`${name} must be a URL starting with postgres:// or postgresql://`);
  return url;
}

function readStripeConfig(env: NodeJS.ProcessEnv): StripeConfig | undefined {
  const secretKey = env.STRIPE_SECRET_KEY?.trim();
  const webhookSecret = env.STRIPE_WEBHOOK_SECRET?.trim();
  if (!secretKey && !webhookSecret) return undefined;
  if (!secretKey || !webhookSecret)
    throw new ConfigError('Stripe needs both STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET (or neither, to switch it off)');
  if (!/^(sk|rk)_(test|live)_\S+$/.test(secretKey))
    throw new ConfigError('STRIPE_SECRET_KEY must be a Stripe secret key (sk_live_… or sk_test_…)');
  if (!/^whsec_\S+$/.test(webhookSecret)) throw new ConfigError('STRIPE_WEBHOOK_SECRET must be a webhook signing secret (whsec_…)');
  const apiBase = env.STRIPE_API_BASE?.trim() || undefined;
  if (apiBase && !/^https?:\/\/[^/]+\/?$/.test(apiBase))
    throw new ConfigError(`STRIPE_API_BASE must be an http(s) origin, not "${apiBase}"`);
  return { secretKey, webhookSecret, apiBase };
}

function readBtcpayConfig(env: NodeJS.ProcessEnv): BtcpayConfig | undefined {
  const names = ['BTCPAY_URL', 'BTCPAY_API_KEY', 'BTCPAY_STORE_ID', 'BTCPAY_WEBHOOK_SECRET'] as const;
  const values = names.map((name) => env[name]?.trim() || '');
  if (values.every((value) => value === '')) return undefined;
  const missing = names.filter((_, i) => values[i] === '');
  if (missing.length > 0)
    throw new ConfigError(`BTCPay needs ${missing.join(', ')} too (or none of the BTCPAY_ settings, to switch it off)`);
  const [url, apiKey, storeId, webhookSecret] = values as [string, string, string, string];
  if (!/^https?:\/\/[^/]+/.test(url)) throw new ConfigError(`BTCPAY_URL must be an http(s) URL, not "${url}"`);
  return { url: url.replace(/\/+$/, ''), apiKey, storeId, webhookSecret };
}

/**
 * A whole-cents dollar amount from the environment, e.g. "10" or "7.50", in cents; `signed`: it may be
 * negative ("0", "-2.50").
 */
function dollarsSetting(env: NodeJS.ProcessEnv, name: string, fallback: string, { signed = false } = {}): number {
  const text = env[name]?.trim() || fallback;
  const pattern = signed ? /^-?\d{1,7}(\.\d{1,2})?$/ : /^\d{1,7}(\.\d{1,2})?$/;
  if (!pattern.test(text))
    throw new ConfigError(`${name} must be an amount of dollars like ${signed ? '0 or -2.50' : '10 or 7.50'}, not "${text}"`);
  return Math.round(Number(text) * 100) || 0;
}

function readTrustProxy(text: string | undefined): boolean | string {
  const value = text?.trim() ?? '';
  if (value === '' || value === 'false') return false;
  if (value === 'true') return true;
  if (!/^[0-9a-fA-F.:/, ]+$|^(loopback|linklocal|uniquelocal)(,\s*(loopback|linklocal|uniquelocal))*$/.test(value)) {
    throw new ConfigError(`TRUST_PROXY must be true, false, loopback or a comma-separated list of proxy addresses, not "${value}"`);
  }
  return value;
}

function readMailConfig(env: NodeJS.ProcessEnv): MailConfig | undefined {
  const host = env.MAIL_SERVER?.trim();
  if (!host) return undefined;
  const useTls = (env.MAIL_USE_TLS ?? 'starttls').trim().toLowerCase();
  if (!['starttls', 'tls', 'none'].includes(useTls))
    throw new ConfigError(`MAIL_USE_TLS must be starttls, tls or none, not "${env.MAIL_USE_TLS}"`);
  const port = env.MAIL_PORT ? parsePort(env.MAIL_PORT, 'MAIL_PORT') : useTls === 'tls' ? 465 : 587;
  return {
    host,
    port,
    tls: useTls as MailConfig['tls'],
    user: env.MAIL_USERNAME?.trim() || undefined,
    password: env.MAIL_PASSWORD || undefined,
  };
}

function parsePort(text: string, name = 'PORT'): number {
  const port = Number(text);
  if (!/^\d+$/.test(text) || port < 1 || port > 65535) {
    throw new ConfigError(`${name} must be a number from 1 to 65535, not "${text}"`);
  }
  return port;
}
