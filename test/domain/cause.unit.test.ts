// One cause per command: who acted and why, in the metadata only. Version 1 of three events also kept
// the reason in their data; reading them gives the current shape.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkedCause } from '../../src/domain/events.ts';
import { maxActorIdLength, maxReasonLength } from '../../src/domain/shared/text.ts';
import { currentEventVersion, upcast } from '../../src/domain/upcast.ts';
import { project } from '../../src/projections/project.ts';

describe('a cause', () => {
  it('is stored trimmed: who acted and the reason', () => {
    assert.deepEqual(checkedCause({ by: { kind: 'operator', id: '  alice ' }, reason: '  chargeback dp_1  ' }), {
      by: { kind: 'operator', id: 'alice' },
      reason: 'chargeback dp_1',
    });
  });

  it('has no reason unless one is given', () => {
    assert.deepEqual(checkedCause({ by: { kind: 'job', id: 'placement' } }), { by: { kind: 'job', id: 'placement' } });
  });

  for (const [label, cause, message] of [
    ['an empty reason', { by: { kind: 'operator', id: 'alice' }, reason: '  ' }, /^a reason is required$/],
    ['a reason of two lines', { by: { kind: 'operator', id: 'alice' }, reason: 'a\nb' }, /^a reason must be one line/],
    ['a reason too long', { by: { kind: 'operator', id: 'alice' }, reason: 'x'.repeat(maxReasonLength + 1) }, /at most/],
    ['an actor too long', { by: { kind: 'operator', id: 'x'.repeat(maxActorIdLength + 1) } }, /^who acted may be at most/],
    ['an actor with a bidi override', { by: { kind: 'operator', id: 'al\u202Eice' } }, /^who acted must be one line/],
  ] as const) {
    it(`refuses ${label}`, () =>
      assert.throws(
        () => checkedCause(cause),
        (error: Error) => message.test(error.message),
      ));
  }
});

describe('events written before the reason moved to the metadata (version 1)', () => {
  it('is version 2 now', () => assert.equal(currentEventVersion, 2));

  for (const type of ['PaymentInvalidated', 'PaymentReinstated', 'VmDeletionRequested'] as const) {
    it(`reads a version 1 ${type} without the reason in its data, leaving the stored data as it was`, () => {
      const stored = { accountId: 'a', paymentId: 1, vmId: 'capsul-aaaaaaaaaa', reason: 'chargeback', at: '2026-01-01T00:00:00.000Z' };
      const event = upcast(type, stored, 1);
      assert.equal(event.type, type);
      assert.ok(!('reason' in event.data), 'the reason is gone from the data');
      assert.equal(stored.reason, 'chargeback', 'what is stored (the audit log leaf) is untouched');
      assert.deepEqual(upcast(type, event.data as Record<string, unknown>, 2), event, 'version 2 reads as it is');
    });
  }

  it("projects a correction's and a deletion's reason from the cause", () => {
    const invalidated = upcast(
      'PaymentInvalidated',
      { accountId: 'a', paymentId: 1, reason: 'old copy', at: '2026-01-01T00:00:00.000Z' },
      1,
    );
    const [update] = project(invalidated, { reason: 'chargeback' });
    assert.equal(update?.kind === 'update' && update.set.invalidation_reason, 'chargeback');
    const deleted = upcast('VmDeletionRequested', { accountId: 'a', vmId: 'capsul-aaaaaaaaaa', at: '2026-01-01T00:00:00.000Z' }, 2);
    const [deletion] = project(deleted, { reason: 'no longer needed' });
    assert.equal(deletion?.kind === 'update' && deletion.set.deletion_reason, 'no longer needed');
  });
});
