// One way to the event store: only src/db/event-store.ts names emmett's tables (emt_streams,
// emt_messages …). A statement anywhere else would bypass the append's checks and the log's order.
// The import directions are checked by dependency-cruiser (npm run lint, .dependency-cruiser.cjs);
// this is the one rule about text rather than imports.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const srcDir = fileURLToPath(new URL('../../src/', import.meta.url));
const eventStoreModule = path.join('db', 'event-store.ts');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const file = path.join(dir, name);
    if (statSync(file).isDirectory()) return sourceFiles(file);
    return /\.(ts|mjs|js)$/.test(name) ? [file] : [];
  });
}

/** The files under `dir` other than the event-store module that name an emt_ table, with the line. */
function namingTheEventStore(dir: string): string[] {
  return sourceFiles(dir)
    .filter((file) => path.relative(dir, file) !== eventStoreModule)
    .flatMap((file) =>
      readFileSync(file, 'utf8')
        .split('\n')
        .flatMap((line, index) => (/\bemt_[a-z_]+/.test(line) ? [`${path.relative(dir, file)}:${index + 1}: ${line.trim()}`] : [])),
    );
}

describe('the event store has one module', () => {
  it("names emmett's emt_ tables in src/db/event-store.ts only", () => {
    assert.deepEqual(namingTheEventStore(srcDir), []);
  });

  it('finds a statement naming emt_messages anywhere else (the check can fail)', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'capsul-layers-'));
    try {
      mkdirSync(path.join(dir, 'db'));
      mkdirSync(path.join(dir, 'jobs'));
      writeFileSync(path.join(dir, 'db', 'event-store.ts'), "const sql = 'SELECT * FROM emt_messages';\n");
      writeFileSync(path.join(dir, 'jobs', 'sneaky.ts'), "// fine\nawait pool.query('DELETE FROM emt_streams');\n");
      assert.deepEqual(namingTheEventStore(dir), ["jobs/sneaky.ts:2: await pool.query('DELETE FROM emt_streams');"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
