// The drift check: each online host's last heartbeat listing compared with the ledger again (so a
// disagreement that arises on the ledger's side between heartbeats is recorded too, and one that ended
// is closed), then the open incidents (capsuls vanished from their host among them) and the offline
// hosts that still carry capsuls reported, so they show in the hub's log as well as in `capsul drift`.
import type pg from 'pg';
import { onlineWithinMs, type Hosts } from '../ledger/hosts.ts';
import { vanishedStillCharged } from '../read/capsuls.ts';
import { hostListings } from '../read/hosts.ts';
import type { JobRun } from './job.ts';

const maxHosts = 1000;
/** Open incidents reported one by one; the rest are counted. */
const maxIncidentLines = 20;

export type DriftDeps = { pool: pg.Pool; now: () => Date; hosts: Hosts };

export async function checkDrift(deps: DriftDeps, run: JobRun): Promise<{ checked: number; open: number }> {
  const now = run.asOf ?? deps.now();
  const listings = await hostListings(deps.pool, new Date(now.getTime() - onlineWithinMs), maxHosts);
  const { hosts } = deps;
  let checked = 0;
  const failed: string[] = [];
  for (const host of listings) {
    if (!host.online) {
      const lastSeen = host.lastSeen === null ? 'never' : `${host.lastSeen.toISOString().slice(0, 19)}Z`;
      if (host.capsuls > 0) run.report(`drift: host ${host.id} is offline (last heartbeat ${lastSeen}) with ${host.capsuls} capsuls`);
      continue;
    }
    const seen = host.seenVmIds;
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
  for (const vm of await vanishedStillCharged(deps.pool, maxIncidentLines)) {
    run.report(
      `drift: ${vm.id} vanished from host ${vm.host} but its charges have not ended yet: the hub's reactions end them (is a hub running?)`,
    );
  }
  if (failed.length > 0) throw new Error(`the check failed for ${failed.length} hosts: ${failed.slice(0, 5).join(', ')}`);
  return { checked, open: open.length };
}
