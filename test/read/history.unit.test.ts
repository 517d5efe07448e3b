// Which of a host's reports the history gathers into one line: runs of one capsul's reports of an
// unchanged state, never across a state change or across anything else that happened.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { LedgerEvent } from '../../src/domain/events.ts';
import type { ObservedState } from '../../src/domain/vm/events.ts';
import type { StoredEvent } from '../../src/db/event-store.ts';
import { groupRoutineReports, typesOfKind, type HistoryItem } from '../../src/read/history.ts';

let position = 0;
const stored = (event: LedgerEvent): StoredEvent => {
  position += 1;
  return {
    event,
    streamId: 'vm-test',
    streamPosition: position,
    globalPosition: String(position),
    transactionId: String(position),
    recordedAt: event.data.at,
    messageId: `m${position}`,
    metadata: {},
    storedData: event.data,
  };
};
const at = (minute: number) => new Date(Date.UTC(2026, 10, 1, 12, minute)).toISOString();
const seen = (vmId: string, state: ObservedState, minute: number) =>
  stored({ type: 'VmStateObserved', data: { vmId, host: 'host-a', state, at: at(minute) } } as LedgerEvent);
const startAsked = (vmId: string, minute: number) =>
  stored({ type: 'VmStartRequested', data: { vmId, host: 'host-a', operationId: 'op', at: at(minute) } });

/** The lines, as short text: `A running ×3 (12:05–12:03)` for a run, the event's type otherwise. */
const lines = (items: HistoryItem[]) =>
  items.map((item) =>
    item.kind === 'event'
      ? item.event.event.type
      : `${item.vmId} ${item.state} ×${item.count} (${item.newest.event.data.at.slice(11, 16)}–${item.oldest.event.data.at.slice(11, 16)})`,
  );

describe('grouping routine state reports', () => {
  it("gathers one capsul's reports of the same state in a row into one line, newest to oldest", () => {
    const events = [seen('A', 'running', 5), seen('A', 'running', 4), seen('A', 'running', 3)];
    assert.deepEqual(lines(groupRoutineReports(events)), ['A running ×3 (12:05–12:03)']);
  });

  it('never hides a state change: each state is a line of its own', () => {
    const events = [
      seen('A', 'running', 6),
      seen('A', 'running', 5),
      seen('A', 'stopped', 4),
      seen('A', 'stopped', 3),
      seen('A', 'running', 2),
    ];
    assert.deepEqual(lines(groupRoutineReports(events)), ['A running ×2 (12:06–12:05)', 'A stopped ×2 (12:04–12:03)', 'VmStateObserved']);
  });

  it('keeps a single report as the event it is', () => {
    const events = [seen('A', 'running', 2)];
    assert.deepEqual(groupRoutineReports(events), [{ kind: 'event', event: events[0] }]);
  });

  it("lets other capsuls' reports come between one capsul's, each capsul in its own run", () => {
    const events = [seen('A', 'running', 4), seen('B', 'stopped', 4), seen('A', 'running', 3), seen('B', 'stopped', 3)];
    assert.deepEqual(lines(groupRoutineReports(events)), ['A running ×2 (12:04–12:03)', 'B stopped ×2 (12:04–12:03)']);
  });

  it('ends every run at anything else that happened, so a line never spans it', () => {
    const events = [seen('A', 'running', 6), seen('A', 'running', 5), startAsked('B', 4), seen('A', 'running', 3), seen('A', 'running', 2)];
    assert.deepEqual(lines(groupRoutineReports(events)), ['A running ×2 (12:06–12:05)', 'VmStartRequested', 'A running ×2 (12:03–12:02)']);
  });

  it('loses and repeats nothing: the runs count every report once', () => {
    const events = [seen('A', 'running', 9), seen('B', 'running', 9), seen('A', 'running', 8), startAsked('A', 7), seen('B', 'running', 6)];
    const items = groupRoutineReports(events);
    const counted = items.reduce((sum, item) => sum + (item.kind === 'event' ? 1 : item.count), 0);
    assert.equal(counted, events.length);
  });
});

describe('kinds of history', () => {
  it('money is payments, their corrections and refunds, balance warnings, suspensions and resumptions', () => {
    assert.deepEqual(typesOfKind('money')?.sort(), [
      'AccountResumed',
      'AccountSuspended',
      'BalanceWarningIssued',
      'PaymentInvalidated',
      'PaymentRecorded',
      'PaymentRefunded',
      'PaymentReinstated',
    ]);
  });

  it("capsuls is every capsul's lifecycle, from the request to the deletion", () => {
    const capsuls = typesOfKind('capsuls') ?? [];
    for (const type of [
      'VmCreationRequested',
      'VmPlaced',
      'VmStateObserved',
      'VmStartRequested',
      'VmStopRequested',
      'VmDeletionRequested',
      'VmDeleted',
    ])
      assert.ok(capsuls.includes(type as LedgerEvent['type']), type);
    assert.ok(!capsuls.some((type) => type.startsWith('Payment') || type.startsWith('Host')));
  });

  it('all is every type, unfiltered', () => {
    assert.equal(typesOfKind('all'), null);
  });
});
