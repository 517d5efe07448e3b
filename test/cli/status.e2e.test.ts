// `capsul status` end to end: a healthy database exits 0 with "all is well"; a host offline with
// capsuls, an operation stuck, open incidents (as the incidents job opened them), a failed job and a schema not this code's each exit 1
// with their reason listed last; --json says the same for machines.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { latestVersion } from '../../src/db/migrate.ts';
import { runJobs } from '../../src/jobs/runner.ts';
import { Hosts } from '../../src/ledger/hosts.ts';
import { placePending } from '../../src/ledger/reactor.ts';
import { fakeProvider, jobDeps, keepingMailer, recording } from '../jobs/support.ts';
import { operator, sshKey, testDatabase, type TestDatabase } from '../support/db.ts';
import { capsulHere } from '../support/cli.ts';

let db: TestDatabase;
let dataDir: string;
before(async () => {
  db = await testDatabase({ host: false });
  dataDir = mkdtempSync(path.join(os.tmpdir(), 'capsul-status-'));
});
after(async () => {
  await db.close();
  rmSync(dataDir, { recursive: true, force: true });
});

const capsul = (args: string[]) => capsulHere(args, { ...db.env, CAPSUL_DATA_DIR: dataDir });

const hourAgo = () => new Date(Date.now() - 3600_000);

describe('capsul status', () => {
  it('exits 0 and says all is well on a healthy database', async () => {
    await capsul(['add-host', '--id', 'node-a', '--memory-mb', '8192', '--vcpus', '4']);
    await db.pool.query(`INSERT INTO host_heartbeats VALUES ('node-a', now(), 8192, 4, '[]', 'test')`);
    const run = await capsul(['status']);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.match(run.stdout, /^schema: version (\d+) \(this code: \1\)$/m);
    assert.match(run.stdout, /^hosts: 1 \(1 online, 0 offline\)$/m);
    assert.match(run.stdout, /^ {2}node-a {2}online {2}0 capsuls {2}memory 0\/8192 MiB {2}last heartbeat \d{4}-\d\d-\d\dT/m);
    assert.match(run.stdout, /^operations pending: none$/m);
    assert.match(run.stdout, /^incidents open: 0$/m);
    assert.match(run.stdout, /^ {2}reconcile +never run$/m);
    assert.match(run.stdout, /\nall is well\n$/);
    const json = JSON.parse((await capsul(['status', '--json'])).stdout);
    assert.deepEqual(json.attention, []);
    assert.equal(json.hosts[0].id, 'node-a');
  });

  it('exits 1 listing, last, a host offline with capsuls, a stuck operation, an incident and a failed job', async () => {
    await db.ledger.recordPayment({ email: 'status@example.org', amountCents: 10_000, cause: operator });
    await db.ledger.createVm({ email: 'status@example.org', size: 'f1-s', os: 'debian12', sshPublicKeys: [sshKey], cause: operator });
    // Placed an hour ago, never reported; the host silent since.
    assert.equal(await placePending({ pool: db.pool, now: hourAgo }), 1);
    await db.pool.query(`UPDATE host_heartbeats SET last_seen = now() - interval '1 hour' WHERE host_id = 'node-a'`);
    await new Hosts({ pool: db.pool }).checkDrift('node-a', ['stranger']);
    const failing = fakeProvider('btcpay', { fail: 'BTCPay Server answered 502' });
    await runJobs(
      jobDeps(db, { now: () => new Date() } as never, keepingMailer(), { providers: [failing] }),
      recording({ jobs: ['reconcile', 'incidents'] }),
    );

    const run = await capsul(['status']);
    assert.equal(run.code, 1);
    assert.match(run.stdout, /^hosts: 1 \(0 online, 1 offline\)$/m);
    assert.match(run.stdout, /^capsuls: creating 1$/m);
    assert.match(run.stdout, /^operations pending: 1, the oldest for (59m \d+s|1h 0m)$/m);
    assert.match(run.stdout, /^incidents open: 3$/m);
    assert.match(run.stdout, /^ {2}host-offline {2}since \S+ {2}host node-a is offline: it last sent a heartbeat /m);
    assert.match(run.stdout, /^ {2}operations-waiting {2}since \S+ {2}host node-a has not reported on 1 operation for over 10 minutes$/m);
    assert.match(run.stdout, /^ {2}drift {2}since \S+ {2}host node-a and the ledger disagree about capsul stranger: unexpected-on-host$/m);
    assert.match(run.stdout, /^ {2}reconcile +failed {2}\S+ {2}btcpay: BTCPay Server answered 502$/m);
    const attention = run.stdout.slice(run.stdout.indexOf('\nneeds attention:\n'));
    assert.deepEqual(
      attention
        .trim()
        .split('\n')
        .slice(1)
        .map((line) =>
          line
            .trim()
            .replace(/\d{4}-\d\d-\d\dT\S+Z/g, '<time>')
            .replace(/waited \S+ \S+/, 'waited <age>'),
        ),
      [
        'host node-a is offline with 1 capsul (last heartbeat <time>)',
        'an operation has waited <age> for its host (over 10 minutes)',
        '3 open incidents: listed above, and on /admin/incidents',
        'job reconcile failed at <time>: btcpay: BTCPay Server answered 502',
      ],
    );
    const json = await capsul(['status', '--json']);
    assert.equal(json.code, 1);
    const status = JSON.parse(json.stdout);
    assert.equal(status.attention.length, 4);
    assert.equal(status.operations.count, 1);
    assert.ok(status.operations.oldestAgeSeconds > 3500);
    assert.deepEqual(status.capsuls, { creating: 1 });
  });

  it('counts failed runs in a row, and a run that succeeds clears the failure', async () => {
    const failing = fakeProvider('btcpay', { fail: 'still down' });
    const clock = { now: () => new Date() } as never;
    await runJobs(jobDeps(db, clock, keepingMailer(), { providers: [failing] }), recording({ jobs: ['reconcile'] }));
    assert.match((await capsul(['status'])).stdout, /job reconcile failed at \S+ \(2 runs in a row\): btcpay: still down$/m);
    await runJobs(jobDeps(db, clock, keepingMailer(), { providers: [] }), recording({ jobs: ['reconcile'] }));
    const { jobs } = JSON.parse((await capsul(['status', '--json'])).stdout);
    assert.deepEqual(
      jobs.find((run: { job: string }) => run.job === 'reconcile'),
      { ...jobs.find((run: { job: string }) => run.job === 'reconcile'), outcome: 'done', error: null, failures: 0 },
    );
  });

  it('exits 1 on a schema that is not this code’s, without migrating it', async () => {
    const down = await capsul(['migrate', '--to', String(latestVersion() - 1)]);
    assert.equal(down.code, 0, down.stderr);
    const run = await capsul(['status']);
    assert.equal(run.code, 1);
    assert.match(
      run.stdout,
      new RegExp(
        `needs attention:\\n  the database is at schema version ${latestVersion() - 1}, this code's is ${latestVersion()}: run capsul migrate\\n$`,
      ),
    );
    assert.equal(JSON.parse((await capsul(['status', '--json'])).stdout).schema.version, latestVersion() - 1, 'status never migrates');
  });
});
