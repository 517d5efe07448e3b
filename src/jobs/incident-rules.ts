// When something is an incident, and when it is over: pure rules over what the incidents job observed
// (src/read/incidents.ts) at one instant. `conditionsAt` says which conditions hold; `reconcile` says,
// against the incidents open now, which to open and which to clear. One incident per kind and subject.
import type { AlertLimits } from '../config.ts';
import { dollars, plural, utcMinute } from '../core/format.ts';
import type { IncidentKind, Observations, OpenDrift } from '../read/incidents.ts';

export type Condition = {
  kind: IncidentKind;
  subject: string;
  summary: string;
  details: string[];
  /**
   * false: the condition keeps an open incident open but does not open one (a provider's webhooks that
   * failed recently but not ALERT_WEBHOOK_FAILURES times in a row: one good delivery among forged ones
   * does not clear it and open it again every minute)
   */
  opens: boolean;
};

/** A provider's webhooks incident clears only once no delivery has failed for this long. */
export const webhookQuietMs = 15 * 60_000;

export function conditionsAt(now: Date, seen: Observations, limits: AlertLimits): Condition[] {
  return [
    ...offlineHosts(now, seen, limits),
    ...waitingOperations(now, seen, limits),
    ...waitingPlacement(now, seen, limits),
    ...failingWebhooks(now, seen, limits),
    ...failingJobs(seen, limits),
    ...seen.drift.map(driftCondition),
  ];
}

export type OpenIncident = { id: string; kind: IncidentKind; subject: string };

/** Conditions that hold with no open incident are opened; open incidents whose condition no longer holds are cleared. */
export function reconcile<T extends OpenIncident>(open: readonly T[], holding: readonly Condition[]): { open: Condition[]; clear: T[] } {
  const key = (item: { kind: string; subject: string }) => `${item.kind}\u0000${item.subject}`;
  const openKeys = new Set(open.map(key));
  const holdingKeys = new Set(holding.map(key));
  const opening = new Map<string, Condition>();
  for (const condition of holding) {
    if (condition.opens && !openKeys.has(key(condition)) && !opening.has(key(condition))) opening.set(key(condition), condition);
  }
  return { open: [...opening.values()], clear: open.filter((incident) => !holdingKeys.has(key(incident))) };
}

function offlineHosts(now: Date, seen: Observations, limits: AlertLimits): Condition[] {
  const limitMs = limits.hostOfflineMinutes * 60_000;
  return seen.hosts.flatMap((host) => {
    // A host never seen counts from its registration: a new host gets the same time to start its agent.
    const since = host.lastSeen ?? host.registered;
    if (now.getTime() - since.getTime() <= limitMs) return [];
    const heard = host.lastSeen === null ? 'has never sent a heartbeat' : `last sent a heartbeat ${utcMinute(host.lastSeen)}`;
    return [
      {
        kind: 'host-offline',
        subject: host.id,
        summary: `host ${host.id} is offline: it ${heard}`,
        details: [
          host.capsuls === 0
            ? 'It carries no capsuls.'
            : `It carries ${plural(host.capsuls, 'capsul')}; no operation reaches them until its agent is back.`,
          `Is capsul-spoke running there, and can it reach the hub? (docs/operations.md, "A host that goes away")`,
        ],
        opens: true,
      },
    ];
  });
}

function waitingOperations(now: Date, seen: Observations, limits: AlertLimits): Condition[] {
  return seen.operations.map((waiting) => ({
    kind: 'operations-waiting',
    subject: waiting.host,
    summary: `host ${waiting.host} has not reported on ${plural(waiting.count, 'operation')} for over ${limits.waitingMinutes} minutes`,
    details: [
      `The oldest (${waiting.kinds.join(', ')}) was sent ${utcMinute(waiting.oldest)}, ${minutesAgo(now, waiting.oldest)} ago.`,
      `capsul status and /admin/hosts show the host; its agent's log says what it is doing.`,
    ],
    opens: true,
  }));
}

function waitingPlacement(now: Date, seen: Observations, limits: AlertLimits): Condition[] {
  const { count, oldest } = seen.placement;
  if (count === 0 || oldest === null) return [];
  return [
    {
      kind: 'placement-waiting',
      subject: 'placement',
      summary: `${plural(count, 'capsul')} waiting for a host for over ${limits.waitingMinutes} minutes`,
      details: [
        `The oldest was asked for ${utcMinute(oldest)}, ${minutesAgo(now, oldest)} ago.`,
        'No online host has the memory for it: add a host or free one (capsul hosts, /admin/hosts).',
      ],
      opens: true,
    },
  ];
}

function failingWebhooks(now: Date, seen: Observations, limits: AlertLimits): Condition[] {
  return seen.webhooks.flatMap((provider) => {
    const failing = provider.failures >= limits.webhookFailures;
    const recently = provider.lastFailed !== null && now.getTime() - provider.lastFailed.getTime() < webhookQuietMs;
    if (!failing && !recently) return [];
    return [
      {
        kind: 'webhooks-failing',
        subject: provider.provider,
        summary: `${provider.provider}'s webhook deliveries are failing: ${plural(provider.failures, 'failure')} in a row`,
        details: [
          `The last failed ${provider.lastFailed === null ? 'never' : utcMinute(provider.lastFailed)}: ${provider.lastError ?? 'no reason recorded'}.`,
          `The last one that went through: ${provider.lastDone === null ? 'none yet' : utcMinute(provider.lastDone)}.`,
          'A wrong webhook secret refuses every delivery (docs/payments.md); reconciliation credits what the webhooks miss.',
        ],
        opens: failing,
      },
    ];
  });
}

function failingJobs(seen: Observations, limits: AlertLimits): Condition[] {
  return seen.jobs
    .filter((job) => job.failures >= limits.jobFailures)
    .map((job) => ({
      kind: 'job-failing',
      subject: job.job,
      summary: `the ${job.job} job has failed ${job.failures} runs in a row`,
      details: [
        `The last, ending ${utcMinute(job.finished)}: ${job.error ?? 'no reason recorded'}.`,
        `capsul cron-task runs the jobs once and says what goes wrong; the hub logs each failure.`,
      ],
      opens: true,
    }));
}

function driftCondition(drift: OpenDrift): Condition {
  if (drift.kind === 'vanished-from-host') {
    const capsul =
      drift.size === null ? '' : ` (${drift.size}, ${drift.priceCentsPerMonth === null ? '?' : dollars(drift.priceCentsPerMonth)} a month)`;
    return {
      kind: 'vanished',
      subject: drift.id,
      summary: `capsul ${drift.vmId} vanished from host ${drift.host}`,
      details: [
        `Host ${drift.host} reported capsul ${drift.vmId}${capsul} deleted, but nobody asked it to delete that capsul.`,
        `Customer: ${drift.email ?? 'unknown'}. Seen gone: ${utcMinute(drift.detected)} (the host's time).`,
        `Charges: ${chargesLine(drift)}.`,
        `Find out why (capsul history --vm ${drift.vmId}; on the host, virsh list --all), tell the customer, then close it: capsul delete-vm ${drift.vmId} --reason "vanished from host" (docs/operations.md, "A capsul vanished from its host").`,
      ],
      opens: true,
    };
  }
  return {
    kind: 'drift',
    subject: drift.id,
    summary: `host ${drift.host} and the ledger disagree about capsul ${drift.vmId}: ${drift.kind}`,
    details: [
      `Detected ${utcMinute(drift.detected)}.`,
      drift.kind === 'unexpected-on-host'
        ? 'The host runs a capsul the ledger has deleted or never placed there.'
        : 'The ledger has the capsul on this host, and the host does not list it.',
      'capsul drift lists every open disagreement (docs/operations.md, "Drift").',
    ],
    opens: true,
  };
}

/** What the customer is charged for a vanished capsul now, in a few words. */
function chargesLine(drift: OpenDrift): string {
  const requested = drift.deletionRequestedAt;
  const ended = drift.chargesEndedAt;
  if (requested !== null && (ended === null || requested.getTime() <= ended.getTime())) {
    return `ended ${utcMinute(requested)}, when its deletion was requested (before it vanished)`;
  }
  if (ended !== null) return `ended ${utcMinute(ended)}, when it was seen gone`;
  return "not ended yet: the hub's reactions end them within seconds (is a hub running?)";
}

function minutesAgo(now: Date, then: Date): string {
  const minutes = Math.floor((now.getTime() - then.getTime()) / 60_000);
  return minutes < 120 ? plural(minutes, 'minute') : plural(Math.floor(minutes / 60), 'hour');
}
