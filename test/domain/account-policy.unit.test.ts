// The account decider enforcing its money policies (src/domain/account/policy.ts) as Given / When /
// Then: a balance warning only at the level the account is due at the command's instant, once per
// episode; a deletion for nonpayment only at or below the overdraft. Prices are chosen so the arithmetic
// reads: $30.44 a month is exactly $1.00 a day, so $10 of credit runs out on day 10 and an overdraft of
// -$10 is reached on day 20.
import { describe, it } from 'node:test';
import { DeciderSpecification } from '@event-driven-io/emmett';
import { decideAccount, type AccountCommand } from '../../src/domain/account/decider.ts';
import type { AccountEvent, WarningLevel } from '../../src/domain/account/events.ts';
import { dayMs, nonpaymentReason } from '../../src/domain/account/policy.ts';
import { evolveAccount, initialAccount } from '../../src/domain/account/state.ts';
import { failsWith } from '../support/domain-error.ts';

const given = DeciderSpecification.for({ decide: decideAccount, evolve: evolveAccount, initialState: initialAccount });

const accountId = '5b1c7e0a-0000-4000-8000-00000000a11c';
const vmId = 'capsul-a1b2c3d4e5';
const t0 = Date.parse('2030-01-01T00:00:00.000Z');
const overdraftCents = -1000;
const iso = (ms: number) => new Date(ms).toISOString();
const day = (n: number) => t0 + n * dayMs;

const opened: AccountEvent = { type: 'AccountOpened', data: { accountId, email: 'alice@example.org', at: iso(t0) } };
const paid = (amountCents: number, paymentId = 1, atMs = t0): AccountEvent => ({
  type: 'PaymentRecorded',
  data: { accountId, paymentId, amountCents, provider: 'manual', reference: null, at: iso(atMs), recordedAt: iso(atMs) },
});
const created: AccountEvent = {
  type: 'VmCreationRequested',
  data: { accountId, vmId, size: 'f1-s', os: 'debian12', sshPublicKeys: ['ssh-ed25519 AAAA test'], priceCentsPerMonth: 3044, at: iso(t0) },
};
/** $10 of credit and one capsul at $1.00 a day from t0. */
const running = [opened, paid(1000), created];

const warn = (level: WarningLevel, atMs: number, overdraft = overdraftCents): AccountCommand => ({
  type: 'IssueBalanceWarning',
  data: { level, overdraftCents: overdraft },
  metadata: { now: new Date(atMs), cause: { by: { kind: 'job', id: 'balance-warnings' } } },
});
const warned = (level: WarningLevel, atMs: number, balanceCents: number): AccountEvent => ({
  type: 'BalanceWarningIssued',
  data: { accountId, level, balanceCents, at: iso(atMs) },
});
/** `overdraft` null: the command names none. */
const deleteForNonpayment = (atMs: number, overdraft: number | null = overdraftCents): AccountCommand => ({
  type: 'RequestVmDeletion',
  data: { vmId, ...(overdraft === null ? {} : { overdraftCents: overdraft }) },
  metadata: { now: new Date(atMs), cause: { by: { kind: 'job', id: 'balance-warnings' }, reason: nonpaymentReason } },
});
const deletedForNonpayment = (atMs: number): AccountEvent => ({
  type: 'VmDeletionRequested',
  data: { accountId, vmId, at: iso(atMs) },
});

describe('a balance warning is issued only at the level the account is due', () => {
  it('issues the level due at the command instant, with the balance then', () => {
    given(running)
      .when(warn('runs-out-within-week', day(5)))
      .then([warned('runs-out-within-week', day(5), 500)]);
    given(running)
      .when(warn('runs-out-within-day', day(9.5)))
      .then([warned('runs-out-within-day', day(9.5), 50)]);
    given(running)
      .when(warn('out-of-funds', day(11)))
      .then([warned('out-of-funds', day(11), -100)]);
    given(running)
      .when(warn('deletion-within-week', day(14)))
      .then([warned('deletion-within-week', day(14), -400)]);
    given(running)
      .when(warn('deletion-now', day(20)))
      .then([warned('deletion-now', day(20), -1000)]);
  });

  it('refuses a warning the account is not due at all', () => {
    given(running)
      .when(warn('runs-out-within-week', day(1)))
      .thenThrows(failsWith('refused', /is due no warning at 2030-01-02T00:00:00\.000Z, not runs-out-within-week/));
    given([opened, paid(1000)])
      .when(warn('out-of-funds', day(20)))
      .thenThrows(failsWith('refused', /due no warning/));
  });

  it('refuses a level other than the one due, lower or higher', () => {
    given(running)
      .when(warn('out-of-funds', day(5)))
      .thenThrows(failsWith('refused', /is due the runs-out-within-week warning .*, not out-of-funds/));
    given(running)
      .when(warn('runs-out-within-week', day(20)))
      .thenThrows(failsWith('refused', /is due the deletion-now warning/));
  });

  it('judges the level at the overdraft the command names', () => {
    given(running)
      .when(warn('deletion-now', day(14), -400))
      .then([warned('deletion-now', day(14), -400)]);
    given(running)
      .when(warn('deletion-now', day(14)))
      .thenThrows(failsWith('refused', /is due the deletion-within-week warning/));
  });

  it('changes nothing when that level, or a higher one, was issued already in this episode', () => {
    given([...running, warned('runs-out-within-week', day(4), 600)])
      .when(warn('runs-out-within-week', day(5)))
      .then([]);
    given([...running, warned('deletion-within-week', day(4), 600)])
      .when(warn('runs-out-within-week', day(5)))
      .then([]);
  });

  it('issues a level again after a top-up re-armed the warnings', () => {
    given([...running, warned('runs-out-within-week', day(4), 600), paid(200, 2, day(5))])
      .when(warn('runs-out-within-week', day(6)))
      .then([warned('runs-out-within-week', day(6), 600)]);
  });

  it('refuses an unknown level, an overdraft above zero, and an account that does not exist', () => {
    given(running)
      .when(warn('whenever' as WarningLevel, day(5)))
      .thenThrows(failsWith('invalid', /not a warning level/));
    given(running)
      .when(warn('runs-out-within-week', day(5), 100))
      .thenThrows(failsWith('invalid', /overdraft is zero or negative cents/));
    given([])
      .when(warn('out-of-funds', day(5)))
      .thenThrows(failsWith('not_found', /no account/));
  });
});

describe('a capsul is deleted for nonpayment only at or below the overdraft', () => {
  it('requests the deletion when the balance is at the overdraft, and below it', () => {
    given(running)
      .when(deleteForNonpayment(day(20)))
      .then([deletedForNonpayment(day(20))]);
    given(running)
      .when(deleteForNonpayment(day(25)))
      .then([deletedForNonpayment(day(25))]);
  });

  it('refuses it while the balance is above the overdraft, however low', () => {
    given(running)
      .when(deleteForNonpayment(day(19.9)))
      .thenThrows(
        failsWith(
          'refused',
          /the balance -9\.90 at .* is above the overdraft -10\.00 and the account is not suspended: no deletion for nonpayment/,
        ),
      );
    given(running)
      .when(deleteForNonpayment(day(5)))
      .thenThrows(failsWith('refused', /above the overdraft/));
  });

  it('judges it at the overdraft the command names', () => {
    given(running)
      .when(deleteForNonpayment(day(10), 0))
      .then([deletedForNonpayment(day(10))]);
  });

  it('refuses a deletion for nonpayment that names no overdraft, or one above zero', () => {
    given(running)
      .when(deleteForNonpayment(day(20), null))
      .thenThrows(failsWith('invalid', /names the overdraft/));
    given(running)
      .when(deleteForNonpayment(day(20), 500))
      .thenThrows(failsWith('invalid', /overdraft is zero or negative cents/));
  });

  it('changes nothing when the deletion was requested already, whatever the balance', () => {
    given([...running, deletedForNonpayment(day(20))])
      .when(deleteForNonpayment(day(5)))
      .then([]);
  });

  it('leaves deletions for any other reason to the customer or operator, whatever the balance', () => {
    given(running)
      .when({
        type: 'RequestVmDeletion',
        data: { vmId },
        metadata: { now: new Date(day(1)), cause: { by: { kind: 'customer', id: accountId }, reason: 'no longer needed' } },
      })
      .then([{ type: 'VmDeletionRequested', data: { accountId, vmId, at: iso(day(1)) } }]);
  });
});
