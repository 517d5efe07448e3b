// The billing invariant of a capsul that vanishes from its host, as properties: whatever the order in
// which its host's "gone" reports reach the account (any observed time, before or after its creation, a
// deletion request or the instant the hub hears of it; the same one twice; an earlier one after a later
// one) and whether or not its deletion is requested, the charges never go negative and never exceed its
// price for the time it existed: from its creation until the earliest of its deletion request and the
// earliest instant its host saw it gone (never later than the hub heard of it). Now, in the past and
// ahead, and the same from the events folded as of any instant.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { decideAccount, type AccountCommand } from '../../src/domain/account/decider.ts';
import type { AccountEvent } from '../../src/domain/account/events.ts';
import { activeVms, balanceCentsAt, evolveAccount, initialAccount, type Account } from '../../src/domain/account/state.ts';
import { monthMs, roundCents } from '../../src/domain/shared/billing.ts';

const testCause = { by: { kind: 'job', id: 'vanished' } } as const;

const accountId = '5b1c7e0a-0000-4000-8000-00000000a11c';
const vmId = 'capsul-a1b2c3d4e5';
const sshKey = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGXFnmVAFEyC3Q4wOWRj3Gu6CtR0KxxLxGmhB/ZXZ7mX alice@laptop';
const paidCents = 100_000_000; // a million dollars: every creation is covered
const t0 = Date.parse('2031-03-01T00:00:00.000Z');
const dayMs = 86_400_000;

type Step = { kind: 'vanished'; gapMs: number; observedOffsetMs: number; repeat: boolean } | { kind: 'deletion'; gapMs: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({
    kind: fc.constant('vanished' as const),
    gapMs: fc.integer({ min: 0, max: 40 * dayMs }),
    // The host's time relative to when the report arrives: from two months before (even before the
    // capsul was created) to a month ahead (a host whose clock runs fast).
    observedOffsetMs: fc.integer({ min: -2 * monthMs, max: monthMs }),
    repeat: fc.boolean(),
  }),
  fc.record({ kind: fc.constant('deletion' as const), gapMs: fc.integer({ min: 0, max: 40 * dayMs }) }),
);

/** Decides and folds, as handleCommand does, keeping every event appended. */
function run(commands: AccountCommand[]): { state: Account; events: AccountEvent[] } {
  let state = initialAccount();
  const events: AccountEvent[] = [];
  for (const command of commands) {
    for (const event of decideAccount(command, state)) {
      events.push(event);
      state = evolveAccount(state, event);
    }
  }
  return { state, events };
}

type Scenario = { priceCentsPerMonth: number; createdAtMs: number; commands: AccountCommand[]; existedUntilMs: number; lastMs: number };

/** The commands in arrival order, and the instant the capsul stopped existing (or being billed) by the oracle's own reckoning. */
function scenario(priceCentsPerMonth: number, createGapMs: number, steps: Step[]): Scenario {
  const createdAtMs = t0 + createGapMs;
  const commands: AccountCommand[] = [
    {
      type: 'RecordPayment',
      data: {
        accountId,
        email: 'alice@example.org',
        paymentId: 1,
        amountCents: paidCents,
        provider: 'manual',
        reference: null,
        receivedAt: new Date(t0),
      },
      metadata: { now: new Date(t0), cause: testCause },
    },
    {
      type: 'RequestVmCreation',
      data: { vmId, size: 'f1-xs', os: 'debian12', sshPublicKeys: [sshKey], priceCentsPerMonth },
      metadata: { now: new Date(createdAtMs), cause: testCause },
    },
  ];
  let nowMs = createdAtMs;
  let existedUntilMs = Number.POSITIVE_INFINITY;
  let lastObservedMs: number | null = null;
  for (const s of steps) {
    nowMs += s.gapMs;
    if (s.kind === 'deletion') {
      commands.push({
        type: 'RequestVmDeletion',
        data: { vmId },
        metadata: { now: new Date(nowMs), cause: { ...testCause, reason: 'no longer needed' } },
      });
      existedUntilMs = Math.min(existedUntilMs, nowMs); // billed until the first request only (later ones change nothing)
      continue;
    }
    const observedMs: number = s.repeat && lastObservedMs !== null ? lastObservedMs : nowMs + s.observedOffsetMs;
    lastObservedMs = observedMs;
    commands.push({
      type: 'EndVmAccrual',
      data: { vmId, vanishedAt: new Date(observedMs), host: 'spoke-a', reportId: null },
      metadata: { now: new Date(nowMs), cause: testCause },
    });
    // It cannot have stopped existing before it was created, nor after the hub heard it had.
    existedUntilMs = Math.min(existedUntilMs, Math.min(Math.max(observedMs, createdAtMs), nowMs));
  }
  return { priceCentsPerMonth, createdAtMs, commands, existedUntilMs, lastMs: nowMs };
}

/** The instants worth looking at: around creation, around the end, around the last command, and far ahead. */
function instantsOf(s: Scenario): number[] {
  const around = (ms: number) => [ms - 1, ms, ms + 1];
  const end = Number.isFinite(s.existedUntilMs) ? around(s.existedUntilMs) : [];
  // From the payment on (t0), so that the charges are what the payment no longer covers.
  return [t0, ...around(s.createdAtMs), ...end, ...around(s.lastMs), s.lastMs + 10 * 12 * monthMs].filter((ms) => ms >= t0);
}

/** The oracle: its price for the time it existed up to `atMs`, rounded once, half up. */
function existedCharge(s: Scenario, atMs: number): number {
  const billedMs = Math.max(0, Math.min(atMs, s.existedUntilMs) - s.createdAtMs);
  return roundCents(BigInt(s.priceCentsPerMonth) * BigInt(billedMs));
}

const scenarios = fc
  .tuple(fc.integer({ min: 1, max: 1_000_000 }), fc.integer({ min: 0, max: 30 * dayMs }), fc.array(step, { maxLength: 8 }))
  .map(([price, createGapMs, steps]) => scenario(price, createGapMs, steps));

describe('the charges of a capsul that vanishes', () => {
  it('never go negative and never exceed its price for the time it existed, at any instant', () => {
    fc.assert(
      fc.property(scenarios, (s) => {
        const { state } = run(s.commands);
        for (const atMs of instantsOf(s)) {
          const charges = paidCents - balanceCentsAt(state, atMs);
          assert.ok(charges >= 0, `negative charges at ${atMs}`);
          assert.equal(charges, existedCharge(s, atMs), `charges at ${new Date(atMs).toISOString()}`);
        }
      }),
    );
  });

  it('never decrease as time goes on', () => {
    fc.assert(
      fc.property(scenarios, fc.array(fc.integer({ min: 0, max: 24 * monthMs }), { minLength: 2, maxLength: 10 }), (s, offsets) => {
        const { state } = run(s.commands);
        const instants = offsets.map((offset) => t0 + offset).sort((a, b) => a - b);
        const charges = instants.map((atMs) => paidCents - balanceCentsAt(state, atMs));
        return charges.every((charge, i) => i === 0 || charge >= charges[i - 1]!);
      }),
    );
  });

  it('are the same folded as of any instant (the past as it stood) as from the whole stream', () => {
    fc.assert(
      fc.property(scenarios, (s) => {
        const { state, events } = run(s.commands);
        for (const atMs of instantsOf(s)) {
          const asOf = events
            .filter((e) => e.type === 'AccountOpened' || Date.parse(e.data.at) <= atMs)
            .reduce(evolveAccount, initialAccount());
          assert.equal(balanceCentsAt(asOf, atMs), balanceCentsAt(state, atMs));
        }
      }),
    );
  });

  it('do not depend on the order or the repetition of its end facts', () => {
    fc.assert(
      fc.property(scenarios, fc.integer({ min: 0, max: 1000 }), (s, seed) => {
        const { state, events } = run(s.commands);
        const ends = events.filter((e) => e.type === 'VmAccrualEnded');
        const rest = events.filter((e) => e.type !== 'VmAccrualEnded');
        // The ends reversed, rotated and each twice, after everything else.
        const shuffled = [...ends].reverse();
        const rotated =
          shuffled.length === 0 ? [] : [...shuffled.slice(seed % shuffled.length), ...shuffled.slice(0, seed % shuffled.length)];
        const refolded = [...rest, ...rotated, ...rotated].reduce(evolveAccount, initialAccount());
        return instantsOf(s).every((atMs) => balanceCentsAt(refolded, atMs) === balanceCentsAt(state, atMs));
      }),
    );
  });

  it('end its claim on the balance: a capsul ended in either way no longer counts as running', () => {
    fc.assert(
      fc.property(scenarios, (s) => {
        const { state } = run(s.commands);
        return activeVms(state).length === (Number.isFinite(s.existedUntilMs) ? 0 : 1);
      }),
    );
  });

  it('records one end fact per earlier instant, none for a report that ends nothing sooner', () => {
    fc.assert(
      fc.property(scenarios, (s) => {
        const { events } = run(s.commands);
        const ends = events.filter((e) => e.type === 'VmAccrualEnded').map((e) => Date.parse(e.data.at));
        return ends.every((atMs, i) => i === 0 || atMs < ends[i - 1]!);
      }),
    );
  });
});
