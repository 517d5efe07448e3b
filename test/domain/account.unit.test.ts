// The account decider as Given / When / Then: payments and their corrections, capsul creation against
// the balance, deletion requests, the end of a vanished capsul's charges; then the balance at any
// instant, folded from the same events.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { DeciderSpecification } from '@event-driven-io/emmett';
import { maxReasonLength } from '../../src/domain/shared/text.ts';
import type { Cause } from '../../src/domain/events.ts';
import {
  decideAccount,
  type AccountCommand,
  type EndVmAccrual,
  type InvalidatePayment,
  type RecordPayment,
  type ReinstatePayment,
  type RequestVmCreation,
  type RequestVmDeletion,
} from '../../src/domain/account/decider.ts';
import type {
  AccountEvent,
  AccountOpened,
  PaymentInvalidated,
  PaymentRecorded,
  PaymentReinstated,
  VmAccrualEnded,
  VmCreationRequested,
  VmDeletionRequested,
} from '../../src/domain/account/events.ts';
import { balanceCentsAt, evolveAccount, initialAccount } from '../../src/domain/account/state.ts';
import { monthMs } from '../../src/domain/shared/billing.ts';
import { maxPaymentCents } from '../../src/domain/shared/money.ts';
import { maxSshKeysPerCapsul } from '../../src/domain/shared/ssh.ts';
import { failsWith } from '../support/domain-error.ts';

const given = DeciderSpecification.for({ decide: decideAccount, evolve: evolveAccount, initialState: initialAccount });

// emmett's `then` matches each expected event as a subset of an actual one: it cannot expect a null
// field, nor that an array holds nothing more. The few tests about those compare whole events instead.
const decideAfter = (events: AccountEvent[], command: AccountCommand) =>
  decideAccount(command, events.reduce(evolveAccount, initialAccount()));

const accountId = '5b1c7e0a-0000-4000-8000-00000000a11c';
const email = 'alice@example.org';
const vmId = 'capsul-a1b2c3d4e5';
const otherVmId = 'capsul-f6g7h8i9j0';
const f1xsCentsPerMonth = 533;
const t0 = new Date('2026-01-01T00:00:00.000Z');
const minuteMs = 60_000;
const after = (ms: number) => new Date(t0.getTime() + ms);
const iso = (date: Date) => date.toISOString();

/** An OpenSSH ed25519 public key line: the wire blob is string(type) + string(32 key bytes). */
function ed25519Key(comment = ''): string {
  const sshString = (bytes: Buffer) => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(bytes.length);
    return Buffer.concat([length, bytes]);
  };
  const blob = Buffer.concat([sshString(Buffer.from('ssh-ed25519')), sshString(randomBytes(32))]).toString('base64');
  return comment ? `ssh-ed25519 ${blob} ${comment}` : `ssh-ed25519 ${blob}`;
}
const aliceKey = ed25519Key('alice@laptop');

// Commands: time and cause always arrive in the metadata.
const operator: Cause = { by: { kind: 'operator', id: 'alice' } };
const customer: Cause = { by: { kind: 'customer', id: accountId } };

const recordPayment = (data: Partial<RecordPayment['data']> = {}, now = t0): RecordPayment => ({
  type: 'RecordPayment',
  data: {
    accountId,
    email,
    paymentId: 1,
    amountCents: 1000,
    provider: 'stripe',
    reference: 'pi_1',
    receivedAt: now,
    ...data,
  },
  metadata: { now, cause: operator },
});
const invalidatePayment = (paymentId: number, reason: string, now: Date): InvalidatePayment => ({
  type: 'InvalidatePayment',
  data: { paymentId },
  metadata: { now, cause: { ...operator, reason } },
});
const reinstatePayment = (paymentId: number, reason: string, now: Date): ReinstatePayment => ({
  type: 'ReinstatePayment',
  data: { paymentId },
  metadata: { now, cause: { ...operator, reason } },
});
const requestVmCreation = (data: Partial<RequestVmCreation['data']> = {}, now = t0): RequestVmCreation => ({
  type: 'RequestVmCreation',
  data: { vmId, size: 'f1-xs', os: 'debian12', sshPublicKeys: [aliceKey], priceCentsPerMonth: f1xsCentsPerMonth, ...data },
  metadata: { now, cause: customer },
});
const requestVmDeletion = (id: string, reason: string, now: Date): RequestVmDeletion => ({
  type: 'RequestVmDeletion',
  data: { vmId: id },
  metadata: { now, cause: { ...customer, reason } },
});

const endVmAccrual = (id: string, vanishedAt: Date, now: Date, reportId: string | null = 'report-gone'): EndVmAccrual => ({
  type: 'EndVmAccrual',
  data: { vmId: id, vanishedAt, host: 'spoke-a', reportId },
  metadata: { now, cause: { by: { kind: 'job', id: 'vanished' } } },
});

// Events, as the decider writes them.

const accountOpened = (at = t0): AccountOpened => ({ type: 'AccountOpened', data: { accountId, email, at: iso(at) } });
const paymentRecorded = (data: Partial<PaymentRecorded['data']> = {}): PaymentRecorded => ({
  type: 'PaymentRecorded',
  data: {
    accountId,
    paymentId: 1,
    amountCents: 1000,
    provider: 'stripe',
    reference: 'pi_1',
    at: iso(t0),
    recordedAt: iso(t0),
    ...data,
  },
});
const paymentInvalidated = (paymentId: number, at: Date): PaymentInvalidated => ({
  type: 'PaymentInvalidated',
  data: { accountId, paymentId, at: iso(at) },
});
const paymentReinstated = (paymentId: number, at: Date): PaymentReinstated => ({
  type: 'PaymentReinstated',
  data: { accountId, paymentId, at: iso(at) },
});
const vmCreationRequested = (data: Partial<VmCreationRequested['data']> = {}): VmCreationRequested => ({
  type: 'VmCreationRequested',
  data: {
    accountId,
    vmId,
    size: 'f1-xs',
    os: 'debian12',
    sshPublicKeys: [aliceKey],
    priceCentsPerMonth: f1xsCentsPerMonth,
    at: iso(t0),
    ...data,
  },
});
const vmDeletionRequested = (id: string, at: Date): VmDeletionRequested => ({
  type: 'VmDeletionRequested',
  data: { accountId, vmId: id, at: iso(at) },
});

const vmAccrualEnded = (id: string, at: Date, reportId: string | null = 'report-gone'): VmAccrualEnded => ({
  type: 'VmAccrualEnded',
  data: { accountId, vmId: id, reason: 'vanished-from-host', host: 'spoke-a', reportId, at: iso(at) },
});

/** An account opened by a $10 payment at t0. */
const tenDollarAccount = (): AccountEvent[] => [accountOpened(), paymentRecorded({ amountCents: 1000 })];

describe('recording a payment', () => {
  it('refuses a payment id that is already recorded', () => {
    given([accountOpened(), paymentRecorded()])
      .when(recordPayment({ reference: 'pi_other' }))
      .thenThrows(failsWith('refused', /^payment 1 is already recorded$/));
  });

  it('opens the account with the first payment', () => {
    given([])
      .when(recordPayment({ amountCents: 2000, reference: 'pi_first' }))
      .then([
        { type: 'AccountOpened', data: { accountId, email, at: '2026-01-01T00:00:00.000Z' } },
        {
          type: 'PaymentRecorded',
          data: {
            accountId,
            paymentId: 1,
            amountCents: 2000,
            provider: 'stripe',
            reference: 'pi_first',
            at: '2026-01-01T00:00:00.000Z',
            recordedAt: '2026-01-01T00:00:00.000Z',
          },
        },
      ]);
  });

  it('opens the account when a backdated first payment was received, not when it was recorded', () => {
    const receivedAt = new Date('2025-12-20T09:30:00.000Z');
    given([])
      .when(recordPayment({ receivedAt }, t0))
      .then([accountOpened(receivedAt), paymentRecorded({ at: iso(receivedAt), recordedAt: iso(t0) })]);
  });

  it('opens the account now when the first payment is stamped slightly in the future', () => {
    const receivedAt = after(2 * minuteMs);
    given([])
      .when(recordPayment({ receivedAt }, t0))
      .then([accountOpened(t0), paymentRecorded({ at: iso(receivedAt), recordedAt: iso(t0) })]);
  });

  it('records a later payment without opening the account again', () => {
    const now = after(3 * 24 * 60 * minuteMs);
    given(tenDollarAccount())
      .when(recordPayment({ paymentId: 2, amountCents: 500, reference: 'pi_2' }, now))
      .then([paymentRecorded({ paymentId: 2, amountCents: 500, reference: 'pi_2', at: iso(now), recordedAt: iso(now) })]);
  });

  it('records manual payments without a reference, each as its own payment', () => {
    const events = decideAfter(
      [accountOpened(), paymentRecorded({ provider: 'manual', reference: null })],
      recordPayment({ paymentId: 2, provider: 'manual', reference: null }),
    );
    assert.deepEqual(events, [paymentRecorded({ paymentId: 2, provider: 'manual', reference: null })]);
  });

  it('changes nothing when the same provider reference arrives again with the same amount', () => {
    given(tenDollarAccount())
      .when(recordPayment({ paymentId: 2, amountCents: 1000, reference: 'pi_1' }, after(minuteMs)))
      .thenNothingHappened();
  });

  it('refuses the same provider reference with a different amount', () => {
    given(tenDollarAccount())
      .when(recordPayment({ paymentId: 2, amountCents: 1500, reference: 'pi_1' }))
      .thenThrows(failsWith('refused', /^reference pi_1 was already recorded as payment 1 of 10\.00 dollars$/));
  });

  it('refuses the same reference from a different provider', () => {
    given(tenDollarAccount())
      .when(recordPayment({ paymentId: 2, provider: 'btcpay', reference: 'pi_1' }))
      .thenThrows(failsWith('refused', /reference pi_1 was already recorded as payment 1/));
  });

  it('accepts a payment stamped up to five minutes ahead (clock skew)', () => {
    const receivedAt = after(5 * minuteMs);
    given(tenDollarAccount())
      .when(recordPayment({ paymentId: 2, reference: 'pi_2', receivedAt }))
      .then([paymentRecorded({ paymentId: 2, reference: 'pi_2', at: iso(receivedAt) })]);
  });

  it('refuses a payment received further in the future than the clock skew', () => {
    given(tenDollarAccount())
      .when(recordPayment({ paymentId: 2, reference: 'pi_2', receivedAt: after(5 * minuteMs + 1) }))
      .thenThrows(failsWith('invalid', /cannot be received in the future/));
  });

  it('refuses a received-at time that is not a time', () => {
    given([])
      .when(recordPayment({ receivedAt: new Date('not a date') }))
      .thenThrows(failsWith('invalid', /not a valid time/));
  });

  for (const amountCents of [0, -500, 10.5, Number.NaN, maxPaymentCents + 1]) {
    it(`refuses an amount of ${amountCents} cents`, () => {
      given([])
        .when(recordPayment({ amountCents }))
        .thenThrows(failsWith('invalid', /^a payment must be between 0\.01 and 1000000\.00 dollars$/));
    });
  }

  it('accepts the largest amount, one million dollars', () => {
    given([])
      .when(recordPayment({ amountCents: maxPaymentCents }))
      .then([accountOpened(), paymentRecorded({ amountCents: maxPaymentCents })]);
  });

  for (const paymentId of [0, -1, 1.5]) {
    it(`refuses a payment id of ${paymentId}`, () => {
      given([])
        .when(recordPayment({ paymentId }))
        .thenThrows(failsWith('invalid', /payment id is a positive whole number/));
    });
  }

  for (const [label, reference, message] of [
    ['empty', '', /a payment reference is required/],
    ['over 200 characters', 'x'.repeat(201), /a payment reference may be at most 200 characters/],
    [
      'two lines (it would forge a line of history)',
      'pi_1\n2026-12-07 PaymentRecorded',
      /one line of visible text: it holds U\+000A at position 5/,
    ],
    ['hiding a right-to-left override', 'pi_\u202E1', /holds U\+202E/],
    ['padded with spaces', ' pi_1 ', /no spaces around it/],
  ] as const) {
    it(`refuses a reference that is ${label}`, () => {
      given([]).when(recordPayment({ reference })).thenThrows(failsWith('invalid', message));
    });
  }

  for (const [label, reason] of [
    ['a line break', 'chargeback\nforged line'],
    ['a NUL', 'a\u0000b'],
    ['a zero-width space', 'a\u200Bb'],
  ] as const) {
    it(`refuses a correction's reason holding ${label}`, () => {
      given(tenDollarAccount())
        .when(invalidatePayment(1, reason, t0))
        .thenThrows(failsWith('invalid', /^a reason must be one line of visible text: it holds U\+/));
    });
  }
});

describe('invalidating a payment', () => {
  it('invalidates a valid payment from now (the reason stays in its cause)', () => {
    const now = after(10 * 24 * 60 * minuteMs);
    given(tenDollarAccount())
      .when(invalidatePayment(1, '  chargeback from the card issuer  ', now))
      .then([paymentInvalidated(1, now)]);
  });

  it('requires a reason', () => {
    given(tenDollarAccount())
      .when(invalidatePayment(1, '', t0))
      .thenThrows(failsWith('invalid', /^a reason is required$/));
  });

  it('refuses a blank reason', () => {
    given(tenDollarAccount())
      .when(invalidatePayment(1, ' \t ', t0))
      .thenThrows(failsWith('invalid', /^a reason is required$/));
  });

  it('refuses a reason longer than the limit', () => {
    given(tenDollarAccount())
      .when(invalidatePayment(1, 'x'.repeat(maxReasonLength + 1), t0))
      .thenThrows(failsWith('invalid', /reason may be at most 1000 characters/));
  });

  it('does not find a payment the account never recorded', () => {
    given(tenDollarAccount())
      .when(invalidatePayment(7, 'chargeback', t0))
      .thenThrows(failsWith('not_found', /^there is no payment 7$/));
  });

  it('changes nothing when the payment is already invalid', () => {
    given([...tenDollarAccount(), paymentInvalidated(1, after(minuteMs))])
      .when(invalidatePayment(1, 'chargeback again', after(2 * minuteMs)))
      .thenNothingHappened();
  });
});

describe('reinstating a payment', () => {
  it('reinstates an invalidated payment, with the reason trimmed, from now', () => {
    const now = after(20 * 24 * 60 * minuteMs);
    given([...tenDollarAccount(), paymentInvalidated(1, after(minuteMs))])
      .when(reinstatePayment(1, ' chargeback won ', now))
      .then([paymentReinstated(1, now)]);
  });

  it('requires a reason', () => {
    given([...tenDollarAccount(), paymentInvalidated(1, after(minuteMs))])
      .when(reinstatePayment(1, '', t0))
      .thenThrows(failsWith('invalid', /^a reason is required$/));
  });

  it('refuses a blank reason', () => {
    given([...tenDollarAccount(), paymentInvalidated(1, after(minuteMs))])
      .when(reinstatePayment(1, '   ', t0))
      .thenThrows(failsWith('invalid', /^a reason is required$/));
  });

  it('does not find a payment the account never recorded', () => {
    given(tenDollarAccount())
      .when(reinstatePayment(7, 'mistake', t0))
      .thenThrows(failsWith('not_found', /^there is no payment 7$/));
  });

  it('changes nothing when the payment was never invalidated', () => {
    given(tenDollarAccount())
      .when(reinstatePayment(1, 'mistake', after(minuteMs)))
      .thenNothingHappened();
  });

  it('changes nothing when the payment is already reinstated', () => {
    given([...tenDollarAccount(), paymentInvalidated(1, after(minuteMs)), paymentReinstated(1, after(2 * minuteMs))])
      .when(reinstatePayment(1, 'mistake', after(3 * minuteMs)))
      .thenNothingHappened();
  });
});

describe('requesting a capsul', () => {
  it('creates the capsul with the price of its size captured in the event', () => {
    const now = after(minuteMs);
    given(tenDollarAccount())
      .when(requestVmCreation({ vmId, size: 'f1-xs', os: 'debian12', priceCentsPerMonth: 533 }, now))
      .then([
        {
          type: 'VmCreationRequested',
          data: {
            accountId,
            vmId,
            size: 'f1-xs',
            os: 'debian12',
            sshPublicKeys: [aliceKey],
            priceCentsPerMonth: 533,
            at: iso(now),
          },
        },
      ]);
  });

  it('refuses a capsul on an account that has no payments yet', () => {
    given([])
      .when(requestVmCreation())
      .thenThrows(failsWith('insufficient_funds', /no payments yet: add funds before creating a capsul/));
  });

  it('needs at least one SSH public key', () => {
    given(tenDollarAccount())
      .when(requestVmCreation({ sshPublicKeys: [] }))
      .thenThrows(failsWith('invalid', /^a capsul needs at least one SSH public key$/));
  });

  it(`takes at most ${maxSshKeysPerCapsul} SSH public keys`, () => {
    const keys = Array.from({ length: maxSshKeysPerCapsul + 1 }, (_, i) => ed25519Key(`key${i}`));
    given(tenDollarAccount())
      .when(requestVmCreation({ sshPublicKeys: keys }))
      .thenThrows(failsWith('invalid', /at most 20 SSH keys/));
  });

  it('refuses a capsul when one of its SSH keys is not a public key', () => {
    given(tenDollarAccount())
      .when(requestVmCreation({ sshPublicKeys: [aliceKey, '-----BEGIN OPENSSH PRIVATE KEY-----'] }))
      .thenThrows(failsWith('invalid', /is not an SSH public key/));
  });

  it('collapses the same SSH key given twice into one, normalised', () => {
    const [type, blob] = aliceKey.split(' ');
    const events = decideAfter(tenDollarAccount(), requestVmCreation({ sshPublicKeys: [aliceKey, `  ${type}\t${blob}   alice@laptop\n`] }));
    assert.deepEqual(events, [vmCreationRequested({ sshPublicKeys: [aliceKey] })]);
  });

  for (const badId of ['', 'capsul-A1B2C3D4E5', 'capsul-a1b2c3d4e', 'capsul-a1b2c3d4e5f', 'vm-a1b2c3d4e5', 'capsul-a1b2c3d4_5']) {
    it(`refuses the capsul id ${JSON.stringify(badId)}`, () => {
      given(tenDollarAccount())
        .when(requestVmCreation({ vmId: badId }))
        .thenThrows(failsWith('invalid', /is not a capsul id \(capsul- and 10 letters or digits\)/));
    });
  }

  it('refuses a capsul id that already exists on the account', () => {
    given([...tenDollarAccount(), vmCreationRequested()])
      .when(requestVmCreation({ vmId }))
      .thenThrows(failsWith('refused', /^capsul capsul-a1b2c3d4e5 already exists$/));
  });

  for (const priceCentsPerMonth of [0, -533, 5.33]) {
    it(`refuses a price of ${priceCentsPerMonth} cents a month`, () => {
      given(tenDollarAccount())
        .when(requestVmCreation({ priceCentsPerMonth }))
        .thenThrows(failsWith('invalid', /^a capsul price must be positive$/));
    });
  }
});

describe('the funds a new capsul needs', () => {
  it('creates a capsul when the balance covers exactly one month of it', () => {
    given([accountOpened(), paymentRecorded({ amountCents: 533 })])
      .when(requestVmCreation())
      .then([vmCreationRequested()]);
  });

  it('refuses a capsul when the balance is a cent short of one month of it', () => {
    given([accountOpened(), paymentRecorded({ amountCents: 532 })])
      .when(requestVmCreation())
      .thenThrows(failsWith('insufficient_funds', /^the balance 5\.32 does not cover a month of f1-xs \(5\.33\): add funds first$/));
  });

  it('with $10, refuses a second f1-xs: the balance must also carry a month of the running one', () => {
    given([...tenDollarAccount(), vmCreationRequested({ vmId })])
      .when(requestVmCreation({ vmId: otherVmId }, after(minuteMs)))
      .thenThrows(
        failsWith(
          'insufficient_funds',
          /^the balance 10\.00 does not cover a month of f1-xs \(5\.33\) plus a month of your running capsuls \(5\.33\): add funds first$/,
        ),
      );
  });

  it('no longer counts a capsul whose deletion was requested', () => {
    const now = after(minuteMs);
    given([...tenDollarAccount(), vmCreationRequested({ vmId }), vmDeletionRequested(vmId, now)])
      .when(requestVmCreation({ vmId: otherVmId }, now))
      .then([vmCreationRequested({ vmId: otherVmId, at: iso(now) })]);
  });

  it('counts what the capsuls have already cost', () => {
    // $10 paid, an f1-xs ran a whole month (5.33): 4.67 is left, short of a new month.
    const oneMonthLater = after(monthMs);
    given([...tenDollarAccount(), vmCreationRequested({ vmId }), vmDeletionRequested(vmId, oneMonthLater)])
      .when(requestVmCreation({ vmId: otherVmId }, oneMonthLater))
      .thenThrows(failsWith('insufficient_funds', /^the balance 4\.67 does not cover a month of f1-xs/));
  });

  it('no longer counts an invalidated payment', () => {
    given([...tenDollarAccount(), paymentInvalidated(1, after(minuteMs))])
      .when(requestVmCreation({}, after(2 * minuteMs)))
      .thenThrows(failsWith('insufficient_funds', /^the balance 0\.00 does not cover a month of f1-xs/));
  });

  it('counts a payment again once it is reinstated', () => {
    const now = after(3 * minuteMs);
    given([...tenDollarAccount(), paymentInvalidated(1, after(minuteMs)), paymentReinstated(1, after(2 * minuteMs))])
      .when(requestVmCreation({}, now))
      .then([vmCreationRequested({ at: iso(now) })]);
  });

  it('no longer counts a capsul that vanished from its host', () => {
    const now = after(2 * minuteMs);
    given([...tenDollarAccount(), vmCreationRequested({ vmId }), vmAccrualEnded(vmId, after(minuteMs))])
      .when(requestVmCreation({ vmId: otherVmId }, now))
      .then([vmCreationRequested({ vmId: otherVmId, at: iso(now) })]);
  });

  it('does not count a payment stamped later than now', () => {
    // Within the clock skew the payment is recorded, but it counts only from when it was received.
    given([accountOpened(), paymentRecorded({ at: iso(after(2 * minuteMs)) })])
      .when(requestVmCreation({}, t0))
      .thenThrows(failsWith('insufficient_funds', /^the balance 0\.00 does not cover/));
  });
});

describe('requesting a capsul deletion', () => {
  it('requests the deletion, with the reason trimmed, from now', () => {
    const now = after(7 * 24 * 60 * minuteMs);
    given([...tenDollarAccount(), vmCreationRequested()])
      .when(requestVmDeletion(vmId, ' no longer needed ', now))
      .then([vmDeletionRequested(vmId, now)]);
  });

  it('does not find a capsul the account does not have', () => {
    given([...tenDollarAccount(), vmCreationRequested()])
      .when(requestVmDeletion(otherVmId, 'no longer needed', t0))
      .thenThrows(failsWith('not_found', /^there is no capsul capsul-f6g7h8i9j0 on this account$/));
  });

  it('requires a reason', () => {
    given([...tenDollarAccount(), vmCreationRequested()])
      .when(requestVmDeletion(vmId, '  ', t0))
      .thenThrows(failsWith('invalid', /^a reason is required$/));
  });

  it('changes nothing when the deletion was already requested', () => {
    given([...tenDollarAccount(), vmCreationRequested(), vmDeletionRequested(vmId, after(minuteMs))])
      .when(requestVmDeletion(vmId, 'again', after(2 * minuteMs)))
      .thenNothingHappened();
  });
});

describe("ending a vanished capsul's charges", () => {
  // The capsul's host saw it gone without any deletion request: a reaction ends its charges at that instant.
  const halfMonth = after(monthMs / 2);
  const running = (): AccountEvent[] => [...tenDollarAccount(), vmCreationRequested()];

  it('ends them at the instant its host saw it gone, not when the account hears of it', () => {
    given(running())
      .when(endVmAccrual(vmId, halfMonth, after(monthMs), 'report-gone-1'))
      .then([vmAccrualEnded(vmId, halfMonth, 'report-gone-1')]);
  });

  it('ends them even when its deletion was requested already: whichever came first counts', () => {
    given([...running(), vmDeletionRequested(vmId, after(monthMs))])
      .when(endVmAccrual(vmId, halfMonth, after(monthMs)))
      .then([vmAccrualEnded(vmId, halfMonth)]);
    given([...running(), vmDeletionRequested(vmId, after(minuteMs))])
      .when(endVmAccrual(vmId, halfMonth, after(monthMs)))
      .then([vmAccrualEnded(vmId, halfMonth)]);
  });

  it('ends them no earlier than the capsul was created', () => {
    given(running())
      .when(endVmAccrual(vmId, after(-monthMs), after(minuteMs)))
      .then([vmAccrualEnded(vmId, t0)]);
  });

  it('ends them no later than now', () => {
    given(running())
      .when(endVmAccrual(vmId, after(monthMs), halfMonth))
      .then([vmAccrualEnded(vmId, halfMonth)]);
  });

  it('changes nothing when they ended at that instant already', () => {
    given([...running(), vmAccrualEnded(vmId, halfMonth)])
      .when(endVmAccrual(vmId, halfMonth, after(monthMs)))
      .thenNothingHappened();
  });

  it('changes nothing for a later instant', () => {
    given([...running(), vmAccrualEnded(vmId, halfMonth)])
      .when(endVmAccrual(vmId, after(monthMs), after(monthMs)))
      .thenNothingHappened();
  });

  it('ends them earlier still for an earlier instant', () => {
    given([...running(), vmAccrualEnded(vmId, halfMonth)])
      .when(endVmAccrual(vmId, after(minuteMs), after(monthMs)))
      .then([vmAccrualEnded(vmId, after(minuteMs))]);
  });

  it('does not find a capsul the account does not have', () => {
    given(running())
      .when(endVmAccrual(otherVmId, halfMonth, after(monthMs)))
      .thenThrows(failsWith('not_found', /^there is no capsul capsul-f6g7h8i9j0 on this account$/));
  });

  it('refuses a time that is not one', () => {
    given(running())
      .when(endVmAccrual(vmId, new Date(Number.NaN), after(monthMs)))
      .thenThrows(failsWith('invalid', /^the time the capsul vanished is not a valid time$/));
  });

  it('still lets the customer request its deletion, to take it off their list', () => {
    given([...running(), vmAccrualEnded(vmId, halfMonth)])
      .when(requestVmDeletion(vmId, 'deleted by the customer', after(monthMs)))
      .then([vmDeletionRequested(vmId, after(monthMs))]);
  });
});

describe('balanceCentsAt', () => {
  const balanceAt = (events: AccountEvent[], at: Date) => balanceCentsAt(events.reduce(evolveAccount, initialAccount()), at.getTime());
  const halfMonthMs = monthMs / 2;
  // What an f1-xs has cost after half a month (266.5 cents, half up), and a millisecond before it.
  const halfMonthCents = 267;
  const justUnderHalfMonthCents = 266;

  // $10 at t0, an f1-xs (5.33 a month) from t0.
  const running = (): AccountEvent[] => [...tenDollarAccount(), vmCreationRequested()];

  it('is zero before the first payment was received', () => {
    assert.equal(balanceAt(running(), after(-1)), 0);
  });

  it('is the payment at the instant the capsul starts', () => {
    assert.equal(balanceAt(running(), t0), 1000);
  });

  it('has a month of the capsul taken off one month later', () => {
    assert.equal(balanceAt(running(), after(monthMs)), 1000 - 533);
  });

  it('has half a month taken off, rounded half up, half a month later', () => {
    assert.equal(balanceAt(running(), after(halfMonthMs)), 1000 - halfMonthCents);
  });

  it('looks ahead to a future instant, below zero when the money runs out', () => {
    assert.equal(balanceAt(running(), after(2 * monthMs)), 1000 - 1066);
  });

  it('does not count a payment received later than the instant', () => {
    const paidLater = [...running(), paymentRecorded({ paymentId: 2, amountCents: 2000, reference: 'pi_2', at: iso(after(halfMonthMs)) })];
    assert.equal(balanceAt(paidLater, after(halfMonthMs - 1)), 1000 - justUnderHalfMonthCents);
    assert.equal(balanceAt(paidLater, after(halfMonthMs)), 3000 - halfMonthCents);
  });

  it('drops an invalidated payment from the time of its invalidation, not before', () => {
    const invalidatedAt = after(halfMonthMs);
    const events = [...running(), paymentInvalidated(1, invalidatedAt)];
    assert.equal(balanceAt(events, after(halfMonthMs - 1)), 1000 - justUnderHalfMonthCents);
    assert.equal(balanceAt(events, invalidatedAt), -halfMonthCents);
  });

  it('counts a reinstated payment again from the time of its reinstatement', () => {
    const events = [...running(), paymentInvalidated(1, after(minuteMs)), paymentReinstated(1, after(halfMonthMs))];
    assert.equal(balanceAt(events, after(halfMonthMs - 1)), -justUnderHalfMonthCents);
    assert.equal(balanceAt(events, after(halfMonthMs)), 1000 - halfMonthCents);
    assert.equal(balanceAt(events, after(monthMs)), 1000 - 533);
  });

  it('stops charging a capsul when its deletion is requested', () => {
    const events = [...running(), vmDeletionRequested(vmId, after(halfMonthMs))];
    assert.equal(balanceAt(events, after(halfMonthMs)), 1000 - halfMonthCents);
    assert.equal(balanceAt(events, after(12 * monthMs)), 1000 - halfMonthCents);
  });

  it('stops charging a vanished capsul at the instant it was seen gone, now, in the past and ahead', () => {
    const events = [...running(), vmAccrualEnded(vmId, after(halfMonthMs))];
    assert.equal(balanceAt(events, after(halfMonthMs - 1)), 1000 - justUnderHalfMonthCents, 'before: charged as it ran');
    assert.equal(balanceAt(events, after(halfMonthMs)), 1000 - halfMonthCents);
    assert.equal(balanceAt(events, after(12 * monthMs)), 1000 - halfMonthCents, 'ahead: nothing more');
  });

  it('stops charging at the vanishing when it came before the deletion request, and the other way round', () => {
    const vanishedFirst = [...running(), vmAccrualEnded(vmId, after(halfMonthMs)), vmDeletionRequested(vmId, after(monthMs))];
    const requestedFirst = [...running(), vmDeletionRequested(vmId, after(halfMonthMs)), vmAccrualEnded(vmId, after(monthMs))];
    assert.equal(balanceAt(vanishedFirst, after(2 * monthMs)), 1000 - halfMonthCents);
    assert.equal(balanceAt(requestedFirst, after(2 * monthMs)), 1000 - halfMonthCents);
  });

  it('charges a capsul only from its creation', () => {
    const events = [...tenDollarAccount(), vmCreationRequested({ at: iso(after(monthMs)) })];
    assert.equal(balanceAt(events, after(monthMs)), 1000);
    assert.equal(balanceAt(events, after(2 * monthMs)), 1000 - 533);
  });

  it('rounds the charges of several capsuls once, on their total', () => {
    // Two f1-xs for half a month each: 266.5 + 266.5 = 533 exactly, not 267 + 267.
    const events = [...running(), vmCreationRequested({ vmId: otherVmId })];
    assert.equal(balanceAt(events, after(halfMonthMs)), 1000 - 533);
  });
});
