// Monthly statements from the account's events: a month opens at the balance as of its first instant,
// closes at the next month's opening, and its lines add up from one to the other, for any history
// (late payments, corrections, refunds, capsuls created, deleted and vanished).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DeciderSpecification } from '@event-driven-io/emmett';
import fc from 'fast-check';
import { decideAccount, type ChooseStatementEmails } from '../../src/domain/account/decider.ts';
import type { AccountEvent } from '../../src/domain/account/events.ts';
import { balanceCentsAt, creditCentsAt, evolveAccount, initialAccount } from '../../src/domain/account/state.ts';
import {
  monthlyStatement,
  monthStartMs,
  nextMonth,
  parseMonth,
  statementMonths,
  type PaymentLine,
  type RecordedEvent,
} from '../../src/domain/account/statement.ts';
import { DomainError } from '../../src/domain/shared/errors.ts';

const dayMs = 86_400_000;
const accountId = 'a1';
const iso = (ms: number) => new Date(ms).toISOString();
const originMs = Date.parse('2026-01-01T00:00:00Z');

type Step =
  | { kind: 'pay'; cents: number; lateDays: number }
  | { kind: 'invalidate' | 'reinstate' | 'delete'; index: number }
  | { kind: 'refund'; index: number; cents: number; lateDays: number }
  | { kind: 'create'; price: number }
  | { kind: 'vanish'; index: number; earlierHours: number };

const step: fc.Arbitrary<{ waitMs: number; step: Step }> = fc.record({
  // Often a whole number of days from midnight: facts at a month's first instant are the edge case.
  waitMs: fc.oneof(
    fc.integer({ min: 0, max: 20 }).map((days) => days * dayMs),
    fc.integer({ min: 0, max: 25 * dayMs }),
  ),
  step: fc.oneof(
    {
      weight: 4,
      arbitrary: fc.record({ kind: fc.constant('pay' as const), cents: fc.integer({ min: 1, max: 6000 }), lateDays: fc.nat(70) }),
    },
    {
      weight: 2,
      arbitrary: fc.record({ kind: fc.constantFrom('invalidate' as const, 'reinstate' as const, 'delete' as const), index: fc.nat(20) }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant('refund' as const),
        index: fc.nat(20),
        cents: fc.integer({ min: 1, max: 3000 }),
        lateDays: fc.nat(40),
      }),
    },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('create' as const), price: fc.integer({ min: 1, max: 5000 }) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('vanish' as const), index: fc.nat(20), earlierHours: fc.nat(72) }) },
  ),
});

/** The history's events as the ledger would hold them: each written at its `recordedAtMs`, taking effect at its `at`. */
function history(steps: { waitMs: number; step: Step }[]): RecordedEvent[] {
  const events: RecordedEvent[] = [];
  const add = (event: AccountEvent, recordedAtMs: number) => events.push({ event, recordedAtMs });
  let nowMs = originMs;
  add({ type: 'AccountOpened', data: { accountId, email: 'x@example.org', at: iso(nowMs) } }, nowMs);
  const payments: { id: number; cents: number; refundedCents: number }[] = [];
  const vms: { id: string; createdAtMs: number }[] = [];
  for (const { waitMs, step: s } of steps) {
    nowMs += waitMs;
    // A late fact takes effect in the past (`record-payment --at`, a provider's late refund), never before the account.
    const back = (days: number) => Math.max(originMs, nowMs - days * dayMs);
    switch (s.kind) {
      case 'pay': {
        const paymentId = payments.length + 1;
        payments.push({ id: paymentId, cents: s.cents, refundedCents: 0 });
        const data = { accountId, paymentId, amountCents: s.cents, provider: 'manual' as const, reference: null };
        add({ type: 'PaymentRecorded', data: { ...data, at: iso(back(s.lateDays)), recordedAt: iso(nowMs) } }, nowMs);
        break;
      }
      case 'invalidate':
      case 'reinstate': {
        const payment = payments[s.index % Math.max(1, payments.length)];
        if (!payment) break;
        const type = s.kind === 'invalidate' ? 'PaymentInvalidated' : 'PaymentReinstated';
        add({ type, data: { accountId, paymentId: payment.id, at: iso(nowMs) } }, nowMs);
        break;
      }
      case 'refund': {
        const payment = payments[s.index % Math.max(1, payments.length)];
        if (!payment) break;
        payment.refundedCents = Math.min(payment.cents, payment.refundedCents + s.cents);
        const data = { accountId, paymentId: payment.id, totalRefundedCents: payment.refundedCents, reference: null };
        add({ type: 'PaymentRefunded', data: { ...data, at: iso(back(s.lateDays)) } }, nowMs);
        break;
      }
      case 'create': {
        const vmId = `vm${vms.length + 1}`;
        vms.push({ id: vmId, createdAtMs: nowMs });
        const data = { accountId, vmId, size: 'f1-s', os: 'debian', sshPublicKeys: [], priceCentsPerMonth: s.price };
        add({ type: 'VmCreationRequested', data: { ...data, at: iso(nowMs) } }, nowMs);
        break;
      }
      case 'delete': {
        const vm = vms[s.index % Math.max(1, vms.length)];
        if (vm) add({ type: 'VmDeletionRequested', data: { accountId, vmId: vm.id, at: iso(nowMs) } }, nowMs);
        break;
      }
      case 'vanish': {
        const vm = vms[s.index % Math.max(1, vms.length)];
        if (!vm) break;
        const at = iso(Math.max(vm.createdAtMs, nowMs - s.earlierHours * 3_600_000));
        const data = { accountId, vmId: vm.id, reason: 'vanished-from-host' as const, host: 'h1', reportId: null };
        add({ type: 'VmAccrualEnded', data: { ...data, at } }, nowMs);
        break;
      }
    }
  }
  return events;
}

const months = (first: string, count: number) => {
  const list = [first];
  while (list.length < count) list.push(nextMonth(list.at(-1)!));
  return list;
};

describe('monthly statements', () => {
  it('open at the balance as of the first instant, close at the next opening, and add up (random histories)', () => {
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 40 }), (steps) => {
        const events = history(steps);
        const state = events.reduce((s, { event }) => evolveAccount(s, event), initialAccount());
        const lastMs = Math.max(...events.map((e) => e.recordedAtMs));
        let previousClosing: number | null = null;
        for (const month of months('2025-12', 4 + Math.ceil((lastMs - originMs) / (30 * dayMs)))) {
          const statement = monthlyStatement(events, month);
          assert.equal(statement.openingCents, balanceCentsAt(state, monthStartMs(month)), `${month} opening`);
          if (previousClosing !== null) assert.equal(statement.openingCents, previousClosing, `${month} opens at the last closing`);
          const sum = statement.lines.reduce((total, line) => total + line.amountCents, 0);
          assert.equal(statement.openingCents + sum, statement.closingCents, `${month} adds up`);
          // The payment lines are what the payments' credit did between the two instants, whenever recorded.
          const paymentLines = statement.lines.filter((line): line is PaymentLine => line.kind !== 'charge' && line.kind !== 'rounding');
          const creditChange = [...state.payments.values()].reduce(
            (total, p) => total + creditCentsAt(p, statement.endMs) - creditCentsAt(p, statement.startMs),
            0,
          );
          assert.equal(
            paymentLines.reduce((total, line) => total + line.amountCents, 0),
            creditChange,
            `${month} payments`,
          );
          for (const line of paymentLines) if (line.recordedLateAtMs !== null) assert.ok(line.recordedLateAtMs > statement.endMs);
          const lateFacts = events.filter((e) => Date.parse(e.event.data.at) <= statement.endMs && e.recordedAtMs > statement.endMs);
          assert.equal(statement.revisedAtMs !== null, lateFacts.length > 0, `${month} revised`);
          const rounding = statement.lines.filter((line) => line.kind === 'rounding');
          assert.ok(rounding.length <= 1 && Math.abs(rounding[0]?.amountCents ?? 0) <= statement.lines.length);
          previousClosing = statement.closingCents;
        }
        // The months listed are exactly those whose statement has a line.
        const nowMs = lastMs + 40 * dayMs;
        const withLines = months('2025-12', 6 + Math.ceil((lastMs - originMs) / (30 * dayMs)))
          .filter((month) => monthStartMs(nextMonth(month)) <= nowMs && monthlyStatement(events, month).lines.length > 0)
          .reverse();
        assert.deepEqual(statementMonths(events, nowMs), withLines);
      }),
      { numRuns: 300 },
    );
  });

  it('lists the closed months with something in them, newest first', () => {
    const events = history([
      { waitMs: 5 * dayMs, step: { kind: 'pay', cents: 1000, lateDays: 0 } },
      { waitMs: 70 * dayMs, step: { kind: 'pay', cents: 1000, lateDays: 0 } },
    ]);
    // Payments on 6 January and 17 March; nothing ran in February.
    assert.deepEqual(statementMonths(events, Date.parse('2026-04-01T00:00:00Z')), ['2026-03', '2026-01']);
    assert.deepEqual(statementMonths(events, Date.parse('2026-03-31T23:59:59Z')), ['2026-01'], 'March is not over');
  });

  it('shows a payment recorded late in the month it was received, flagged, and says the statement was revised', () => {
    const events = history([
      { waitMs: 5 * dayMs, step: { kind: 'pay', cents: 1000, lateDays: 0 } },
      // Recorded on 10 February, received on 25 January.
      { waitMs: 35 * dayMs, step: { kind: 'pay', cents: 500, lateDays: 16 } },
    ]);
    const january = monthlyStatement(events, '2026-01');
    assert.equal(january.closingCents, 1500);
    const late = january.lines[1] as PaymentLine;
    assert.equal(iso(late.atMs), '2026-01-25T00:00:00.000Z');
    assert.equal(iso(late.recordedLateAtMs!), '2026-02-10T00:00:00.000Z');
    assert.equal(iso(january.revisedAtMs!), '2026-02-10T00:00:00.000Z');
    assert.equal(monthlyStatement(events, '2026-02').lines.length, 0);
    assert.equal(monthlyStatement(events, '2026-02').revisedAtMs, null);
  });

  it('refuses a month that is not YYYY-MM, in one line', () => {
    for (const text of ['2026-13', '2026-00', '2026-1', 'november', '', '1969-12', '2026-11-01']) {
      assert.throws(
        () => parseMonth(text),
        (error: unknown) => error instanceof DomainError && error.code === 'invalid' && !error.message.includes('\n'),
      );
    }
    assert.equal(parseMonth(' 2026-11 '), '2026-11');
  });
});

describe('choosing whether statements are emailed (Given / When / Then)', () => {
  const given = DeciderSpecification.for({ decide: decideAccount, evolve: evolveAccount, initialState: initialAccount });
  const now = new Date('2026-11-10T12:00:00Z');
  const opened: AccountEvent = { type: 'AccountOpened', data: { accountId, email: 'x@example.org', at: '2026-11-01T00:00:00.000Z' } };
  const choose = (send: boolean): ChooseStatementEmails => ({
    type: 'ChooseStatementEmails',
    data: { send },
    metadata: { now, cause: { by: { kind: 'customer', id: accountId } } },
  });
  const chosen = (send: boolean): AccountEvent => ({ type: 'StatementEmailsChosen', data: { accountId, send, at: now.toISOString() } });

  it('records the customer stopping them: emailed until then', () => {
    given([opened])
      .when(choose(false))
      .then([chosen(false)]);
  });

  it('records nothing when they are already as asked', () => {
    given([opened]).when(choose(true)).then([]);
    given([opened, chosen(false)])
      .when(choose(false))
      .then([]);
  });

  it('records the customer asking for them again', () => {
    given([opened, chosen(false)])
      .when(choose(true))
      .then([chosen(true)]);
  });

  it('refuses an email without an account', () => {
    given([])
      .when(choose(false))
      .thenThrows((error: Error) => error instanceof DomainError && error.code === 'not_found');
  });

  it('folds the choice into the state the statement emails job reads', () => {
    const fold = (events: AccountEvent[]) => events.reduce(evolveAccount, initialAccount()).statementEmails;
    assert.equal(fold([opened]), true);
    assert.equal(fold([opened, chosen(false)]), false);
    assert.equal(fold([opened, chosen(false), chosen(true)]), true);
  });
});
