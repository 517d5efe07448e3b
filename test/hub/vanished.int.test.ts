// A capsul that vanishes from its host, end to end over HTTP against a real database: the host reports
// `deleted` for a capsul nobody asked it to delete (through the spoke API); the ledger records it as
// vanished, not deleted; the account's charges stop at the instant the host saw it gone; the customer's
// pages and history say so, admin shows it, drift counts it, the operators are told once; the customer
// can still remove it. And a requested deletion works as before.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { monthMs, totalChargesCents } from '../../src/domain/shared/billing.ts';
import { runJobs } from '../../src/jobs/runner.ts';
import { Hosts } from '../../src/ledger/hosts.ts';
import { endVanishedAccruals, placePending, react, scheduleDeletions } from '../../src/ledger/reactor.ts';
import { balanceAt } from '../../src/read/accounts.ts';
import type { Operation, Report } from '../../src/spoke/protocol.ts';
import { operator, sshKey } from '../support/db.ts';
import { webHarness, type WebHarness } from '../support/web.ts';
import { jobDeps, keepingMailer, recording } from '../jobs/support.ts';

const start = new Date('2026-11-01T12:00:00Z');
const dayMs = 86_400_000;
const adminEmail = 'ops@capsul.test';
const hostId = 'rack1-node3';
const f1sCentsPerMonth = 716;
const paidCents = 1000;

let web: WebHarness;
let hosts: Hosts;
let token: string;

before(async () => {
  web = await webHarness({ start, adminEmails: [adminEmail], host: false });
  hosts = new Hosts({ pool: web.db.pool, now: web.clock.now });
  token = (await hosts.add({ hostId, memoryMb: 8192, vcpus: 8, cause: operator })).token;
});
after(() => web.close());

// ---- the host's side of the protocol ----

const headers = () => ({ 'x-capsul-host': hostId, authorization: `Bearer ${token}` });
const heartbeat = (vms: { vmId: string; state: 'running' }[] = []) =>
  web.hub.inject({
    method: 'POST',
    url: '/spoke/v1/heartbeat',
    headers: headers(),
    payload: { capacity: { memoryMb: 8192, vcpus: 8 }, vms, agentVersion: 'test' },
  });
const operations = async () =>
  (await web.hub.inject({ method: 'GET', url: '/spoke/v1/operations?waitMs=0', headers: headers() })).json().operations as Operation[];
/** A report as the test writes it: the hub's clock is its observation time unless it says otherwise. */
type ReportBody = Report extends infer R ? (R extends Report ? Omit<R, 'id' | 'observedAt'> & { observedAt?: Date } : never) : never;

async function report(body: ReportBody): Promise<string> {
  const { observedAt = web.clock.now(), ...rest } = body;
  const payload = { reports: [{ id: randomUUID(), observedAt: observedAt.toISOString(), ...rest }] };
  const response = await web.hub.inject({ method: 'POST', url: '/spoke/v1/reports', headers: headers(), payload });
  assert.equal(response.statusCode, 200, response.body);
  const [result] = response.json().results;
  assert.ok(result.status !== 'refused', result.error);
  return result.status;
}

const reactorDeps = () => ({ pool: web.db.pool, now: web.clock.now });

/** A funded customer's f1-s, created now, placed on the host, provisioned and running. */
async function runningCapsul(email: string): Promise<string> {
  await web.db.ledger.recordPayment({ email, amountCents: paidCents, cause: operator });
  const { vmId } = await web.db.ledger.createVm({ email, size: 'f1-s', os: 'debian12', sshPublicKeys: [sshKey], cause: operator });
  await heartbeat();
  assert.equal(await placePending(reactorDeps()), 1);
  const create = (await operations()).find((op) => op.vmId === vmId && op.kind === 'create')!;
  await report({
    vmId,
    operationId: create.id,
    type: 'provisioned',
    ipv4: '192.0.2.44',
    ipv6: null,
    sshHostKeys: [{ type: 'ssh-ed25519', sha256: 'SHA256:k' }],
  });
  await report({ vmId, operationId: create.id, type: 'state', state: 'running' });
  return vmId;
}

const vmRow = async (vmId: string) =>
  (
    await web.db.pool.query(
      `SELECT state, to_char(vanished AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS vanished,
          to_char(accrual_ended AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS accrual_ended, deleted IS NOT NULL AS deletion_requested
   FROM vms WHERE id = $1`,
      [vmId],
    )
  ).rows[0];
const eventTypes = async (vmId: string) =>
  (
    await web.db.pool.query(`SELECT message_type AS type FROM emt_messages WHERE message_data->>'vmId' = $1 ORDER BY global_position`, [
      vmId,
    ])
  ).rows.map((row) => row.type as string);
const openIncidents = async () => (await hosts.drift()).map((d) => `${d.host} ${d.vmId} ${d.kind}`);
const text = (html: string) => html.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ');
const charge = (ms: number) =>
  totalChargesCents([{ priceCentsPerMonth: f1sCentsPerMonth, createdAtMs: 0, deletionRequestedAtMs: null, vanishedAtMs: null }], ms);

describe('a capsul its host reports deleted though nobody asked', () => {
  const email = 'vanish@example.org';
  let vmId: string;
  let createdAt: Date;
  let seenGoneAt: Date;

  before(async () => {
    web.clock.set(start);
    createdAt = web.clock.now();
    vmId = await runningCapsul(email);
    // Ten days on, the host reports it deleted, as seen two days earlier (a spoke that was offline).
    web.clock.set(new Date(start.getTime() + 10 * dayMs));
    seenGoneAt = new Date(start.getTime() + 8 * dayMs);
    assert.equal(await report({ vmId, operationId: null, type: 'deleted', observedAt: seenGoneAt }), 'accepted');
  });

  it('is recorded as vanished at the time the host saw it gone, not as deleted', async () => {
    assert.deepEqual(await vmRow(vmId), {
      state: 'vanished',
      vanished: '2026-11-09T12:00:00Z',
      accrual_ended: null,
      deletion_requested: false,
    });
    assert.ok(!(await eventTypes(vmId)).includes('VmDeleted'));
    assert.ok((await eventTypes(vmId)).includes('VmVanished'));
  });

  it('ends the charges on the account at that instant: a reaction, once', async () => {
    assert.equal(await endVanishedAccruals(reactorDeps()), 1);
    assert.equal(await endVanishedAccruals(reactorDeps()), 0, 'a second round finds nothing to do');
    await react(reactorDeps());
    assert.equal((await eventTypes(vmId)).filter((type) => type === 'VmAccrualEnded').length, 1);
    assert.equal((await vmRow(vmId)).accrual_ended, '2026-11-09T12:00:00Z');
  });

  it('charges nothing for the time after it was seen gone: before, at, now and ahead, from the ledger and from the projections', async () => {
    const accountId = (await web.db.ledger.accountIdFor(email))!;
    const created = createdAt.getTime();
    const gone = seenGoneAt.getTime();
    const cases: [string, number, number][] = [
      ['a day before it was seen gone', gone - dayMs, paidCents - charge(gone - dayMs - created)],
      ['a millisecond before', gone - 1, paidCents - charge(gone - 1 - created)],
      ['when it was seen gone', gone, paidCents - charge(gone - created)],
      ['when the hub heard of it', web.clock.now().getTime(), paidCents - charge(gone - created)],
      ['a year ahead', gone + 12 * monthMs, paidCents - charge(gone - created)],
    ];
    for (const [when, atMs, expected] of cases) {
      assert.equal(await web.db.ledger.balanceCents(email, new Date(atMs)), expected, when);
      if (atMs >= web.clock.now().getTime())
        assert.equal(await balanceAt(web.db.pool, accountId, new Date(atMs)), expected, `${when} (projections)`);
    }
    assert.equal(paidCents - charge(gone - created), 1000 - 188, 'eight days of $7.16 a month');
  });

  it('no longer counts it against a new capsul: a month of it is not held back', async () => {
    // $8.12 left: a month of a new f1-s ($7.16), but not of two ($14.32) had the vanished one still counted.
    assert.equal(await web.db.ledger.balanceCents(email), 812);
    const { vmId: next } = await web.db.ledger.createVm({ email, size: 'f1-s', os: 'debian12', sshPublicKeys: [sshKey], cause: operator });
    await web.db.ledger.deleteVm(next, { ...operator, reason: 'only checking' });
    await scheduleDeletions(reactorDeps());
  });

  it("tells the customer in plain words, on the list, the capsul's page and the history", async () => {
    const customer = await web.loggedIn(email);
    const list = text((await customer.get('/console')).body);
    assert.match(list, new RegExp(`${vmId} f1-s .* vanished`));
    const page = await customer.get(`/console/${vmId}`);
    assert.equal(page.statusCode, 200);
    const body = text(page.body);
    assert.match(
      body,
      /This capsul is gone\. Its host reported that it no longer exists \(it was seen gone on 2026-11-09 12:00 UTC\), although no one asked for it to be deleted\./,
    );
    assert.match(body, /We stopped charging for it from the moment it was seen gone/);
    assert.match(body, /State vanished/);
    assert.match(body, /Charged so far \$1\.88; billing stopped 2026-11-09 12:00 UTC/);
    assert.doesNotMatch(page.body, new RegExp(`/console/${vmId}/(start|stop|force-stop)"`), 'no power actions');
    assert.match(page.body, new RegExp(`href="/console/${vmId}/delete">Remove</a>`));
    assert.equal((await customer.get(`/console/${vmId}/start`)).statusCode, 409);
    const history = text((await customer.get('/console/history')).body);
    assert.match(
      history,
      new RegExp(
        `Capsul ${vmId} vanished: its host reported it no longer exists \\(seen gone 2026-11-09 12:00 UTC\\), though no one asked for it to be deleted\\. Our operators have been told\\. its host`,
      ),
    );
    assert.match(
      history,
      new RegExp(
        `Billing of capsul ${vmId} stopped as of 2026-11-09 12:00 UTC, when it vanished from its host: you are not charged for it after that\\. capsul, automatically`,
      ),
    );
    const balance = text((await customer.get('/console/account-balance')).body);
    assert.match(
      balance,
      new RegExp(`${vmId} f1-s 2026-11-01 12:00 UTC 2026-11-09 12:00 UTC \\(vanished from its host\\) \\$7\\.16 \\$1\\.88`),
    );
  });

  it('shows it to the operators: the capsuls list, and an open incident on the hosts page and in capsul drift', async () => {
    const admin = await web.loggedIn(adminEmail);
    const capsuls = text((await admin.get(`/admin/capsuls?email=${email}`)).body);
    assert.match(capsuls, new RegExp(`${vmId} ${email} f1-s vanished ${hostId} 192\\.0\\.2\\.44 2026-11-01 12:00:00 2026-11-09 12:00:00`));
    const hostsPage = text((await admin.get('/admin/hosts')).body);
    assert.match(hostsPage, new RegExp(`${hostId} ${vmId} vanished-from-host 2026-11-09 12:00:00`));
    assert.deepEqual(await openIncidents(), [`${hostId} ${vmId} vanished-from-host`]);
  });

  it('is told by cron-task --dry-run, opened as an incident and mailed to the operators once', async () => {
    const mailer = keepingMailer();
    const deps = jobDeps(web.db, web.clock, mailer, { opsEmails: [adminEmail, 'oncall@capsul.test'] });
    const dry = recording({ dryRun: true });
    await runJobs(deps, dry);
    assert.ok(dry.lines.includes(`drift: host ${hostId}: ${vmId} vanished-from-host since 2026-11-09T12:00:00Z`), dry.lines.join('\n'));
    assert.ok(dry.lines.includes(`incidents: would open: capsul ${vmId} vanished from host ${hostId}`), dry.lines.join('\n'));
    assert.equal(mailer.sent.length, 0, 'a dry run sends nothing');

    await runJobs(deps, recording({ jobs: ['incidents', 'incident-emails'] }));
    await runJobs(deps, recording({ jobs: ['incidents', 'incident-emails'] }));
    assert.equal(mailer.sent.length, 1, 'once per incident');
    const [mail] = mailer.sent;
    assert.equal(mail!.to, `${adminEmail}, oncall@capsul.test`);
    // The test host's last heartbeat is days before the clock's now: it is offline too, in the same email.
    assert.equal(mail!.subject, 'capsul: 2 incidents opened, 0 cleared');
    assert.match(
      mail!.text,
      new RegExp(`^ {2}\\* capsul ${vmId} vanished from host ${hostId}\n {4}\\(opened 2026-11-11 12:00 UTC\\)$`, 'm'),
    );
    assert.match(mail!.text, new RegExp(`^ {2}\\* host ${hostId} is offline: it last sent a heartbeat 2026-11-01 12:00 UTC$`, 'm'));
    assert.match(mail!.text, /Customer: vanish@example\.org\./);
    assert.match(mail!.text, /Charges: ended 2026-11-09 12:00 UTC, when it was seen gone\./);
    assert.match(mail!.text, new RegExp(`capsul delete-vm ${vmId} --reason "vanished from host"`));
    const after = recording({ dryRun: true, jobs: ['incidents', 'incident-emails'] });
    await runJobs(deps, after);
    assert.deepEqual(after.lines, [], 'told already');
  });

  it('stays vanished whatever the host says of it later; listed again by the host, it is drift', async () => {
    assert.equal(await report({ vmId, operationId: null, type: 'state', state: 'running' }), 'stale');
    assert.equal(await report({ vmId, operationId: null, type: 'deleted' }), 'stale');
    assert.equal((await vmRow(vmId)).state, 'vanished');
    await heartbeat([{ vmId, state: 'running' }]);
    assert.ok((await openIncidents()).includes(`${hostId} ${vmId} unexpected-on-host`));
    await heartbeat([]);
    assert.ok(!(await openIncidents()).includes(`${hostId} ${vmId} unexpected-on-host`));
  });

  it('can be removed by the customer: its host is asked to delete what is left, and the incident closes when it confirms', async () => {
    const balanceBefore = await web.db.ledger.balanceCents(email);
    const customer = await web.loggedIn(email);
    const confirm = await customer.get(`/console/${vmId}/delete`);
    assert.match(text(confirm.body), /Its host already reported it gone: this removes it from your list/);
    const version = /name="version" value="(\d+)"/.exec(confirm.body)![1]!;
    assert.equal((await customer.post(`/console/${vmId}/delete`, { version })).statusCode, 303);
    assert.equal(await scheduleDeletions(reactorDeps()), 1);
    const remove = (await operations()).find((op) => op.vmId === vmId && op.kind === 'delete')!;
    assert.ok(remove, 'a delete operation for the host');
    assert.equal(await report({ vmId, operationId: remove.id, type: 'deleted' }), 'accepted');
    assert.equal((await vmRow(vmId)).state, 'deleted');
    assert.deepEqual(await openIncidents(), []);
    assert.equal(await web.db.ledger.balanceCents(email), balanceBefore, 'its charges had ended already');
    assert.doesNotMatch((await customer.get('/console')).body, new RegExp(vmId));
  });
});

describe('a deletion the customer asked for', () => {
  it('works as before: the host deletes it when asked, and it is deleted, not vanished; no incident', async () => {
    const email = 'asked@example.org';
    web.clock.set(new Date(start.getTime() + 20 * dayMs));
    const createdAtMs = web.clock.now().getTime();
    const vmId = await runningCapsul(email);
    web.clock.advance(3 * dayMs);
    const requestedAtMs = web.clock.now().getTime();
    await web.db.ledger.deleteVm(vmId, { ...{ by: { kind: 'customer', id: email } }, reason: 'deleted by the customer' });
    assert.equal(await scheduleDeletions(reactorDeps()), 1);
    const remove = (await operations()).find((op) => op.vmId === vmId && op.kind === 'delete')!;
    web.clock.advance(60_000);
    assert.equal(await report({ vmId, operationId: remove.id, type: 'deleted' }), 'accepted');
    await react(reactorDeps());
    assert.deepEqual(await vmRow(vmId), { state: 'deleted', vanished: null, accrual_ended: null, deletion_requested: true });
    const types = await eventTypes(vmId);
    assert.ok(types.includes('VmDeleted') && !types.includes('VmVanished') && !types.includes('VmAccrualEnded'), types.join(', '));
    assert.deepEqual(await openIncidents(), []);
    const billed = paidCents - charge(requestedAtMs - createdAtMs);
    assert.equal(await web.db.ledger.balanceCents(email), billed);
    assert.equal(await web.db.ledger.balanceCents(email, new Date(requestedAtMs + 12 * monthMs)), billed);
  });
});
