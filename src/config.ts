// Configuration from the environment (and an optional `.env`), validated once at start.
import { existsSync } from 'node:fs';

export type Mode = 'hub' | 'spoke' | 'both';

export type Config = {
  /** unset → the embedded development database in `dataDir/pg` */
  databaseUrl: string | undefined;
  dataDir: string;
  port: number;
  host: string;
  baseUrl: string;
  /** hub: the hub alone (production); spoke: a host agent alone; both: hub + simulated spoke (development) */
  mode: Mode;
  /** shown on the support page */
  supportEmail: string;
};

export class ConfigError extends Error {}

export function loadDotEnv(file = '.env'): void {
  if (existsSync(file)) process.loadEnvFile(file);
}

export function readConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const port = parsePort(env.PORT ?? '3000');
  const host = env.HOST ?? '127.0.0.1';
  const databaseUrl = env.DATABASE_URL?.trim() || undefined;
  if (databaseUrl && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    throw new ConfigError('DATABASE_URL must start with postgres:// or postgresql://');
  }
  const mode = (env.CAPSUL_MODE?.trim() || 'both') as Mode;
  if (!['hub', 'spoke', 'both'].includes(mode)) throw new ConfigError(`CAPSUL_MODE must be hub, spoke or both, not "${env.CAPSUL_MODE}"`);
  const baseUrl = (env.BASE_URL ?? `http://localhost:${port}`).replace(/\/+$/, '');
  if (!/^https?:\/\/[^/]+/.test(baseUrl)) throw new ConfigError(`BASE_URL must be an http(s) URL, not "${baseUrl}"`);
    const supportEmail = env.SUPPORT_EMAIL?.trim() || `support@${new URL(baseUrl).hostname}`;
  if (!/^[^\s@<>"]+@[^\s@<>"]+$/.test(supportEmail)) throw new ConfigError(`SUPPORT_EMAIL must be an email address, not "${supportEmail}"`);
  return { databaseUrl, dataDir: env.CAPSUL_DATA_DIR ?? '.data', port, host, baseUrl, mode, supportEmail };
}

function parsePort(text: string): number {
  const port = Number(text);
  if (!/^\d+$/.test(text) || port < 1 || port > 65535) {
    throw new ConfigError(`PORT must be a number from 1 to 65535, not "${text}"`);
  }
  return port;
}
