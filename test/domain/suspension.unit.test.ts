// Suspend, grace, then delete (src/domain/account/policy.ts nonpaymentStepOf, enforced by the account
// decider) as Given / When / Then, and as properties over random histories. Prices read as in
// account-policy.unit.test.ts: $30.44 a month is $1.00 a day, so $10 of credit runs out on day 10 (the
// suspension point, $0) and the overdraft (-$10) comes on day 20; a grace of 7 days ends on day 17,
// before it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DeciderSpecification } from '@event-driven-io/emmett';
import fc from 'fast-check';
import { decideAccount, type AccountCommand } from '../../src/domain/account/decider.ts';
import type { AccountEvent } from '../../src/domain/account/events.ts';
import { dayMs, nonpaymentReason, nonpaymentStepOf, type NonpaymentRules } from '../../src/domain/account/policy.ts';
import { balanceCentsAt, evolveAccount, initialAccount, type Account } from '../../src/domain/account/state.ts';
import { DomainError } from '../../src/domain/shared/errors.ts';
import { sshKey } from '../support/db.ts';
import { failsWith } from '../support/domain-error.ts';

const given = DeciderSpecification.for({ decide: decideAccount, evolve: evolveAccount, initialState: initialAccount });

const accountId = '5b1c7e0a-0000-4000-8000-00000000a11c';
const vmId = 'capsul-a1b2c3d4e5';
const t0 = Date.parse('2030-01-01T00:00:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString();
const day = (n: number) => t0 + n * dayMs;
const rules: NonpaymentRules = { suspensionPointCents: 0, graceMs: 7 * dayMs, overdraftCents: -1000 };
const job = { by: { kind: 'job' as const, id: 'balance-warnings' } };

const opened: AccountEvent = { type: 'AccountOpened', data: { accountId, email: 'alice@example.org', at: iso(t0) } };
const paid = (amountCents: number, paymentId = 1, atMs = t0): AccountEvent => ({
  type: 'PaymentRecorded',
  data: { accountId, paymentId, amountCents, provider: 'manual', reference: null, at: iso(atMs), recordedAt: iso(atMs) },
});
const created = (id = vmId, atMs = t0): AccountEvent => ({
  type: 'VmCreationRequested',
  data: {
    accountId,
    vmId: id,
    size: 'f1-s',
    os: 'debian12',
    sshPublicKeys: ['ssh-ed25519 AAAA test'],
    priceCentsPerMonth: 3044,
    at: iso(atMs),
  },
});
/** $10 of credit and one capsul at $1.00 a day from t0. */
const running = [opened, paid(1000), created()];

const suspend = (atMs: number, with_: Partial<NonpaymentRules> = {}): AccountCommand => ({
  type: 'SuspendAccount',
  data: { ...rules, ...with_ },
  metadata: { now: new Date(atMs), cause: job },
});
const resume = (atMs: number): AccountCommand => ({ type: 'ResumeAccount', data: {}, metadata: { now: new Date(atMs), cause: job } });
const deleteForNonpayment = (atMs: number, id = vmId): AccountCommand => ({
  type: 'RequestVmDeletion',
  data: { vmId: id, overdraftCents: rules.overdraftCents },
  metadata: { now: new Date(atMs), cause: { ...job, reason: nonpaymentReason } },
});
const suspended = (atMs: number, balanceCents: number, vmIds = [vmId], graceDays = 7): AccountEvent => ({
  type: 'AccountSuspended',
  data: {
    accountId,
    vmIds,
    balanceCents,
    suspensionPointCents: 0,
    overdraftCents: -1000,
    deleteAfter: iso(atMs + graceDays * dayMs),
    at: iso(atMs),
  },
});
const resumed = (atMs: number, balanceCents: number, vmIds = [vmId]): AccountEvent => ({
  type: 'AccountResumed',
  data: { accountId, vmIds, balanceCents, suspensionPointCents: 0, at: iso(atMs) },
});
const deleted = (atMs: number, id = vmId): AccountEvent => ({ type: 'VmDeletionRequested', data: { accountId, vmId: id, at: iso(atMs) } });

describe('suspension', () => {
  it('suspends the running capsuls when the balance reaches the suspension point, deletion due at the end of grace', () => {
    given(running)
      .when(suspend(day(10)))
      .then([suspended(day(10), 0)]);
    given(running)
      .when(suspend(day(12)))
      .then([suspended(day(12), -200)]);
  });

  it('refuses a suspension the account is not due: credit left, nothing running, or past the overdraft (deletion is due)', () => {
    given(running)
      .when(suspend(day(9)))
      .thenThrows(failsWith('refused', /is due nothing at 2030-01-10T00:00:00\.000Z \(balance 1\.00\), not a suspension/));
    given([opened, paid(1000), created(), deleted(day(2))])
      .when(suspend(day(30)))
      .thenThrows(failsWith('refused', /due nothing/));
    given(running)
      .when(suspend(day(20)))
      .thenThrows(failsWith('refused', /is due a delete .* not a suspension/));
  });

  it('changes nothing when asked again while suspended', () => {
    given([...running, suspended(day(10), 0)])
      .when(suspend(day(11)))
      .then([]);
  });

  it('refuses rules that are not rules: a suspension point above zero or below the overdraft, no grace', () => {
    given(running)
      .when(suspend(day(10), { suspensionPointCents: 100 }))
      .thenThrows(failsWith('invalid', /suspension point is whole cents at or above the overdraft \(-1000\) and at most zero, not 100/));
    given(running)
      .when(suspend(day(10), { suspensionPointCents: -1001 }))
      .thenThrows(failsWith('invalid', /not -1001/));
    given(running)
      .when(suspend(day(10), { graceMs: 0 }))
      .thenThrows(failsWith('invalid', /grace period is a positive number/));
  });
});

describe('resumption', () => {
  it('resumes a suspended account once a top-up brings it above the suspension point, starting the capsuls it stopped', () => {
    given([...running, suspended(day(10), 0), paid(2000, 2, day(11))])
      .when(resume(day(12)))
      .then([resumed(day(12), 1800)]);
  });

  it('refuses while the balance is still at or below the point, and changes nothing when not suspended', () => {
    given([...running, suspended(day(10), 0), paid(100, 2, day(11))])
      .when(resume(day(12)))
      .thenThrows(failsWith('refused', /balance -1\.00 is not above the suspension point 0\.00: add funds first/));
    given(running)
      .when(resume(day(5)))
      .then([]);
  });

  it('starts only the capsuls still there: one deleted during the suspension stays deleted', () => {
    const other = 'capsul-zzzzzzzzzz';
    given([
      opened,
      paid(2000),
      created(),
      created(other),
      suspended(day(10), 0, [vmId, other]),
      deleted(day(11), other),
      paid(5000, 2, day(12)),
    ])
      .when(resume(day(12)))
      .then([resumed(day(12), 4700, [vmId])]);
  });
});

describe('a suspension point at the overdraft', () => {
  it('suspends nothing: at that balance the deletion is due first (OVERDRAFT_DOLLARS=0 deletes as the credit runs out)', () => {
    given(running)
      .when(suspend(day(10), { suspensionPointCents: 0, overdraftCents: 0 }))
      .thenThrows(failsWith('refused', /is due a delete/));
  });
});

describe('deletion for nonpayment', () => {
  it('comes at the end of grace for a suspended account still at or below the point, not a moment before', () => {
    const history = [...running, suspended(day(10), 0)];
    given(history)
      .when(deleteForNonpayment(day(16.9)))
      .thenThrows(failsWith('refused', /its suspension's grace runs until 2030-01-18T00:00:00\.000Z: no deletion for nonpayment/));
    given(history)
      .when(deleteForNonpayment(day(17)))
      .then([deleted(day(17))]);
  });

  it('is refused to an account that is not suspended, until the overdraft', () => {
    given(running)
      .when(deleteForNonpayment(day(15)))
      .thenThrows(failsWith('refused', /and the account is not suspended: no deletion for nonpayment/));
    given(running)
      .when(deleteForNonpayment(day(20)))
      .then([deleted(day(20))]);
  });

  it('comes at the overdraft even within grace (a chargeback can take the balance straight past it)', () => {
    // $10 and $20 of credit run out on day 30: suspended then; the $20 is charged back on day 31.
    const chargedBack: AccountEvent = { type: 'PaymentInvalidated', data: { accountId, paymentId: 2, at: iso(day(31)) } };
    given([...running, paid(2000, 2, day(1)), suspended(day(30), 0), chargedBack])
      .when(deleteForNonpayment(day(31)))
      .then([deleted(day(31))]);
  });

  it('is refused after a top-up above the point, even past the grace, before the resumption is recorded', () => {
    given([...running, suspended(day(10), 0), paid(2000, 2, day(16))])
      .when(deleteForNonpayment(day(18)))
      .thenThrows(failsWith('refused', /above the suspension point 0\.00: no deletion for nonpayment/));
  });
});

// ---- properties: a job that asks the rules at random instants, over random histories

type Step =
  | { kind: 'pay'; cents: number; lateDays: number }
  | { kind: 'invalidate'; payment: number }
  | { kind: 'create' }
  | { kind: 'delete-own' }
  | { kind: 'job' };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('pay' as const),
      cents: fc.integer({ min: 100, max: 5000 }),
      lateDays: fc.integer({ min: 0, max: 5 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('invalidate' as const), payment: fc.integer({ min: 1, max: 6 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('create' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('delete-own' as const) }) },
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('job' as const) }) },
);

type Run = { events: AccountEvent[]; at: number[]; state: Account; deletions: { atMs: number; account: Account }[] };

/** Decides and folds one command; a refusal changes nothing. */
function apply(run: Run, command: AccountCommand): AccountEvent[] {
  try {
    const events = decideAccount(command, run.state);
    for (const event of events) {
      if (event.type === 'VmDeletionRequested' && command.metadata?.cause.reason === nonpaymentReason)
        run.deletions.push({ atMs: command.metadata.now.getTime(), account: run.state });
      run.events.push(event);
      run.at.push(command.metadata!.now.getTime());
      run.state = evolveAccount(run.state, event);
    }
    return events;
  } catch (error) {
    if (error instanceof DomainError) return [];
    throw error;
  }
}

/** What the balance-warnings job does with an account at `nowMs`: the rules' step, acted on. */
function runJob(run: Run, nowMs: number): void {
  const step = nonpaymentStepOf(run.state, nowMs, rules);
  const now = new Date(nowMs);
  if (step?.step === 'suspend') apply(run, suspend(nowMs));
  if (step?.step === 'resume') apply(run, resume(nowMs));
  if (step?.step === 'delete')
    for (const vm of [...run.state.vms.values()].filter((v) => v.deletionRequestedAtMs === null && v.vanishedAtMs === null))
      apply(run, { ...deleteForNonpayment(nowMs, vm.vmId), metadata: { now, cause: { ...job, reason: nonpaymentReason } } });
}

function simulate(steps: Step[], gapsHours: number[]): Run {
  const run: Run = { events: [], at: [], state: initialAccount(), deletions: [] };
  let nowMs = t0;
  let payments = 0;
  let vms = 0;
  const pay = (cents: number, atMs: number) =>
    apply(run, {
      type: 'RecordPayment',
      data: {
        accountId,
        email: 'alice@example.org',
        paymentId: ++payments,
        amountCents: cents,
        provider: 'manual',
        reference: null,
        receivedAt: new Date(atMs),
      },
      metadata: { now: new Date(nowMs), cause: job },
    });
  pay(4000, t0);
  const create = (now: Date) =>
    apply(run, {
      type: 'RequestVmCreation',
      data: {
        vmId: `capsul-${String(++vms).padStart(10, '0')}`,
        size: 'f1-s',
        os: 'debian12',
        sshPublicKeys: [sshKey],
        priceCentsPerMonth: 3044,
      },
      metadata: { now, cause: job },
    });
  create(new Date(t0)); // every history spends from the start
  steps.forEach((step, i) => {
    nowMs += (gapsHours[i % gapsHours.length] ?? 12) * 3600_000;
    const now = new Date(nowMs);
    switch (step.kind) {
      case 'pay':
        pay(step.cents, nowMs - step.lateDays * dayMs);
        break;
      case 'invalidate':
        apply(run, {
          type: 'InvalidatePayment',
          data: { paymentId: step.payment },
          metadata: { now, cause: { ...job, reason: 'chargeback' } },
        });
        break;
      case 'create':
        create(now);
        break;
      case 'delete-own': {
        const vm = [...run.state.vms.values()].find((v) => v.deletionRequestedAtMs === null);
        if (vm)
          apply(run, {
            type: 'RequestVmDeletion',
            data: { vmId: vm.vmId },
            metadata: { now, cause: { by: { kind: 'customer', id: accountId }, reason: 'mine' } },
          });
        break;
      }
      case 'job':
        runJob(run, nowMs);
        break;
    }
  });
  return run;
}

const histories = fc.tuple(
  fc.array(stepArb, { minLength: 1, maxLength: 200, size: 'large' }),
  fc.array(fc.integer({ min: 1, max: 96 }), { minLength: 1, maxLength: 8 }),
);

describe('suspension: properties over random histories', () => {
  it('the histories reach every step: suspensions, resumptions, deletions at the end of grace and at the overdraft', () => {
    const seen = { suspended: 0, resumed: 0, graceEnded: 0, overdraft: 0 };
    fc.assert(
      fc.property(histories, ([steps, gaps]) => {
        const run = simulate(steps, gaps);
        seen.suspended += run.events.filter((e) => e.type === 'AccountSuspended').length;
        seen.resumed += run.events.filter((e) => e.type === 'AccountResumed').length;
        for (const { atMs, account } of run.deletions) {
          if (balanceCentsAt(account, atMs) <= rules.overdraftCents) seen.overdraft++;
          else seen.graceEnded++;
        }
      }),
      { numRuns: 300, seed: 7 },
    );
    for (const [what, count] of Object.entries(seen)) assert.ok(count > 0, `no ${what} in 300 histories: ${JSON.stringify(seen)}`);
  });

  it('no capsul is deleted for nonpayment unless suspended for the whole grace, or at the overdraft', () => {
    fc.assert(
      fc.property(histories, ([steps, gaps]) => {
        const run = simulate(steps, gaps);
        for (const { atMs, account } of run.deletions) {
          const balance = balanceCentsAt(account, atMs);
          const graced =
            account.suspension !== null && atMs - account.suspension.atMs >= rules.graceMs && balance <= rules.suspensionPointCents;
          assert.ok(
            graced || balance <= rules.overdraftCents,
            `deleted at ${iso(atMs)} with balance ${balance}, suspension ${JSON.stringify(account.suspension)}`,
          );
        }
      }),
    );
  });

  it('a top-up that brings the balance above the point before deletion always resumes: the next look resumes, and nothing is deleted', () => {
    fc.assert(
      fc.property(histories, fc.integer({ min: 2000, max: 50_000 }), ([steps, gaps], topUp) => {
        const run = simulate(steps, gaps);
        if (run.state.suspension === null) return;
        const nowMs = (run.at.at(-1) ?? t0) + 3600_000;
        const before = run.deletions.length;
        const balance = balanceCentsAt(run.state, nowMs);
        if (balance + topUp <= rules.suspensionPointCents) return;
        apply(run, {
          type: 'RecordPayment',
          data: {
            accountId,
            email: 'alice@example.org',
            paymentId: 999,
            amountCents: topUp,
            provider: 'manual',
            reference: null,
            receivedAt: new Date(nowMs),
          },
          metadata: { now: new Date(nowMs), cause: job },
        });
        assert.deepEqual(nonpaymentStepOf(run.state, nowMs, rules), { step: 'resume' });
        runJob(run, nowMs);
        assert.equal(run.state.suspension, null, 'resumed');
        assert.equal(run.deletions.length, before, 'nothing deleted');
        assert.equal(run.events.at(-1)?.type, 'AccountResumed');
      }),
    );
  });

  it('a suspension always stops what was running, and a resumption starts only capsuls the suspension stopped', () => {
    fc.assert(
      fc.property(histories, ([steps, gaps]) => {
        const run = simulate(steps, gaps);
        let stopped = new Set<string>();
        for (const event of run.events) {
          if (event.type === 'AccountSuspended') stopped = new Set(event.data.vmIds);
          if (event.type === 'AccountResumed') for (const id of event.data.vmIds) assert.ok(stopped.has(id), `${id} was not suspended`);
        }
      }),
    );
  });
});
