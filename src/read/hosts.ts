// Read model: VM hosts, from the `hosts` projection (registered, not removed, with their token's hash),
// `host_heartbeats` (each host's last listing of the capsuls it runs) and `drift` (disagreements
// between a host and the ledger), with the capsuls (`vms`) each host carries. Instants as Dates.
import type { Queryable } from './rows.ts';

export type HostLoad = {
  id: string;
  online: boolean;
  lastSeen: Date | null;
  memoryMb: number;
  usedMemoryMb: number;
  vcpus: number;
  /** capsuls on it neither deleted nor vanished */
  capsuls: number;
};

/** Every registered host with what its capsuls take, by id; online when its last heartbeat came after `onlineSince`. */
export async function hostLoads(db: Queryable, onlineSince: Date): Promise<HostLoad[]> {
  const { rows } = await db.query(
    `SELECT h.id, h.memory_mb, h.vcpus, hb.last_seen,
            coalesce(hb.last_seen > $1::timestamptz, false) AS online,
            coalesce(sum(s.memory_mb) FILTER (WHERE v.id IS NOT NULL), 0)::int AS used,
            count(v.id)::int AS capsuls
     FROM hosts h
     LEFT JOIN host_heartbeats hb ON hb.host_id = h.id
     LEFT JOIN vms v ON v.host = h.id AND v.state NOT IN ('deleted', 'vanished')
     LEFT JOIN vm_sizes s ON s.id = v.size
     WHERE h.removed IS NULL
     GROUP BY h.id, hb.last_seen
     ORDER BY h.id`,
    [onlineSince.toISOString()],
  );
  return rows.map((row) => ({
    id: row.id,
    online: row.online,
    lastSeen: row.last_seen,
    memoryMb: row.memory_mb,
    usedMemoryMb: row.used,
    vcpus: row.vcpus,
    capsuls: row.capsuls,
  }));
}

export type HostListing = { id: string; online: boolean; lastSeen: Date | null; seenVmIds: string[]; capsuls: number };

/** Every registered host's last heartbeat listing, by id, at most `limit`; online as in hostLoads. */
export async function hostListings(db: Queryable, onlineSince: Date, limit: number): Promise<HostListing[]> {
  const { rows } = await db.query(
    `SELECT h.id, hb.vms, hb.last_seen IS NOT NULL AND hb.last_seen > $1::timestamptz AS online, hb.last_seen,
            (SELECT count(*)::int FROM vms v WHERE v.host = h.id AND v.state NOT IN ('deleted', 'vanished')) AS capsuls
     FROM hosts h LEFT JOIN host_heartbeats hb ON hb.host_id = h.id
     WHERE h.removed IS NULL ORDER BY h.id LIMIT ${Math.trunc(limit)}`,
    [onlineSince.toISOString()],
  );
  return rows.map((row) => ({
    id: row.id,
    online: row.online,
    lastSeen: row.last_seen,
    seenVmIds: ((row.vms ?? []) as { vmId: string }[]).map((vm) => vm.vmId),
    capsuls: row.capsuls,
  }));
}

/** The hash of a registered host's token, or null (unknown or removed). */
export async function hostTokenHash(db: Queryable, hostId: string): Promise<string | null> {
  const { rows } = await db.query('SELECT token_hash FROM hosts WHERE id = $1 AND removed IS NULL', [hostId]);
  return rows[0]?.token_hash ?? null;
}

/** Capsuls on the host not yet deleted (a vanished one counts until its deletion is confirmed). */
export async function capsulCountOnHost(db: Queryable, hostId: string): Promise<number> {
  const { rows } = await db.query(`SELECT count(*)::int AS n FROM vms WHERE host = $1 AND state <> 'deleted'`, [hostId]);
  return rows[0].n;
}

/**
 * What the ledger says of a host's listing: `expected`, the capsuls it should list (running, stopped,
 * crashed or paused there, no delete asked of it); `known`, those of `seen` the ledger places there
 * (not deleted, and not vanished unless a delete asked of the host since is under way).
 */
export async function ledgerViewOfHost(
  db: Queryable,
  hostId: string,
  seen: readonly string[],
): Promise<{ expected: string[]; known: string[] }> {
  const { rows: expected } = await db.query(
    `SELECT v.id FROM vms v WHERE v.host = $1 AND v.state IN ('running', 'stopped', 'crashed', 'paused')
       AND NOT EXISTS (SELECT 1 FROM operations o WHERE o.vm_id = v.id AND o.kind = 'delete')`,
    [hostId],
  );
  const { rows: known } = await db.query(
    `SELECT v.id FROM vms v WHERE v.id = ANY($2::text[]) AND v.host = $1 AND v.state <> 'deleted'
       AND (v.state <> 'vanished' OR EXISTS (SELECT 1 FROM operations o WHERE o.vm_id = v.id AND o.kind = 'delete' AND o.completed IS NULL))`,
    [hostId, seen],
  );
  return { expected: expected.map((row) => row.id), known: known.map((row) => row.id) };
}

export type DriftIncident = { host: string; vmId: string; kind: string; detected: Date };

/** Open drift incidents (vanished capsuls among them), oldest first. */
export async function openDrift(db: Queryable): Promise<DriftIncident[]> {
  const { rows } = await db.query('SELECT host, vm_id, kind, detected FROM drift WHERE resolved IS NULL ORDER BY detected, host, vm_id');
  return rows.map((row) => ({ host: row.host, vmId: row.vm_id, kind: row.kind, detected: row.detected }));
}

/** The host with the most free memory that fits `memoryMb` (online only: heartbeat after `onlineSince`, unless `onlineOnly` is false), or null. */
export async function hostWithRoom(db: Queryable, memoryMb: number, onlineSince: Date, onlineOnly: boolean): Promise<string | null> {
  const { rows } = await db.query(
    `SELECT h.id, h.memory_mb - coalesce(sum(s.memory_mb), 0) AS free
     FROM hosts h
     LEFT JOIN host_heartbeats hb ON hb.host_id = h.id
     LEFT JOIN vms v ON v.host = h.id AND v.state NOT IN ('deleted', 'vanished')
     LEFT JOIN vm_sizes s ON s.id = v.size
     WHERE h.removed IS NULL AND ($2::boolean IS FALSE OR hb.last_seen > $1::timestamptz)
     GROUP BY h.id
     HAVING h.memory_mb - coalesce(sum(s.memory_mb), 0) >= $3
     ORDER BY free DESC, h.id LIMIT 1`,
    [onlineSince.toISOString(), onlineOnly, memoryMb],
  );
  return rows[0]?.id ?? null;
}
