// The capsul's operational stream as Given / When / Then: placement on a host, what that host reports
// (provisioned, states, deletion, failure), the start/stop requests and the scheduled deletion; the
// operation ids that tie a request to the report completing it, and the report ids that make the same
// report sent twice change nothing; and a capsul its host reports deleted unasked, which vanished.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DeciderSpecification } from '@event-driven-io/emmett';
import {
  decideVm,
  type ConfirmDeleted,
  type ObserveState,
  type PlaceVm,
  type RecordFailure,
  type RecordProvisioned,
  type RequestStart,
  type RequestStop,
  type ScheduleDeletion,
  type VmCommand,
  type VmContext,
} from '../../src/domain/vm/decider.ts';
import type {
  ObservedState,
  VmDeleted,
  VmDeletionScheduled,
  VmEvent,
  VmFailed,
  VmPlaced,
  VmProvisioned,
  VmStartRequested,
  VmStateObserved,
  VmStopRequested,
  VmVanished,
} from '../../src/domain/vm/events.ts';
import { alreadyReported, evolveVm, initialVm, rememberedStateReports } from '../../src/domain/vm/state.ts';
import { failsWith } from '../support/domain-error.ts';

const testCause = { by: { kind: 'spoke', id: 'host-a' } } as const;

const given = DeciderSpecification.for({ decide: decideVm, evolve: evolveVm, initialState: initialVm });

// emmett's `then` matches each expected event as a subset of an actual one and crashes on an expected
// null field: tests whose events hold a null (a report completing no operation) compare whole events.
const decideAfter = (events: VmEvent[], command: VmCommand) => decideVm(command, events.reduce(evolveVm, initialVm()));

const vmId = 'capsul-a1b2c3d4e5';
const accountId = '5b1c7e0a-0000-4000-8000-00000000a11c';
const host = 'spoke-a';
const otherHost = 'spoke-b';
const t0 = new Date('2026-01-01T00:00:00.000Z');
const after = (seconds: number) => new Date(t0.getTime() + seconds * 1000);
const iso = (date: Date) => date.toISOString();

const live: VmContext = { accountId, deletionRequested: false };
const beingDeleted: VmContext = { accountId, deletionRequested: true };
const hostKeys = [{ type: 'ssh-ed25519', sha256: 'SHA256:3q2+7w0000000000000000000000000000000000000' }];

// Operations asked of the host; each report that completes one carries its id.
const placement = 'op-place-0001';
const startOp = 'op-start-0002';
const stopOp = 'op-stop-0003';
const deletionOp = 'op-delete-0004';

type ReportIds = { reportId: string | null; operationId: string | null };
const ids = (reportId: string | null, operationId: string | null = null): ReportIds => ({ reportId, operationId });
/** By default a report is known by its kind and instant: two helpers agree on a report id only when they describe the same report. */
const reportOf = (kind: string, at: Date, operationId: string | null = null) => ids(`${kind}@${iso(at)}`, operationId);

// Commands: time always arrives in the metadata; what a host saw carries its own observedAt.

const placeVm = (onHost = host, context = live, now = t0, operationId = placement): PlaceVm => ({
  type: 'PlaceVm',
  data: { vmId, host: onHost, operationId, context },
  metadata: { now, cause: testCause },
});
const recordProvisioned = (
  byHost = host,
  observedAt = after(60),
  report = reportOf('provisioned', observedAt, placement),
): RecordProvisioned => ({
  type: 'RecordProvisioned',
  data: { vmId, host: byHost, ipv4: '192.0.2.10', ipv6: '2001:db8::10', sshHostKeys: hostKeys, observedAt, ...report },
  metadata: { now: observedAt, cause: testCause },
});
const observeState = (
  state: ObservedState,
  observedAt: Date,
  byHost = host,
  report = reportOf(`state-${state}`, observedAt),
): ObserveState => ({
  type: 'ObserveState',
  data: { vmId, host: byHost, state, observedAt, ...report },
  metadata: { now: observedAt, cause: testCause },
});
const requestStart = (context = live, now = after(600), operationId = startOp): RequestStart => ({
  type: 'RequestStart',
  data: { vmId, operationId, context },
  metadata: { now, cause: testCause },
});
const requestStop = (force: boolean, context = live, now = after(600), operationId = stopOp): RequestStop => ({
  type: 'RequestStop',
  data: { vmId, force, operationId, context },
  metadata: { now, cause: testCause },
});
const scheduleDeletion = (context = beingDeleted, now = after(800), operationId = deletionOp): ScheduleDeletion => ({
  type: 'ScheduleDeletion',
  data: { vmId, operationId, context },
  metadata: { now, cause: testCause },
});
const confirmDeleted = (
  byHost: string | null = host,
  observedAt = after(900),
  report = reportOf('deleted', observedAt, deletionOp),
): ConfirmDeleted => ({
  type: 'ConfirmDeleted',
  data: { vmId, host: byHost, observedAt, ...report },
  metadata: { now: observedAt, cause: testCause },
});
const recordFailure = (error: string, byHost = host, observedAt = after(120), report = reportOf('failure', observedAt)): RecordFailure => ({
  type: 'RecordFailure',
  data: { vmId, host: byHost, error, observedAt, ...report },
  metadata: { now: observedAt, cause: testCause },
});

// Events, as the decider writes them.

const vmPlaced = (onHost = host, operationId = placement): VmPlaced => ({
  type: 'VmPlaced',
  data: { vmId, accountId, host: onHost, operationId, at: iso(t0) },
});
const vmProvisioned = (at = after(60), report = reportOf('provisioned', at, placement)): VmProvisioned => ({
  type: 'VmProvisioned',
  data: { vmId, host, ipv4: '192.0.2.10', ipv6: '2001:db8::10', sshHostKeys: hostKeys, ...report, at: iso(at) },
});
const vmStateObserved = (state: ObservedState, at: Date, report = reportOf(`state-${state}`, at)): VmStateObserved => ({
  type: 'VmStateObserved',
  data: { vmId, host, state, ...report, at: iso(at) },
});
const vmStartRequested = (at = after(600), onHost = host, operationId = startOp): VmStartRequested => ({
  type: 'VmStartRequested',
  data: { vmId, host: onHost, operationId, at: iso(at) },
});
const vmStopRequested = (force: boolean, at = after(600), onHost = host, operationId = stopOp): VmStopRequested => ({
  type: 'VmStopRequested',
  data: { vmId, host: onHost, force, operationId, at: iso(at) },
});
const vmDeletionScheduled = (at = after(800), operationId = deletionOp): VmDeletionScheduled => ({
  type: 'VmDeletionScheduled',
  data: { vmId, host, operationId, at: iso(at) },
});
const vmDeleted = (at = after(900), report = reportOf('deleted', at, deletionOp)): VmDeleted => ({
  type: 'VmDeleted',
  data: { vmId, host, ...report, at: iso(at) },
});
const vmFailed = (
  error: string,
  at = after(120),
  report = reportOf('failure', at),
  operation: VmFailed['data']['operation'] = null,
): VmFailed => ({
  type: 'VmFailed',
  data: { vmId, host, error, operation, ...report, at: iso(at) },
});

/** Placed on spoke-a, provisioned a minute later, seen running at two minutes. */
const runningOnHost = (): VmEvent[] => [vmPlaced(), vmProvisioned(after(60)), vmStateObserved('running', after(120))];

describe('placing a capsul', () => {
  it('places a new capsul on a host, with the operation asked of that host', () => {
    given([])
      .when(placeVm(host))
      .then([{ type: 'VmPlaced', data: { vmId, accountId, host, operationId: placement, at: iso(t0) } }]);
  });

  it('changes nothing when placed again on the same host', () => {
    given([vmPlaced(host)])
      .when(placeVm(host, live, after(30), 'op-place-retry'))
      .thenNothingHappened();
  });

  it('refuses to move a placed capsul to another host', () => {
    given([vmPlaced(host)])
      .when(placeVm(otherHost))
      .thenThrows(failsWith('refused', /^capsul capsul-a1b2c3d4e5 is already placed on host spoke-a$/));
  });

  it('refuses to place a capsul whose deletion was requested', () => {
    given([])
      .when(placeVm(host, beingDeleted))
      .thenThrows(failsWith('refused', /^capsul capsul-a1b2c3d4e5 is being deleted$/));
  });
});

describe('recording that a capsul was provisioned', () => {
  it('records what its host reported, at the time it was observed, with the report and the placement it completes', () => {
    given([vmPlaced()])
      .when(recordProvisioned(host, after(60), ids('report-prov-1', placement)))
      .then([
        {
          type: 'VmProvisioned',
          data: {
            vmId,
            host,
            ipv4: '192.0.2.10',
            ipv6: '2001:db8::10',
            sshHostKeys: hostKeys,
            reportId: 'report-prov-1',
            operationId: placement,
            at: iso(after(60)),
          },
        },
      ]);
  });

  it('changes nothing the second time', () => {
    given([vmPlaced(), vmProvisioned()])
      .when(recordProvisioned(host, after(90)))
      .thenNothingHappened();
  });

  it('refuses a report from a host the capsul is not placed on', () => {
    given([vmPlaced()])
      .when(recordProvisioned(otherHost))
      .thenThrows(failsWith('refused', /^capsul capsul-a1b2c3d4e5 is placed on host spoke-a, not spoke-b$/));
  });

  it('does not find a capsul that is not placed yet', () => {
    given([])
      .when(recordProvisioned(host))
      .thenThrows(failsWith('not_found', /^capsul capsul-a1b2c3d4e5 is not placed on any host$/));
  });

  it('changes nothing once the capsul is deleted', () => {
    given([vmPlaced(), vmDeleted(after(30))])
      .when(recordProvisioned(host, after(60)))
      .thenNothingHappened();
  });
});

describe('observing a capsul state', () => {
  it('records a newer, different state', () => {
    const events = decideAfter(runningOnHost(), observeState('stopped', after(300), host, ids('report-state-9')));
    assert.deepEqual(events, [
      {
        type: 'VmStateObserved',
        data: { vmId, host, state: 'stopped', reportId: 'report-state-9', operationId: null, at: iso(after(300)) },
      },
    ]);
  });

  it('records the first state seen after provisioning', () => {
    const events = decideAfter([vmPlaced(), vmProvisioned(after(60))], observeState('running', after(61)));
    assert.deepEqual(events, [vmStateObserved('running', after(61))]);
  });

  it('records a new state with the operation it completes', () => {
    given([...runningOnHost(), vmStopRequested(false)])
      .when(observeState('stopped', after(660), host, ids('report-state-10', stopOp)))
      .then([vmStateObserved('stopped', after(660), ids('report-state-10', stopOp))]);
  });

  it('changes nothing when the state is the same as last seen', () => {
    given(runningOnHost())
      .when(observeState('running', after(300)))
      .thenNothingHappened();
  });

  it('records the same state as last seen when it completes an operation', () => {
    // A start asked of a running capsul: the host answers "running", and the operation is done.
    given([...runningOnHost(), vmStartRequested()])
      .when(observeState('running', after(660), host, ids('report-state-11', startOp)))
      .then([vmStateObserved('running', after(660), ids('report-state-11', startOp))]);
  });

  it('changes nothing for an observation completing an operation but older than the last one', () => {
    given([...runningOnHost(), vmStartRequested()])
      .when(observeState('running', after(119), host, ids('report-state-12', startOp)))
      .thenNothingHappened();
  });

  it('changes nothing for an observation older than the last one', () => {
    given(runningOnHost())
      .when(observeState('stopped', after(119)))
      .thenNothingHappened();
  });

  it('changes nothing for an observation as old as the last one', () => {
    given(runningOnHost())
      .when(observeState('stopped', after(120)))
      .thenNothingHappened();
  });

  it('records a state reported at the very instant of provisioning', () => {
    const events = decideAfter([vmPlaced(), vmProvisioned(after(60))], observeState('running', after(60)));
    assert.deepEqual(events, [vmStateObserved('running', after(60))]);
  });

  it('changes nothing for an observation older than the provisioning report', () => {
    given([vmPlaced(), vmProvisioned(after(60))])
      .when(observeState('running', after(59)))
      .thenNothingHappened();
  });

  it('refuses an observation from a host the capsul is not placed on', () => {
    given(runningOnHost())
      .when(observeState('stopped', after(300), otherHost))
      .thenThrows(failsWith('refused', /is placed on host spoke-a, not spoke-b$/));
  });

  it('refuses a state it does not know', () => {
    given(runningOnHost())
      .when(observeState('exploded' as ObservedState, after(300)))
      .thenThrows(failsWith('invalid', /^"exploded" is not a capsul state$/));
  });

  it('changes nothing once the capsul is deleted', () => {
    given([...runningOnHost(), vmDeleted(after(200))])
      .when(observeState('running', after(300)))
      .thenNothingHappened();
  });

  it('changes nothing once the capsul is deleted, even for a report completing an operation', () => {
    given([...runningOnHost(), vmStartRequested(), vmDeleted(after(700))])
      .when(observeState('running', after(800), host, ids('report-state-13', startOp)))
      .thenNothingHappened();
  });
});

describe('requesting a start or a stop', () => {
  it('requests a start of its host, now, as an operation', () => {
    given(runningOnHost())
      .when(requestStart(live, after(600), startOp))
      .then([{ type: 'VmStartRequested', data: { vmId, host, operationId: startOp, at: iso(after(600)) } }]);
  });

  it('requests a stop of its host, now, as an operation', () => {
    given(runningOnHost())
      .when(requestStop(false, live, after(600), stopOp))
      .then([{ type: 'VmStopRequested', data: { vmId, host, force: false, operationId: stopOp, at: iso(after(600)) } }]);
  });

  it('carries a forced stop', () => {
    given(runningOnHost())
      .when(requestStop(true, live, after(600)))
      .then([{ type: 'VmStopRequested', data: { vmId, host, force: true, operationId: stopOp, at: iso(after(600)) } }]);
  });

  it('asks the start of the host the capsul is placed on', () => {
    given([vmPlaced(otherHost)])
      .when(requestStart(live, after(600)))
      .then([vmStartRequested(after(600), otherHost)]);
  });

  it('asks the stop of the host the capsul is placed on', () => {
    given([vmPlaced(otherHost)])
      .when(requestStop(false, live, after(600)))
      .then([vmStopRequested(false, after(600), otherHost)]);
  });

  it('refuses a start before the capsul is on a host', () => {
    given([])
      .when(requestStart())
      .thenThrows(failsWith('refused', /^capsul capsul-a1b2c3d4e5 is not on a host yet$/));
  });

  it('refuses a stop before the capsul is on a host', () => {
    given([])
      .when(requestStop(false))
      .thenThrows(failsWith('refused', /is not on a host yet$/));
  });

  it('refuses a start once the deletion was requested', () => {
    given(runningOnHost())
      .when(requestStart(beingDeleted))
      .thenThrows(failsWith('refused', /^capsul capsul-a1b2c3d4e5 is deleted$/));
  });

  it('refuses a stop once the capsul is deleted', () => {
    given([...runningOnHost(), vmDeleted()])
      .when(requestStop(true))
      .thenThrows(failsWith('refused', /is deleted$/));
  });
});

describe('scheduling a deletion', () => {
  it('asks the deletion of its host, now, as an operation', () => {
    given(runningOnHost())
      .when(scheduleDeletion(beingDeleted, after(800), deletionOp))
      .then([{ type: 'VmDeletionScheduled', data: { vmId, host, operationId: deletionOp, at: iso(after(800)) } }]);
  });

  it('asks the deletion of a failed capsul too', () => {
    given([vmPlaced(), vmFailed('qemu: could not allocate memory')])
      .when(scheduleDeletion())
      .then([vmDeletionScheduled()]);
  });

  it('refuses when the account has not requested the deletion', () => {
    given(runningOnHost())
      .when(scheduleDeletion(live))
      .thenThrows(failsWith('refused', /^capsul capsul-a1b2c3d4e5: its deletion was not requested$/));
  });

  it('changes nothing the second time, whatever its operation id', () => {
    given([...runningOnHost(), vmDeletionScheduled()])
      .when(scheduleDeletion(beingDeleted, after(860), 'op-delete-again'))
      .thenNothingHappened();
  });

  it('refuses a capsul on no host: there is nobody to ask', () => {
    given([])
      .when(scheduleDeletion())
      .thenThrows(failsWith('refused', /^capsul capsul-a1b2c3d4e5 is on no host: confirm its deletion instead$/));
  });

  it('changes nothing once the capsul is deleted', () => {
    given([...runningOnHost(), vmDeleted(after(700))])
      .when(scheduleDeletion())
      .thenNothingHappened();
  });

  it('changes nothing once a capsul that never reached a host is deleted', () => {
    const deletedOffHost: VmDeleted = {
      type: 'VmDeleted',
      data: { vmId, host: null, reportId: null, operationId: null, at: iso(after(30)) },
    };
    given([deletedOffHost]).when(scheduleDeletion()).thenNothingHappened();
  });
});

describe('confirming a deletion', () => {
  it('records the deletion its host confirmed, at the time it was observed, with the deletion it completes', () => {
    given([...runningOnHost(), vmDeletionScheduled()])
      .when(confirmDeleted(host, after(900), ids('report-del-1', deletionOp)))
      .then([{ type: 'VmDeleted', data: { vmId, host, reportId: 'report-del-1', operationId: deletionOp, at: iso(after(900)) } }]);
  });

  it('changes nothing the second time', () => {
    given([...runningOnHost(), vmDeleted(after(900))])
      .when(confirmDeleted(host, after(960)))
      .thenNothingHappened();
  });

  it('refuses a confirmation from a host the capsul is not placed on', () => {
    given(runningOnHost())
      .when(confirmDeleted(otherHost))
      .thenThrows(failsWith('refused', /is placed on host spoke-a, not spoke-b$/));
  });

  it('does not find a capsul that was never placed on the confirming host', () => {
    given([])
      .when(confirmDeleted(host))
      .thenThrows(failsWith('not_found', /is not placed on any host$/));
  });

  it('refuses a confirmation without a host for a capsul that is on one', () => {
    given(runningOnHost())
      .when(confirmDeleted(null))
      .thenThrows(failsWith('refused', /only that host can confirm its deletion$/));
  });

  it('deletes a capsul never placed on any host without a host', () => {
    const events = decideVm(confirmDeleted(null, after(900), ids(null)), initialVm());
    assert.deepEqual(events, [{ type: 'VmDeleted', data: { vmId, host: null, reportId: null, operationId: null, at: iso(after(900)) } }]);
  });
});

describe('recording a failure', () => {
  it('records the failure its host reported', () => {
    const events = decideAfter([vmPlaced()], recordFailure('qemu: could not allocate memory', host, after(120), ids('report-fail-1')));
    assert.deepEqual(events, [
      {
        type: 'VmFailed',
        data: {
          vmId,
          host,
          error: 'qemu: could not allocate memory',
          operation: null,
          reportId: 'report-fail-1',
          operationId: null,
          at: iso(after(120)),
        },
      },
    ]);
  });

  it('records the operation the failure ends', () => {
    given([vmPlaced()])
      .when(recordFailure('qemu: could not allocate memory', host, after(120), ids('report-fail-2', placement)))
      .then([vmFailed('qemu: could not allocate memory', after(120), ids('report-fail-2', placement), 'create')]);
  });

  it('keeps at most 2000 characters of the error', () => {
    assert.deepEqual(decideAfter([vmPlaced()], recordFailure('e'.repeat(5000))), [vmFailed('e'.repeat(2000))]);
  });

  it('never cuts a character in two where it keeps 2000 (PostgreSQL refuses half of a surrogate pair)', () => {
    const [event] = decideAfter([vmPlaced()], recordFailure(`${'e'.repeat(1999)}🔥 and more`));
    assert.equal(event!.type, 'VmFailed');
    const error = (event as { data: { error: string } }).data.error;
    assert.equal(error.isWellFormed(), true);
    assert.equal(error, `${'e'.repeat(1999)}\ufffd`);
  });

  it('changes nothing when the capsul has already failed', () => {
    given([vmPlaced(), vmFailed('first')])
      .when(recordFailure('second', host, after(180)))
      .thenNothingHappened();
  });

  it('records a failure ending an operation even when the capsul has already failed', () => {
    // A start asked of a failed capsul must hear back, or it would wait forever.
    given([vmPlaced(), vmFailed('disk full'), vmStartRequested()])
      .when(recordFailure('could not start: disk full', host, after(660), ids('report-fail-3', startOp)))
      .then([vmFailed('could not start: disk full', after(660), ids('report-fail-3', startOp), 'start')]);
  });

  it('changes nothing once the capsul is deleted', () => {
    given([...runningOnHost(), vmDeleted()])
      .when(recordFailure('late', host, after(1000)))
      .thenNothingHappened();
  });

  it('changes nothing once the capsul is deleted, even for a failure ending an operation', () => {
    given([...runningOnHost(), vmDeleted()])
      .when(recordFailure('late', host, after(1000), ids('report-fail-4', startOp)))
      .thenNothingHappened();
  });

  it('refuses a failure from a host the capsul is not placed on', () => {
    given([vmPlaced()])
      .when(recordFailure('boom', otherHost))
      .thenThrows(failsWith('refused', /is placed on host spoke-a, not spoke-b$/));
  });
});

describe('receiving the same report again', () => {
  // The host resends a report it is not sure arrived: the second copy must change nothing.

  it('changes nothing for a provisioning report already recorded', () => {
    const report = ids('report-prov-7', placement);
    given([vmPlaced(), vmProvisioned(after(60), report)])
      .when(recordProvisioned(host, after(60), report))
      .thenNothingHappened();
  });

  it('changes nothing for a state report already recorded', () => {
    const report = ids('report-state-7', startOp);
    given([...runningOnHost(), vmStartRequested(), vmStateObserved('running', after(660), report)])
      .when(observeState('running', after(660), host, report))
      .thenNothingHappened();
  });

  it('changes nothing for a deletion report already recorded', () => {
    const report = ids('report-del-7', deletionOp);
    given([...runningOnHost(), vmDeletionScheduled(), vmDeleted(after(900), report)])
      .when(confirmDeleted(host, after(900), report))
      .thenNothingHappened();
  });

  it('changes nothing for a failure report already recorded, though it ends an operation', () => {
    const report = ids('report-fail-7', startOp);
    given([vmPlaced(), vmStartRequested(), vmFailed('disk full', after(660), report)])
      .when(recordFailure('disk full', host, after(660), report))
      .thenNothingHappened();
  });

  it('remembers every report, not only the last one', () => {
    given([
      vmPlaced(),
      vmFailed('disk full', after(120), ids('report-fail-8', placement)),
      vmStartRequested(),
      vmFailed('could not start: disk full', after(660), ids('report-fail-9', startOp)),
    ])
      .when(recordFailure('disk full', host, after(120), ids('report-fail-8', placement)))
      .thenNothingHappened();
  });

  it('forgets a state report once a hundred newer ones are recorded, and the same report then is stale: nothing happens either way', () => {
    const report = ids('report-state-old');
    const old = vmStateObserved('stopped', after(300), report);
    const newer = (count: number) =>
      Array.from({ length: count }, (_, i) =>
        vmStateObserved(i % 2 === 0 ? 'running' : 'stopped', after(400 + i), ids(`report-state-${i}`)),
      );
    const remembered = [...runningOnHost(), old, ...newer(rememberedStateReports - 1)].reduce(evolveVm, initialVm());
    assert.ok(alreadyReported(remembered, 'report-state-old'));
    const forgotten = [...runningOnHost(), old, ...newer(rememberedStateReports)].reduce(evolveVm, initialVm());
    assert.ok(!alreadyReported(forgotten, 'report-state-old'));
    assert.equal(forgotten.recentStateReports.length, rememberedStateReports);
    assert.equal(forgotten.recentStateReports.at(-1), `report-state-${rememberedStateReports - 1}`);
    given([...runningOnHost(), old, ...newer(rememberedStateReports)])
      .when(observeState('stopped', after(300), host, report))
      .thenNothingHappened();
  });

  it('remembers the reports that are not state reports however many state reports follow', () => {
    const report = ids('report-prov-kept', placement);
    const later = Array.from({ length: 3 * rememberedStateReports }, (_, i) =>
      vmStateObserved(i % 2 === 0 ? 'stopped' : 'running', after(120 + i), ids(`report-state-${i}`)),
    );
    const state = [vmPlaced(), vmProvisioned(after(60), report), ...later].reduce(evolveVm, initialVm());
    assert.ok(alreadyReported(state, 'report-prov-kept'));
    given([vmPlaced(), vmProvisioned(after(60), report), ...later])
      .when(recordProvisioned(host, after(60), report))
      .thenNothingHappened();
  });

  it('judges reports without an id on what they say alone', () => {
    const anonymous = ids(null);
    const events = decideAfter(
      [vmPlaced(), vmProvisioned(), vmStateObserved('running', after(120), anonymous)],
      observeState('stopped', after(300), host, anonymous),
    );
    assert.deepEqual(events, [vmStateObserved('stopped', after(300), anonymous)]);
  });
});

describe('operations and reports that do not belong', () => {
  it('refuses a report from another host even when it reuses a recorded report id', () => {
    const report = reportOf('failure', after(120));
    given([...runningOnHost(), vmFailed('disk full', after(120), report)])
      .when(recordFailure('disk full', otherHost, after(120), report))
      .thenThrows(failsWith('refused', /is placed on host spoke-a, not spoke-b$/));
  });

  it('changes nothing for a repeat of the current state naming an operation never asked for', () => {
    given(runningOnHost())
      .when(observeState('running', after(300), host, reportOf('state-running', after(300), 'never-asked')))
      .thenNothingHappened();
  });

  it('changes nothing for a repeat of the current state naming an operation already completed', () => {
    given([
      ...runningOnHost(),
      vmStopRequested(false),
      vmStateObserved('stopped', after(700), reportOf('state-stopped', after(700), stopOp)),
    ])
      .when(observeState('stopped', after(800), host, reportOf('state-stopped', after(800), stopOp)))
      .thenNothingHappened();
  });

  it('changes nothing when the same start request arrives twice', () => {
    given([...runningOnHost(), vmStartRequested()])
      .when(requestStart())
      .thenNothingHappened();
  });

  it('keeps recording failures only for operations still open', () => {
    given([...runningOnHost(), vmFailed('disk full', after(200), reportOf('failure', after(200)))])
      .when(recordFailure('disk still full', host, after(300), reportOf('failure', after(300), 'never-asked')))
      .thenNothingHappened();
  });
});

describe('what a failed operation leaves behind', () => {
  const fold = (events: VmEvent[]) => events.reduce(evolveVm, initialVm());

  it('a failed create fails the capsul', () => {
    assert.equal(fold([vmPlaced(), vmFailed('no disk', after(120), ids('f1', placement), 'create')]).state, 'failed');
  });

  it('a failed stop leaves the capsul running', () => {
    const state = fold([...runningOnHost(), vmStopRequested(false), vmFailed('acpi timeout', after(700), ids('f2', stopOp), 'stop')]);
    assert.equal(state.state, 'running');
  });

  it('a failed delete lets the deletion be scheduled again', () => {
    const events = [...runningOnHost(), vmDeletionScheduled(), vmFailed('virsh: busy', after(850), ids('f3', deletionOp), 'delete')];
    given(events)
      .when(scheduleDeletion(beingDeleted, after(900), 'op-delete-again'))
      .then([{ type: 'VmDeletionScheduled', data: { vmId, host, operationId: 'op-delete-again', at: iso(after(900)) } }]);
  });

  it('records new addresses when a capsul comes back with others', () => {
    const moved = recordProvisioned(host, after(700), reportOf('provisioned', after(700), null));
    const events = decideAfter(runningOnHost(), { ...moved, data: { ...moved.data, ipv4: '192.0.2.99' } });
    assert.equal(events.length, 1);
    assert.equal((events[0] as VmProvisioned).data.ipv4, '192.0.2.99');
  });

  it('changes nothing when a capsul comes back with the same addresses', () => {
    given(runningOnHost())
      .when(recordProvisioned(host, after(700), reportOf('provisioned', after(700), null)))
      .thenNothingHappened();
  });
});

describe('a capsul its host reports deleted without being asked', () => {
  // No delete operation was ever asked of the host: its report of a deletion is an incident, recorded as
  // the capsul vanishing, at the host's time (kept between its last sign of life and the hub's clock).
  // VmVanished lists the operations it cancels: compared whole, so none is missing and none is extra.

  /** The host's report that the capsul is gone, observed at `observedAt`, received by the hub at `now`. */
  const reportGone = (observedAt: Date, now = observedAt, report = reportOf('deleted', observedAt)): ConfirmDeleted => ({
    type: 'ConfirmDeleted',
    data: { vmId, host, observedAt, ...report },
    metadata: { now, cause: testCause },
  });
  const vmVanished = (at: Date, data: Partial<VmVanished['data']> = {}): VmVanished => ({
    type: 'VmVanished',
    data: {
      vmId,
      host,
      reportId: `deleted@${iso(at)}`,
      observedAt: iso(at),
      reportedAt: iso(at),
      cancelledOperationIds: [],
      at: iso(at),
      ...data,
    },
  });
  const vanishedAtFive = (): VmEvent[] => [...runningOnHost(), vmVanished(after(300))];

  it('records the capsul as vanished, not deleted, when the host saw it gone', () => {
    const events = decideAfter(runningOnHost(), reportGone(after(300), after(305), ids('report-gone-1')));
    assert.deepEqual(events, [
      {
        type: 'VmVanished',
        data: {
          vmId,
          host,
          reportId: 'report-gone-1',
          observedAt: iso(after(300)),
          reportedAt: iso(after(305)),
          cancelledOperationIds: [],
          at: iso(after(300)),
        },
      },
    ]);
  });

  it('cancels the operations still open, the one the report names among them', () => {
    const history = [...runningOnHost(), vmStopRequested(false), vmStartRequested(after(610), host, 'op-start-late')];
    const events = decideAfter(history, reportGone(after(700), after(700), ids('report-gone-2', stopOp)));
    assert.deepEqual(events, [vmVanished(after(700), { reportId: 'report-gone-2', cancelledOperationIds: [stopOp, 'op-start-late'] })]);
  });

  it('takes it to have gone no earlier than the host last reported it there', () => {
    // Seen running at 120 s, then reported gone as of 100 s: its own reports say it existed at 120 s.
    const events = decideAfter(runningOnHost(), reportGone(after(100), after(400), ids('report-gone-3')));
    assert.deepEqual(events, [
      vmVanished(after(120), { reportId: 'report-gone-3', observedAt: iso(after(100)), reportedAt: iso(after(400)) }),
    ]);
  });

  it('takes it to have gone no later than the hub heard of it', () => {
    // The host's clock runs an hour ahead.
    const events = decideAfter(runningOnHost(), reportGone(after(3900), after(300), ids('report-gone-4')));
    assert.deepEqual(events, [
      vmVanished(after(300), { reportId: 'report-gone-4', observedAt: iso(after(3900)), reportedAt: iso(after(300)) }),
    ]);
  });

  it('records a capsul that failed to be created and then vanished', () => {
    const events = decideAfter(
      [vmPlaced(), vmFailed('no disk', after(120), ids('f-create', placement), 'create')],
      reportGone(after(300), after(300), ids('report-gone-5')),
    );
    assert.deepEqual(events, [vmVanished(after(300), { reportId: 'report-gone-5' })]);
  });

  it('changes nothing when the same report arrives again', () => {
    given(vanishedAtFive())
      .when(reportGone(after(300)))
      .thenNothingHappened();
  });

  it('changes nothing when another report says it is gone again', () => {
    given(vanishedAtFive())
      .when(reportGone(after(400)))
      .thenNothingHappened();
  });

  it('changes nothing for a state the host reports of it later: it stays vanished', () => {
    given(vanishedAtFive())
      .when(observeState('running', after(400)))
      .thenNothingHappened();
  });

  it('changes nothing for a provisioning or a failure the host reports of it later', () => {
    given(vanishedAtFive())
      .when(recordProvisioned(host, after(400), reportOf('provisioned', after(400), null)))
      .thenNothingHappened();
    given(vanishedAtFive())
      .when(recordFailure('late', host, after(400)))
      .thenNothingHappened();
  });

  it('refuses a start or a stop of a vanished capsul', () => {
    given(vanishedAtFive())
      .when(requestStart())
      .thenThrows(failsWith('refused', /^capsul capsul-a1b2c3d4e5 vanished from its host$/));
    given(vanishedAtFive())
      .when(requestStop(true))
      .thenThrows(failsWith('refused', /vanished from its host$/));
  });

  it('still refuses the report of a host it is not on', () => {
    given(runningOnHost())
      .when({ ...reportGone(after(300)), data: { ...reportGone(after(300)).data, host: otherHost } })
      .thenThrows(failsWith('refused', /is placed on host spoke-a, not spoke-b$/));
  });

  it('asks its host to delete what is left once its deletion is requested, and records the confirmed deletion', () => {
    given(vanishedAtFive())
      .when(scheduleDeletion(beingDeleted, after(800)))
      .then([vmDeletionScheduled(after(800))]);
    given([...vanishedAtFive(), vmDeletionScheduled(after(800))])
      .when(confirmDeleted(host, after(900), ids('report-del-after', deletionOp)))
      .then([{ type: 'VmDeleted', data: { vmId, host, reportId: 'report-del-after', operationId: deletionOp, at: iso(after(900)) } }]);
  });

  it('records the failure of the delete asked after it vanished, so it is asked again', () => {
    given([...vanishedAtFive(), vmDeletionScheduled(after(800))])
      .when(recordFailure('virsh: busy', host, after(850), ids('f-delete', deletionOp)))
      .then([vmFailed('virsh: busy', after(850), ids('f-delete', deletionOp), 'delete')]);
  });

  it('records a deletion as before once a delete was asked, even if that one failed meanwhile', () => {
    const events = [...runningOnHost(), vmDeletionScheduled(), vmFailed('virsh: busy', after(850), ids('f-del', deletionOp), 'delete')];
    assert.deepEqual(decideAfter(events, reportGone(after(900), after(900), ids('report-del-late'))), [
      { type: 'VmDeleted', data: { vmId, host, reportId: 'report-del-late', operationId: null, at: iso(after(900)) } },
    ]);
  });

  it('folds to a vanished capsul with nothing left to do', () => {
    const state = [...runningOnHost(), vmStopRequested(false), vmVanished(after(700), { cancelledOperationIds: [stopOp] })].reduce(
      evolveVm,
      initialVm(),
    );
    assert.equal(state.state, 'vanished');
    assert.deepEqual(state.vanished, { at: iso(after(700)), host, reportId: `deleted@${iso(after(700))}` });
    assert.equal(state.openOperations.size, 0);
  });
});
