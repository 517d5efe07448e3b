// The capsul's state as a snapshot (domain/shared/snapshot.ts): its sets and open operations as lists,
// in the order they hold them.
import { fields, flag, list, number, oneOf, orNull, row, SnapshotShapeError, text, type SnapshotCodec } from '../shared/snapshot.ts';
import { rememberedStateReports, type Vm } from './state.ts';
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

/** The recent state reports' ids: no more than a fold keeps. */
function recentStateReports(value: unknown): string[] {
  const ids = texts(value, 'a state report id');
  if (ids.length > rememberedStateReports)
    throw new SnapshotShapeError(`snapshot: ${ids.length} recent state reports, more than a capsul keeps`);
  return ids;
}

export const vmSnapshot: SnapshotCodec<Vm> = {
  shapeVersion: 2,
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
    recentStateReports: state.recentStateReports,
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
      recentStateReports: recentStateReports(s.recentStateReports),
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
