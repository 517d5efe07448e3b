// Backoff: doubling from the base to the cap, half of each wait random.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { abortableDelay, backoffMs } from '../../src/spoke/clock.ts';

describe('backoff', () => {
  it('doubles from 1 s up to 60 s, between half and all of the ceiling', () => {
    const ceilings = [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000];
    ceilings.forEach((ceilingMs, attempt) => {
      assert.equal(
        backoffMs(attempt, () => 0),
        ceilingMs / 2,
      );
      assert.equal(
        backoffMs(attempt, () => 1),
        ceilingMs,
      );
    });
  });

  it('stays capped however many attempts failed', () => {
    assert.equal(
      backoffMs(10_000, () => 1),
      60_000,
    );
  });

  it('honours another base and cap', () => {
    assert.equal(
      backoffMs(3, () => 1, 10, 100),
      80,
    );
    assert.equal(
      backoffMs(4, () => 1, 10, 100),
      100,
    );
  });
});

describe('abortable delay', () => {
  it('ends at once when aborted', async () => {
    const controller = new AbortController();
    const waiting = abortableDelay(60_000, controller.signal);
    controller.abort();
    await waiting;
    await abortableDelay(60_000, controller.signal); // already aborted: no wait at all
  });
});
