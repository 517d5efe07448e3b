// The `capsul` commands. Each parses its own flags, calls the ledger (the same commands the hub uses),
// and prints; errors are thrown as one-line messages and turned into exit codes by main.ts.
import { readFileSync } from 'node:fs';
import { checkedCustomerNote, defaultCustomerNotes } from '../domain/account/notes.ts';
import { describeActor } from '../domain/events.ts';
import { maxCustomerNoteLength } from '../domain/shared/text.ts';
import { canonicalEmail } from '../domain/shared/email.ts';
import { formatCents, parseDollars } from '../domain/shared/money.ts';
import { latestVersion, schemaVersion } from '../db/migrate.ts';
import { prepareDatabase } from '../ledger/open.ts';
import { asOfRefusal, jobDeps, runJobs } from '../jobs/runner.ts';
import { configuredMailer } from '../mail/mailer.ts';
import { isSeenAt, readAllEvents, type EventSelector, type Instants, type StoredEvent } from '../db/event-store.ts';
import { capsulSelectors, paymentSelectors } from '../read/history.ts';
import type { Cause } from '../domain/events.ts';
import type { Ledger } from '../ledger/ledger.ts';
import { rebuildProjections, verifyProjections, type ReplayedTable } from '../projections/rebuild.ts';
import { shadowProjectionsAt } from '../projections/as-of.ts';
import { historyIndexTable } from '../projections/history-index.ts';
import { historyTable, tableNames, type TableName } from '../projections/tables.ts';
import { localEvidence } from '../audit/key.ts';
import { auditCommands } from './audit.ts';
import { statementCommands } from './statement.ts';
import { statusCommands } from './status.ts';
import { CliError, UsageError, type CommandSpec } from './context.ts';
import { parseId, parseInstant, required } from './parse.ts';
import { runStatements, splitStatements } from './sql.ts';
import { paymentProviders } from '../payments/index.ts';
import { resolveHold } from '../payments/holds.ts';

const by = { by: { type: 'string' } } as const;
const str = (v: unknown) => v as string | undefined;

export const commands: Record<string, CommandSpec> = {
  sql: {
    summary: "query capsul's tables, read-only (as capsul_reader)",
    usage: `capsul sql (-c "<SQL>" | -f <file>) [--header] [--as-of <ISO>] [--known-at <ISO>]

  Statements are separated by ;. Each row prints on one line, values joined by ", "
  (timestamps in UTC as 2020-05-05T00:00:00, booleans TRUE/FALSE, NULL empty).
  It connects as capsul_reader, which may read capsul's tables and nothing else: a write is refused
  by the database and changes nothing. Changes go through capsul's commands (docs/database.md).
  --header       print the column names first
  --as-of <ISO>     query the projections as things were at that instant (effective time: a payment
                    recorded late with --at counts from its --at)
  --known-at <ISO>  query them as the ledger knew them at that instant (recorded time: only events
                    appended by then); with --as-of, as things were then as known then
                    Both read the projections' row history (docs/audit.md, "Two clocks"): nothing is replayed.
  --write        refused: capsul sql writes nothing (docs/database.md, "Changing things")`,
    options: {
      command: { type: 'string', short: 'c' },
      file: { type: 'string', short: 'f' },
      header: { type: 'boolean' },
      write: { type: 'boolean' },
      'as-of': { type: 'string' },
      'known-at': { type: 'string' },
    },
    async run(ctx, v) {
      if ((v.command === undefined) === (v.file === undefined)) throw new UsageError('give the SQL with either -c "<SQL>" or -f <file>');
      let text: string;
      if (v.file !== undefined) {
        try {
          text = readFileSync(str(v.file)!, 'utf8');
        } catch (error) {
          throw new CliError(`cannot read ${str(v.file)}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
        }
      } else {
        text = str(v.command)!;
      }
      if (v.write) throw new CliError(writeRemoved);
      const statements = splitStatements(text);
      const at = instants(v);
      const { pool } = await ctx.connect('reader');
      const client = await pool.connect();
      const past = at.asOf !== undefined || at.knownAt !== undefined;
      let discard = past;
      try {
        if (past) await shadowProjectionsAt(client, at);
        await runStatements(client, statements, { header: Boolean(v.header), out: (line) => ctx.out(line) });
      } catch (error) {
        discard = true;
        throw error;
      } finally {
        client.release(discard);
      }
    },
  },

  'record-payment': {
    summary: 'record money received; prints the new payment id',
    usage: `capsul record-payment --email <email> --dollars <amount> [--reference <ref>] [--at <ISO>] [--by <name>] [--reason <text>]

  --dollars    the amount, e.g. 20 or 20.05 (positive, at most two decimals)
  --reference  the provider's id for the payment: recording it again changes nothing and prints the same id
  --at         when the money was received (default now); it becomes payments.created
  --by         who records it (default: the operating-system user)`,
    options: {
      email: { type: 'string' },
      dollars: { type: 'string' },
      reference: { type: 'string' },
      at: { type: 'string' },
      reason: { type: 'string' },
      ...by,
    },
    async run(ctx, v) {
      const email = canonicalEmail(required(str(v.email), '--email'));
      const amountCents = parseDollars(required(str(v.dollars), '--dollars'));
      const receivedAt = v.at !== undefined ? parseInstant(str(v.at)!, '--at') : undefined;
      const cause = { by: ctx.actor(str(v.by)), reason: str(v.reason) };
      const { ledger } = await ctx.connect();
      const result = await ledger.recordPayment({ email, amountCents, reference: str(v.reference) ?? null, receivedAt, cause });
      if (result.duplicate) ctx.note(`reference ${str(v.reference)} was already recorded: payment ${result.paymentId}, nothing added`);
      ctx.out(String(result.paymentId));
    },
  },

  'invalidate-payment': paymentCorrection({
    summary: 'mark a payment invalid (a chargeback): it no longer counts toward the balance',
    usage: correctionUsage('invalidate-payment', 'PaymentInvalidated'),
    apply: (ledger, paymentId, cause, customerNote) => ledger.invalidatePayment(paymentId, cause, { customerNote }),
    done: (id) => `payment ${id} invalidated`,
    already: (id) => `payment ${id} is already invalidated: nothing changed`,
  }),

  'reinstate-payment': paymentCorrection({
    summary: 'make an invalidated payment count again (a dispute won)',
    usage: correctionUsage('reinstate-payment', 'PaymentReinstated'),
    apply: (ledger, paymentId, cause, customerNote) => ledger.reinstatePayment(paymentId, cause, { customerNote }),
    done: (id) => `payment ${id} reinstated`,
    already: (id) => `payment ${id} is valid already: nothing changed`,
  }),

  'resolve-hold': {
    summary: 'close a payment a provider reported but capsul held, without crediting it',
    usage: `capsul resolve-hold --provider <stripe|btcpay> --reference <ref> --reason <text> [--by <name>]

  For a held payment that should not count (refunded at the provider, a duplicate). One that should
  count is recorded instead: capsul record-payment --reference <ref> …  Held payments: /admin/payments.`,
    options: { provider: { type: 'string' }, reference: { type: 'string' }, reason: { type: 'string' }, ...by },
    async run(ctx, v) {
      const provider = required(str(v.provider), '--provider');
      if (provider !== 'stripe' && provider !== 'btcpay') throw new UsageError('--provider is stripe or btcpay');
      const reference = required(str(v.reference), '--reference');
      const reason = required(str(v.reason), '--reason');
      const actor = ctx.actor(str(v.by));
      const { pool } = await ctx.connect();
      await resolveHold(pool, { provider, reference, cause: { by: actor, reason }, now: new Date() });
      ctx.note(`held ${provider} payment ${reference} closed without credit`);
    },
  },

  'create-vm': {
    summary: 'create a capsul for an account; prints its id',
    usage: `capsul create-vm --email <email> --size <size> --os <os> --ssh-key <public key> [--ssh-key …] [--by <name>] [--reason <text>]

  The balance must cover a month of the new capsul on top of a month of the account's running capsuls.
  Sizes and OS images: capsul sql -c "SELECT * FROM vm_sizes" / "SELECT * FROM os_images"`,
    options: {
      email: { type: 'string' },
      size: { type: 'string' },
      os: { type: 'string' },
      'ssh-key': { type: 'string', multiple: true },
      reason: { type: 'string' },
      ...by,
    },
    async run(ctx, v) {
      const email = canonicalEmail(required(str(v.email), '--email'));
      const size = required(str(v.size), '--size');
      const os = required(str(v.os), '--os');
      const sshPublicKeys = (v['ssh-key'] as string[] | undefined) ?? [];
      if (sshPublicKeys.length === 0) throw new UsageError('--ssh-key is required (at least one public key)');
      const cause = { by: ctx.actor(str(v.by)), reason: str(v.reason) };
      const { ledger } = await ctx.connect();
      const { vmId } = await ledger.createVm({ email, size, os, sshPublicKeys, cause });
      ctx.out(vmId);
    },
  },

  'delete-vm': {
    summary: 'delete a capsul: billing stops now, its host deletes it',
    usage: `capsul delete-vm <capsul id> [--reason <text>] [--by <name>]`,
    options: { reason: { type: 'string' }, ...by },
    positionals: 1,
    async run(ctx, v, [vmId]) {
      if (!vmId) throw new UsageError('which capsul? give its id (capsul-xxxxxxxxxx)');
      const { ledger } = await ctx.connect();
      const { changed } = await ledger.deleteVm(vmId, { by: ctx.actor(str(v.by)), reason: str(v.reason) ?? 'deleted by an operator' });
      ctx.note(changed ? `capsul ${vmId}: deletion requested` : `capsul ${vmId} is already being deleted: nothing changed`);
    },
  },

  'fail-operation': {
    summary: 'settle an operation its host will never report the end of, as failed',
    usage: `capsul fail-operation <operation id> --reason <text> [--by <name>]

  For an operation whose outcome report the hub refused (the spoke set it aside in outbox-rejected/),
  or whose host is gone for good: it is recorded as failed, with your reason, on the capsul's stream,
  and the hub stops delivering it. A failed create fails the capsul. Open operations:
  capsul sql -c "SELECT * FROM operations WHERE completed IS NULL". See docs/operations.md.`,
    options: { reason: { type: 'string' }, ...by },
    positionals: 1,
    async run(ctx, v, [operationId]) {
      if (!operationId)
        throw new UsageError('which operation? give its id (capsul sql -c "SELECT * FROM operations WHERE completed IS NULL")');
      if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(operationId)) {
        throw new UsageError(`"${operationId.slice(0, 60)}" is not an operation id (a UUID such as 0f8e2c4a-…)`);
      }
      const reason = required(str(v.reason), '--reason');
      const { ledger } = await ctx.connect();
      const { vmId, kind, changed } = await ledger.failOperation(operationId, { by: ctx.actor(str(v.by)), reason });
      ctx.note(
        changed
          ? `operation ${operationId} (${kind} of capsul ${vmId}): settled as failed`
          : `operation ${operationId} (${kind} of capsul ${vmId}) has already ended: nothing changed`,
      );
    },
  },

  history: {
    summary: 'the events behind a payment, a capsul, an account, or everything',
    usage: `capsul history (--payment <id> | --vm <id> | --email <email> | --all) [--json] [--as-of <ISO>] [--known-at <ISO>]

  One line per event: time recorded, stream, type, data, who, and the cause's reason (quoted) when one was
  given. --json prints one JSON object per line,
  with the event's global position and its leaf index in the signed log (null until it is sealed).
  --as-of <ISO>     only the events in effect by then (effective time)
  --known-at <ISO>  only the events the ledger held by then (recorded time)`,
    options: {
      payment: { type: 'string' },
      vm: { type: 'string' },
      email: { type: 'string' },
      all: { type: 'boolean' },
      json: { type: 'boolean' },
      'as-of': { type: 'string' },
      'known-at': { type: 'string' },
    },
    async run(ctx, v) {
      const chosen = ['payment', 'vm', 'email', 'all'].filter((k) => v[k] !== undefined);
      if (chosen.length !== 1) throw new UsageError('choose one of --payment <id>, --vm <id>, --email <email> or --all');
      const at = instants(v);
      const { pool, ledger } = await ctx.connect('reader');
      const filter = await historyFilter({ pool, ledger }, v);
      for await (const batch of readAllEvents(pool, { batchSize: 1000, ...filter, leafIndexes: Boolean(v.json) })) {
        for (const stored of batch) {
          if (isSeenAt(stored, at)) ctx.out(v.json ? JSON.stringify(historyJson(stored)) : historyLine(stored));
        }
      }
    },
  },

  balance: {
    summary: "an account's balance in dollars, now or at any instant (past or future)",
    usage: `capsul balance --email <email> [--as-of <ISO>] [--known-at <ISO>]

  --as-of <ISO>     the balance at that instant (default now): payments received and charges run by then
  --known-at <ISO>  as the ledger knew the account then: only its events appended by then`,
    options: { email: { type: 'string' }, 'as-of': { type: 'string' }, 'known-at': { type: 'string' } },
    async run(ctx, v) {
      const email = required(str(v.email), '--email');
      const at = instants(v);
      const { ledger } = await ctx.connect('reader');
      ctx.out(formatCents(await ledger.balanceCents(email, at.asOf, at.knownAt)));
    },
  },

  'rebuild-projections': {
    summary: 'rebuild the projection tables from the events (--verify: compare only)',
    usage: `capsul rebuild-projections [--verify]

  Makes the projection tables (accounts, payments, vms, hosts, operations, drift, payment_holds),
  their row history and the history index (account_events) equal to a replay of every event,
  rewriting only the rows that differ. It folds the events in one snapshot without locks (readers
  read and appends append meanwhile), then briefly locks the tables to fold what was appended since
  and write. --verify folds the events and compares them with the live tables (by digest, and row
  by row where they differ), changes nothing, and exits 1 when they differ, naming how many rows
  (and rows' histories) differ per table. Both first check the events
  against the signed log (as capsul audit verify does) and refuse, changing nothing, when they no
  longer match it. Rebuilding runs as DATABASE_URL's user (the owner); --verify as capsul_reader.`,
    options: { verify: { type: 'boolean' } },
    async run(ctx, v) {
      const { pool } = await ctx.connect(v.verify ? 'reader' : 'admin');
      const log = await localEvidence(ctx.config.audit);
      if (log.verifierKeys.length === 0)
        ctx.note(
          'note: no verifier key here (AUDIT_KEY_FILE, AUDIT_VERIFIER_KEY): checkpoint signatures are not checked, only their roots',
        );
      if (v.verify) {
        const { matches, differences } = await verifyProjections(pool, { onProgress: ctx.progress('verifying'), log });
        const detail = (of: (table: TableName) => ReplayedTable) =>
          tableNames.map((table) => `${table} ${differences[of(table)]}`).join(', ');
        ctx.out(
          matches
            ? 'projections match the events'
            : `projections DIFFER from the events (rows differing: ${detail((t) => t)}; rows whose history differs: ${detail(historyTable)}; ` +
                `history index rows differing: ${differences[historyIndexTable]})`,
        );
        return matches ? 0 : 1;
      }
      const { rows, changed } = await rebuildProjections(pool, { onProgress: ctx.progress('rebuilding'), log });
      const summary = (of: (table: TableName) => ReplayedTable, unit: string, rewritten: string) =>
        tableNames.map((table) => `${table} ${rows[of(table)]} ${unit} (${changed[of(table)]} ${rewritten})`).join(', ');
      ctx.out(`rebuilt: ${summary((t) => t, 'rows', 'rewritten')}`);
      ctx.out(`row history: ${summary(historyTable, 'versions', 'histories rewritten')}`);
      ctx.out(`history index: ${rows[historyIndexTable]} rows (${changed[historyIndexTable]} rewritten)`);
    },
  },

  'add-host': {
    summary: 'register a VM host; prints its spoke token once',
    usage: `capsul add-host --id <host id> --memory-mb <MiB> --vcpus <n> [--by <name>] [--reason <text>]

  Prints the host's token alone on stdout, once: give it to the spoke as SPOKE_HOST_TOKEN. capsul
  keeps only its hash.`,
    options: { id: { type: 'string' }, 'memory-mb': { type: 'string' }, vcpus: { type: 'string' }, reason: { type: 'string' }, ...by },
    async run(ctx, v) {
      const hostId = required(str(v.id), '--id');
      const memoryMb = wholeNumber(str(v['memory-mb']), '--memory-mb');
      const vcpus = wholeNumber(str(v.vcpus), '--vcpus');
      const { hosts } = await ctx.connect();
      const { token } = await hosts.add({ hostId, memoryMb, vcpus, cause: { by: ctx.actor(str(v.by)), reason: str(v.reason) } });
      ctx.note(`host ${hostId} registered; its token follows (shown once)`);
      ctx.out(token);
    },
  },

  'rotate-host-token': {
    summary: 'give a host a new spoke token (the old one stops working); prints it once',
    usage: `capsul rotate-host-token <host id> [--by <name>] [--reason <text>]`,
    options: { reason: { type: 'string' }, ...by },
    positionals: 1,
    async run(ctx, v, [hostId]) {
      if (!hostId) throw new UsageError('which host? give its id');
      const { hosts } = await ctx.connect();
      const { token } = await hosts.rotateToken(hostId, { by: ctx.actor(str(v.by)), reason: str(v.reason) });
      ctx.note(`host ${hostId}: new token follows (shown once); the old one no longer works`);
      ctx.out(token);
    },
  },

  'remove-host': {
    summary: 'retire a VM host (refused while it has capsuls)',
    usage: `capsul remove-host <host id> [--by <name>] [--reason <text>]`,
    options: { reason: { type: 'string' }, ...by },
    positionals: 1,
    async run(ctx, v, [hostId]) {
      if (!hostId) throw new UsageError('which host? give its id');
      const { hosts } = await ctx.connect();
      await hosts.remove(hostId, { by: ctx.actor(str(v.by)), reason: str(v.reason) });
      ctx.note(`host ${hostId} removed`);
    },
  },

  hosts: {
    summary: 'the VM hosts: online or offline, memory used and free, capsul count',
    usage: `capsul hosts [--header]

  One line per host: id, online/offline, last heartbeat (UTC), memory used/total MiB, free MiB, vcpus, capsuls.`,
    options: { header: { type: 'boolean' } },
    async run(ctx, v) {
      const { hosts } = await ctx.connect('reader');
      if (v.header) ctx.out('id, status, last_seen, memory_used_mb, memory_mb, memory_free_mb, vcpus, capsuls');
      for (const h of await hosts.list()) {
        ctx.out(
          [h.id, h.online ? 'online' : 'offline', h.lastSeen ?? '', h.usedMemoryMb, h.memoryMb, h.freeMemoryMb, h.vcpus, h.capsuls].join(
            ', ',
          ),
        );
      }
    },
  },

  drift: {
    summary: 'disagreements between hosts and the ledger, still open',
    usage: `capsul drift [--header]

  One line per open incident: host, capsul, kind, detected (UTC). unexpected-on-host: the host runs a
  capsul the ledger has deleted or never placed there. missing-from-host: the ledger has a capsul
  running on the host that the host does not list. See docs/operations.md.`,
    options: { header: { type: 'boolean' } },
    async run(ctx, v) {
      const { hosts } = await ctx.connect('reader');
      const open = await hosts.drift();
      if (v.header) ctx.out('host, capsul, kind, detected');
      for (const d of open) ctx.out(`${d.host}, ${d.vmId}, ${d.kind}, ${d.detected}`);
      if (open.length === 0 && !v.header) ctx.note('no drift: every host agrees with the ledger');
    },
  },

  'cron-task': {
    summary:
      'run the scheduled jobs once: reconciliation, balance warnings and their emails, drift, incidents and their emails, receipts, statements',
    usage: `capsul cron-task [--dry-run] [--now <ISO>]

  Runs each job once, in order, as the hub does on its schedule: the payment providers'
  reconciliation, balance warnings (and deletion for nonpayment past the overdraft), their emails, the
  drift check, the incidents (opened and cleared: hosts offline, operations waiting, webhooks or jobs
  failing, drift, capsuls vanished) and their emails to OPS_EMAILS, receipts for payments credited, and
  in a month's first 7 days the statements of the month before. A job another process is running is skipped. Exits 1 when a job failed. See
  docs/operations.md.
  --dry-run    print what each job would do (each account, level and capsul); change nothing, send nothing
  --now <ISO>  evaluate as of that instant instead (the ledger's events up to then): with --dry-run only`,
    options: { 'dry-run': { type: 'boolean' }, now: { type: 'string' } },
    async run(ctx, v) {
      const asOf = v.now !== undefined ? parseInstant(str(v.now)!, '--now') : undefined;
      const dryRun = Boolean(v['dry-run']);
      const refusal = asOfRefusal(asOf, new Date(), dryRun);
      if (refusal) throw new CliError(refusal);
      const config = ctx.config;
      const { pool, ledger, hosts, now, streams } = await ctx.connect();
      const mailer = configuredMailer(config, (line) => ctx.note(line));
      const providers = paymentProviders(config, { pool, ledger, now, mailer, afterPayments: () => {} });
      const outcomes = await runJobs(jobDeps(config, { pool, hosts, cache: streams, mailer, providers, now }), {
        asOf,
        dryRun,
        report: (line) => ctx.out(line),
        log: (line) => ctx.note(line),
      });
      const failed = outcomes.filter((outcome) => outcome.status === 'failed');
      if (failed.length > 0)
        throw new CliError(`${failed.length} of ${outcomes.length} jobs failed: ${failed.map((f) => f.job).join(', ')}`);
    },
  },

  migrate: {
    summary: "move the database schema to this code's version (or --to N)",
    usage: `capsul migrate [--to <version>]

  Runs as DATABASE_URL's user (the owner or a superuser). Going down is refused, changing nothing,
  when a step would drop events or facts no event holds (saved SSH keys, held payments, checkouts,
  receipts, the log's leaves and checkpoints); what can be rebuilt or seeded again may go. After a
  schema change the projections are rebuilt from the events. Every other capsul command (and npm
  start) migrates up to its own version first, so a database taken down stays there only until then.`,
    options: { to: { type: 'string' } },
    async run(ctx, v) {
      const target = v.to !== undefined ? Number(str(v.to)) : undefined;
      if (target !== undefined && !/^\d+$/.test(str(v.to)!)) throw new UsageError('--to takes a schema version number');
      const { database } = await ctx.connect('admin', { migrate: false });
      const evidence = await localEvidence(ctx.config.audit);
      const { from, to } = await prepareDatabase(database, {
        target,
        log: (line) => ctx.note(line),
        onProgress: ctx.progress('rebuilding'),
        evidence,
      });
      ctx.note(from === to ? `schema already at version ${to}` : `schema moved from version ${from} to ${to}`);
      if (to < latestVersion()) {
        ctx.note(
          `note: the next capsul command or npm start of this code will migrate it back up to version ${latestVersion()}; ` +
            `to keep version ${to}, run only a capsul that knows up to version ${to}`,
        );
      }
    },
  },

  'schema-version': {
    summary: "print the database's schema version",
    usage: `capsul schema-version`,
    options: {},
    async run(ctx) {
      const { pool } = await ctx.connect('admin', { migrate: false });
      const version = await schemaVersion(pool);
      ctx.out(String(version));
      if (version !== latestVersion()) ctx.note(`this code's schema version is ${latestVersion()}`);
    },
  },
  ...statementCommands,
  ...statusCommands,
  ...auditCommands,
};

const writeRemoved =
  'capsul sql is read-only: it connects as capsul_reader, which may only read. There is no --write: ' +
  'change the catalogue with a migration (schema_migrations/), everything else with capsul\'s commands (docs/database.md, "Changing things")';

function wholeNumber(text: string | undefined, flag: string): number {
  const value = required(text, flag);
  if (!/^\d{1,9}$/.test(value) || Number(value) <= 0) throw new UsageError(`${flag} takes a positive whole number, not "${value}"`);
  return Number(value);
}

/** invalidate-payment's and reinstate-payment's help: what the customer sees, and what they never see. */
function correctionUsage(name: string, kind: 'PaymentInvalidated' | 'PaymentReinstated'): string {
  return `capsul ${name} <payment id> --reason <text> [--customer-note <text>] [--by <name>]

  --reason         why, for operators and auditors: kept in the event's metadata, shown by capsul history
                   and on the admin pages. The customer never sees it.
  --customer-note  what the customer's history says of it instead: one line of visible text, at most
                   ${maxCustomerNoteLength} characters. Without it the customer sees "${defaultCustomerNotes[kind]}".
  --by             who corrects it (default: the operating-system user)`;
}

/** invalidate-payment and reinstate-payment: the same shape, opposite corrections. */
function paymentCorrection(spec: {
  summary: string;
  usage: string;
  apply: (ledger: Ledger, paymentId: number, cause: Cause, customerNote: string | undefined) => Promise<{ changed: boolean }>;
  done: (paymentId: number) => string;
  already: (paymentId: number) => string;
}): CommandSpec {
  return {
    summary: spec.summary,
    usage: spec.usage,
    options: { reason: { type: 'string' }, 'customer-note': { type: 'string' }, ...by },
    positionals: 1,
    async run(ctx, v, [id]) {
      const paymentId = parseId(id, 'payment');
      const reason = required(str(v.reason), '--reason');
      // Checked before connecting: a note the ledger would refuse is refused here, in the ledger's words.
      const customerNote = v['customer-note'] === undefined ? undefined : checkedCustomerNote(str(v['customer-note'])!);
      const { ledger } = await ctx.connect();
      const { changed } = await spec.apply(ledger, paymentId, { by: ctx.actor(str(v.by)), reason }, customerNote);
      ctx.note(changed ? spec.done(paymentId) : spec.already(paymentId));
    },
  };
}

/** The --as-of and --known-at instants given (each absent when not). */
function instants(v: Record<string, unknown>): Instants {
  return {
    ...(v['as-of'] !== undefined ? { asOf: parseInstant(str(v['as-of'])!, '--as-of') } : {}),
    ...(v['known-at'] !== undefined ? { knownAt: parseInstant(str(v['known-at'])!, '--known-at') } : {}),
  };
}

async function historyFilter(
  { pool, ledger }: { pool: import('pg').Pool; ledger: Ledger },
  v: Record<string, unknown>,
): Promise<{ selectors?: EventSelector[] } | { account: string }> {
  if (v.all) return {};
  if (v.payment !== undefined) {
    const paymentId = parseId(str(v.payment), 'payment');
    const selectors = await paymentSelectors(pool, paymentId);
    if (!selectors) throw new CliError(`there is no payment ${paymentId}`);
    return { selectors };
  }
  if (v.vm !== undefined) {
    const vmId = str(v.vm)!;
    const selectors = await capsulSelectors(pool, vmId);
    if (!selectors) throw new CliError(`there is no capsul ${vmId}`);
    return { selectors };
  }
  const email = canonicalEmail(str(v.email)!);
  const accountId = await ledger.accountIdFor(email);
  if (!accountId) throw new CliError(`there is no account for ${email}`);
  return { account: accountId };
}

function historyJson(stored: StoredEvent) {
  return {
    time: stored.recordedAt,
    stream: stored.streamId,
    position: stored.streamPosition,
    globalPosition: stored.globalPosition,
    leafIndex: stored.leafIndex ?? null,
    type: stored.event.type,
    data: stored.event.data,
    by: stored.metadata.by ? describeActor(stored.metadata.by) : null,
    ...(stored.metadata.reason ? { reason: stored.metadata.reason } : {}),
  };
}

function historyLine(stored: StoredEvent): string {
  const who = stored.metadata.by ? describeActor(stored.metadata.by) : '-';
  const why = stored.metadata.reason ? `  ${JSON.stringify(stored.metadata.reason)}` : '';
  return `${stored.recordedAt}  ${stored.streamId}  ${stored.event.type}  ${JSON.stringify(stored.event.data)}  ${who}${why}`;
}
