// Drives a capsul through its whole life, so tests see every event type.
import { vmDecider, type VmCommand } from '../../src/domain/vm/decider.ts';
import { vmStream } from '../../src/domain/vm/events.ts';
import { handleCommand } from '../../src/ledger/handle.ts';
import type { TestDatabase } from './db.ts';

const spoke = { by: { kind: 'spoke' as const, id: 'host-a' } };

export async function vmCommand(db: TestDatabase, command: VmCommand) {
  return handleCommand(db, vmStream(command.data.vmId), vmDecider, command, spoke);
}

/** Places, provisions, observes, stops, starts and fails or deletes a capsul, with times from `at`. */
export async function lifeOnHost(db: TestDatabase, vmId: string, accountId: string, at: (n: number) => Date, end: 'deleted' | 'failed' | 'running') {
  const context = { accountId, deletionRequested: false };
  const meta = (n: number) => ({ now: at(n) });
  await vmCommand(db, { type: 'PlaceVm', data: { vmId, host: 'host-a', context }, metadata: meta(1) });
  await vmCommand(db, {
    type: 'RecordProvisioned',
    data: { vmId, host: 'host-a', ipv4: '192.0.2.10', ipv6: '2001:db8::10', sshHostKeys: [{ type: 'ssh-ed25519', sha256: 'SHA256:abc' }], observedAt: at(2) },
    metadata: meta(2),
  });
  await vmCommand(db, { type: 'ObserveState', data: { vmId, host: 'host-a', state: 'running', observedAt: at(3) }, metadata: meta(3) });
  await vmCommand(db, { type: 'RequestStop', data: { vmId, force: false, context }, metadata: meta(4) });
  await vmCommand(db, { type: 'ObserveState', data: { vmId, host: 'host-a', state: 'stopped', observedAt: at(5) }, metadata: meta(5) });
  await vmCommand(db, { type: 'RequestStart', data: { vmId, context }, metadata: meta(6) });
  await vmCommand(db, { type: 'ObserveState', data: { vmId, host: 'host-a', state: 'running', observedAt: at(7) }, metadata: meta(7) });
  if (end === 'failed') {
    await vmCommand(db, { type: 'RecordFailure', data: { vmId, host: 'host-a', error: 'disk full', observedAt: at(8) }, metadata: meta(8) });
  } else if (end === 'deleted') {
    await vmCommand(db, { type: 'ConfirmDeleted', data: { vmId, host: 'host-a', observedAt: at(9) }, metadata: meta(9) });
  }
}
