// `capsul <command>`: the operator's and auditor's tool. Exit codes: 0 done, 1 refused or failed,
// 2 bad usage. Errors are one line on stderr; unexpected ones leave their detail in the log file.
import { appendFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError } from '../config.ts';
import { DatabaseConnectError, RoleError } from '../db/database.ts';
import { DatabaseStartError } from '../db/embedded.ts';
import { MigrationError, SchemaTooNewError } from '../db/migrate.ts';
import { DomainError } from '../domain/shared/errors.ts';
import { escapeHidden } from '../domain/shared/text.ts';
import { ConcurrencyError } from '../ledger/handle.ts';
import { AuditKeyError } from '../audit/key.ts';
import { ExportError } from '../audit/export.ts';
import { ProofError } from '../audit/prove.ts';
import { LogBrokenError } from '../db/event-store.ts';
import { LogMismatchError } from '../projections/rebuild.ts';
import { auditHelp } from './audit.ts';
import { commands } from './commands.ts';
import { CliContext, CliError, UsageError, type CliIo } from './context.ts';

const extraCommands: Record<string, string> = {
  serve: 'run the hub, a spoke, or both (what npm start does; CAPSUL_MODE)',
  spoke: 'run the agent of a VM host (HUB_URL, SPOKE_HOST_ID, SPOKE_HOST_TOKEN, SPOKE_DRIVER)',
};

function topHelp(): string {
  const width = Math.max(...Object.keys(commands).map((name) => name.length)) + 2;
  const lines = Object.entries(commands).map(([name, spec]) => `  ${name.padEnd(width)}${spec.summary}`);
  for (const [name, summary] of Object.entries(extraCommands)) lines.push(`  ${name.padEnd(width)}${summary}`);
  return `usage: capsul <command> [options]

${lines.join('\n')}

Run "capsul <command> --help" for a command's options. The database is DATABASE_URL, or the
embedded one in .data/pg when it is unset.`;
}

export async function main(argv: string[], io: CliIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    io.stdout.write(`${topHelp()}\n`);
    return name === undefined ? 2 : 0;
  }
  if (name === 'serve') {
    if (rest.includes('--help') || rest.includes('-h')) {
      io.stdout.write(
        'usage: capsul serve\n\n  CAPSUL_MODE=hub runs the hub; spoke, a host agent; both (the default), the hub and a simulated spoke.\n  See docs/configuration.md.\n',
      );
      return 0;
    }
    const { serve } = await import('../server.ts');
    return serve(io);
  }
  if (name === 'spoke') {
    if (rest.includes('--help') || rest.includes('-h')) {
      io.stdout.write(`usage: capsul spoke

  Runs the agent of a VM host: it dials the hub (HUB_URL, https except on loopback; several hubs
  comma-separated, one at a time with failover), long-polls the operations for its host, runs them
  through its driver and reports what it sees. Configured by
  HUB_URL, SPOKE_HOST_ID, SPOKE_HOST_TOKEN (from capsul add-host), SPOKE_DRIVER (libvirt or
  simulated), SPOKE_DATA_DIR; see docs/spoke-protocol.md and docs/operations.md.\n`);
      return 0;
    }
    const { runSpoke } = await import('../spoke/main.ts');
    return runSpoke(io.env, (line) => io.stderr.write(`capsul spoke: ${line}\n`));
  }
  if (name === 'audit' && (rest[0] === undefined || rest[0] === '--help' || rest[0] === '-h')) {
    io.stdout.write(`${auditHelp()}\n`);
    return rest[0] === undefined ? 2 : 0;
  }
  // Two-word commands (capsul audit verify): the second word is part of the name.
  if (rest[0] !== undefined && commands[`${name} ${rest[0]}`]) return main([`${name} ${rest[0]}`, ...rest.slice(1)], io);
  const spec = commands[name];
  if (!spec && name === 'audit') {
    io.stderr.write(`capsul: unknown command "audit ${rest[0]}" (run "capsul audit --help" for the list)\n`);
    return 2;
  }
  if (!spec) {
    io.stderr.write(`capsul: unknown command "${name}" (run "capsul --help" for the list)\n`);
    return 2;
  }
  const ctx = new CliContext(io);
  try {
    const parsed = parseArgs({
      args: rest,
      options: { ...spec.options, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
    if (parsed.values.help) {
      io.stdout.write(`usage: ${spec.usage}\n`);
      return 0;
    }
    if (parsed.positionals.length > (spec.positionals ?? 0)) {
      throw new UsageError(`unexpected argument "${parsed.positionals[spec.positionals ?? 0]}"`);
    }
    const code = await spec.run(ctx, parsed.values as Record<string, string | boolean | string[] | undefined>, parsed.positionals);
    return code ?? 0;
  } catch (error) {
    return report(error, name, io);
  } finally {
    await ctx.close().catch(() => {});
  }
}

function report(error: unknown, command: string, io: CliIo): number {
  const e = error as Error & { code?: string };
  if (error instanceof UsageError || e.code?.startsWith('ERR_PARSE_ARGS')) {
    io.stderr.write(`capsul ${command}: ${escapeHidden(usageLine(e))} (see capsul ${command} --help)\n`);
    return 2;
  }
  const known =
    error instanceof CliError ||
    error instanceof DomainError ||
    error instanceof ConcurrencyError ||
    error instanceof ConfigError ||
    error instanceof DatabaseConnectError ||
    error instanceof DatabaseStartError ||
    error instanceof SchemaTooNewError ||
    error instanceof MigrationError ||
    error instanceof RoleError ||
    error instanceof AuditKeyError ||
    error instanceof ExportError ||
    error instanceof ProofError ||
    error instanceof LogBrokenError ||
    error instanceof LogMismatchError;
  if (known) {
    io.stderr.write(`capsul ${command}: ${escapeHidden(e.message)}\n`);
    return 1;
  }
  const logFile = logDetail(error, command, io.env);
  io.stderr.write(
    `capsul ${command}: failed: ${escapeHidden(e?.message?.split('\n')[0] ?? String(error))}${logFile ? ` (details in ${logFile})` : ''}\n`,
  );
  return 1;
}

/** node's parseArgs explains over three lines; a value starting with a dash gets the way to give it. */
function usageLine(error: Error & { code?: string }): string {
  const lines = error.message.split('\n');
  if (error.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && /ambiguous/.test(lines[0] ?? '')) {
    const how = /use '(--[a-z-]+)=-XYZ'/.exec(error.message)?.[1];
    if (how) return `${lines[0]!.replace(/\.$/, '')}: a value that starts with "-" is given as ${how}=<value>`;
  }
  return lines[0] ?? String(error);
}

/** The full error goes to a log file, never to the operator's terminal. */
function logDetail(error: unknown, command: string, env: NodeJS.ProcessEnv): string | undefined {
  try {
    const dir = path.join(env.CAPSUL_DATA_DIR ?? '.data', 'log');
    mkdirSync(dir, { recursive: true });
    const file = path.join(dir, 'capsul-cli.log');
    const detail = error instanceof Error ? (error.stack ?? error.message) : String(error);
    appendFileSync(file, `${new Date().toISOString()} capsul ${command}: ${detail}\n`);
    return file;
  } catch {
    return undefined;
  }
}
