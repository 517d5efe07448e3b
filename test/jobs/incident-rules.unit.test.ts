// The incident rules (src/jobs/incident-rules.ts) as Given / When / Then: given what the service looked
// like at an instant, when the rules are asked, then these conditions hold, and against the incidents
// open, these open and these clear. Limits: 10 minutes offline or waiting, 5 webhook failures, 3 job failures.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { AlertLimits } from '../../src/config.ts';
import { type Condition, conditionsAt, type OpenIncident, reconcile, webhookQuietMs } from '../../src/jobs/incident-rules.ts';
import type { Observations } from '../../src/read/incidents.ts';

const limits: AlertLimits = { hostOfflineMinutes: 10, waitingMinutes: 10, webhookFailures: 5, jobFailures: 3 };
const now = new Date('2030-01-01T12:00:00Z');
const minutesAgo = (minutes: number) => new Date(now.getTime() - minutes * 60_000);
const quiet: Observations = { hosts: [], operations: [], placement: { count: 0, oldest: null }, webhooks: [], jobs: [], drift: [] };
const given = (seen: Partial<Observations>) => ({
  conditions: () => conditionsAt(now, { ...quiet, ...seen }, limits).map(({ kind, subject, opens }) => ({ kind, subject, opens })),
  summaries: () => conditionsAt(now, { ...quiet, ...seen }, limits).map((condition) => condition.summary),
});

describe('incident rules: when a condition holds', () => {
  it('a quiet service has none', () => {
    assert.deepEqual(given({}).conditions(), []);
  });

  it('a host silent for more than the limit is offline; at the limit it is not yet', () => {
    const host = (id: string, lastSeen: Date | null, registered = minutesAgo(600)) => ({ id, registered, lastSeen, capsuls: 2 });
    assert.deepEqual(given({ hosts: [host('a', minutesAgo(10)), host('b', minutesAgo(11)), host('c', minutesAgo(1))] }).conditions(), [
      { kind: 'host-offline', subject: 'b', opens: true },
    ]);
    assert.deepEqual(given({ hosts: [host('b', minutesAgo(11))] }).summaries(), [
      'host b is offline: it last sent a heartbeat 2030-01-01 11:49 UTC',
    ]);
  });

  it('a host never heard from counts from its registration', () => {
    const fresh = { id: 'new', registered: minutesAgo(5), lastSeen: null, capsuls: 0 };
    const stale = { id: 'old', registered: minutesAgo(30), lastSeen: null, capsuls: 0 };
    assert.deepEqual(given({ hosts: [fresh, stale] }).summaries(), ['host old is offline: it has never sent a heartbeat']);
  });

  it('operations waiting past the limit are one incident per host; capsuls waiting for a host are one', () => {
    const seen = {
      operations: [{ host: 'a', count: 3, oldest: minutesAgo(42), kinds: ['create', 'stop'] }],
      placement: { count: 2, oldest: minutesAgo(15) },
    };
    assert.deepEqual(given(seen).conditions(), [
      { kind: 'operations-waiting', subject: 'a', opens: true },
      { kind: 'placement-waiting', subject: 'placement', opens: true },
    ]);
    assert.deepEqual(given(seen).summaries(), [
      'host a has not reported on 3 operations for over 10 minutes',
      '2 capsuls waiting for a host for over 10 minutes',
    ]);
  });

  it('webhooks failing the limit in a row open; recent failures below it only keep one open; quiet ones hold nothing', () => {
    const provider = (failures: number, lastFailedMinutesAgo: number | null) => ({
      provider: 'stripe',
      failures,
      lastFailed: lastFailedMinutesAgo === null ? null : minutesAgo(lastFailedMinutesAgo),
      lastDone: minutesAgo(1),
      lastError: 'refused: the signature does not match',
    });
    assert.deepEqual(given({ webhooks: [provider(5, 1)] }).conditions(), [{ kind: 'webhooks-failing', subject: 'stripe', opens: true }]);
    assert.deepEqual(given({ webhooks: [provider(4, 1)] }).conditions(), [{ kind: 'webhooks-failing', subject: 'stripe', opens: false }]);
    assert.deepEqual(given({ webhooks: [provider(0, webhookQuietMs / 60_000 - 1)] }).conditions(), [
      { kind: 'webhooks-failing', subject: 'stripe', opens: false },
    ]);
    assert.deepEqual(given({ webhooks: [provider(0, webhookQuietMs / 60_000)] }).conditions(), []);
    assert.deepEqual(given({ webhooks: [provider(0, null)] }).conditions(), []);
  });

  it('a job failing the limit of runs in a row is one; fewer is not', () => {
    const job = (name: string, failures: number) => ({ job: name, failures, error: 'boom', finished: minutesAgo(1) });
    assert.deepEqual(given({ jobs: [job('drift', 3), job('receipts', 2), job('reconcile', 0)] }).conditions(), [
      { kind: 'job-failing', subject: 'drift', opens: true },
    ]);
  });

  it('each open drift is one, a vanished capsul of its own kind', () => {
    const drift = (id: string, kind: string) => ({
      id,
      host: 'a',
      vmId: `capsul-${id}`,
      kind,
      detected: minutesAgo(3),
      email: 'c@example.org',
      size: 'f1-s',
      priceCentsPerMonth: 533,
      deletionRequestedAt: null,
      chargesEndedAt: minutesAgo(3),
    });
    assert.deepEqual(given({ drift: [drift('x', 'unexpected-on-host'), drift('y', 'vanished-from-host')] }).conditions(), [
      { kind: 'drift', subject: 'x', opens: true },
      { kind: 'vanished', subject: 'y', opens: true },
    ]);
    const [vanished] = conditionsAt(now, { ...quiet, drift: [drift('y', 'vanished-from-host')] }, limits);
    assert.ok(vanished!.details.includes('Charges: ended 2030-01-01 11:57 UTC, when it was seen gone.'), vanished!.details.join('\n'));
  });
});

describe('incident rules: what opens and what clears', () => {
  const holding = (kind: Condition['kind'], subject: string, opens = true): Condition => ({
    kind,
    subject,
    summary: '',
    details: [],
    opens,
  });
  const open = (id: string, kind: OpenIncident['kind'], subject: string): OpenIncident => ({ id, kind, subject });

  it('a condition with no open incident opens; one already open stays; an incident whose condition ended clears', () => {
    const changes = reconcile(
      [open('1', 'host-offline', 'a'), open('2', 'job-failing', 'drift')],
      [holding('host-offline', 'a'), holding('host-offline', 'b')],
    );
    assert.deepEqual(
      changes.open.map((c) => c.subject),
      ['b'],
    );
    assert.deepEqual(changes.clear, [open('2', 'job-failing', 'drift')]);
  });

  it('a condition that only keeps one open never opens one, and keeps it from clearing', () => {
    assert.deepEqual(reconcile([], [holding('webhooks-failing', 'stripe', false)]), { open: [], clear: [] });
    assert.deepEqual(reconcile([open('1', 'webhooks-failing', 'stripe')], [holding('webhooks-failing', 'stripe', false)]), {
      open: [],
      clear: [],
    });
  });

  it('kind and subject together name a condition: the same subject of another kind is another incident', () => {
    const changes = reconcile([open('1', 'host-offline', 'a')], [holding('operations-waiting', 'a')]);
    assert.deepEqual(
      changes.open.map((c) => c.kind),
      ['operations-waiting'],
    );
    assert.deepEqual(changes.clear, [open('1', 'host-offline', 'a')]);
  });

  it('property: after applying the changes, the open incidents are exactly the conditions that hold (those that open, or were open)', () => {
    const kinds = ['host-offline', 'drift', 'webhooks-failing'] as const;
    const key = fc.record({ kind: fc.constantFrom(...kinds), subject: fc.constantFrom('a', 'b', 'c') });
    fc.assert(
      fc.property(
        fc.uniqueArray(key, { selector: (k) => `${k.kind}/${k.subject}` }),
        fc.array(fc.tuple(key, fc.boolean())),
        (before, conds) => {
          const openNow = before.map((k, i) => ({ id: String(i), ...k }));
          const holdingNow = conds.map(([k, opens]) => holding(k.kind, k.subject, opens));
          const changes = reconcile(openNow, holdingNow);
          const cleared = new Set(changes.clear.map((i) => i.id));
          const after = new Set([
            ...openNow.filter((i) => !cleared.has(i.id)).map((i) => `${i.kind}/${i.subject}`),
            ...changes.open.map((c) => `${c.kind}/${c.subject}`),
          ]);
          const expected = new Set(
            holdingNow
              .filter((c) => c.opens || before.some((k) => k.kind === c.kind && k.subject === c.subject))
              .map((c) => `${c.kind}/${c.subject}`),
          );
          assert.deepEqual([...after].sort(), [...expected].sort());
        },
      ),
    );
  });
});
