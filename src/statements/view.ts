// A statement as people read it: the domain's figures (src/domain/account/statement.ts) turned into
// dated, described rows with signed dollar amounts. The text, HTML and PDF renderings all print this,
// so the three never disagree. Every time is UTC.
import type { MonthlyStatement, PaymentLine, StatementLine } from '../domain/account/statement.ts';
import { formatCents, type Cents } from '../domain/shared/money.ts';

/** Who issues the statement (PROVIDER_NAME, PROVIDER_ADDRESS). */
export type Issuer = { name: string; addressLines: string[] };

export type StatementRow = {
  /** when it took effect, "2026-11-10 12:00"; empty for the rounding row */
  date: string;
  description: string;
  /** a second line: a capsul's dates, a fact recorded after its month closed */
  note: string | null;
  /** signed, "+$10.00" or "-$2.35" */
  amount: string;
};

export type StatementView = {
  month: string;
  /** "November 2026" */
  title: string;
  issuer: Issuer;
  email: string;
  /** "2026-11-01 00:00 to 2026-12-01 00:00 UTC" */
  period: string;
  /** the instants of the opening and the closing balance, "2026-11-01 00:00" */
  openedAt: string;
  closedAt: string;
  opening: string;
  closing: string;
  rows: StatementRow[];
  /** "Reissued on 2026-12-03: …" when facts were recorded after the month closed */
  revision: string | null;
};

const dayMs = 86_400_000;

/** "2026-11-10 12:00" (UTC). */
export const minuteUtc = (ms: number): string => new Date(ms).toISOString().slice(0, 16).replace('T', ' ');

/** "$20.00", "-$1.23". */
export const dollars = (cents: Cents): string => (cents < 0 ? `-$${formatCents(-cents)}` : `$${formatCents(cents)}`);

/** "+$10.00", "-$2.35", "$0.00". */
export const signedDollars = (cents: Cents): string => (cents > 0 ? `+${dollars(cents)}` : dollars(cents));

export function monthTitle(month: string): string {
  return new Date(`${month}-01T00:00:00Z`).toLocaleString('en-US', { month: 'long', year: 'numeric', timeZone: 'UTC' });
}

const paymentDescriptions: Record<PaymentLine['kind'], (line: PaymentLine) => string> = {
  payment: (line) => `Payment #${line.paymentId} received (${line.provider}${line.reference ? `, ${line.reference}` : ''})`,
  invalidation: (line) => `Payment #${line.paymentId} reversed`,
  reinstatement: (line) => `Payment #${line.paymentId} reinstated`,
  refund: (line) => `Refund of payment #${line.paymentId}`,
};

function rowOf(line: StatementLine): StatementRow {
  const amount = signedDollars(line.amountCents);
  switch (line.kind) {
    case 'charge': {
      const days = ((line.toMs - line.fromMs) / dayMs).toFixed(2);
      return {
        date: minuteUtc(line.fromMs),
        description: `capsul ${line.vmId}, ${line.size} at ${dollars(line.priceCentsPerMonth)} a month`,
        note: `ran ${minuteUtc(line.fromMs)} to ${minuteUtc(line.toMs)} (${days} days)`,
        amount,
      };
    }
    case 'rounding':
      return { date: '', description: 'Rounding: the month’s charges rounded once, on their total', note: null, amount };
    default:
      return {
        date: minuteUtc(line.atMs),
        description: paymentDescriptions[line.kind](line),
        note: line.recordedLateAtMs === null ? null : `recorded late, on ${minuteUtc(line.recordedLateAtMs)}: this statement was reissued`,
        amount,
      };
  }
}

export function statementView(statement: MonthlyStatement, email: string, issuer: Issuer): StatementView {
  return {
    month: statement.month,
    title: monthTitle(statement.month),
    issuer,
    email,
    period: `${minuteUtc(statement.startMs)} to ${minuteUtc(statement.endMs)} UTC`,
    openedAt: minuteUtc(statement.startMs),
    closedAt: minuteUtc(statement.endMs),
    opening: dollars(statement.openingCents),
    closing: dollars(statement.closingCents),
    rows: statement.lines.map(rowOf),
    revision:
      statement.revisedAtMs === null
        ? null
        : `Reissued on ${minuteUtc(statement.revisedAtMs)} UTC: it includes facts recorded after the month closed.`,
  };
}

/** The statement as plain text (the CLI's default, and the statement email's body). */
export function statementText(view: StatementView): string {
  const width = 78;
  const line = (left: string, right: string) => `${left}${' '.repeat(Math.max(1, width - left.length - right.length))}${right}`;
  const out = [
    view.issuer.name,
    ...view.issuer.addressLines,
    '',
    `Statement for ${view.title}, ${view.email}`,
    `Period: ${view.period}`,
    ...(view.revision ? [view.revision] : []),
    '',
    line(`${view.openedAt.padEnd(17)} Opening balance`, view.opening),
  ];
  for (const row of view.rows) {
    out.push(line(`${(row.date || '').padEnd(17)} ${row.description}`, row.amount));
    if (row.note) out.push(`${' '.repeat(18)}${row.note}`);
  }
  if (view.rows.length === 0) out.push('Nothing happened in this month.');
  out.push(line(`${view.closedAt.padEnd(17)} Closing balance`, view.closing));
  return `${out.join('\n')}\n`;
}
