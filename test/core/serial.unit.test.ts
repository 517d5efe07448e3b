// Serial (src/core/serial.ts): rounds never overlap, pokes during a round fold into one more, a failed
// round is logged and the next poke tries again, and stop waits for the round under way.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Serial } from '../../src/core/serial.ts';

/** A round that waits until released, counting how many started and how many ran at once. */
function gatedRounds() {
  const state = { started: 0, running: 0, mostAtOnce: 0, release: () => {} };
  const round = async () => {
    state.started++;
    state.running++;
    state.mostAtOnce = Math.max(state.mostAtOnce, state.running);
    await new Promise<void>((resolve) => (state.release = resolve));
    state.running--;
  };
  return { state, round };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('Serial', () => {
  it('runs a round when poked, and one more for any number of pokes during it', async () => {
    const { state, round } = gatedRounds();
    const serial = new Serial('test rounds', round, () => {});
    serial.poke();
    assert.equal(state.started, 1);
    serial.poke();
    serial.poke();
    serial.poke();
    state.release();
    await tick();
    assert.equal(state.started, 2, 'three pokes during the first round asked for one more');
    state.release();
    await tick();
    assert.equal(state.started, 2, 'and no more');
    assert.equal(state.mostAtOnce, 1);
  });

  it('logs a failed round in one line and runs again at the next poke', async () => {
    const lines: string[] = [];
    let rounds = 0;
    const serial = new Serial(
      'test rounds',
      async () => {
        if (++rounds === 1) throw new Error('the database is away');
      },
      (line) => lines.push(line),
    );
    serial.poke();
    await tick();
    assert.deepEqual(lines, ['test rounds failed, will retry: the database is away']);
    serial.poke();
    await tick();
    assert.equal(rounds, 2);
  });

  it('stop waits for the round under way, and later pokes do nothing', async () => {
    const { state, round } = gatedRounds();
    const serial = new Serial('test rounds', round, () => {});
    serial.poke();
    serial.poke(); // asks for one more, which stop cancels
    let stopped = false;
    const stopping = serial.stop().then(() => (stopped = true));
    await tick();
    assert.equal(stopped, false, 'waits for the round under way');
    state.release();
    await stopping;
    serial.poke();
    assert.equal(state.started, 1);
  });
});
