// The outbox on disk: what is added survives a reopen in order, leaves only when removed, and is bounded.
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { Outbox } from '../../src/spoke/outbox.ts';
import type { Report } from '../../src/spoke/protocol.ts';
import { tempDataDir } from './support.ts';

let data: ReturnType<typeof tempDataDir>;
let lines: string[];
beforeEach(() => {
  data = tempDataDir();
  lines = [];
});
afterEach(() => data.remove());

const dir = () => path.join(data.dir, 'outbox');
const rejectedDir = () => path.join(data.dir, 'outbox-rejected');
const open = (maxReports?: number, maxSetAside?: number) =>
  Outbox.open(dir(), { log: (line) => lines.push(line), maxReports, maxSetAside });
const state = (id: string, operationId: string | null = null): Report => ({
  id,
  vmId: 'capsul-aaaaaaaaaa',
  operationId,
  observedAt: '2031-01-01T00:00:00.000Z',
  type: 'state',
  state: 'running',
});
const ids = (reports: Report[]) => reports.map((report) => report.id);

describe('outbox', () => {
  it('keeps reports across a reopen, oldest first', () => {
    const outbox = open();
    for (const id of ['c-3', 'a-1', 'b-2']) outbox.add(state(id));
    const reopened = open();
    assert.deepEqual(ids(reopened.oldest(10)), ['c-3', 'a-1', 'b-2']);
    reopened.add(state('d-4'));
    assert.deepEqual(ids(open().oldest(10)), ['c-3', 'a-1', 'b-2', 'd-4']);
  });

  it('hands out at most the batch asked for', () => {
    const outbox = open();
    for (let i = 0; i < 5; i++) outbox.add(state(`r-${i}`));
    assert.deepEqual(ids(outbox.oldest(2)), ['r-0', 'r-1']);
  });

  it('forgets a report only when it is removed, also on disk', () => {
    const outbox = open();
    outbox.add(state('r-1'));
    outbox.add(state('r-2'));
    outbox.remove(['r-1', 'never-there']);
    assert.deepEqual(ids(outbox.oldest(10)), ['r-2']);
    assert.deepEqual(ids(open().oldest(10)), ['r-2']);
    assert.equal(readdirSync(dir()).length, 1);
  });

  it('adds a report id only once', () => {
    const outbox = open();
    outbox.add(state('r-1'));
    outbox.add(state('r-1'));
    assert.equal(outbox.size, 1);
    assert.ok(outbox.has('r-1'));
  });

  it('refuses a report id that could escape its file name', () => {
    assert.throws(() => open().add(state('../../etc/passwd')), /not usable as a file name/);
  });

  it('discards a write a crash cut short and sets aside an unreadable report', () => {
    open().add(state('r-1'));
    writeFileSync(path.join(dir(), '.000000000002-r-2.json.123.tmp'), '{"id":"r-2"');
    writeFileSync(path.join(dir(), '000000000003-r-3.json'), '{"id":');
    const reopened = open();
    assert.deepEqual(ids(reopened.oldest(10)), ['r-1']);
    assert.deepEqual(readdirSync(dir()), ['000000000001-r-1.json']);
    assert.deepEqual(readdirSync(rejectedDir()).sort(), ['000000000003-r-3.json', '000000000003-r-3.reason.txt']);
    assert.match(readFileSync(path.join(rejectedDir(), '000000000003-r-3.reason.txt'), 'utf8'), /unreadable: /);
    assert.equal(reopened.wasSetAside('r-3'), false, "the hub never refused it: its operation's outcome may be queued again");
    assert.ok(lines.some((line) => line.includes('unreadable report')));
  });

  it('sets aside a report the hub refuses, unchanged and with its reason, logged once, and remembers it across a reopen', () => {
    const outbox = open();
    outbox.add(state('r-1'));
    outbox.add(state('r-2'));
    const stored = readFileSync(path.join(dir(), '000000000001-r-1.json'), 'utf8');
    outbox.reject('r-1', 'error contains U+0000 (a control character) at position 3');
    assert.deepEqual(ids(outbox.oldest(10)), ['r-2']);
    assert.deepEqual(readdirSync(rejectedDir()).sort(), ['000000000001-r-1.json', '000000000001-r-1.reason.txt']);
    assert.equal(readFileSync(path.join(rejectedDir(), '000000000001-r-1.json'), 'utf8'), stored, 'kept as it was queued');
    assert.match(
      readFileSync(path.join(rejectedDir(), '000000000001-r-1.reason.txt'), 'utf8'),
      /^\S+Z error contains U\+0000 \(a control character\) at position 3\n$/,
    );
    assert.equal(lines.filter((line) => line.includes('r-1')).length, 1);
    assert.match(
      lines[0]!,
      /^report r-1 \(state of capsul capsul-aaaaaaaaaa\) refused by the hub, set aside in .*outbox-rejected: error contains U\+0000/,
    );
    assert.ok(outbox.wasSetAside('r-1'));
    const reopened = open();
    assert.ok(reopened.wasSetAside('r-1'));
    assert.deepEqual(ids(reopened.oldest(10)), ['r-2']);
  });

  it('sends a set-aside report again once an operator moves it back into the outbox', () => {
    const outbox = open();
    outbox.add(state('r-1'));
    outbox.reject('r-1', 'HTTP 400');
    renameSync(path.join(rejectedDir(), '000000000001-r-1.json'), path.join(dir(), '000000000001-r-1.json'));
    const reopened = open();
    assert.deepEqual(ids(reopened.oldest(10)), ['r-1']);
    assert.equal(reopened.wasSetAside('r-1'), false);
  });

  it('keeps at most maxSetAside reports set aside, deleting the oldest with a log line', () => {
    const outbox = open(undefined, 2);
    for (const id of ['r-1', 'r-2', 'r-3']) {
      outbox.add(state(id));
      outbox.reject(id, 'refused');
    }
    assert.deepEqual(
      readdirSync(rejectedDir())
        .filter((name) => name.endsWith('.json'))
        .sort(),
      ['000000000002-r-2.json', '000000000003-r-3.json'],
    );
    assert.equal(readdirSync(rejectedDir()).length, 4, 'reasons go with their reports');
    assert.equal(outbox.wasSetAside('r-1'), false);
    assert.ok(lines.some((line) => /holds more than 2 reports: deleted the oldest, 000000000001-r-1\.json/.test(line)));
  });

  it('when full, drops the oldest plain observation first and says so', () => {
    const outbox = open(3);
    outbox.add(state('outcome-1', 'op-1'));
    outbox.add(state('seen-1'));
    outbox.add(state('seen-2'));
    outbox.add(state('seen-3'));
    assert.deepEqual(ids(outbox.oldest(10)), ['outcome-1', 'seen-2', 'seen-3']);
    assert.equal(lines.length, 1);
    assert.match(
      lines[0]!,
      /outbox full \(3 reports waiting for the hub\): dropped report seen-1 \(state of capsul capsul-aaaaaaaaaa observed at 2031-01-01T00:00:00.000Z\)/,
    );
  });

  it('when full of operation outcomes, drops the oldest (the journal can queue it again)', () => {
    const outbox = open(2);
    outbox.add(state('outcome-1', 'op-1'));
    outbox.add(state('outcome-2', 'op-2'));
    outbox.add(state('outcome-3', 'op-3'));
    assert.deepEqual(ids(outbox.oldest(10)), ['outcome-2', 'outcome-3']);
  });
});
