// Suspend, grace, then delete, end to end over HTTP against a real database: the balance-warnings job
// suspends an account that ran out; the hub's reactions stop its running capsul on its host (through
// the spoke API); the customer's page says suspended and when deletion comes, and a start is refused;
// the customer is emailed once; a top-up resumes it within one round of the reactions and the capsul is
// started again; run out again and left for the grace, it is deleted for nonpayment.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { runJobs } from '../../src/jobs/runner.ts';
import { Hosts } from '../../src/ledger/hosts.ts';
import { placePending, react } from '../../src/ledger/reactor.ts';
import type { Operation, Report } from '../../src/spoke/protocol.ts';
import { jobDeps, keepingMailer, recording } from '../jobs/support.ts';
import { operator, sshKey } from '../support/db.ts';
import { webHarness, type WebClient, type WebHarness } from '../support/web.ts';

const start = new Date('2026-11-01T12:00:00Z');
const dayMs = 86_400_000;
const hostId = 'rack1-node1';
const email = 'runs-out@example.org';
/** f1-s is $7.16 a month: a creation needs a month of credit, which runs out on day 30.4. */
const paidCents = 716;

let web: WebHarness;
let token: string;
let customer: WebClient;
let vmId: string;
const mailer = keepingMailer();

before(async () => {
  web = await webHarness({ start, host: false });
  token = (await new Hosts({ pool: web.db.pool, now: web.clock.now }).add({ hostId, memoryMb: 8192, vcpus: 8, cause: operator })).token;
});
after(() => web.close());

const headers = () => ({ 'x-capsul-host': hostId, authorization: `Bearer ${token}` });
const heartbeat = () =>
  web.hub.inject({
    method: 'POST',
    url: '/spoke/v1/heartbeat',
    headers: headers(),
    payload: { capacity: { memoryMb: 8192, vcpus: 8 }, vms: [], agentVersion: 'test' },
  });
const operations = async () =>
  (await web.hub.inject({ method: 'GET', url: '/spoke/v1/operations?waitMs=0', headers: headers() })).json().operations as Operation[];
type ReportBody = Report extends infer R ? (R extends Report ? Omit<R, 'id' | 'observedAt'> : never) : never;
async function report(body: ReportBody): Promise<void> {
  const payload = { reports: [{ id: randomUUID(), observedAt: web.clock.now().toISOString(), ...body }] };
  const response = await web.hub.inject({ method: 'POST', url: '/spoke/v1/reports', headers: headers(), payload });
  assert.equal(response.statusCode, 200, response.body);
}
/** The host does what it is asked: each open operation reported done with the state it leads to. */
async function hostDoesItsWork(): Promise<string[]> {
  const done: string[] = [];
  for (const op of await operations()) {
    const state = op.kind === 'start' ? 'running' : op.kind === 'delete' ? null : 'stopped';
    if (state === null) await report({ vmId: op.vmId, operationId: op.id, type: 'deleted' });
    else await report({ vmId: op.vmId, operationId: op.id, type: 'state', state });
    done.push(op.kind);
  }
  return done;
}
const deps = () => jobDeps(web.db, web.clock, mailer, { suspensionPointCents: 0, graceDays: 14, overdraftCents: -1000 });
const job = async () => {
  const run = recording({ jobs: ['balance-warnings', 'warning-emails'] });
  await runJobs(deps(), run);
  return run.lines;
};
const reactions = () => react({ pool: web.db.pool, now: web.clock.now });
const text = (html: string) => html.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ');
const stateOf = async () =>
  (await web.db.pool.query('SELECT state, suspended, deleted, deletion_reason FROM vms WHERE id = $1', [vmId])).rows[0];

describe('an account that runs out', () => {
  it('runs until the balance reaches zero', async () => {
    await web.db.ledger.recordPayment({ email, amountCents: paidCents, cause: operator });
    ({ vmId } = await web.db.ledger.createVm({ email, size: 'f1-s', os: 'debian12', sshPublicKeys: [sshKey], cause: operator }));
    await heartbeat();
    assert.equal(await placePending({ pool: web.db.pool, now: web.clock.now }), 1);
    const create = (await operations()).find((op) => op.kind === 'create')!;
    await report({ vmId, operationId: create.id, type: 'provisioned', ipv4: '192.0.2.7', ipv6: null, sshHostKeys: [] });
    await report({ vmId, operationId: create.id, type: 'state', state: 'running' });
    web.clock.advance(29 * dayMs);
    await job();
    assert.equal((await stateOf()).suspended, null, 'credit left: not suspended');
  });

  it('is suspended at zero: the reactions stop its capsul, the page says so and refuses a start, the customer is emailed once', async () => {
    web.clock.advance(2 * dayMs); // day 31: the credit ran out on day 30.4
    const lines = await job();
    assert.ok(
      lines.some((line) =>
        /^warnings: runs-out@example\.org: suspended, 1 capsuls stopped \(balance -\$0\.\d\d; deletion after 2026-12-16 12:00 UTC unless funds are added\)$/.test(
          line,
        ),
      ),
      lines.join('\n'),
    );
    await reactions();
    assert.deepEqual(await hostDoesItsWork(), ['stop']);
    await reactions();
    assert.deepEqual(await operations(), [], 'stopped once, not again');
    assert.equal((await stateOf()).state, 'stopped');

    customer = await web.loggedIn(email); // a month on: a new session
    const page = text((await customer.get(`/console/${vmId}`)).body);
    assert.match(page, /State suspended \(stopped for nonpayment\)/);
    assert.match(page, /This capsul is suspended: your balance ran out \(on 2026-12-02 12:00 UTC\), so it was stopped\./);
    assert.match(page, /otherwise it will be deleted on 2026-12-16 12:00 UTC/);
    assert.doesNotMatch(page, /href="\/console\/[^"]+\/start"/);
    const refused = await customer.get(`/console/${vmId}/start`);
    assert.notEqual(refused.statusCode, 200, 'no start while suspended');
    assert.match(text((await customer.get('/console')).body), new RegExp(`${vmId} .*suspended`));
    assert.match(
      text((await customer.get('/console/history')).body),
      /Your capsuls were suspended \(stopped, their disks kept, still charged\)/,
    );

    const suspended = mailer.to(email).filter((m) => m.subject === 'capsul: your capsuls are suspended');
    assert.equal(suspended.length, 1);
    assert.match(suspended[0]!.text, /deleted, with their disks,\non 2026-12-16 12:00 UTC/);
    await job();
    assert.equal(mailer.to(email).filter((m) => m.subject === 'capsul: your capsuls are suspended').length, 1, 'once');
  });

  it('a top-up resumes it within one round of the reactions, and its capsul starts again', async () => {
    web.clock.advance(dayMs);
    await web.db.ledger.recordPayment({ email, amountCents: 2000, cause: operator });
    await reactions();
    assert.equal((await stateOf()).suspended, null, 'resumed');
    assert.deepEqual(await hostDoesItsWork(), ['start']);
    assert.equal((await stateOf()).state, 'running');
    await reactions();
    assert.deepEqual(await operations(), [], 'started once');
    await job();
    assert.equal(mailer.to(email).filter((m) => m.subject === 'capsul: your capsuls are running again').length, 1);
    customer = await web.loggedIn(email);
    assert.match(text((await customer.get(`/console/${vmId}`)).body), /State running/);
  });

  it('run out again and left for the grace, it is deleted for nonpayment (not a day before)', async () => {
    web.clock.advance(85 * dayMs); // $20 more runs out around day 115
    await job();
    assert.notEqual((await stateOf()).suspended, null, 'suspended again');
    await reactions();
    await hostDoesItsWork();
    web.clock.advance(13 * dayMs);
    await job();
    assert.equal((await stateOf()).deleted, null, 'within the grace');
    web.clock.advance(1 * dayMs + 60_000);
    await job();
    const row = await stateOf();
    assert.notEqual(row.deleted, null, 'deleted at the end of the grace');
    assert.equal(row.deletion_reason, 'nonpayment');
    customer = await web.loggedIn(email);
    assert.match(
      text((await customer.get('/console/history')).body),
      new RegExp(`Deletion of capsul ${vmId} was requested for nonpayment: your balance ran out\\. Billing stopped\\.`),
    );
  });
});
