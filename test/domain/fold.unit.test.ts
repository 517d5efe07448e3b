// Linear folds (src/domain/shared/fold.ts): each decider's `fold` is its `evolve` applied event by event,
// whatever the events, and never changes the state it starts from (a cached state is shared).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { accountDecider } from '../../src/domain/account/decider.ts';
import { holdDecider } from '../../src/domain/hold/decider.ts';
import { hostDecider } from '../../src/domain/host/decider.ts';
import { vmDecider } from '../../src/domain/vm/decider.ts';
import { accountEvents, hostEvents, vmEvents } from '../support/event-arbitraries.ts';

type Foldable<S, E> = { fold: (state: S, events: Iterable<E>) => S; evolve: (state: S, event: E) => S; initialState: () => S };

function foldProperties<S, E>(name: string, decider: Foldable<S, E>, events: fc.Arbitrary<E[]>) {
  describe(`${name}: the linear fold`, () => {
    it('equals evolve applied event by event', () => {
      fc.assert(
        fc.property(events, (list) => {
          assert.deepStrictEqual(decider.fold(decider.initialState(), list), list.reduce(decider.evolve, decider.initialState()));
        }),
        { numRuns: 300 },
      );
    });

    it('from a state folded earlier equals one fold from the start, and leaves that state as it was', () => {
      fc.assert(
        fc.property(events, events, (before, after) => {
          const earlier = decider.fold(decider.initialState(), before);
          const untouched = structuredClone(earlier);
          const continued = decider.fold(earlier, after);
          assert.deepStrictEqual(continued, decider.fold(decider.initialState(), [...before, ...after]));
          assert.deepStrictEqual(earlier, untouched);
        }),
        { numRuns: 300 },
      );
    });

    it('folds no events to an equal state that is not the same object', () => {
      const state = decider.fold(decider.initialState(), []);
      assert.deepStrictEqual(state, decider.initialState());
      const again = decider.fold(state, []);
      assert.notEqual(again, state);
    });
  });
}

foldProperties('account', accountDecider, accountEvents());
foldProperties('capsul', vmDecider, vmEvents());
foldProperties('host', hostDecider, hostEvents());

describe('hold: the linear fold', () => {
  it('equals evolve applied event by event and leaves its input as it was', () => {
    const held = { type: 'PaymentHeld' as const, data: { holdId: 'stripe:pi_1' } } as Parameters<typeof holdDecider.evolve>[1];
    const resolved = { type: 'PaymentHoldResolved' as const, data: {} } as Parameters<typeof holdDecider.evolve>[1];
    const start = holdDecider.initialState();
    const folded = holdDecider.fold(start, [held, resolved]);
    assert.deepStrictEqual(folded, [held, resolved].reduce(holdDecider.evolve, holdDecider.initialState()));
    assert.deepStrictEqual(folded, { holdId: 'stripe:pi_1', resolved: true });
    assert.deepStrictEqual(start, holdDecider.initialState());
  });
});
