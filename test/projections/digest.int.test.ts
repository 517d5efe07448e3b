// A table's digest computed by the database over its rows equals the one computed in memory over the
// rows that were written, for every type the projections use; it differs when a row differs, and when
// memory holds a value it cannot encode as the database would, the digests differ rather than agree.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { columnsOf, liveDigest, ReplayDigests, sameDigest } from '../../src/projections/digest.ts';
import { testDatabase, type TestDatabase } from '../support/db.ts';

let db: TestDatabase;
before(async () => {
  db = await testDatabase();
});
after(() => db.close());

const table = `CREATE TEMP TABLE sample (
  id text, n integer, big bigint, money numeric(10,2), flag boolean, at timestamptz, doc jsonb, keys text[], valid tstzrange
) ON COMMIT DROP`;

const instant = fc
  .tuple(
    fc.integer({ min: Date.UTC(1900, 0, 1), max: Date.UTC(2200, 0, 1) }),
    fc.constantFrom('', '.5', '.123', '.123456', '.000001'),
    fc.constantFrom('Z', '+02:00', '-05:30', '+00:00'),
  )
  .map(([ms, fraction, zone]) => `${new Date(ms).toISOString().slice(0, 19)}${fraction}${zone}`);
const text = fc.string({ unit: 'binary', maxLength: 12 }).filter((s) => !s.includes('\u0000') && s.isWellFormed());
const json: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.constant(null),
    fc.boolean(),
    fc.integer(),
    text,
    fc.array(tie('value'), { maxLength: 3 }),
    fc.dictionary(text, tie('value'), { maxKeys: 4 }),
  ),
})).value;
const range = fc
  .tuple(fc.option(instant, { nil: '' }), fc.option(instant, { nil: '' }), fc.constantFrom('-infinity', ''))
  .map(([from, to, lowest]) => `[${from === '' ? lowest : from},${to})`);
const row = fc.record({
  id: text,
  n: fc.option(fc.integer(), { nil: null }),
  big: fc.option(fc.oneof(fc.maxSafeInteger(), fc.bigInt({ min: -(2n ** 62n), max: 2n ** 62n }).map(String)), { nil: null }),
  money: fc.option(
    fc
      .integer({ min: -99_999_999, max: 99_999_999 })
      .map((c) => `${c < 0 ? '-' : ''}${Math.floor(Math.abs(c) / 100)}.${String(Math.abs(c) % 100).padStart(2, '0')}`),
    { nil: null },
  ),
  flag: fc.option(fc.boolean(), { nil: null }),
  at: fc.option(fc.oneof(instant, fc.constantFrom('infinity', '-infinity')), { nil: null }),
  doc: fc.option(json, { nil: null }),
  keys: fc.option(fc.array(fc.option(text, { nil: null }), { maxLength: 3 }), { nil: null }),
  valid: fc.option(range, { nil: null }),
});

/**
 * Both digests of `rows` written into the sample table, as a rebuild writes rows (json_populate_recordset);
 * the replay's hashes `chunkRows` to a statement.
 */
async function digests(rows: Record<string, unknown>[], edit?: string, chunkRows?: number) {
  const client = await db.admin.connect();
  await client.query('BEGIN');
  try {
    await client.query(table);
    await client.query('INSERT INTO sample SELECT * FROM json_populate_recordset(NULL::sample, $1::json)', [JSON.stringify(rows)]);
    if (edit) await client.query(edit);
    const columns = (await columnsOf(client, ['sample'])).get('sample')!;
    const replay = await ReplayDigests.start(client, new Map([['sample', columns]]), { chunkRows });
    for (const r of rows) replay.add('sample', r);
    return { live: await liveDigest(client, 'sample', columns), memory: (await replay.digests()).get('sample')! };
  } finally {
    await client.query('ROLLBACK');
    client.release();
  }
}

describe('row digests', () => {
  it('the database and memory agree on the same rows, whatever their order and however the hashes are sent', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(row, { maxLength: 20 }), fc.integer({ min: 1, max: 6 }), async (rows, chunkRows) => {
        // Ranges the database would find empty or reversed are not rows a fold makes; it refuses the reversed ones.
        const valid = rows.filter((r) => r.valid === null || !reversed(r.valid));
        const { live, memory } = await digests(valid, undefined, chunkRows);
        assert.ok(sameDigest(live, memory), `${JSON.stringify(valid)}: ${JSON.stringify(live)} vs ${JSON.stringify(memory)}`);
        const { live: again } = await digests([...valid].reverse());
        assert.ok(sameDigest(again, memory));
      }),
      { numRuns: 60 },
    );
  });

  it('differ when a row differs in any column, or one is missing or added', async () => {
    const rows = [
      {
        id: 'a',
        n: 1,
        big: '9007199254740993',
        money: '5.00',
        flag: true,
        at: '2026-01-01T00:00:00.123456Z',
        doc: { b: [1, 'x'], a: null },
        keys: ['k'],
        valid: '[-infinity,2026-02-01T00:00:00.000Z)',
      },
      { id: 'b', n: null, big: null, money: null, flag: null, at: null, doc: null, keys: null, valid: null },
    ];
    assert.ok(sameDigest(...(Object.values(await digests(rows)) as [never, never])));
    for (const edit of [
      "UPDATE sample SET n = 2 WHERE id = 'a'",
      "UPDATE sample SET big = big + 1 WHERE id = 'a'",
      "UPDATE sample SET money = 5.01 WHERE id = 'a'",
      "UPDATE sample SET flag = false WHERE id = 'a'",
      "UPDATE sample SET at = at + interval '1 microsecond' WHERE id = 'a'",
      `UPDATE sample SET doc = '{"a": null, "b": [1, "y"]}' WHERE id = 'a'`,
      "UPDATE sample SET keys = '{k,l}' WHERE id = 'a'",
      "UPDATE sample SET valid = '[-infinity,2026-02-01 00:00:01+00)' WHERE id = 'a'",
      "UPDATE sample SET id = 'c' WHERE id = 'b'",
      "UPDATE sample SET n = 0 WHERE id = 'b'",
      "UPDATE sample SET keys = '{}' WHERE id = 'b'",
      "DELETE FROM sample WHERE id = 'b'",
      'INSERT INTO sample (id) VALUES (NULL)',
      "INSERT INTO sample (id) VALUES ('b')",
    ]) {
      const { live, memory } = await digests(rows, edit);
      assert.equal(sameDigest(live, memory), false, edit);
    }
  });

  it('a value memory cannot encode as the database would makes them differ, never agree', async () => {
    // The database reads each of these as the same instant or number; memory does not try to.
    for (const [column, value] of [
      ['at', '2026-01-01 00:00:00+00'],
      ['at', '2026-01-01T00:00:00.1234567Z'],
      ['money', '05.00'],
      ['doc', 1.5],
      ['n', '007'],
    ] as const) {
      const { live, memory } = await digests([{ id: 'a', [column]: value }]);
      assert.equal(sameDigest(live, memory), false, `${column} ${value}`);
      assert.equal(memory.rows, 1);
    }
  });
});

function reversed(range: string): boolean {
  const [from, to] = range.slice(1, -1).split(',');
  return from !== '-infinity' && from !== '' && to !== '' && Date.parse(from!) >= Date.parse(to!);
}
