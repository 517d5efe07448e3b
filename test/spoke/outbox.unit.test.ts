// The outbox on disk: what is added survives a reopen in order, leaves only when removed, and is bounded.
import assert from 'node:assert/strict';
import { readdirSync, writeFileSync } from 'node:fs';
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
const open = (maxReports?: number) => Outbox.open(dir(), { log: (line) => lines.push(line), maxReports });
const state = (id: string, operationId: string | null = null): Report => ({
  id, vmId: 'capsul-aaaaaaaaaa', operationId, observedAt: '2031-01-01T00:00:00.000Z', type: 'state', state: 'running',
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
    assert.deepEqual(readdirSync(path.join(data.dir, 'outbox-rejected')), ['000000000003-r-3.json']);
    assert.ok(lines.some((line) => line.includes('unreadable report')));
  });

  it('sets aside a report the hub rejects, keeping it for the operator', () => {
    const outbox = open();
    outbox.add(state('r-1'));
    outbox.reject('r-1', 'HTTP 400');
    assert.equal(outbox.size, 0);
    assert.deepEqual(readdirSync(path.join(data.dir, 'outbox-rejected')), ['000000000001-r-1.json']);
    assert.ok(lines.some((line) => /report r-1 \(state of capsul capsul-aaaaaaaaaa\) rejected by the hub.*HTTP 400/.test(line)));
  });

  it('when full, drops the oldest plain observation first and says so', () => {
    const outbox = open(3);
    outbox.add(state('outcome-1', 'op-1'));
    outbox.add(state('seen-1'));
    outbox.add(state('seen-2'));
    outbox.add(state('seen-3'));
    assert.deepEqual(ids(outbox.oldest(10)), ['outcome-1', 'seen-2', 'seen-3']);
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, /outbox full \(3 reports waiting for the hub\): dropped report seen-1 \(state of capsul capsul-aaaaaaaaaa observed at 2031-01-01T00:00:00.000Z\)/);
  });

  it('when full of operation outcomes, drops the oldest (the journal can queue it again)', () => {
    const outbox = open(2);
    outbox.add(state('outcome-1', 'op-1'));
    outbox.add(state('outcome-2', 'op-2'));
    outbox.add(state('outcome-3', 'op-3'));
    assert.deepEqual(ids(outbox.oldest(10)), ['outcome-2', 'outcome-3']);
  });
});
