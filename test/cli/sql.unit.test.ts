import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CliError } from '../../src/cli/context.ts';
import { adviceFor, formatValue, splitStatements } from '../../src/cli/sql.ts';

const oid = { bool: 16, int4: 23, text: 25, numeric: 1700, timestamp: 1114, timestamptz: 1184 };

describe('splitStatements', () => {
  it('splits at top-level semicolons and trims each statement', () => {
    assert.deepEqual(splitStatements('SELECT 1;  SELECT 2 ;\nSELECT 3'), ['SELECT 1', 'SELECT 2', 'SELECT 3']);
  });

  it('keeps semicolons inside strings, doubled quotes included', () => {
    assert.deepEqual(splitStatements(`SELECT 'a;b'; SELECT 'it''s; fine'`), [`SELECT 'a;b'`, `SELECT 'it''s; fine'`]);
  });

  it('keeps semicolons inside escape strings with backslash-escaped quotes', () => {
    assert.deepEqual(splitStatements(`SELECT E'it\\'s; fine'; SELECT 2`), [`SELECT E'it\\'s; fine'`, 'SELECT 2']);
    // A plain string ending in a backslash is not an escape string.
    assert.deepEqual(splitStatements(`SELECT 'C:\\'; SELECT 2`), [`SELECT 'C:\\'`, 'SELECT 2']);
  });

  it('keeps semicolons inside quoted identifiers', () => {
    assert.deepEqual(splitStatements('SELECT 1 AS "a;b"; SELECT 2 AS "say ""hi;"""'), ['SELECT 1 AS "a;b"', 'SELECT 2 AS "say ""hi;"""']);
  });

  it('keeps semicolons inside dollar quotes, tagged or not', () => {
    const body = `DO $$ BEGIN PERFORM 1; END $$`;
    const tagged = `SELECT $fn$ a; $$ b; $fn$`;
    assert.deepEqual(splitStatements(`${body}; ${tagged}; SELECT 3`), [body, tagged, 'SELECT 3']);
  });

  it('does not take a $ inside an identifier or a parameter for a dollar quote', () => {
    assert.deepEqual(splitStatements('SELECT a$b$c FROM t; SELECT $1'), ['SELECT a$b$c FROM t', 'SELECT $1']);
  });

  it('keeps semicolons inside line and block comments', () => {
    assert.deepEqual(splitStatements('SELECT 1 -- one; two\n; /* three; */ SELECT 2'), ['SELECT 1 -- one; two', '/* three; */ SELECT 2']);
  });

  it('ignores trailing and repeated semicolons', () => {
    assert.deepEqual(splitStatements('SELECT 1;;; ;\n'), ['SELECT 1']);
  });

  it('returns nothing for empty or comment-only input', () => {
    assert.deepEqual(splitStatements(''), []);
    assert.deepEqual(splitStatements('  ;\n ; '), []);
    assert.deepEqual(splitStatements('-- nothing here\n/* nor; here */\n-- last line without newline'), []);
    assert.deepEqual(splitStatements('SELECT 1; -- done'), ['SELECT 1']);
  });

  it('refuses unclosed strings, identifiers, dollar quotes and comments', () => {
    for (const sql of [`SELECT 'open`, 'SELECT "open', 'SELECT $$ open', 'SELECT $x$ open $$', 'SELECT 1 /* open']) {
      assert.throws(() => splitStatements(sql), CliError, sql);
    }
  });
});

describe('formatValue', () => {
  it('prints NULL as nothing', () => {
    assert.equal(formatValue(null, oid.text), '');
    assert.equal(formatValue(null, oid.bool), '');
  });

  it('prints booleans as TRUE and FALSE', () => {
    assert.equal(formatValue('t', oid.bool), 'TRUE');
    assert.equal(formatValue('f', oid.bool), 'FALSE');
  });

  it('prints timestamps in UTC as 2020-05-05T00:00:00', () => {
    assert.equal(formatValue('2020-05-05 00:00:00', oid.timestamp), '2020-05-05T00:00:00');
    assert.equal(formatValue('2020-05-05 00:00:00+00', oid.timestamptz), '2020-05-05T00:00:00');
    assert.equal(formatValue('2020-05-05 13:14:15.123456+00', oid.timestamptz), '2020-05-05T13:14:15.123456');
  });

  it('prints numerics and everything else as Postgres does', () => {
    assert.equal(formatValue('20.00', oid.numeric), '20.00');
    assert.equal(formatValue('-0.51', oid.numeric), '-0.51');
    assert.equal(formatValue('42', oid.int4), '42');
    assert.equal(formatValue('a, b', oid.text), 'a, b');
  });
});

describe('adviceFor', () => {
  it('sends payment edits to the payment commands', () => {
    for (const sql of [
      'UPDATE payments SET invalidated = true',
      'update PUBLIC.payments set dollars = 0',
      'UPDATE ONLY "payments" SET invalidated = true',
      'DELETE FROM payments WHERE id = 1',
      'INSERT INTO payments (id) VALUES (1)',
      'WITH p AS (SELECT 1), q AS (SELECT 2) UPDATE payments SET invalidated = true',
      'TRUNCATE TABLE payments',
    ]) {
      assert.match(adviceFor(sql), /capsul invalidate-payment/, sql);
      assert.match(adviceFor(sql), /capsul record-payment/, sql);
    }
  });

  it('sends capsul edits to create-vm and delete-vm', () => {
    assert.match(adviceFor('DELETE FROM vms'), /capsul create-vm or capsul delete-vm/);
    assert.match(adviceFor('update vms set deleted = now()'), /capsul delete-vm/);
  });

  it('sends account edits to record-payment', () => {
    assert.match(adviceFor(`INSERT INTO accounts VALUES ('x', 'a@b.org', now())`), /capsul record-payment/);
  });

  it('says the event store is append-only', () => {
    assert.match(adviceFor('DELETE FROM emt_messages'), /append-only/);
    assert.match(adviceFor('TRUNCATE emt_streams'), /append-only/);
    assert.match(adviceFor('ALTER TABLE emt_messages DISABLE TRIGGER ALL'), /append-only/);
  });

  it('says the schema version moves with capsul migrate', () => {
    assert.match(adviceFor('UPDATE schemaversion SET version = 9'), /capsul migrate/);
  });

  it('looks past leading comments', () => {
    assert.match(adviceFor('-- chargeback of May\nUPDATE payments SET invalidated = true'), /capsul invalidate-payment/);
    assert.match(adviceFor('/* cleanup */ DELETE FROM vms'), /capsul delete-vm/);
  });

  it("sends the catalogue to a migration and anything else it does not recognise to capsul's commands", () => {
    assert.match(adviceFor(`INSERT INTO vm_sizes VALUES ('f9', 1, 1, 1, 1)`), /the catalogue through a migration/);
    assert.match(adviceFor(`SELECT nextval('payment_ids')`), /capsul's commands/);
  });
});
