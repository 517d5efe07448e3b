// Operators are told of every capsul that vanished from its host (an open drift incident of kind
// vanished-from-host), once per incident and at least once: the email is claimed by its
// incident_emails row, written in the transaction that waits for the mail server (mail-once.ts), so a
// failed sending is tried again next round. It goes to ADMIN_EMAILS in one message; without them there
// is no one to tell, and the incident waits (capsul drift, /admin/hosts and the drift job's log show it).
// An incident closed before it was mailed (the capsul's deletion confirmed since) needs no one any more.
import type pg from 'pg';
import { dollars, utcMinute } from '../core/format.ts';
import { advisoryLocks } from '../db/advisory-lock.ts';
import type { Mailer } from '../mail/mailer.ts';
import { renderMail } from '../mail/render.ts';
import { unmailedVanishings, type VanishingIncident } from '../read/hosts.ts';
import type { JobRun } from './job.ts';
import { mailEach, sendOnce } from './mail-once.ts';

const perRound = 100;

export type IncidentEmailDeps = { pool: pg.Pool; mailer: Mailer; adminEmails?: readonly string[]; baseUrl: string; now: () => Date };

export async function sendIncidentEmails(deps: IncidentEmailDeps, run: JobRun): Promise<{ sent: number }> {
  const pending = await unmailedVanishings(deps.pool, perRound);
  const admins = deps.adminEmails ?? [];
  const describe = (incident: VanishingIncident) =>
    `incidents: ${incident.vmId} vanished from host ${incident.host} (seen gone ${utcMinute(incident.vanishedAt)})`;
  if (admins.length === 0) {
    if (run.dryRun) for (const incident of pending) run.report(`${describe(incident)}: no one to tell (ADMIN_EMAILS is empty)`);
    return { sent: 0 };
  }
  const to = admins.join(', ');
  return mailEach(run, pending, (incident) => sendOne(deps, to, incident), {
    wouldSend: (incident) => `${describe(incident)}: would tell ${to}`,
    sent: (incident) => `${describe(incident)}: told ${to}`,
    failed: (incident, why) => `${describe(incident)}: the operators' email failed, tried again next round: ${why}`,
  });
}

function sendOne(deps: IncidentEmailDeps, to: string, incident: VanishingIncident): Promise<boolean> {
  const claim = {
    lock: advisoryLocks.incidentEmail(incident.driftId),
    record: {
      text: 'INSERT INTO incident_emails (drift_id, recipients, sent) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING',
      values: [incident.driftId, to, deps.now().toISOString()],
    },
  };
  return sendOnce(deps.pool, deps.mailer, claim, async () =>
    renderMail('incident-vanished', to, {
      ...incident,
      vanished: utcMinute(incident.vanishedAt),
      pricePerMonth: incident.priceCentsPerMonth === null ? null : dollars(incident.priceCentsPerMonth),
      charges: chargesLine(incident),
      adminUrl: `${deps.baseUrl}/admin/hosts`,
    }),
  );
}

/** What the customer is charged for it now, in one line. */
function chargesLine(incident: VanishingIncident): string {
  const requested = incident.deletionRequestedAt;
  const ended = incident.chargesEndedAt;
  if (requested !== null && (ended === null || requested.getTime() <= ended.getTime())) {
    return `ended ${utcMinute(requested)}, when its deletion was requested (before it vanished)`;
  }
  if (ended !== null) return `ended ${utcMinute(ended)}, when it was seen gone`;
  return "not ended yet: the hub's reactions end them within seconds (is a hub running?)";
}
