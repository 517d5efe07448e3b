// `capsul statement`: one closed month of an account, from the ledger as it stands — the same
// statement the console shows and emails (src/read/statements.ts), as text, HTML or PDF.
import { writeFileSync } from 'node:fs';
import { parseMonth } from '../domain/account/statement.ts';
import { canonicalEmail } from '../domain/shared/email.ts';
import { accountIdByEmail } from '../read/accounts.ts';
import { accountStatement } from '../read/statements.ts';
import { statementDocument } from '../statements/html.ts';
import { statementPdf } from '../statements/pdf.ts';
import { statementText, statementView } from '../statements/view.ts';
import { CliError, UsageError, type CommandSpec } from './context.ts';
import { required } from './parse.ts';

const formats = ['text', 'html', 'pdf'] as const;
type Format = (typeof formats)[number];

export const statementCommands: Record<string, CommandSpec> = {
  statement: {
    summary: "an account's statement for a closed month (text, HTML or PDF)",
    usage: `capsul statement --email <email> --month <YYYY-MM> [--format text|html|pdf] [--out <file>]

  The opening balance (the balance as of the month's first instant, as capsul balance --as-of gives
  it), every payment, reversal, reinstatement and refund that took effect in the month, each capsul's
  charge for the time it ran in it, and the closing balance (the next month's opening). Months are
  UTC. A fact recorded after its month closed (record-payment --at) shows in the month it took effect,
  and the statement says it was reissued (docs/billing.md, "Statements").
  --format  text (default), html (a whole document) or pdf (needs --out)
  --out     write to this file instead of stdout`,
    options: { email: { type: 'string' }, month: { type: 'string' }, format: { type: 'string' }, out: { type: 'string' } },
    async run(ctx, v) {
      const email = canonicalEmail(required(v.email as string | undefined, '--email'));
      const month = monthOption(required(v.month as string | undefined, '--month'));
      const format = (v.format as string | undefined) ?? 'text';
      if (!(formats as readonly string[]).includes(format)) throw new UsageError(`--format is text, html or pdf, not "${format}"`);
      const out = v.out as string | undefined;
      if (format === 'pdf' && out === undefined) throw new UsageError('a PDF is written to a file: give --out <file>');
      const { pool, now } = await ctx.connect('reader');
      const accountId = await accountIdByEmail(pool, email);
      if (accountId === null) throw new CliError(`there is no account for ${email}`);
      const view = statementView(await accountStatement(pool, accountId, month, now()), email, ctx.config.provider);
      const rendered = await render(format as Format, view, now());
      if (out === undefined) {
        ctx.io.stdout.write(rendered.toString());
        return;
      }
      try {
        writeFileSync(out, rendered);
      } catch (error) {
        throw new CliError(`cannot write ${out}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
      }
      ctx.note(`statement for ${month} written to ${out}`);
    },
  },
};

function monthOption(text: string): string {
  try {
    return parseMonth(text);
  } catch (error) {
    throw new UsageError(`--month: ${(error as Error).message}`);
  }
}

async function render(format: Format, view: ReturnType<typeof statementView>, now: Date): Promise<string | Buffer> {
  switch (format) {
    case 'text':
      return statementText(view);
    case 'html':
      return statementDocument(view);
    case 'pdf':
      return statementPdf(view, now);
  }
}
