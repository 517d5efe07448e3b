// fast-check arbitraries of whole event sequences for one stream of each kind, for properties of folds
// and snapshots. Deliberately untidy: validity changes out of time order, refunds, events naming payments
// and capsuls that do not exist, reports repeated, operations completed twice. Ids come from small pools
// so that events meet the same payment, capsul or operation often.
import fc from 'fast-check';
import { warningLevels, type AccountEvent } from '../../src/domain/account/events.ts';
import type { HostEvent } from '../../src/domain/host/events.ts';
import { observedStates, type VmEvent } from '../../src/domain/vm/events.ts';

const accountId = 'acct-1';
const baseMs = Date.parse('2026-01-01T00:00:00.000Z');
/** An instant within about a year after 2026-01-01, to the millisecond. */
const at = fc.integer({ min: 0, max: 365 * 24 * 3_600_000 }).map((offsetMs) => new Date(baseMs + offsetMs).toISOString());
const paymentId = fc.integer({ min: 1, max: 6 });
const vmId = fc.constantFrom('capsul-aaaaaaaaaa', 'capsul-bbbbbbbbbb', 'capsul-cccccccccc');
const reference = fc.option(fc.constantFrom('pi_1', 'pi_2', 'inv_3'), { nil: null });
const cents = fc.integer({ min: 0, max: 100_000 });
const vmIds = fc.uniqueArray(vmId, { maxLength: 3 });

const accountEvent: fc.Arbitrary<AccountEvent> = fc.oneof(
  {
    weight: 1,
    arbitrary: fc.record({
      type: fc.constant('AccountOpened' as const),
      data: fc.record({ accountId: fc.constant(accountId), email: fc.constantFrom('a@example.org', 'b@example.org'), at }),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      type: fc.constant('PaymentRecorded' as const),
      data: fc.record({
        accountId: fc.constant(accountId),
        paymentId,
        amountCents: cents,
        provider: fc.constantFrom('manual' as const, 'stripe' as const, 'btcpay' as const),
        reference,
        at,
        recordedAt: at,
      }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      type: fc.constantFrom('PaymentInvalidated' as const, 'PaymentReinstated' as const),
      data: fc.record({ accountId: fc.constant(accountId), paymentId, at }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      type: fc.constant('PaymentRefunded' as const),
      data: fc.record({ accountId: fc.constant(accountId), paymentId, totalRefundedCents: cents, reference, at }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      type: fc.constant('BalanceWarningIssued' as const),
      data: fc.record({
        accountId: fc.constant(accountId),
        level: fc.constantFrom(...warningLevels),
        balanceCents: fc.integer({ min: -5000, max: 5000 }),
        at,
      }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      type: fc.constant('VmCreationRequested' as const),
      data: fc.record({
        accountId: fc.constant(accountId),
        vmId,
        size: fc.constantFrom('f1-xs', 'f1-s'),
        os: fc.constantFrom('debian12', 'alpine322'),
        sshPublicKeys: fc.constant([] as string[]),
        priceCentsPerMonth: cents,
        at,
      }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      type: fc.constant('VmDeletionRequested' as const),
      data: fc.record({ accountId: fc.constant(accountId), vmId, at }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      type: fc.constant('VmAccrualEnded' as const),
      data: fc.record({
        accountId: fc.constant(accountId),
        vmId,
        reason: fc.constant('vanished-from-host' as const),
        host: fc.constant('spoke-1'),
        reportId: fc.option(fc.uuid(), { nil: null }),
        at,
      }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      type: fc.constant('AccountSuspended' as const),
      data: fc.record({
        accountId: fc.constant(accountId),
        vmIds,
        balanceCents: fc.integer({ min: -5000, max: 0 }),
        suspensionPointCents: fc.integer({ min: -1000, max: 0 }),
        overdraftCents: fc.integer({ min: -2000, max: 0 }),
        deleteAfter: at,
        at,
      }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      type: fc.constant('AccountResumed' as const),
      data: fc.record({
        accountId: fc.constant(accountId),
        vmIds,
        balanceCents: cents,
        suspensionPointCents: fc.integer({ min: -1000, max: 0 }),
        at,
      }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      type: fc.constant('StatementEmailsChosen' as const),
      data: fc.record({ accountId: fc.constant(accountId), send: fc.boolean(), at }),
    }),
  },
);

const theVm = 'capsul-aaaaaaaaaa';
const host = fc.constantFrom('spoke-1', 'spoke-2');
const operationId = fc.constantFrom('op-1', 'op-2', 'op-3', 'op-4');
const reportId = fc.option(fc.constantFrom('r-1', 'r-2', 'r-3', 'r-4', 'r-5', 'r-6'), { nil: null });
const report = { reportId, operationId: fc.option(operationId, { nil: null }) };
const operationKind = fc.constantFrom('create' as const, 'start' as const, 'stop' as const, 'force-stop' as const, 'delete' as const);

const vmEvent: fc.Arbitrary<VmEvent> = fc.oneof(
  {
    weight: 1,
    arbitrary: fc.record({
      type: fc.constant('VmPlaced' as const),
      data: fc.record({ vmId: fc.constant(theVm), accountId: fc.constant(accountId), host, operationId, at }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      type: fc.constant('VmProvisioned' as const),
      data: fc.record({
        vmId: fc.constant(theVm),
        host,
        ipv4: fc.option(fc.constantFrom('10.0.0.2', '10.0.0.3'), { nil: null }),
        ipv6: fc.option(fc.constant('fd00::2'), { nil: null }),
        sshHostKeys: fc.array(fc.record({ type: fc.constant('ssh-ed25519'), sha256: fc.constantFrom('abc', 'def') }), { maxLength: 2 }),
        at,
        ...report,
      }),
    }),
  },
  {
    weight: 6,
    arbitrary: fc.record({
      type: fc.constant('VmStateObserved' as const),
      data: fc.record({ vmId: fc.constant(theVm), host, state: fc.constantFrom(...observedStates), at, ...report }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      type: fc.constant('VmStartRequested' as const),
      data: fc.record({ vmId: fc.constant(theVm), host, operationId, at }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      type: fc.constant('VmStopRequested' as const),
      data: fc.record({ vmId: fc.constant(theVm), host, force: fc.boolean(), operationId, at }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      type: fc.constant('VmDeletionScheduled' as const),
      data: fc.record({ vmId: fc.constant(theVm), host, operationId, at }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      type: fc.constant('VmDeleted' as const),
      data: fc.record({ vmId: fc.constant(theVm), host: fc.option(host, { nil: null }), at, ...report }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      type: fc.constant('VmVanished' as const),
      data: fc.record({
        vmId: fc.constant(theVm),
        host,
        reportId,
        observedAt: at,
        reportedAt: at,
        cancelledOperationIds: fc.uniqueArray(operationId, { maxLength: 2 }),
        at,
      }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      type: fc.constant('VmFailed' as const),
      data: fc.record({
        vmId: fc.constant(theVm),
        host,
        error: fc.constantFrom('no space', 'timeout'),
        operation: fc.option(operationKind, { nil: null }),
        at,
        ...report,
      }),
    }),
  },
);

const hostId = 'spoke-1';
const driftKind = fc.constantFrom('unexpected-on-host' as const, 'missing-from-host' as const);
const hostEvent: fc.Arbitrary<HostEvent> = fc.oneof(
  {
    weight: 1,
    arbitrary: fc.record({
      type: fc.constant('HostRegistered' as const),
      data: fc.record({
        hostId: fc.constant(hostId),
        memoryMb: fc.integer({ min: 1, max: 65_536 }),
        vcpus: fc.integer({ min: 1, max: 64 }),
        tokenHash: fc.constantFrom('h1', 'h2'),
        at,
      }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      type: fc.constant('HostTokenRotated' as const),
      data: fc.record({ hostId: fc.constant(hostId), tokenHash: fc.constantFrom('h3', 'h4'), at }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ type: fc.constant('HostRemoved' as const), data: fc.record({ hostId: fc.constant(hostId), at }) }) },
  {
    weight: 3,
    arbitrary: fc.record({
      type: fc.constant('DriftDetected' as const),
      data: fc.record({ hostId: fc.constant(hostId), vmId, kind: driftKind, at }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      type: fc.constant('DriftResolved' as const),
      data: fc.record({ hostId: fc.constant(hostId), vmId, kind: driftKind, detectedAt: at, at }),
    }),
  },
);

/** Event sequences of one account stream, one capsul stream, one host stream. */
export const accountEvents = (maxLength = 60) => fc.array(accountEvent, { maxLength, size: 'max' });
export const vmEvents = (maxLength = 60) => fc.array(vmEvent, { maxLength, size: 'max' });
export const hostEvents = (maxLength = 40) => fc.array(hostEvent, { maxLength, size: 'max' });
