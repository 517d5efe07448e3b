// Incidents end to end on a real database: the incidents job opens one when a host goes silent past
// the limit and clears it when the host is back; the operators (OPS_EMAILS) get one email when it opens
// and one when it clears, read from the development outbox; a mail server that is down marks nothing
// and the next round sends; no operators → nothing sent, the incident still listed; a job failing runs
// in a row; drift; two incidents jobs at once open one incident; Admin → Incidents lists them, to admins only.
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Hosts } from '../../src/ledger/hosts.ts';
import { runJobs } from '../../src/jobs/runner.ts';
import { operator } from '../support/db.ts';
import { webHarness, type WebHarness, type WebClient } from '../support/web.ts';
import { fakeProvider, jobDeps, keepingMailer, recording } from './support.ts';

const minuteMs = 60_000;
const adminEmail = 'boss@capsul.test';
const oncall = 'oncall@capsul.test';

let web: WebHarness;
let admin: WebClient;
before(async () => {
  web = await webHarness({ adminEmails: [adminEmail], host: false });
  admin = await web.loggedIn(adminEmail);
});
after(() => web.close());

/** The incidents and emails jobs, as the hub runs them each minute, with the harness's outbox. */
const deps = (extra = {}) => jobDeps(web.db, web.clock, web.mailer, { opsEmails: [adminEmail, oncall], ...extra });
async function minute(extra = {}): Promise<string[]> {
  const run = recording({ jobs: ['incidents', 'incident-emails'] });
  const outcomes = await runJobs(deps(extra), run);
  for (const outcome of outcomes) assert.notEqual(outcome.status, 'failed', outcome.error);
  return run.lines;
}

/** The development outbox's readable copies of the incident emails, oldest first. */
async function incidentMails(): Promise<string[]> {
  const files = (await readdir(web.outboxDir)).filter((name) => name.endsWith('.txt')).sort();
  const texts = await Promise.all(files.map((name) => readFile(path.join(web.outboxDir, name), 'utf8')));
  return texts.filter((text) => /^Subject: capsul(:| incident)/m.test(text));
}

async function heartbeat(hostId: string, at: Date): Promise<void> {
  await web.db.pool.query(
    `INSERT INTO host_heartbeats VALUES ($1, $2, 8192, 4, '[]', 'test')
     ON CONFLICT (host_id) DO UPDATE SET last_seen = excluded.last_seen`,
    [hostId, at.toISOString()],
  );
}

async function openIncidents(): Promise<string[]> {
  const { rows } = await web.db.pool.query(`SELECT kind || ' ' || subject AS k FROM incidents WHERE cleared IS NULL ORDER BY id`);
  return rows.map((row) => row.k);
}

describe('a host that goes silent', () => {
  it('is an incident past ALERT_HOST_OFFLINE_MINUTES, mailed once to OPS_EMAILS; back online, it clears, mailed once', async () => {
    const hosts = new Hosts({ pool: web.db.pool, now: web.clock.now });
    await hosts.add({ hostId: 'rack1', memoryMb: 8192, vcpus: 4, cause: operator });
    await heartbeat('rack1', web.clock.now());
    assert.deepEqual(await minute(), [], 'a host that just sent a heartbeat is fine');

    web.clock.advance(10 * minuteMs);
    assert.deepEqual(await minute(), [], 'at the limit, not yet');
    web.clock.advance(minuteMs);
    const lines = await minute();
    assert.deepEqual(lines, [
      'incidents: opened: host rack1 is offline: it last sent a heartbeat 2026-11-01 12:00 UTC',
      `incident emails: opened: host rack1 is offline: it last sent a heartbeat 2026-11-01 12:00 UTC: told ${adminEmail}, ${oncall}`,
    ]);
    assert.deepEqual(await openIncidents(), ['host-offline rack1']);
    let mails = await incidentMails();
    assert.equal(mails.length, 1);
    assert.match(mails[0]!, new RegExp(`^To: ${adminEmail}, ${oncall}$`, 'm'));
    assert.match(mails[0]!, /^Subject: capsul incident: host rack1 is offline: it last sent a heartbeat 2026-11-01 12:00 UTC$/m);
    assert.match(mails[0]!, /^ {4}It carries no capsuls\.$/m);
    assert.match(mails[0]!, /https:\/\/capsul\.test\/admin\/incidents/);

    web.clock.advance(30 * minuteMs);
    assert.deepEqual(await minute(), [], 'still offline: nothing new, nothing sent again');
    assert.equal((await incidentMails()).length, 1);

    await heartbeat('rack1', web.clock.now());
    assert.deepEqual(await minute(), [
      'incidents: cleared: host rack1 is offline: it last sent a heartbeat 2026-11-01 12:00 UTC',
      `incident emails: cleared: host rack1 is offline: it last sent a heartbeat 2026-11-01 12:00 UTC: told ${adminEmail}, ${oncall}`,
    ]);
    mails = await incidentMails();
    assert.equal(mails.length, 2);
    assert.match(mails[1]!, /^Subject: capsul incident cleared: host rack1 is offline: it last sent a heartbeat 2026-11-01 12:00 UTC$/m);
    assert.match(mails[1]!, /\(opened 2026-11-01 12:11 UTC, cleared 2026-11-01 12:41 UTC\)/);
    assert.match(mails[1]!, /^Incidents open now: 0\./m);
    assert.deepEqual(await minute(), [], 'told already');
    assert.equal((await incidentMails()).length, 2);
  });

  it('going silent again is a new incident', async () => {
    web.clock.advance(11 * minuteMs);
    const lines = await minute();
    assert.equal(lines.length, 2, lines.join('\n'));
    const { rows } = await web.db.pool.query(`SELECT count(*)::int AS n FROM incidents WHERE kind = 'host-offline' AND subject = 'rack1'`);
    assert.equal(rows[0].n, 2);
  });
});

describe('the operators’ email', () => {
  it('failed at the mail server: nothing is marked, the job fails, and the next round sends it', async () => {
    await heartbeat('rack1', web.clock.now());
    const mailer = keepingMailer();
    mailer.failNext(1);
    const run = recording({ jobs: ['incidents', 'incident-emails'] });
    const outcomes = await runJobs(jobDeps(web.db, web.clock, mailer, { opsEmails: [oncall] }), run);
    assert.equal(outcomes.find((o) => o.job === 'incident-emails')!.status, 'failed');
    assert.match(outcomes.find((o) => o.job === 'incident-emails')!.error!, /ECONNREFUSED/);
    const { rows } = await web.db.pool.query(
      'SELECT count(*)::int AS n FROM incidents WHERE cleared IS NOT NULL AND mailed_open IS NOT NULL AND mailed_clear IS NULL',
    );
    assert.equal(rows[0].n, 1, 'the clearing is still owed');
    await runJobs(jobDeps(web.db, web.clock, mailer, { opsEmails: [oncall] }), recording({ jobs: ['incident-emails'] }));
    assert.equal(mailer.sent.length, 1);
    assert.match(mailer.sent[0]!.subject, /^capsul incident cleared: host rack1 is offline/);
  });

  it('with no one to tell (OPS_EMAILS and ADMIN_EMAILS empty): nothing sent, the incident open all the same; one cleared before anyone was told is never mailed', async () => {
    const mailer = keepingMailer();
    web.clock.advance(11 * minuteMs);
    const nobody = jobDeps(web.db, web.clock, mailer, { opsEmails: [] });
    await runJobs(nobody, recording({ jobs: ['incidents', 'incident-emails'] }));
    assert.equal(mailer.sent.length, 0);
    assert.deepEqual(await openIncidents(), ['host-offline rack1']);
    const dry = recording({ dryRun: true, jobs: ['incident-emails'] });
    await runJobs(nobody, dry);
    assert.deepEqual(dry.lines, [
      'incident emails: opened: host rack1 is offline: it last sent a heartbeat 2026-11-01 12:52 UTC: no one to tell (OPS_EMAILS and ADMIN_EMAILS are empty)',
    ]);
    await heartbeat('rack1', web.clock.now());
    await runJobs(nobody, recording({ jobs: ['incidents'] }));
    await runJobs(jobDeps(web.db, web.clock, mailer, { opsEmails: [oncall] }), recording({ jobs: ['incident-emails'] }));
    assert.equal(mailer.sent.length, 0, 'cleared before anyone was told: no one needs it any more');
  });
});

describe('other conditions', () => {
  it('a job failing ALERT_JOB_FAILURES runs in a row opens job-failing; one good run clears it', async () => {
    await heartbeat('rack1', web.clock.now());
    const failing = fakeProvider('btcpay', { fail: 'BTCPay Server answered 502' });
    for (let run = 1; run <= 3; run++) {
      await runJobs(deps({ providers: [failing] }), recording({ jobs: ['reconcile'] }));
      const expected = run < 3 ? [] : ['job-failing reconcile'];
      await minute();
      assert.deepEqual(await openIncidents(), expected, `after ${run} failed runs`);
    }
    const { rows } = await web.db.pool.query(`SELECT summary, details FROM incidents WHERE kind = 'job-failing' AND cleared IS NULL`);
    assert.equal(rows[0].summary, 'the reconcile job has failed 3 runs in a row');
    assert.match(rows[0].details[0], /: btcpay: BTCPay Server answered 502\.$/);
    await runJobs(deps({ providers: [] }), recording({ jobs: ['reconcile'] }));
    await minute();
    assert.deepEqual(await openIncidents(), []);
  });

  it('drift opens an incident per disagreement and clears when the host agrees again', async () => {
    const hosts = new Hosts({ pool: web.db.pool, now: web.clock.now });
    await heartbeat('rack1', web.clock.now());
    await hosts.checkDrift('rack1', ['capsul-stranger1']);
    await minute();
    const open = await openIncidents();
    assert.equal(open.length, 1);
    assert.match(open[0]!, /^drift rack1\/unexpected-on-host\/capsul-stranger1/);
    await hosts.checkDrift('rack1', []);
    await minute();
    assert.deepEqual(await openIncidents(), []);
  });

  it('two incidents jobs at once (two hubs, or a hub and capsul cron-task) open one incident', async () => {
    web.clock.advance(11 * minuteMs);
    const { watchIncidents } = await import('../../src/jobs/incidents.ts');
    const run = recording({});
    const results = await Promise.all(
      Array.from({ length: 5 }, () =>
        watchIncidents(
          { pool: web.db.pool, now: web.clock.now, alerts: deps().alerts },
          { dryRun: false, report: run.report, log: run.log },
        ),
      ),
    );
    assert.equal(
      results.reduce((sum, r) => sum + r.opened, 0),
      1,
    );
    assert.deepEqual(await openIncidents(), ['host-offline rack1']);
  });
});

describe('Admin → Incidents', () => {
  it('lists the open incidents with their details and the cleared ones with when the operators were told', async () => {
    const response = await admin.get('/admin/incidents');
    assert.equal(response.statusCode, 200);
    const body = response.body;
    const open = body.slice(body.indexOf('<h2>Open</h2>'), body.indexOf('<h2>Cleared</h2>'));
    assert.match(open, /<th scope="row" class="nowrap">host-offline<\/th>/);
    assert.match(
      open,
      /<strong>host rack1 is offline: it last sent a heartbeat <span class="nowrap">2026-11-01 \d\d:\d\d UTC<\/span><\/strong>/,
    );
    assert.match(open, /It carries no capsuls\./);
    const cleared = body.slice(body.indexOf('<h2>Cleared</h2>'));
    assert.match(cleared, /job-failing/);
    assert.match(cleared, /the reconcile job has failed 3 runs in a row/);
    assert.match(cleared, /no \(cleared before anyone was told\)/);
    assert.match(cleared, /opened <time datetime="2026-11-01T12:11:00Z">2026-11-01 12:11:00<\/time>, cleared <time/);
    assert.match(body, /<a href="\/admin\/incidents" aria-current="page">Incidents<\/a>/);
  });

  it('is the operators’ only: a customer and a stranger see nothing of it', async () => {
    const customer = await web.loggedIn('customer@example.org');
    const mine = await customer.get('/admin/incidents');
    assert.equal(mine.statusCode, 404);
    assert.doesNotMatch(mine.body, /rack1/);
    const stranger = await web.client().get('/admin/incidents');
    assert.equal(stranger.statusCode, 303);
  });
});
