// The drift check: each online host's last heartbeat listing compared with the ledger again (so a
// disagreement that arises on the ledger's side between heartbeats is recorded too, and one that ended
// is closed), then the open incidents (capsuls vanished from their host among them) and the offline
// hosts that still carry capsuls reported, so they show in the hub's log as well as in `capsul drift`.
import type pg from 'pg';
import { Hosts, onlineWithinMs } from '../ledger/hosts.ts';
import type { JobRun } from './job.ts';

const maxHosts = 1000;
/** Open incidents reported one by one; the rest are counted. */
const maxIncidentLines = 20;

export type DriftDeps = { pool: pg.Pool; now: () => Date };

export async function checkDrift(deps: DriftDeps, run: JobRun): Promise<{ checked: number; open: number }> {
  const now = run.asOf ?? deps.now();
  const { rows } = await deps.pool.query(
    `SELECT h.id, hb.vms, hb.last_seen IS NOT NULL AND hb.last_seen > $1::timestamptz AS online,
            to_char(hb.last_seen AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS last_seen,
            (SELECT count(*)::int FROM vms v WHERE v.host = h.id AND v.state NOT IN ('deleted', 'vanished')) AS capsuls
     FROM hosts h LEFT JOIN host_heartbeats hb ON hb.host_id = h.id
     WHERE h.removed IS NULL ORDER BY h.id LIMIT ${maxHosts}`,
    [new Date(now.getTime() - onlineWithinMs).toISOString()],
  );
  const hosts = new Hosts({ pool: deps.pool, now: deps.now });
  let checked = 0;
  const failed: string[] = [];
  for (const host of rows) {
    if (!host.online) {
      if (host.capsuls > 0)
        run.report(`drift: host ${host.id} is offline (last heartbeat ${host.last_seen ?? 'never'}) with ${host.capsuls} capsuls`);
      continue;
    }
    const seen = (host.vms as { vmId: string }[]).map((vm) => vm.vmId);
    if (run.dryRun) {
      run.report(`drift: host ${host.id}: would compare its last listing (${seen.length} capsuls) with the ledger`);
    } else {
      try {
        await hosts.checkDrift(host.id, seen, { by: { kind: 'job', id: 'drift' } });
      } catch (error) {
        run.log(`drift: host ${host.id}: failed: ${(error as Error).message}`);
        failed.push(host.id);
        continue;
      }
    }
    checked++;
  }
  const open = await hosts.drift();
  for (const incident of open.slice(0, maxIncidentLines)) {
    run.report(`drift: host ${incident.host}: ${incident.vmId} ${incident.kind} since ${incident.detected}`);
  }
  if (open.length > maxIncidentLines)
    run.report(`drift: … and ${open.length - maxIncidentLines} more open incidents (capsul drift lists them all)`);
  // The hub's reactions end a vanished capsul's charges within seconds: one still charged means none is running them.
  const { rows: unbilled } = await deps.pool.query(
    `SELECT id, host FROM vms WHERE vanished IS NOT NULL AND accrual_ended IS NULL ORDER BY vanished LIMIT ${maxIncidentLines}`,
  );
  for (const vm of unbilled) {
    run.report(
      `drift: ${vm.id} vanished from host ${vm.host} but its charges have not ended yet: the hub's reactions end them (is a hub running?)`,
    );
  }
  if (failed.length > 0) throw new Error(`the check failed for ${failed.length} hosts: ${failed.slice(0, 5).join(', ')}`);
  return { checked, open: open.length };
}
