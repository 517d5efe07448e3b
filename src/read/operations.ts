// Read model: operations, from the `operations` projection (each request a capsul's host must carry
// out: create, start, stop, force-stop, delete; open until the host reports it done) with the capsul
// (`vms`) and catalogue rows a host needs to create one. What a spoke's long poll hands out, and when
// each of a host's capsuls was requested. Instants as Dates.
import type { Queryable } from './rows.ts';

export type OpenOperation = {
  id: string;
  kind: string;
  vmId: string;
  createdAt: Date;
  /** what a create needs: the size's memory and vCPUs, the image's file and the keys to install */
  spec: { memoryMb: number; vcpus: number; imageFile: string; sshPublicKeys: string[] };
};

/** The operations still open on a host, oldest first, at most `limit`. */
export async function openOperationsOfHost(db: Queryable, hostId: string, limit: number): Promise<OpenOperation[]> {
  const { rows } = await db.query(
    `SELECT o.id, o.kind, o.vm_id, o.created, s.memory_mb, s.vcpus, i.template_image_file_name AS image_file, v.ssh_public_keys
     FROM operations o
     JOIN vms v ON v.id = o.vm_id
     LEFT JOIN vm_sizes s ON s.id = v.size
     LEFT JOIN os_images i ON i.id = v.os
     WHERE o.host = $1 AND o.completed IS NULL
     ORDER BY o.created, o.id LIMIT ${Math.trunc(limit)}`,
    [hostId],
  );
  return rows.map((row) => ({
    id: row.id,
    kind: row.kind,
    vmId: row.vm_id,
    createdAt: row.created,
    spec: { memoryMb: row.memory_mb, vcpus: row.vcpus, imageFile: row.image_file, sshPublicKeys: row.ssh_public_keys },
  }));
}

/** When each of the given capsuls placed on the host was requested; others are left out. */
export async function requestedTimesOnHost(db: Queryable, hostId: string, vmIds: readonly string[]): Promise<Map<string, Date>> {
  if (vmIds.length === 0) return new Map();
  const { rows } = await db.query('SELECT id, created FROM vms WHERE id = ANY($1::text[]) AND host = $2', [[...new Set(vmIds)], hostId]);
  return new Map(rows.map((row) => [row.id as string, row.created as Date]));
}

export type OperationStatus = { vmId: string; host: string; kind: string; ended: boolean };

/** An operation by id: its capsul, host and kind, and whether it ended; null when there is no such operation. */
export async function operationById(db: Queryable, operationId: string): Promise<OperationStatus | null> {
  const { rows } = await db.query('SELECT vm_id, host, kind, completed IS NOT NULL AS ended FROM operations WHERE id = $1', [operationId]);
  return rows[0] ? { vmId: rows[0].vm_id, host: rows[0].host, kind: rows[0].kind, ended: rows[0].ended } : null;
}
