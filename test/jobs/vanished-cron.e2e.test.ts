// The operator's commands about a capsul that vanished from its host, end to end through main(argv, io):
// `capsul drift` lists the incident and `capsul cron-task --dry-run` says it, changing nothing.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { endVanishedAccruals } from '../../src/ledger/reactor.ts';
import { operator, sshKey, testDatabase, type TestDatabase } from '../support/db.ts';
import { vmCommand } from '../support/scenario.ts';
import { capsulHere } from '../support/cli.ts';

const testCause = { by: { kind: 'spoke', id: 'host-a' } } as const;

let db: TestDatabase;
let dataDir: string;
let vmId: string;
let unbilledId: string;

const capsul = (args: string[]) => capsulHere(args, { ...db.env, CAPSUL_DATA_DIR: dataDir, ADMIN_EMAILS: 'ops@example.org' });

/** A capsul placed on the registered test host, seen running, then reported deleted by that host unasked. */
async function vanished(email: string): Promise<string> {
  const { vmId: id } = await db.ledger.createVm({ email, size: 'f1-xs', os: 'debian12', sshPublicKeys: [sshKey], cause: operator });
  const accountId = (await db.ledger.accountIdFor(email))!;
  const now = new Date();
  const host = 'test-host';
  await vmCommand(db, {
    type: 'PlaceVm',
    data: { vmId: id, host, operationId: randomUUID(), context: { accountId, deletionRequested: false } },
    metadata: { now, cause: testCause },
  });
  await vmCommand(db, {
    type: 'ObserveState',
    data: { vmId: id, host, state: 'running', observedAt: now, reportId: randomUUID(), operationId: null },
    metadata: { now, cause: testCause },
  });
  await vmCommand(db, {
    type: 'ConfirmDeleted',
    data: { vmId: id, host, observedAt: now, reportId: randomUUID(), operationId: null },
    metadata: { now, cause: testCause },
  });
  return id;
}

before(async () => {
  db = await testDatabase();
  dataDir = mkdtempSync(path.join(os.tmpdir(), 'capsul-vanished-'));
  await db.ledger.recordPayment({ email: 'gone@example.org', amountCents: 5000, cause: operator });
  vmId = await vanished('gone@example.org');
  assert.equal(await endVanishedAccruals({ pool: db.pool }), 1);
  unbilledId = await vanished('gone@example.org'); // no reaction ran for this one: its charges run on
});

after(async () => {
  await db.close();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('a vanished capsul for the operators', () => {
  it('capsul drift lists it as an open incident', async () => {
    const run = await capsul(['drift']);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, new RegExp(`^test-host, ${vmId}, vanished-from-host, \\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ$`, 'm'));
  });

  it('capsul cron-task --dry-run says it: the incident it would open, and charges a reaction has not ended yet', async () => {
    const events = (await db.pool.query('SELECT count(*)::int AS n FROM emt_messages')).rows[0].n;
    const run = await capsul(['cron-task', '--dry-run']);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, new RegExp(`^drift: host test-host: ${vmId} vanished-from-host since `, 'm'));
    // The incident a real run would open (and its email, to OPS_EMAILS, in the same run).
    assert.match(run.stdout, new RegExp(`^incidents: would open: capsul ${vmId} vanished from host test-host$`, 'm'));
    assert.match(run.stdout, new RegExp(`^drift: ${unbilledId} vanished from host test-host but its charges have not ended yet`, 'm'));
    assert.doesNotMatch(run.stdout, new RegExp(`^drift: ${vmId} vanished from host test-host but`, 'm'));
    assert.equal((await db.pool.query('SELECT count(*)::int AS n FROM emt_messages')).rows[0].n, events, 'a dry run changes nothing');
  });
});
