// GET /metrics: absent unless METRICS_TOKEN is set, a 404 like any unknown address to a request without
// it, and in the Prometheus text format to one bearing it, with counters that move after real actions.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadOrCreateKey } from '../../src/audit/key.ts';
import { sealCommitted, signCheckpoint } from '../../src/audit/log.ts';
import { buildHub } from '../../src/hub/app.ts';
import { runJobs } from '../../src/jobs/runner.ts';
import { operator, sshKey, testDatabase, type TestDatabase } from '../support/db.ts';
import { fakeProvider, jobDeps, keepingMailer, recording } from '../jobs/support.ts';

const token = 'a-scrape-token-0123456789';

let db: TestDatabase;
let hub: FastifyInstance;
before(async () => {
  db = await testDatabase();
  hub = await buildHub({ pool: db.pool, metricsToken: token });
});
after(async () => {
  await hub.close();
  await db.close();
});

/** The scrape's samples: `name{label="value",…}` (labels sorted) → value. */
async function scrape(app = hub): Promise<Map<string, number>> {
  const response = await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${token}` } });
  assert.equal(response.statusCode, 200, response.body);
  const samples = new Map<string, number>();
  for (const line of response.body.split('\n')) {
    const match = /^([a-z_:]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) continue;
    const labels =
      (match[2] ?? '')
        .match(/[a-z_]+="[^"]*"/g)
        ?.sort()
        .join(',') ?? '';
    samples.set(labels ? `${match[1]}{${labels}}` : match[1]!, Number(match[3]));
  }
  return samples;
}

const value = (samples: Map<string, number>, key: string) => samples.get(key) ?? 0;

describe('GET /metrics is never public', () => {
  const unknown = async (app: FastifyInstance, headers: Record<string, string>) => {
    const metrics = await app.inject({ method: 'GET', url: '/metrics', headers });
    const nothing = await app.inject({ method: 'GET', url: '/no-such-page', headers });
    assert.equal(metrics.statusCode, 404);
    assert.equal(metrics.body, nothing.body);
    assert.equal(metrics.headers['content-type'], nothing.headers['content-type']);
  };

  it('is an unknown address when METRICS_TOKEN is unset, even to a bearer of some token', async () => {
    const bare = await buildHub({ pool: db.pool });
    try {
      await unknown(bare, { authorization: `Bearer ${token}` });
      await unknown(bare, { authorization: `Bearer ${token}`, accept: 'text/html' });
    } finally {
      await bare.close();
    }
  });

  it('is an unknown address to a request without the token or with another', async () => {
    await unknown(hub, {});
    await unknown(hub, { accept: 'text/html' });
    await unknown(hub, { authorization: 'Bearer wrong-token-0123456789' });
    await unknown(hub, { authorization: `Bearer ${token}x` });
    await unknown(hub, { authorization: token });
    await unknown(hub, { authorization: `Basic ${Buffer.from(`x:${token}`).toString('base64')}` });
  });
});

describe('GET /metrics with the token', () => {
  it('answers in the Prometheus text format, with every documented family', async () => {
    const response = await hub.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${token}` } });
    assert.equal(response.statusCode, 200);
    assert.match(response.headers['content-type'] as string, /^text\/plain; version=0\.0\.4/);
    for (const family of [
      'capsul_http_requests_total counter',
      'capsul_http_request_duration_seconds histogram',
      'capsul_events_appended_total counter',
      'capsul_command_refusals_total counter',
      'capsul_command_version_conflicts_total counter',
      'capsul_stream_snapshots_total counter',
      'capsul_job_runs_total counter',
      'capsul_job_failures_total counter',
      'capsul_job_duration_seconds histogram',
      'capsul_webhook_deliveries_total counter',
      'capsul_hosts gauge',
      'capsul_capsuls gauge',
      'capsul_oldest_unplaced_capsul_age_seconds gauge',
      'capsul_oldest_pending_operation_age_seconds gauge',
      'capsul_emails_pending gauge',
      'capsul_incidents_open gauge',
      'capsul_log_tree_size gauge',
      'capsul_log_checkpoint_age_seconds gauge',
      'capsul_log_checkpointed_tree_size gauge',
      'capsul_db_pool_connections gauge',
    ]) {
      assert.match(response.body, new RegExp(`^# TYPE ${family}$`, 'm'));
    }
  });

  it('counts requests by route pattern, never by address', async () => {
    const before = await scrape();
    await hub.inject({ method: 'GET', url: '/health' });
    await hub.inject({ method: 'GET', url: '/auth/magic/secret-login-token' });
    await hub.inject({ method: 'GET', url: '/no/such/capsul-secret42' });
    const after = await scrape();
    const unmatched = 'capsul_http_requests_total{method="GET",route="none",status="404"}';
    assert.equal(value(after, unmatched) - value(before, unmatched), 1, 'an address no route matches is counted as route none');
    const health = 'capsul_http_requests_total{method="GET",route="/health",status="200"}';
    assert.equal(value(after, health) - value(before, health), 1);
    const keys = [...after.keys()].join('\n');
    assert.doesNotMatch(keys, /secret-login-token|capsul-secret42/);
    assert.match(keys, /route="\/auth\/magic\/:token"/);
  });

  it('counts the events a payment appends, and a refusal by its code', async () => {
    const before = await scrape();
    await db.ledger.recordPayment({ email: 'metrics@example.org', amountCents: 100, cause: operator });
    await assert.rejects(
      db.ledger.createVm({ email: 'metrics@example.org', size: 'f1-s', os: 'debian12', sshPublicKeys: [sshKey], cause: operator }),
      /add funds/,
    );
    const after = await scrape();
    const paid = 'capsul_events_appended_total{type="PaymentRecorded"}';
    assert.equal(value(after, paid) - value(before, paid), 1);
    const opened = 'capsul_events_appended_total{type="AccountOpened"}';
    assert.equal(value(after, opened) - value(before, opened), 1);
    const refused = 'capsul_command_refusals_total{code="insufficient_funds"}';
    assert.equal(value(after, refused) - value(before, refused), 1, 'the creation the balance does not cover');
  });

  it('counts a failed job run and records its duration', async () => {
    const before = await scrape();
    const failing = fakeProvider('btcpay', { fail: 'BTCPay Server answered 502' });
    const clock = { now: () => new Date() };
    await runJobs(jobDeps(db, clock as never, keepingMailer(), { providers: [failing] }), recording({ jobs: ['reconcile'] }));
    const after = await scrape();
    assert.equal(
      value(after, 'capsul_job_failures_total{job="reconcile"}') - value(before, 'capsul_job_failures_total{job="reconcile"}'),
      1,
    );
    const runs = 'capsul_job_runs_total{job="reconcile",outcome="failed"}';
    assert.equal(value(after, runs) - value(before, runs), 1);
    const timed = 'capsul_job_duration_seconds_count{job="reconcile"}';
    assert.equal(value(after, timed) - value(before, timed), 1);
  });

  it('reads hosts, capsuls and the reaction loop from the database at each scrape', async () => {
    await db.ledger.recordPayment({ email: 'waiting@example.org', amountCents: 2000, cause: operator });
    await db.ledger.createVm({ email: 'waiting@example.org', size: 'f1-s', os: 'debian12', sshPublicKeys: [sshKey], cause: operator });
    const samples = await scrape();
    assert.equal(value(samples, 'capsul_hosts{status="offline"}'), 1, 'the test host never heartbeats');
    assert.equal(value(samples, 'capsul_hosts{status="online"}'), 0);
    assert.equal(value(samples, 'capsul_host_memory_bytes{host="test-host"}'), 1_000_000 * 1024 * 1024);
    assert.equal(value(samples, 'capsul_capsuls{state="pending"}'), 1);
    assert.equal(value(samples, 'capsul_unplaced_capsuls'), 1);
    assert.ok(value(samples, 'capsul_oldest_unplaced_capsul_age_seconds') >= 0);
    assert.ok(samples.has('capsul_db_pool_connections{state="total"}'));
    assert.equal(value(samples, 'capsul_emails_pending{kind="receipt"}'), 2, 'two payments, no receipts sent yet');
    assert.ok(samples.has('capsul_incidents_open{kind="host-offline"}'), 'every kind is a sample, zero or not');
    assert.equal(value(samples, 'capsul_incidents_open{kind="host-offline"}'), 0, 'no incidents job has run');
    // The test host registered and never heard from: the incidents job, an hour on, opens host-offline.
    const later = new Date(Date.now() + 3600_000);
    await runJobs(jobDeps(db, { now: () => later } as never, keepingMailer()), recording({ jobs: ['incidents'] }));
    assert.equal(value(await scrape(), 'capsul_incidents_open{kind="host-offline"}'), 1);
  });

  it("follows the signed log: what is sealed, what a checkpoint covers, and the checkpoint's age", async () => {
    const before = await scrape();
    assert.equal(value(before, 'capsul_log_checkpointed_tree_size'), 0, 'no checkpoint yet');
    const sealed = await sealCommitted(db.pool, { waitMs: 60_000 });
    const workDir = mkdtempSync(path.join(os.tmpdir(), 'capsul-metrics-'));
    try {
      const key = await loadOrCreateKey(path.join(workDir, 'log.key'), 'capsul.test/ledger');
      await signCheckpoint(db.pool, key, path.join(workDir, 'latest-checkpoint'));
    } finally {
      rmSync(workDir, { recursive: true, force: true });
    }
    const after = await scrape();
    assert.ok(value(after, 'capsul_log_tree_size') > 0);
    assert.equal(value(after, 'capsul_log_tree_size'), sealed.size);
    assert.equal(value(after, 'capsul_log_checkpointed_tree_size'), sealed.size);
    assert.ok(value(after, 'capsul_log_checkpoint_age_seconds') < 60);
  });

  it('lets several hubs live in one process', async () => {
    const second = await buildHub({ pool: db.pool, metricsToken: token });
    try {
      assert.ok((await scrape(second)).has('capsul_log_tree_size'));
    } finally {
      await second.close();
    }
  });
});
