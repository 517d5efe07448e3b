// The balance warning levels as Given (the account's events) / When (evaluated at an instant, with an
// overdraft) / Then (the level, and whether it is still to issue in this episode). Prices are chosen so
// the arithmetic reads: $30.44 a month is exactly $1.00 a day (a month is 30.44 days).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { AccountEvent, WarningLevel } from '../../src/domain/account/events.ts';
import { accountAsOf, dayMs, evaluateAccount, warningLevelOf, warningToIssue, weekMs } from '../../src/domain/account/policy.ts';

const accountId = '5b1c7e0a-0000-4000-8000-00000000a11c';
const t0 = Date.parse('2030-01-01T00:00:00Z');
const iso = (ms: number) => new Date(ms).toISOString();
/** Rounding half up: the balance shows $0.00 half a cent before the exact charge reaches it (at $1/day, 432 s). */
const halfCentAtOneDollarADayMs = dayMs / 200;

const opened = (): AccountEvent => ({ type: 'AccountOpened', data: { accountId, email: 'alice@example.org', at: iso(t0) } });
let nextPaymentId = 1;
const paid = (amountCents: number, atMs = t0): AccountEvent => ({
  type: 'PaymentRecorded',
  data: { accountId, paymentId: nextPaymentId++, amountCents, provider: 'manual', reference: null, at: iso(atMs), recordedAt: iso(atMs) },
});
const created = (vmId: string, priceCentsPerMonth: number, atMs = t0): AccountEvent => ({
  type: 'VmCreationRequested',
  data: { accountId, vmId, size: 'f1-s', os: 'debian12', sshPublicKeys: ['ssh-ed25519 AAAA test'], priceCentsPerMonth, at: iso(atMs) },
});
const deleted = (vmId: string, atMs: number): AccountEvent => ({
  type: 'VmDeletionRequested',
  data: { accountId, vmId, at: iso(atMs) },
});
const warned = (level: WarningLevel, atMs: number): AccountEvent => ({
  type: 'BalanceWarningIssued',
  data: { accountId, level, balanceCents: 0, at: iso(atMs) },
});

const oneDollarADay = 3044;

/** Given the account's events, when evaluated `afterMs` after t0 with an overdraft, then … */
function given(...events: AccountEvent[]) {
  return {
    when(afterMs: number, overdraftCents = -1000) {
      const atMs = t0 + afterMs;
      const evaluation = evaluateAccount(accountAsOf(events, atMs), atMs, overdraftCents);
      return {
        evaluation,
        // biome-ignore lint/suspicious/noThenProperty: the spec reads given/when/then; it is never awaited
        then(level: WarningLevel | null, toIssue: WarningLevel | null = level) {
          assert.equal(evaluation.level, level, 'level');
          assert.equal(evaluation.toIssue, toIssue, 'to issue');
        },
      };
    },
  };
}

describe('balance warning levels', () => {
  it('none for an account with nothing running and money left', () => {
    given(opened(), paid(500)).when(0).then(null);
  });

  it('none for an account with nothing running, even below the overdraft: its balance cannot fall', () => {
    given(opened(), paid(10_000), created('capsul-aaaaaaaaaa', oneDollarADay), deleted('capsul-aaaaaaaaaa', t0 + 30 * dayMs))
      .when(60 * dayMs)
      .then(null);
  });

  it('none while the credit lasts more than a week', () => {
    const account = given(opened(), paid(800), created('capsul-aaaaaaaaaa', oneDollarADay));
    account.when(0).then(null);
    // $8.00 at $1/day lasts 8 days less half a cent's rounding: a week and a bit.
    account.when(dayMs - halfCentAtOneDollarADayMs - 1).then(null);
  });

  it('runs out within a week from exactly seven days before the credit runs out', () => {
    const account = given(opened(), paid(700), created('capsul-aaaaaaaaaa', oneDollarADay));
    const evaluation = account.when(0).evaluation;
    assert.equal(evaluation.runsOutAtMs, t0 + weekMs - halfCentAtOneDollarADayMs);
    account.when(0).then('runs-out-within-week');
    given(opened(), paid(701), created('capsul-aaaaaaaaaa', oneDollarADay)).when(0).then(null);
  });

  it('runs out within a day from 24 hours before the credit runs out', () => {
    const account = given(opened(), paid(700), created('capsul-aaaaaaaaaa', oneDollarADay));
    const runsOutMs = weekMs - halfCentAtOneDollarADayMs;
    account.when(runsOutMs - dayMs - 1).then('runs-out-within-week');
    account.when(runsOutMs - dayMs).then('runs-out-within-day');
    account.when(runsOutMs - 1).then('runs-out-within-day');
  });

  it('out of funds once the balance is zero or less', () => {
    const account = given(opened(), paid(700), created('capsul-aaaaaaaaaa', oneDollarADay));
    const runsOutMs = weekMs - halfCentAtOneDollarADayMs;
    assert.equal(account.when(runsOutMs).evaluation.balanceCents, 0);
    account.when(runsOutMs).then('out-of-funds');
  });

  it('deletion within a week once the balance reaches the overdraft within seven days at the running rate', () => {
    // $7.00, $1/day, overdraft -$10.00: zero after 7 days, -$10.00 after 17 (each less half a cent).
    const account = given(opened(), paid(700), created('capsul-aaaaaaaaaa', oneDollarADay));
    const overdraftMs = 17 * dayMs - halfCentAtOneDollarADayMs;
    account.when(overdraftMs - weekMs - 1).then('out-of-funds');
    account.when(overdraftMs - weekMs).then('deletion-within-week');
    assert.equal(account.when(overdraftMs - weekMs).evaluation.reachesOverdraftAtMs, t0 + overdraftMs);
  });

  it('deletion now at the overdraft or below it', () => {
    const account = given(opened(), paid(700), created('capsul-aaaaaaaaaa', oneDollarADay));
    const overdraftMs = 17 * dayMs - halfCentAtOneDollarADayMs;
    assert.equal(account.when(overdraftMs - 1).evaluation.balanceCents, -999);
    account.when(overdraftMs - 1).then('deletion-within-week');
    assert.equal(account.when(overdraftMs).evaluation.balanceCents, -1000);
    account.when(overdraftMs).then('deletion-now');
    account.when(40 * dayMs).then('deletion-now');
  });

  it('counts every running capsul in the rate, and none whose deletion was requested', () => {
    // Two capsuls at $1/day each: $14.00 lasts a week; with one deleted at once, two weeks.
    given(opened(), paid(1400), created('capsul-aaaaaaaaaa', oneDollarADay), created('capsul-bbbbbbbbbb', oneDollarADay))
      .when(0)
      .then('runs-out-within-week');
    const one = given(
      opened(),
      paid(1400),
      created('capsul-aaaaaaaaaa', oneDollarADay),
      created('capsul-bbbbbbbbbb', oneDollarADay),
      deleted('capsul-bbbbbbbbbb', t0),
    );
    one.when(0).then(null);
    assert.equal(one.when(0).evaluation.rateCentsPerMonth, oneDollarADay);
    assert.deepEqual(
      one.when(0).evaluation.running.map((vm) => vm.vmId),
      ['capsul-aaaaaaaaaa'],
    );
  });

  it('goes straight from running to deletion now when the overdraft is zero', () => {
    const account = given(opened(), paid(700), created('capsul-aaaaaaaaaa', oneDollarADay));
    account.when(weekMs - halfCentAtOneDollarADayMs - 1, 0).then('runs-out-within-day');
    account.when(weekMs - halfCentAtOneDollarADayMs, 0).then('deletion-now');
  });

  it('refuses a positive overdraft', () => {
    assert.throws(() => warningLevelOf({ balanceCents: 100, accruals: [], nowMs: t0, overdraftCents: 1 }), RangeError);
  });
});

describe('once per episode', () => {
  it('a level issued already is not issued again', () => {
    given(opened(), paid(700), created('capsul-aaaaaaaaaa', oneDollarADay), warned('runs-out-within-week', t0))
      .when(dayMs)
      .then('runs-out-within-week', null);
  });

  it('a lower level is not issued after a higher one in the same episode', () => {
    // $14.00 at $4/day: half a day left after 3 days ("within a day"); the $3/day capsul is then
    // deleted, and the $2.00 left lasts two days at $1/day ("within a week"), but the customer was
    // already told more.
    const events = [
      opened(),
      paid(1400),
      created('capsul-aaaaaaaaaa', oneDollarADay),
      created('capsul-bbbbbbbbbb', 3 * oneDollarADay),
      warned('runs-out-within-day', t0 + 3 * dayMs),
      deleted('capsul-bbbbbbbbbb', t0 + 3 * dayMs),
    ];
    given(...events)
      .when(3 * dayMs - 1)
      .then('runs-out-within-day');
    given(...events)
      .when(3 * dayMs)
      .then('runs-out-within-week', null);
    assert.equal(warningToIssue('runs-out-within-week', new Set(['out-of-funds'])), null);
    assert.equal(warningToIssue('out-of-funds', new Set(['deletion-within-week'])), null);
  });

  it('a higher level is issued after a lower one', () => {
    given(opened(), paid(700), created('capsul-aaaaaaaaaa', oneDollarADay), warned('runs-out-within-week', t0))
      .when(weekMs)
      .then('out-of-funds');
    assert.equal(warningToIssue('deletion-now', new Set(['runs-out-within-week', 'out-of-funds', 'deletion-within-week'])), 'deletion-now');
  });

  it('a top-up re-arms every level', () => {
    // Out of funds at -$1.00; a $1.00 top-up a day later leaves it out of funds: a new episode.
    const before = [opened(), paid(700), created('capsul-aaaaaaaaaa', oneDollarADay), warned('out-of-funds', t0 + 8 * dayMs)];
    given(...before)
      .when(9 * dayMs)
      .then('out-of-funds', null);
    const topUp = given(...before, paid(100, t0 + 9 * dayMs)).when(9 * dayMs);
    topUp.then('out-of-funds');
    assert.equal(topUp.evaluation.balanceCents, -100);
  });
});

describe('as of an instant', () => {
  it('folds only what had taken effect by then: later payments, warnings and deletions do not count', () => {
    const events = [
      opened(),
      paid(700),
      created('capsul-aaaaaaaaaa', oneDollarADay),
      warned('out-of-funds', t0 + 8 * dayMs),
      paid(5000, t0 + 9 * dayMs),
      deleted('capsul-aaaaaaaaaa', t0 + 10 * dayMs),
    ];
    const before = given(...events).when(8 * dayMs - 1);
    before.then('out-of-funds');
    assert.equal(before.evaluation.balanceCents, -100);
    assert.deepEqual(
      before.evaluation.running.map((vm) => vm.vmId),
      ['capsul-aaaaaaaaaa'],
    );
    given(...events)
      .when(8 * dayMs)
      .then('out-of-funds', null);
    given(...events)
      .when(9 * dayMs)
      .then(null);
    given(...events)
      .when(30 * dayMs)
      .then(null);
  });
});
