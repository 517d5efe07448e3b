// The guard on snapshots' shape versions: a fixed history of every event type folds to the state its
// fixture recorded for the codec's shape version. A change to a state's shape, its encoding or what
// `evolve` does with one of these events fails here until that decider's `shapeVersion` is bumped (stored
// snapshots of the old shape are then ignored) and the fixture written anew:
//   CAPSUL_WRITE_SNAPSHOT_FIXTURE=1 node --import tsx test/run.ts unit snapshot-shape
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { it } from 'node:test';
import fc from 'fast-check';
import { accountDecider } from '../../src/domain/account/decider.ts';
import { vmDecider } from '../../src/domain/vm/decider.ts';
import { accountEvents, vmEvents } from '../support/event-arbitraries.ts';

const file = new URL('./snapshot-shape.fixture.json', import.meta.url);
type Fixture = Record<'account' | 'capsul', { shapeVersion: number; events: unknown[]; state: unknown }>;
const deciders = { account: accountDecider, capsul: vmDecider } as const;

if (process.env.CAPSUL_WRITE_SNAPSHOT_FIXTURE === '1') {
  const [account] = fc.sample(accountEvents(40), { numRuns: 1, seed: 14 });
  const [capsul] = fc.sample(vmEvents(40), { numRuns: 1, seed: 14 });
  const entry = <S, E>(decider: (typeof deciders)[keyof typeof deciders], events: E[]) => {
    const d = decider as unknown as {
      fold: (s: S, e: E[]) => S;
      initialState: () => S;
      snapshot: { shapeVersion: number; encode: (s: S) => unknown };
    };
    return { shapeVersion: d.snapshot.shapeVersion, events, state: d.snapshot.encode(d.fold(d.initialState(), events)) };
  };
  writeFileSync(file, `${JSON.stringify({ account: entry(accountDecider, account!), capsul: entry(vmDecider, capsul!) }, null, 1)}\n`);
}

const fixture = JSON.parse(readFileSync(file, 'utf8')) as Fixture;

for (const name of ['account', 'capsul'] as const) {
  it(`${name}: a fixed history of every event type folds to the state recorded for shape version ${fixture[name].shapeVersion}`, () => {
    const decider = deciders[name] as unknown as {
      fold: (s: unknown, e: unknown[]) => unknown;
      initialState: () => unknown;
      snapshot: { shapeVersion: number; encode: (s: unknown) => unknown };
    };
    const { shapeVersion, events, state } = fixture[name];
    assert.equal(decider.snapshot.shapeVersion, shapeVersion, `a new shape version: write the fixture anew (see the top of this file)`);
    assert.ok(new Set(events.map((e) => (e as { type: string }).type)).size >= 9, 'the fixture covers the event types');
    assert.deepStrictEqual(
      decider.snapshot.encode(decider.fold(decider.initialState(), events)),
      state,
      `the ${name}'s state or its encoding changed: bump its snapshot shapeVersion, then write the fixture anew (see the top of this file)`,
    );
  });
}
