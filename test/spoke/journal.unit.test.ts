// The journal on disk: operations started, accepted by the driver and finished survive a reopen; a
// torn last line is forgotten, a damaged one elsewhere stops the spoke; old finished ones are compacted.
import assert from 'node:assert/strict';
import { appendFileSync, readFileSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { Journal, JournalCorruptError } from '../../src/spoke/journal.ts';
import type { Report } from '../../src/spoke/protocol.ts';
import { operation, tempDataDir } from './support.ts';

let data: ReturnType<typeof tempDataDir>;
let lines: string[];
const open: Journal[] = [];
beforeEach(() => {
  data = tempDataDir();
  mkdirSync(data.dir, { recursive: true });
  lines = [];
});
afterEach(() => {
  for (const journal of open.splice(0)) journal.close();
  data.remove();
});

const file = () => path.join(data.dir, 'journal.jsonl');
const journal = (maxFinished?: number) => {
  const opened = Journal.open(file(), { log: (line) => lines.push(line), maxFinished });
  open.push(opened);
  return opened;
};
const deleted = (operationId: string): Report => ({
  id: `r-${operationId}`,
  vmId: 'capsul-aaaaaaaaaa',
  operationId,
  observedAt: '2031-01-01T00:00:00.000Z',
  type: 'deleted',
});

describe('journal', () => {
  it('remembers started, accepted and finished operations across a reopen', () => {
    const first = journal();
    const [a, b, c] = [
      operation('delete', 'capsul-aaaaaaaaaa'),
      operation('stop', 'capsul-bbbbbbbbbb'),
      operation('create', 'capsul-cccccccccc'),
    ];
    first.start(a, 1);
    first.start(b, 2);
    first.start(c, 3);
    first.called(a.id);
    first.called(c.id);
    first.finish(a.id, [deleted(a.id)]);
    first.close();

    const again = journal();
    assert.deepEqual(again.get(a.id), { operation: a, startedAtMs: 1, called: true, reports: [deleted(a.id)] });
    assert.deepEqual(
      again.unfinished().map((entry) => [entry.operation.id, entry.called]),
      [
        [b.id, false],
        [c.id, true],
      ],
    );
    assert.equal(again.get('unknown'), undefined);
  });

  it('refuses to start an operation twice or finish one never started', () => {
    const it = journal();
    const a = operation('stop', 'capsul-aaaaaaaaaa');
    it.start(a, 1);
    assert.throws(() => it.start(a, 2), /already started/);
    assert.throws(() => it.finish('other', []), /never started/);
    it.finish(a.id, []);
    assert.throws(() => it.finish(a.id, []), /already finished/);
  });

  it('forgets a last line cut short by a crash, and appends cleanly after it', () => {
    const first = journal();
    const a = operation('stop', 'capsul-aaaaaaaaaa');
    first.start(a, 1);
    first.close();
    appendFileSync(file(), '{"type":"finished","operationId":"');
    const second = journal();
    assert.equal(second.get(a.id)!.reports, null);
    assert.ok(lines.some((line) => line.includes('incomplete last line')));
    second.finish(a.id, [deleted(a.id)]);
    second.close();
    assert.deepEqual(journal().get(a.id)!.reports, [deleted(a.id)]);
  });

  it('refuses to open a journal damaged before its last line', () => {
    const first = journal();
    first.start(operation('stop', 'capsul-aaaaaaaaaa'), 1);
    first.close();
    writeFileSync(file(), `garbage\n${readFileSync(file(), 'utf8')}`);
    assert.throws(() => journal(), JournalCorruptError);
  });

  it('keeps every unfinished operation and only the latest finished ones', () => {
    const first = journal(2);
    const ops = Array.from({ length: 5 }, (_, i) => operation('stop', `capsul-${String(i).repeat(10)}`));
    ops.forEach((op, i) => {
      first.start(op, i);
    });
    for (const op of [ops[0]!, ops[2]!, ops[3]!, ops[4]!]) first.finish(op.id, [deleted(op.id)]);
    first.close();
    const again = journal(2);
    assert.equal(again.get(ops[0]!.id), undefined);
    assert.equal(again.get(ops[2]!.id), undefined);
    assert.ok(again.get(ops[1]!.id), 'unfinished, kept');
    assert.ok(again.get(ops[3]!.id));
    assert.ok(again.get(ops[4]!.id));
    assert.equal(readFileSync(file(), 'utf8').trim().split('\n').length, 5);
  });
});
