// Snapshot codecs (src/domain/shared/snapshot.ts): a folded state written as JSON and read back is the
// same state, iterating in the same order, and folding on from it is folding from the start; anything
// that is not what `encode` wrote is refused (SnapshotShapeError), never half read.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { accountDecider } from '../../src/domain/account/decider.ts';
import { accountSnapshot } from '../../src/domain/account/snapshot.ts';
import type { Account } from '../../src/domain/account/state.ts';
import { SnapshotShapeError, type SnapshotCodec } from '../../src/domain/shared/snapshot.ts';
import { vmDecider } from '../../src/domain/vm/decider.ts';
import { rememberedStateReports, type Vm } from '../../src/domain/vm/state.ts';
import { vmSnapshot } from '../../src/domain/vm/snapshot.ts';
import { accountEvents, vmEvents } from '../support/event-arbitraries.ts';

/** Through JSON text, as the snapshot travels to the database and back. */
const roundTrip = <S>(codec: SnapshotCodec<S>, state: S): S => codec.decode(JSON.parse(JSON.stringify(codec.encode(state))));

/** Every Map's and Set's entries in order: deepStrictEqual does not compare their order. */
function iterationOrder(value: unknown): unknown {
  if (value instanceof Map) return [...value].map(([key, entry]) => [key, iterationOrder(entry)]);
  if (value instanceof Set) return [...value];
  if (Array.isArray(value)) return value.map(iterationOrder);
  if (typeof value === 'object' && value !== null) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, iterationOrder(v)]));
  return value;
}

function roundTripProperties<S, E>(
  name: string,
  codec: SnapshotCodec<S>,
  decider: { fold: (state: S, events: Iterable<E>) => S; initialState: () => S },
  events: fc.Arbitrary<E[]>,
) {
  describe(`${name} snapshot`, () => {
    it('reads back as the state folded, in the same order, and folding on from it equals one fold from the start', () => {
      fc.assert(
        fc.property(events, events, (before, after) => {
          const folded = decider.fold(decider.initialState(), before);
          const read = roundTrip(codec, folded);
          assert.deepStrictEqual(read, folded);
          assert.deepStrictEqual(iterationOrder(read), iterationOrder(folded));
          const onward = decider.fold(read, after);
          const whole = decider.fold(decider.initialState(), [...before, ...after]);
          assert.deepStrictEqual(onward, whole);
          assert.deepStrictEqual(iterationOrder(onward), iterationOrder(whole));
        }),
        { numRuns: 300 },
      );
    });
  });
}

roundTripProperties('account', accountSnapshot, accountDecider, accountEvents());
roundTripProperties('capsul', vmSnapshot, vmDecider, vmEvents());

describe('a snapshot that is not as written is refused', () => {
  const account = (): Record<string, unknown> =>
    accountSnapshot.encode(
      accountDecider.fold(accountDecider.initialState(), [
        { type: 'AccountOpened', data: { accountId: 'a', email: 'a@example.org', at: '2026-01-01T00:00:00Z' } },
        {
          type: 'PaymentRecorded',
          data: {
            accountId: 'a',
            paymentId: 7,
            amountCents: 2000,
            provider: 'stripe',
            reference: 'pi_1',
            at: '2026-01-02T00:00:00Z',
            recordedAt: '2026-01-02T00:00:00Z',
          },
        },
      ]),
    ) as Record<string, unknown>;
  const refusals: [string, (json: Record<string, unknown>) => unknown][] = [
    ['not an object', () => [1, 2]],
    ['null', () => null],
    ['a field missing', ({ statementEmails: _, ...rest }) => rest],
    ['a field of another type', (json) => ({ ...json, statementEmails: 'yes' })],
    ['a payment row too short', (json) => ({ ...json, payments: [[7, 2000, 'stripe', 'pi_1', 0, []]] })],
    ['an amount that is text', (json) => ({ ...json, payments: [[7, '2000', 'stripe', 'pi_1', 0, [], []]] })],
    ['an unknown provider', (json) => ({ ...json, payments: [[7, 2000, 'paypal', 'pi_1', 0, [], []]] })],
    ['an unknown warning level', (json) => ({ ...json, warningsIssued: ['doom'] })],
    ['an instant that is not a number', (json) => ({ ...json, vms: [['capsul-x', 'f1-xs', 'debian12', 500, null, null, null]] })],
  ];
  for (const [what, change] of refusals) {
    it(`account: ${what}`, () => {
      assert.throws(() => accountSnapshot.decode(change(account())), SnapshotShapeError);
    });
  }

  it('capsul: an unknown state, report ids that are not text, an unknown operation kind, more recent state reports than a capsul keeps', () => {
    const vm = vmSnapshot.encode(vmDecider.initialState()) as Record<string, unknown>;
    assert.deepStrictEqual(vmSnapshot.decode(vm), vmDecider.initialState() satisfies Vm);
    for (const bad of [
      { ...vm, state: 'exploded' },
      { ...vm, reportIds: [1] },
      { ...vm, openOperations: [['op-1', 'reboot']] },
      { ...vm, recentStateReports: [7] },
      { ...vm, recentStateReports: Array.from({ length: rememberedStateReports + 1 }, (_, i) => `report-${i}`) },
    ]) {
      assert.throws(() => vmSnapshot.decode(bad), SnapshotShapeError);
    }
  });

  it('reads back an account as it was written (the round trip of a known state)', () => {
    const state: Account = accountSnapshot.decode(account());
    assert.equal(state.payments.get(7)?.amountCents, 2000);
    assert.equal(state.references.get('pi_1'), 7);
  });
});
