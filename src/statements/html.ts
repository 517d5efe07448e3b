// A statement as HTML: the fragment the console's statement page shows inside its layout, and a
// standalone document (`capsul statement --format html`) with its own small stylesheet.
import type { StatementView } from './view.ts';

const entities: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
const escapeHtml = (text: string): string => text.replace(/[&<>"']/g, (c) => entities[c]!);

function row(date: string, description: string, note: string | null, amount: string, className = ''): string {
  const noteHtml = note ? `<br><span class="muted">${escapeHtml(note)}</span>` : '';
  const cls = className ? ` class="${className}"` : '';
  return `    <tr${cls}><td class="nowrap">${escapeHtml(date)}</td><td>${escapeHtml(description)}${noteHtml}</td><td class="num nowrap">${escapeHtml(amount)}</td></tr>\n`;
}

/**
 * The statement's body: issuer, account, period, and the lines between the opening and the closing
 * balance. `heading: false` where the page around it already names the statement (the console).
 */
export function statementFragment(view: StatementView, options: { heading: boolean } = { heading: true }): string {
  const address = view.issuer.addressLines.map((line) => `<br>${escapeHtml(line)}`).join('');
  const rows = view.rows.map((r) => row(r.date, r.description, r.note, r.amount)).join('');
  const title = `Statement for ${escapeHtml(view.title)}`;
  return `<section class="statement" aria-label="${title}">
  <p class="issuer"><strong>${escapeHtml(view.issuer.name)}</strong>${address}</p>
${options.heading ? `  <h2>${title}</h2>\n` : ''}  <dl class="facts">
    <dt>Account</dt><dd>${escapeHtml(view.email)}</dd>
    <dt>Period</dt><dd>${escapeHtml(view.period)}</dd>
  </dl>
${view.revision ? `  <p class="notice">${escapeHtml(view.revision)}</p>\n` : ''}  <div class="table-scroll">
  <table class="data statement-lines">
  <caption>Every payment, correction and charge of the month</caption>
  <thead><tr><th scope="col">Date (UTC)</th><th scope="col">Description</th><th scope="col" class="num">Amount</th></tr></thead>
  <tbody>
${row(view.openedAt, 'Opening balance', null, view.opening, 'balance')}${rows}${
  view.rows.length === 0 ? row('', 'Nothing happened in this month.', null, '') : ''
}${row(view.closedAt, 'Closing balance', null, view.closing, 'balance')}  </tbody>
  </table>
  </div>
</section>
`;
}

const documentStyle = `body{font-family:system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem;color:#1a1a1a}
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #ddd;padding:.4rem .6rem;text-align:left;vertical-align:top}
.num{text-align:right;font-variant-numeric:tabular-nums}.nowrap{white-space:nowrap}.muted{color:#666}
tr.balance td{font-weight:600}caption{text-align:left;font-weight:600;padding-bottom:.5rem}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}dd{margin:0}
.notice{background:#eef4fd;border-left:4px solid #2557a7;padding:.5rem .75rem}`;

/** A whole HTML document of one statement. */
export function statementDocument(view: StatementView): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Statement for ${escapeHtml(view.title)} · ${escapeHtml(view.issuer.name)}</title>
<style>${documentStyle}</style>
</head>
<body>
${statementFragment(view)}</body>
</html>
`;
}
