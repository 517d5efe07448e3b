// Operators are told of every incident when it opens and when it clears, once and at least once: one
// email a round to OPS_EMAILS (ADMIN_EMAILS when unset) lists what opened and what cleared since the
// last. The incidents it lists are marked mailed in the transaction that waits for the mail server, so
// a failed sending marks nothing and is tried again next round (and the job's failure is recorded).
// Without anyone to tell, the incidents wait, listed on /admin/incidents and by capsul status; an
// incident cleared before anyone was told of it needs no one any more.
import type pg from 'pg';
import { utcMinute } from '../core/format.ts';
import { inTransaction } from '../db/transaction.ts';
import type { Mailer } from '../mail/mailer.ts';
import { renderMail } from '../mail/render.ts';
import { countOpenIncidents, type Incident, unmailedIncidents } from '../read/incidents.ts';
import type { JobRun } from './job.ts';

/** Incidents in one email at most (of each: opened, cleared); the rest go in the next round's. */
const perEmail = 50;

export type IncidentEmailDeps = { pool: pg.Pool; mailer: Mailer; opsEmails?: readonly string[]; baseUrl: string; now: () => Date };

export async function sendIncidentEmails(deps: IncidentEmailDeps, run: JobRun): Promise<{ sent: number }> {
  const operators = deps.opsEmails ?? [];
  if (run.dryRun) {
    const pending = await unmailedIncidents(deps.pool, perEmail);
    const tell = operators.length === 0 ? 'no one to tell (OPS_EMAILS and ADMIN_EMAILS are empty)' : `would tell ${operators.join(', ')}`;
    for (const incident of pending.opened) run.report(`incident emails: opened: ${incident.summary}: ${tell}`);
    for (const incident of pending.cleared) run.report(`incident emails: cleared: ${incident.summary}: ${tell}`);
    return { sent: 0 };
  }
  if (operators.length === 0) return { sent: 0 };
  const to = operators.join(', ');
  const told = await inTransaction(deps.pool, async (db) => {
    const pending = await unmailedIncidents(db, perEmail);
    const now = deps.now().toISOString();
    const opened = await claim(
      db,
      `UPDATE incidents SET mailed_open = $2, recipients = $3 WHERE id = ANY($1::bigint[]) AND cleared IS NULL AND mailed_open IS NULL`,
      [pending.opened.map((incident) => incident.id), now, to],
      pending.opened,
    );
    const cleared = await claim(
      db,
      `UPDATE incidents SET mailed_clear = $2 WHERE id = ANY($1::bigint[]) AND cleared IS NOT NULL AND mailed_open IS NOT NULL AND mailed_clear IS NULL`,
      [pending.cleared.map((incident) => incident.id), now],
      pending.cleared,
    );
    if (opened.length === 0 && cleared.length === 0) return null;
    const stillOpen = await countOpenIncidents(db);
    // Marked above, committed only once the mail server has accepted the message.
    await deps.mailer.send(renderMail('incidents', to, incidentMail(opened, cleared, stillOpen, deps.baseUrl)));
    return { opened, cleared };
  });
  if (told === null) return { sent: 0 };
  for (const incident of told.opened) run.report(`incident emails: opened: ${incident.summary}: told ${to}`);
  for (const incident of told.cleared) run.report(`incident emails: cleared: ${incident.summary}: told ${to}`);
  return { sent: 1 };
}

/** The incidents the UPDATE marked (one cleared or mailed by another meanwhile is left out). */
async function claim(db: pg.PoolClient, text: string, values: unknown[], pending: Incident[]): Promise<Incident[]> {
  if (pending.length === 0) return [];
  const { rows } = await db.query(`${text} RETURNING id::text AS id`, values);
  const marked = new Set(rows.map((row) => row.id as string));
  return pending.filter((incident) => marked.has(incident.id));
}

/** What the incidents template shows. */
export function incidentMail(opened: Incident[], cleared: Incident[], stillOpen: number, baseUrl: string) {
  const subject =
    opened.length === 1 && cleared.length === 0
      ? `capsul incident: ${opened[0]!.summary}`
      : cleared.length === 1 && opened.length === 0
        ? `capsul incident cleared: ${cleared[0]!.summary}`
        : `capsul: ${opened.length} incidents opened, ${cleared.length} cleared`;
  const shown = (incident: Incident) => ({
    ...incident,
    opened: utcMinute(incident.opened),
    cleared: incident.cleared === null ? null : utcMinute(incident.cleared),
  });
  return { subject, opened: opened.map(shown), cleared: cleared.map(shown), stillOpen, adminUrl: `${baseUrl}/admin/incidents` };
}
