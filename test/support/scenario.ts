// Drives a capsul through its whole life, so tests see every event type.
import { randomUUID } from 'node:crypto';
import { vmDecider, type VmCommand } from '../../src/domain/vm/decider.ts';
import { vmStream } from '../../src/domain/vm/events.ts';
import { handleCommand } from '../../src/ledger/handle.ts';
import type { TestDatabase } from './db.ts';

const spoke = { by: { kind: 'spoke' as const, id: 'host-a' } };

export async function vmCommand(db: TestDatabase, command: VmCommand) {
  return handleCommand(db, vmStream(command.data.vmId), vmDecider, command);
}

/** Places, provisions, observes, stops, starts and fails or deletes a capsul, with times from `at`. */
export async function lifeOnHost(
  db: TestDatabase,
  vmId: string,
  accountId: string,
  at: (n: number) => Date,
  end: 'deleted' | 'failed' | 'running',
) {
  const context = { accountId, deletionRequested: end === 'deleted' };
  const live = { accountId, deletionRequested: false };
  const meta = (n: number) => ({ now: at(n), cause: spoke });
  const host = 'host-a';
  const create = randomUUID();
  const report = (operationId: string | null = null) => ({ reportId: randomUUID(), operationId });
  await vmCommand(db, { type: 'PlaceVm', data: { vmId, host, operationId: create, context: live }, metadata: meta(1) });
  await vmCommand(db, {
    type: 'RecordProvisioned',
    data: {
      vmId,
      host,
      ipv4: '192.0.2.10',
      ipv6: '2001:db8::10',
      sshHostKeys: [{ type: 'ssh-ed25519', sha256: 'SHA256:abc' }],
      observedAt: at(2),
      ...report(create),
    },
    metadata: meta(2),
  });
  await vmCommand(db, { type: 'ObserveState', data: { vmId, host, state: 'running', observedAt: at(3), ...report() }, metadata: meta(3) });
  const stop = randomUUID();
  await vmCommand(db, { type: 'RequestStop', data: { vmId, force: false, operationId: stop, context: live }, metadata: meta(4) });
  await vmCommand(db, {
    type: 'ObserveState',
    data: { vmId, host, state: 'stopped', observedAt: at(5), ...report(stop) },
    metadata: meta(5),
  });
  const start = randomUUID();
  await vmCommand(db, { type: 'RequestStart', data: { vmId, operationId: start, context: live }, metadata: meta(6) });
  await vmCommand(db, {
    type: 'ObserveState',
    data: { vmId, host, state: 'running', observedAt: at(7), ...report(start) },
    metadata: meta(7),
  });
  if (end === 'failed') {
    await vmCommand(db, {
      type: 'RecordFailure',
      data: { vmId, host, error: 'disk full', observedAt: at(8), ...report() },
      metadata: meta(8),
    });
  } else if (end === 'deleted') {
    const remove = randomUUID();
    await vmCommand(db, { type: 'ScheduleDeletion', data: { vmId, operationId: remove, context }, metadata: meta(9) });
    await vmCommand(db, { type: 'ConfirmDeleted', data: { vmId, host, observedAt: at(10), ...report(remove) }, metadata: meta(10) });
  }
}
