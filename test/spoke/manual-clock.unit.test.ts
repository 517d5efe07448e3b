// The manual clock the simulated driver's tests run on: time moves only when told, timers fire in order.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../../src/spoke/drivers/manual-clock.ts';

describe('ManualClock', () => {
  it('fires due timers in due order, the first set first on a tie, with now at each one’s due time', () => {
    const clock = new ManualClock(1_000);
    const fired: string[] = [];
    clock.setTimeout(() => fired.push(`b@${clock.now()}`), 20);
    clock.setTimeout(() => fired.push(`a@${clock.now()}`), 10);
    clock.setTimeout(() => fired.push(`c@${clock.now()}`), 20);
    clock.advance(25);
    assert.deepEqual(fired, ['a@1010', 'b@1020', 'c@1020']);
    assert.equal(clock.now(), 1_025);
  });

  it('leaves timers that are not yet due', () => {
    const clock = new ManualClock();
    let fired = false;
    clock.setTimeout(() => (fired = true), 10);
    clock.advance(9);
    assert.equal(fired, false);
    assert.equal(clock.pendingTimers, 1);
  });

  it('fires a timer set by another timer when it falls due within the same advance', () => {
    const clock = new ManualClock();
    const fired: number[] = [];
    clock.setTimeout(() => clock.setTimeout(() => fired.push(clock.now()), 5), 5);
    clock.advance(10);
    assert.deepEqual(fired, [10]);
  });

  it('never fires a cleared timer', () => {
    const clock = new ManualClock();
    let fired = false;
    const handle = clock.setTimeout(() => (fired = true), 10);
    clock.clearTimeout(handle);
    clock.advance(10);
    assert.equal(fired, false);
  });
});
