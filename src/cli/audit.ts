// `capsul audit …`: the signed log (docs/audit.md). key, checkpoint (capsul_app: it seals and signs),
// verify, export and prove (capsul_reader: they only read).
import { exportLog } from '../audit/export.ts';
import { localEvidence, loadOrCreateKey } from '../audit/key.ts';
import { sealCommitted, signCheckpoint } from '../audit/log.ts';
import { provePayment } from '../audit/prove.ts';
import { verifyLog } from '../audit/verify.ts';
import { CliError, UsageError, type CommandSpec } from './context.ts';
import { parseId, required } from './parse.ts';

const str = (v: unknown) => v as string | undefined;
const keyOption = { key: { type: 'string' } } as const;

export const auditCommands: Record<string, CommandSpec> = {
  'audit key': {
    summary: "print the log's verifier key (the signing key is created on first use)",
    usage: `capsul audit key

  Prints the verifier key (<name>+<key hash>+<public key>) that checks the log's signed checkpoints:
  publish it where auditors find it. The signing key stays in AUDIT_KEY_FILE (default
  .data/audit/log.key, mode 0600), outside the database; the first use creates it, named
  AUDIT_LOG_NAME (default <BASE_URL's host>/capsul). Back it up: checkpoints signed with a lost key
  can still be verified, but no new ones can be signed with it.`,
    options: {},
    async run(ctx) {
      const { audit } = ctx.config;
      const key = await loadOrCreateKey(audit.keyFile, audit.logName);
      if (key.created) ctx.note(`created the log's signing key in ${audit.keyFile}: back it up, and publish the verifier key below`);
      ctx.out(key.verifierKey);
    },
  },

  'audit checkpoint': {
    summary: 'seal every committed event into the log and print a signed checkpoint',
    usage: `capsul audit checkpoint [--wait <seconds>]

  Seals into the log every event committed before it started (waiting up to --wait seconds, default
  10, for transactions still in flight), signs a checkpoint of the log (C2SP tlog-checkpoint) with the
  key in AUDIT_KEY_FILE, stores it in the database and beside the key, and prints it. The hub does the
  same every AUDIT_CHECKPOINT_SECONDS.`,
    options: { wait: { type: 'string' } },
    async run(ctx, v) {
      const waitText = str(v.wait) ?? '10';
      if (!/^\d{1,4}$/.test(waitText)) throw new UsageError('--wait takes a whole number of seconds');
      const { audit } = ctx.config;
      const key = await loadOrCreateKey(audit.keyFile, audit.logName);
      const { pool } = await ctx.connect('app');
      const progress = ctx.progress('sealing');
      const sealed = await sealCommitted(pool, { waitMs: Number(waitText) * 1000, onProgress: (n) => progress?.(n, n) });
      if (sealed.waiting) ctx.note('some events wait for an older transaction still in flight: they are in a later checkpoint');
      const checkpoint = await signCheckpoint(pool, key, audit.latestCheckpointFile);
      if (!checkpoint) throw new CliError('the log is empty: there is nothing to sign yet');
      ctx.note(`sealed ${sealed.sealed} new events; the log has ${checkpoint.treeSize} leaves`);
      ctx.io.stdout.write(checkpoint.note);
    },
  },

  'audit verify': {
    summary: 'recompute the log from the events and check every signed checkpoint',
    usage: `capsul audit verify [--key <verifier key>]

  Hashes every event again, compares each with its leaf, rebuilds the tree from those hashes and checks
  it against every stored checkpoint and the latest one kept beside the key, each signature checked
  with the verifier key: --key (yours, as the provider published it), else AUDIT_VERIFIER_KEY, else the
  key file's. Exit 0 when everything matches; 1 naming the first leaf (index and global position)
  that was altered, removed or inserted, and each checkpoint the events no longer reproduce.`,
    options: keyOption,
    async run(ctx, v) {
      const { audit } = ctx.config;
      const evidence = await localEvidence(audit, str(v.key));
      if (evidence.verifierKeys.length === 0) {
        throw new CliError(
          `no verifier key: pass --key <the log's verifier key> (or set AUDIT_VERIFIER_KEY); there is no key file at ${audit.keyFile}`,
        );
      }
      const { pool } = await ctx.connect('reader');
      const report = await verifyLog(pool, { ...evidence, onProgress: ctx.progress('verifying') });
      for (const finding of report.findings) ctx.out(`${finding.kind.toUpperCase()}: ${finding.message}`);
      const unsealed = report.unsealed > 0 ? `, ${report.unsealed} newer events not sealed yet` : '';
      if (!report.ok) {
        throw new CliError(
          `the log does NOT match the events: ${report.findings.length} finding${report.findings.length === 1 ? '' : 's'} above`,
        );
      }
      ctx.out(`log intact: ${report.treeSize} leaves match their events and ${report.checkpoints} signed checkpoints${unsealed}`);
    },
  },

  'audit export': {
    summary: 'write the log for an auditor: leaves, checkpoints, verifier key and a standalone verifier',
    usage: `capsul audit export --out <dir> [--key <verifier key>]

  Writes into <dir> (new or empty): leaves.jsonl (line i: the exact canonical bytes of leaf i),
  checkpoints/ (every signed checkpoint), verifier.key, verify-log.mjs (a verifier that needs only
  Node.js: node verify-log.mjs <dir> --key <key>) and README.txt. See docs/audit.md.`,
    options: { out: { type: 'string' }, ...keyOption },
    async run(ctx, v) {
      const dir = required(str(v.out), '--out');
      const { audit } = ctx.config;
      const evidence = await localEvidence(audit, str(v.key));
      const verifierKey = evidence.verifierKeys[0];
      if (!verifierKey)
        throw new CliError(`no verifier key to export: pass --key, or set AUDIT_VERIFIER_KEY (there is no key file at ${audit.keyFile})`);
      const { pool } = await ctx.connect('reader');
      const { leaves, checkpoints } = await exportLog(pool, dir, { verifierKey, onProgress: ctx.progress('exporting') });
      ctx.note(`exported ${leaves} leaves and ${checkpoints} checkpoints to ${dir}: check them with node ${dir}/verify-log.mjs ${dir}`);
    },
  },

  'audit prove': {
    summary: "print an inclusion proof of a payment's event against the latest checkpoint",
    usage: `capsul audit prove --payment <id>

  Prints one JSON object: the leaf (the event that recorded the payment, as canonical JSON), its
  index, the tree size and audit path (base64 hashes) of the latest stored checkpoint, and that
  checkpoint. It signs nothing new. Check it anywhere with verify-log.mjs --proof <file> --key <key>.`,
    options: { payment: { type: 'string' } },
    async run(ctx, v) {
      const paymentId = parseId(str(v.payment), 'payment');
      const { pool } = await ctx.connect('reader');
      ctx.out(JSON.stringify(await provePayment(pool, paymentId)));
    },
  },
};

/** `capsul audit` alone: its subcommands. */
export function auditHelp(): string {
  const lines = Object.entries(auditCommands).map(([name, spec]) => `  ${name.padEnd(18)}${spec.summary}`);
  return `usage: capsul audit <key|checkpoint|verify|export|prove> [options]\n\n${lines.join('\n')}\n\nSee docs/audit.md.`;
}
