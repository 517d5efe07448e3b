// `capsul sql`: operators' queries, as capsul_reader (read-only by the database's privileges). Each
// statement runs on its own in its own transaction, through the extended protocol (one command per
// call), so every statement gets its own answer and its own refusal.
import type pg from 'pg';
import { isEventStoreTable } from '../db/event-store.ts';
import { CliError } from './context.ts';

export const maxStatements = 100;
export const maxPrintedRows = 100_000;

/** Splits SQL text at top-level semicolons (not inside quotes, dollar quotes or comments). */
export function splitStatements(text: string): string[] {
  const statements: string[] = [];
  let current = '';
  let i = 0;
  while (i < text.length) {
    const rest = text.slice(i);
    const ch = text[i]!;
    let token: string;
    if (rest.startsWith('--')) {
      const end = text.indexOf('\n', i);
      token = end === -1 ? rest : text.slice(i, end + 1);
    } else if (rest.startsWith('/*')) {
      const end = text.indexOf('*/', i + 2);
      if (end === -1) throw new CliError('SQL has an unclosed /* comment');
      token = text.slice(i, end + 2);
    } else if (ch === "'" || ch === '"') {
      // E'…' strings also escape with a backslash: E'it\'s'.
      const escapes = ch === "'" && /[eE]/.test(text[i - 1] ?? '') && !/[A-Za-z0-9_$]/.test(text[i - 2] ?? '');
      let j = i + 1;
      while (j < text.length) {
        if (escapes && text[j] === '\\') j += 2;
        else if (text[j] === ch && text[j + 1] === ch) j += 2;
        else if (text[j] === ch) break;
        else j++;
      }
      if (j >= text.length) throw new CliError(`SQL has an unclosed ${ch === "'" ? 'string' : 'quoted name'}`);
      token = text.slice(i, j + 1);
    } else if (ch === '$' && /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.test(rest) && !/[A-Za-z0-9_]/.test(text[i - 1] ?? '')) {
      const tag = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(rest)![0];
      const end = text.indexOf(tag, i + tag.length);
      if (end === -1) throw new CliError(`SQL has an unclosed ${tag} quote`);
      token = text.slice(i, end + tag.length);
    } else if (ch === ';') {
      if (current.trim()) statements.push(current.trim());
      current = '';
      i++;
      continue;
    } else {
      token = ch;
    }
    current += token;
    i += token.length;
  }
  if (current.trim() && !isOnlyComments(current)) statements.push(current.trim());
  return statements.filter((s) => !isOnlyComments(s));
}

function isOnlyComments(sql: string): boolean {
  return (
    sql
      .replace(/--[^\n]*(\n|$)/g, '')
      .replace(/\/\*[\s\S]*?\*\//g, '')
      .trim() === ''
  );
}

/** Postgres' text output → the CLI's: UTC timestamps as 2020-05-05T00:00:00, TRUE/FALSE, NULL empty. */
export function formatValue(value: string | null, typeOid: number): string {
  if (value === null) return '';
  switch (typeOid) {
    case 16: // bool
      return value === 't' ? 'TRUE' : 'FALSE';
    case 1114: // timestamp
    case 1184: // timestamptz (the session runs in UTC)
      return value.replace(' ', 'T').replace(/(\+00(:00)?|Z)$/, '');
    default:
      return value;
  }
}

const leadingComments = /^(\s|--[^\n]*(\n|$)|\/\*[\s\S]*?\*\/)+/;

/** What to say when the database refused a write: which command changes that table instead. */
export function adviceFor(statement: string): string {
  const target =
    /^\s*(?:with\b[\s\S]*?\)\s*)?(?:update|insert\s+into|delete\s+from|truncate(?:\s+table)?|merge\s+into|alter\s+table|drop\s+table)\s+(?:only\s+)?(?:public\.)?"?([a-z_][a-z0-9_]*)/i
      .exec(statement.replace(leadingComments, ''))?.[1]
      ?.toLowerCase();
  switch (target) {
    case 'payments':
      return 'payments is a projection of the event ledger: to correct one use capsul invalidate-payment or capsul reinstate-payment; to add one, capsul record-payment';
    case 'vms':
      return 'vms is a projection of the event ledger: use capsul create-vm or capsul delete-vm';
    case 'accounts':
      return 'accounts is a projection of the event ledger: accounts open with capsul record-payment';
    case 'hosts':
      return 'hosts is a projection of the event ledger: use capsul add-host, capsul rotate-host-token or capsul remove-host';
    case 'operations':
      return 'operations is a projection of the event ledger: operations follow from capsul commands and host reports';
    case 'payment_holds':
      return 'payment_holds is a projection of the event ledger: close a held payment with capsul resolve-hold, credit it with capsul record-payment';
    case 'schemaversion':
      return 'the schema version moves only with capsul migrate';
    default:
      if (target && isEventStoreTable(target))
        return 'the event store is append-only: corrections are new events (capsul invalidate-payment, …)';
      return "changes go through capsul's commands (capsul --help), the catalogue through a migration";
  }
}

export type SqlOptions = { header: boolean; out: (line: string) => void };

/**
 * Runs each statement in a read-only transaction of its own and prints its rows, or `N rows affected.`
 * The boundary is the role (capsul_reader can only read); READ ONLY only makes the refusal say so.
 */
export async function runStatements(client: pg.PoolClient, statements: string[], options: SqlOptions): Promise<void> {
  if (statements.length === 0) throw new CliError('no SQL statement given');
  if (statements.length > maxStatements) throw new CliError(`at most ${maxStatements} statements at a time`);
  await client.query(`SET TIME ZONE 'UTC'`);
  for (const statement of statements) {
    await client.query('BEGIN READ ONLY');
    let result: pg.QueryResult;
    try {
      result = await client.query({
        text: statement,
        queryMode: 'extended',
        rowMode: 'array',
        types: { getTypeParser: () => (value: string) => value },
      } as pg.QueryConfig);
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw explain(error, statement);
    }
    if (result.fields.length > 0) {
      if (options.header) options.out(result.fields.map((f) => f.name).join(', '));
      const rows = result.rows as (string | null)[][];
      for (const row of rows.slice(0, maxPrintedRows)) {
        options.out(row.map((value, i) => formatValue(value, result.fields[i]!.dataTypeID)).join(', '));
      }
      if (rows.length > maxPrintedRows) throw new CliError(`stopped after ${maxPrintedRows} rows: add a LIMIT`);
    } else {
      options.out(`${result.rowCount ?? 0} rows affected.`);
    }
  }
}

function explain(error: unknown, statement: string): Error {
  const e = error as { code?: string; message?: string };
  // 25006: a write in the read-only transaction; 42501: the role lacks the privilege (a function, a table).
  if (e.code === '25006' || e.code === '42501') {
    return new CliError(`capsul sql is read-only and nothing was changed (${e.message}): ${adviceFor(statement)}`);
  }
  if (e.code === '42601' && /multiple commands|cannot insert multiple/.test(e.message ?? '')) {
    return new CliError('one statement at a time: separate statements with ;');
  }
  return new CliError(`SQL error: ${e.message ?? String(error)}`);
}
