// The capsul's state as a snapshot (domain/shared/snapshot.ts): its sets and open operations as lists,
// in the order they hold them.
import { fields, flag, list, number, oneOf, orNull, row, text, type SnapshotCodec } from '../shared/snapshot.ts';
import type { Vm } from './state.ts';
import { observedStates, type OperationKind } from './events.ts';

const states: readonly Vm['state'][] = [...observedStates, 'pending', 'creating', 'deleted', 'vanished', 'failed'];
const operationKinds: readonly OperationKind[] = ['create', 'start', 'stop', 'force-stop', 'delete'];

function decodeVanished(value: unknown): NonNullable<Vm['vanished']> {
  const v = fields(value, 'the vanishing');
  return {
    at: text(v.at, 'the vanishing instant'),
    host: text(v.host, 'the vanishing host'),
    reportId: orNull(v.reportId, text, 'a report id'),
  };
}

const texts = (value: unknown, what: string) => list(value, what).map((item) => text(item, what));

export const vmSnapshot: SnapshotCodec<Vm> = {
  shapeVersion: 1,
  encode: (state) => ({
    host: state.host,
    provisioned: state.provisioned,
    state: state.state,
    lastObservedAtMs: state.lastObservedAtMs,
    provisionedAtMs: state.provisionedAtMs,
    deletionScheduled: state.deletionScheduled,
    deletionAsked: state.deletionAsked,
    vanished: state.vanished,
    reportIds: [...state.reportIds],
    addresses: state.addresses,
    operationIds: [...state.operationIds],
    openOperations: [...state.openOperations],
  }),
  decode: (json) => {
    const s = fields(json, 'the capsul');
    return {
      host: orNull(s.host, text, 'the host'),
      provisioned: flag(s.provisioned, 'provisioned'),
      state: oneOf(s.state, states, 'the state'),
      lastObservedAtMs: number(s.lastObservedAtMs, 'the last observation'),
      provisionedAtMs: number(s.provisionedAtMs, 'the provisioning instant'),
      deletionScheduled: flag(s.deletionScheduled, 'deletion scheduled'),
      deletionAsked: flag(s.deletionAsked, 'deletion asked'),
      vanished: orNull(s.vanished, decodeVanished, 'the vanishing'),
      reportIds: new Set(texts(s.reportIds, 'a report id')),
      addresses: orNull(s.addresses, text, 'the addresses'),
      operationIds: new Set(texts(s.operationIds, 'an operation id')),
      openOperations: new Map(
        list(s.openOperations, 'open operations').map((entry) => {
          const [id, kind] = row(entry, 2, 'an open operation');
          return [text(id, 'an operation id'), oneOf(kind, operationKinds, 'an operation kind')];
        }),
      ),
    };
  },
};
