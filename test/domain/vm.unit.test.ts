// The capsul's operational stream as Given / When / Then: placement on a host, what that host reports
// (provisioned, states, deletion, failure) and the start/stop requests.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DeciderSpecification } from '@event-driven-io/emmett';
import {
  decideVm,
  evolveVm,
  initialVm,
  type ConfirmDeleted,
  type ObserveState,
  type PlaceVm,
  type RecordFailure,
  type RecordProvisioned,
  type RequestStart,
  type RequestStop,
  type VmContext,
} from '../../src/domain/vm/decider.ts';
import type {
  ObservedState,
  VmDeleted,
  VmEvent,
  VmFailed,
  VmPlaced,
  VmProvisioned,
  VmStateObserved,
} from '../../src/domain/vm/events.ts';
import { failsWith } from '../support/domain-error.ts';

const given = DeciderSpecification.for({ decide: decideVm, evolve: evolveVm, initialState: initialVm });

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

// Commands: time always arrives in the metadata; what a host saw carries its own observedAt.

const placeVm = (onHost = host, context = live, now = t0): PlaceVm => ({
  type: 'PlaceVm', data: { vmId, host: onHost, context }, metadata: { now },
});
const recordProvisioned = (byHost = host, observedAt = after(60)): RecordProvisioned => ({
  type: 'RecordProvisioned',
  data: { vmId, host: byHost, ipv4: '192.0.2.10', ipv6: '2001:db8::10', sshHostKeys: hostKeys, observedAt },
  metadata: { now: observedAt },
});
const observeState = (state: ObservedState, observedAt: Date, byHost = host): ObserveState => ({
  type: 'ObserveState', data: { vmId, host: byHost, state, observedAt }, metadata: { now: observedAt },
});
const requestStart = (context = live, now = after(600)): RequestStart => ({
  type: 'RequestStart', data: { vmId, context }, metadata: { now },
});
const requestStop = (force: boolean, context = live, now = after(600)): RequestStop => ({
  type: 'RequestStop', data: { vmId, force, context }, metadata: { now },
});
const confirmDeleted = (byHost: string | null = host, observedAt = after(900)): ConfirmDeleted => ({
  type: 'ConfirmDeleted', data: { vmId, host: byHost, observedAt }, metadata: { now: observedAt },
});
const recordFailure = (error: string, byHost = host, observedAt = after(120)): RecordFailure => ({
  type: 'RecordFailure', data: { vmId, host: byHost, error, observedAt }, metadata: { now: observedAt },
});

// Events, as the decider writes them.

const vmPlaced = (onHost = host): VmPlaced => ({ type: 'VmPlaced', data: { vmId, accountId, host: onHost, at: iso(t0) } });
const vmProvisioned = (at = after(60)): VmProvisioned => ({
  type: 'VmProvisioned',
  data: { vmId, host, ipv4: '192.0.2.10', ipv6: '2001:db8::10', sshHostKeys: hostKeys, at: iso(at) },
});
const vmStateObserved = (state: ObservedState, at: Date): VmStateObserved => ({
  type: 'VmStateObserved', data: { vmId, host, state, at: iso(at) },
});
const vmDeleted = (at = after(900)): VmDeleted => ({ type: 'VmDeleted', data: { vmId, host, at: iso(at) } });
const vmFailed = (error: string, at = after(120)): VmFailed => ({ type: 'VmFailed', data: { vmId, host, error, at: iso(at) } });

/** Placed on spoke-a, provisioned a minute later, seen running at two minutes. */
const runningOnHost = (): VmEvent[] => [vmPlaced(), vmProvisioned(after(60)), vmStateObserved('running', after(120))];

describe('placing a capsul', () => {
  it('places a new capsul on a host', () => {
    given([]).when(placeVm(host)).then([{ type: 'VmPlaced', data: { vmId, accountId, host, at: iso(t0) } }]);
  });

  it('changes nothing when placed again on the same host', () => {
    given([vmPlaced(host)]).when(placeVm(host, live, after(30))).thenNothingHappened();
  });

  it('refuses to move a placed capsul to another host', () => {
    given([vmPlaced(host)])
      .when(placeVm(otherHost))
      .thenThrows(failsWith('refused', /^capsul capsul-a1b2c3d4e5 is already placed on host spoke-a$/));
  });

  it('refuses to place a capsul whose deletion was requested', () => {
    given([]).when(placeVm(host, beingDeleted)).thenThrows(failsWith('refused', /^capsul capsul-a1b2c3d4e5 is being deleted$/));
  });
});

describe('recording that a capsul was provisioned', () => {
  it('records what its host reported, at the time it was observed', () => {
    given([vmPlaced()])
      .when(recordProvisioned(host, after(60)))
      .then([{
        type: 'VmProvisioned',
        data: { vmId, host, ipv4: '192.0.2.10', ipv6: '2001:db8::10', sshHostKeys: hostKeys, at: iso(after(60)) },
      }]);
  });

  it('changes nothing the second time', () => {
    given([vmPlaced(), vmProvisioned()]).when(recordProvisioned(host, after(90))).thenNothingHappened();
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
    given([vmPlaced(), vmDeleted(after(30))]).when(recordProvisioned(host, after(60))).thenNothingHappened();
  });
});

describe('observing a capsul state', () => {
  it('records a newer, different state', () => {
    given(runningOnHost())
      .when(observeState('stopped', after(300)))
      .then([{ type: 'VmStateObserved', data: { vmId, host, state: 'stopped', at: iso(after(300)) } }]);
  });

  it('records the first state seen after provisioning', () => {
    given([vmPlaced(), vmProvisioned(after(60))])
      .when(observeState('running', after(61)))
      .then([vmStateObserved('running', after(61))]);
  });

  it('changes nothing when the state is the same as last seen', () => {
    given(runningOnHost()).when(observeState('running', after(300))).thenNothingHappened();
  });

  it('changes nothing for an observation older than the last one', () => {
    given(runningOnHost()).when(observeState('stopped', after(119))).thenNothingHappened();
  });

  it('changes nothing for an observation as old as the last one', () => {
    given(runningOnHost()).when(observeState('stopped', after(120))).thenNothingHappened();
  });

  it('records a state reported at the very instant of provisioning', () => {
    given([vmPlaced(), vmProvisioned(after(60))])
      .when(observeState('running', after(60)))
      .then([vmStateObserved('running', after(60))]);
  });

  it('changes nothing for an observation older than the provisioning report', () => {
    given([vmPlaced(), vmProvisioned(after(60))]).when(observeState('running', after(59))).thenNothingHappened();
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
    given([...runningOnHost(), vmDeleted(after(200))]).when(observeState('running', after(300))).thenNothingHappened();
  });
});

describe('requesting a start or a stop', () => {
  it('requests a start, now', () => {
    given(runningOnHost()).when(requestStart(live, after(600))).then([{ type: 'VmStartRequested', data: { vmId, at: iso(after(600)) } }]);
  });

  it('requests a stop, now', () => {
    given(runningOnHost())
      .when(requestStop(false, live, after(600)))
      .then([{ type: 'VmStopRequested', data: { vmId, force: false, at: iso(after(600)) } }]);
  });

  it('carries a forced stop', () => {
    given(runningOnHost())
      .when(requestStop(true, live, after(600)))
      .then([{ type: 'VmStopRequested', data: { vmId, force: true, at: iso(after(600)) } }]);
  });

  it('refuses a start before the capsul is on a host', () => {
    given([]).when(requestStart()).thenThrows(failsWith('refused', /^capsul capsul-a1b2c3d4e5 is not on a host yet$/));
  });

  it('refuses a stop before the capsul is on a host', () => {
    given([]).when(requestStop(false)).thenThrows(failsWith('refused', /is not on a host yet$/));
  });

  it('refuses a start once the deletion was requested', () => {
    given(runningOnHost()).when(requestStart(beingDeleted)).thenThrows(failsWith('refused', /^capsul capsul-a1b2c3d4e5 is deleted$/));
  });

  it('refuses a stop once the capsul is deleted', () => {
    given([...runningOnHost(), vmDeleted()]).when(requestStop(true)).thenThrows(failsWith('refused', /is deleted$/));
  });
});

describe('confirming a deletion', () => {
  it('records the deletion its host confirmed, at the time it was observed', () => {
    given(runningOnHost())
      .when(confirmDeleted(host, after(900)))
      .then([{ type: 'VmDeleted', data: { vmId, host, at: iso(after(900)) } }]);
  });

  it('changes nothing the second time', () => {
    given([...runningOnHost(), vmDeleted(after(900))]).when(confirmDeleted(host, after(960))).thenNothingHappened();
  });

  it('refuses a confirmation from a host the capsul is not placed on', () => {
    given(runningOnHost())
      .when(confirmDeleted(otherHost))
      .thenThrows(failsWith('refused', /is placed on host spoke-a, not spoke-b$/));
  });

  it('does not find a capsul that was never placed on the confirming host', () => {
    given([]).when(confirmDeleted(host)).thenThrows(failsWith('not_found', /is not placed on any host$/));
  });

  it('refuses a confirmation without a host for a capsul that is on one', () => {
    given(runningOnHost()).when(confirmDeleted(null)).thenThrows(failsWith('refused', /only that host can confirm its deletion$/));
  });

  it('deletes a capsul never placed on any host without a host', () => {
    // emmett's `then` cannot expect a null field: compare the whole event.
    const events = decideVm(confirmDeleted(null, after(900)), initialVm());
    assert.deepEqual(events, [{ type: 'VmDeleted', data: { vmId, host: null, at: iso(after(900)) } }]);
  });
});

describe('recording a failure', () => {
  it('records the failure its host reported', () => {
    given([vmPlaced()])
      .when(recordFailure('qemu: could not allocate memory', host, after(120)))
      .then([vmFailed('qemu: could not allocate memory', after(120))]);
  });

  it('keeps at most 2000 characters of the error', () => {
    given([vmPlaced()]).when(recordFailure('e'.repeat(5000))).then([vmFailed('e'.repeat(2000))]);
  });

  it('changes nothing when the capsul has already failed', () => {
    given([vmPlaced(), vmFailed('first')]).when(recordFailure('second', host, after(180))).thenNothingHappened();
  });

  it('changes nothing once the capsul is deleted', () => {
    given([...runningOnHost(), vmDeleted()]).when(recordFailure('late', host, after(1000))).thenNothingHappened();
  });

  it('refuses a failure from a host the capsul is not placed on', () => {
    given([vmPlaced()])
      .when(recordFailure('boom', otherHost))
      .thenThrows(failsWith('refused', /is placed on host spoke-a, not spoke-b$/));
  });
});
