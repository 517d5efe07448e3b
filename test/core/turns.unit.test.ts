// Turns per key: one at a time per key, in arrival order, other keys meanwhile, nothing kept once idle.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TurnsPerKey } from '../../src/core/turns.ts';

/** A promise and the function that settles it. */
function latch(): { promise: Promise<void>; open: () => void } {
  let open = () => {};
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

describe('TurnsPerKey', () => {
  it('runs one piece of work per key at a time, in arrival order', async () => {
    const turns = new TurnsPerKey();
    const order: string[] = [];
    const first = latch();
    const a = turns.take('k', async () => {
      order.push('a starts');
      await first.promise;
      order.push('a ends');
    });
    const b = turns.take('k', async () => {
      order.push('b starts');
    });
    const c = turns.take('k', async () => {
      order.push('c starts');
    });
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(order, ['a starts'], 'b and c wait for a');
    first.open();
    await Promise.all([a, b, c]);
    assert.deepEqual(order, ['a starts', 'a ends', 'b starts', 'c starts']);
  });

  it('lets other keys go on meanwhile', async () => {
    const turns = new TurnsPerKey();
    const held = latch();
    const slow = turns.take('one', () => held.promise);
    assert.equal(await turns.take('two', async () => 'done'), 'done');
    held.open();
    await slow;
  });

  it('hands back what the work returns or throws, and a failure does not stop the next turn', async () => {
    const turns = new TurnsPerKey();
    const failed = turns.take('k', async () => {
      throw new Error('no');
    });
    const next = turns.take('k', async () => 42);
    await assert.rejects(failed, /no/);
    assert.equal(await next, 42);
  });

  it('keeps nothing for a key once its work is done', async () => {
    const turns = new TurnsPerKey();
    const held = latch();
    const running = turns.take('k', () => held.promise);
    const waiting = turns.take('k', async () => {});
    assert.equal(turns.busyKeys, 1);
    held.open();
    await Promise.all([running, waiting]);
    assert.equal(turns.busyKeys, 0);
    await assert.rejects(
      turns.take('k', async () => {
        throw new Error('failed');
      }),
    );
    assert.equal(turns.busyKeys, 0);
  });
});
