// Read model: capsuls, from the `vms` projection (one row per capsul: its account, size, captured
// price, state as its host last reported it, addresses and keys) with its open `operations`, the
// catalogue's descriptions and its stream's version. What the customer's console lists and shows,
// what the operators' list shows, and which account a capsul bills. Instants as Dates, money in cents.
import { vmStream, type HostKeyFingerprint } from '../domain/vm/events.ts';
import { centsFromNumeric, type Cents } from '../domain/shared/money.ts';
import { streamVersionExpression } from '../db/event-store.ts';
import type { Queryable } from './rows.ts';

/** The account capsul `vmId` bills, and whether its deletion was requested; null when there is no such capsul. */
export async function accountOfCapsul(
  db: Queryable,
  vmId: string,
): Promise<{ accountId: string; deletionRequested: boolean; suspended: boolean } | null> {
  const { rows } = await db.query(
    `SELECT v.account_id, v.deleted IS NOT NULL AS deletion_requested, a.suspended IS NOT NULL AS suspended
     FROM vms v JOIN accounts a ON a.id = v.account_id WHERE v.id = $1`,
    [vmId],
  );
  return rows[0] ? { accountId: rows[0].account_id, deletionRequested: rows[0].deletion_requested, suspended: rows[0].suspended } : null;
}

/**
 * Suspended accounts a payment was recorded on since their suspension (a top-up may have brought them
 * back above the suspension point): the resumption reaction folds each. Oldest suspension first.
 */
export async function suspendedAccountsPaidSince(db: Queryable, limit: number): Promise<string[]> {
  const { rows } = await db.query(
    `SELECT a.id FROM accounts a WHERE a.suspended IS NOT NULL
       AND EXISTS (SELECT 1 FROM payments p WHERE p.account_id = a.id AND p.recorded > a.suspended)
     ORDER BY a.suspended LIMIT ${Math.trunc(limit)}`,
  );
  return rows.map((row) => row.id);
}

/** No operation of the capsul still waits for its host. */
const noOpenOperation = `NOT EXISTS (SELECT 1 FROM operations o WHERE o.vm_id = v.id AND o.completed IS NULL)`;

/** Capsuls a suspension stopped that still run (or were never seen stopped), with no operation waiting. */
export async function suspendedStillRunning(db: Queryable, limit: number): Promise<{ id: string; accountId: string }[]> {
  const { rows } = await db.query(
    `SELECT v.id, v.account_id FROM vms v
     WHERE v.suspended IS NOT NULL AND v.deleted IS NULL AND v.host IS NOT NULL AND v.state IN ('running', 'paused', 'crashed')
       AND ${noOpenOperation}
     ORDER BY v.suspended, v.id LIMIT ${Math.trunc(limit)}`,
  );
  return rows.map((row) => ({ id: row.id, accountId: row.account_id }));
}

/** Capsuls a resumption is to start again, stopped now, with no operation waiting. */
export async function resumedStillStopped(db: Queryable, limit: number): Promise<{ id: string; accountId: string }[]> {
  const { rows } = await db.query(
    `SELECT v.id, v.account_id FROM vms v
     WHERE v.start_on_resume AND v.deleted IS NULL AND v.host IS NOT NULL AND v.state = 'stopped' AND ${noOpenOperation}
     ORDER BY v.id LIMIT ${Math.trunc(limit)}`,
  );
  return rows.map((row) => ({ id: row.id, accountId: row.account_id }));
}

export type ListedCapsul = {
  id: string;
  size: string;
  /** the image's description (its id if the catalogue no longer has it) */
  os: string;
  ipv4: string | null;
  state: string;
  deletionRequested: boolean;
  createdAt: Date;
  /** kinds of the operations still open, oldest first */
  openOperations: string[];
  /** stopped by its account's suspension for nonpayment (until a top-up, or its deletion) */
  suspended: boolean;
};

/** The customer's capsuls not yet deleted, newest first, at most `limit`. */
export async function customerCapsuls(db: Queryable, email: string, limit: number): Promise<ListedCapsul[]> {
  const { rows } = await db.query({
    name: 'console-list', // the page customers see most: planned once per connection
    text: `SELECT v.id, v.size, coalesce(o.description, v.os) AS os, v.last_seen_ipv4 AS ipv4, v.state, v.deleted IS NOT NULL AS deleting, v.created,
                  v.suspended IS NOT NULL AS suspended,
                  ARRAY(SELECT kind FROM operations WHERE vm_id = v.id AND completed IS NULL ORDER BY created) AS open_operations
           FROM vms v LEFT JOIN os_images o ON o.id = v.os
           WHERE v.email = $1 AND v.state <> 'deleted' ORDER BY v.created DESC, v.id LIMIT ${Math.trunc(limit)}`,
    values: [email],
  });
  return rows.map((row) => ({
    id: row.id,
    size: row.size,
    os: row.os,
    ipv4: row.ipv4,
    state: row.state,
    deletionRequested: row.deleting,
    createdAt: row.created,
    openOperations: row.open_operations,
    suspended: row.suspended,
  }));
}

/** Whether the customer ever had a capsul, and whether they saved an SSH key: the steps before a first one. */
export async function customerBeginnings(db: Queryable, email: string): Promise<{ hadCapsuls: boolean; hasKey: boolean }> {
  const { rows } = await db.query(
    `SELECT EXISTS (SELECT 1 FROM vms WHERE email = $1) AS had_capsuls, EXISTS (SELECT 1 FROM ssh_public_keys WHERE email = $1) AS has_key`,
    [email],
  );
  return { hadCapsuls: rows[0].had_capsuls, hasKey: rows[0].has_key };
}

export type CapsulRecord = {
  id: string;
  size: string;
  os: string;
  osDescription: string;
  /** who logs in with the customer's keys: the OS image's user, null if the catalogue no longer has the image */
  loginUser: string | null;
  state: string;
  createdAt: Date;
  deletionRequestedAt: Date | null;
  vanishedAt: Date | null;
  accrualEndedAt: Date | null;
  ipv4: string | null;
  ipv6: string | null;
  priceCentsPerMonth: Cents;
  sshPublicKeys: string[];
  hostKeys: HostKeyFingerprint[];
  failure: string | null;
  /** the size's specs, null if the catalogue no longer has it */
  specs: { vcpus: number; memoryMb: number; bandwidthGbPerMonth: number } | null;
  openOperations: string[];
  /** its account's suspension for nonpayment, if it stopped this capsul: since when, and when deletion comes */
  suspension: { since: Date; deleteAfter: Date } | null;
  /** the capsul's stream version the row reflects */
  version: bigint;
};

// One statement, so the page (and the version its confirm forms carry) shows one moment of the capsul:
// the projections commit with the events they follow.
const capsulSql = `
  SELECT v.id, v.size, v.os, coalesce(o.description, v.os) AS os_description, o.login_user, v.state, v.created, v.deleted, v.vanished, v.accrual_ended,
         v.last_seen_ipv4 AS ipv4, v.last_seen_ipv6 AS ipv6, v.dollars_per_month::text AS price,
         v.ssh_public_keys, v.ssh_host_key_fingerprints, v.failure, s.vcpus, s.memory_mb, s.bandwidth_gb_per_month,
         ARRAY(SELECT kind FROM operations WHERE vm_id = v.id AND completed IS NULL ORDER BY created) AS open_operations,
         v.suspended, a.delete_after,
         ${streamVersionExpression('$3')} AS version
  FROM vms v LEFT JOIN vm_sizes s ON s.id = v.size LEFT JOIN os_images o ON o.id = v.os LEFT JOIN accounts a ON a.id = v.account_id
  WHERE v.id = $1 AND v.email = $2`;

/** The customer's capsul `vmId`, or null: unknown and someone else's look the same. */
export async function customerCapsul(db: Queryable, email: string, vmId: string): Promise<CapsulRecord | null> {
  const { rows } = await db.query(capsulSql, [vmId, email, vmStream(vmId)]);
  const row = rows[0];
  if (!row) return null;
  return {
    id: row.id,
    size: row.size,
    os: row.os,
    osDescription: row.os_description,
    loginUser: row.login_user,
    state: row.state,
    createdAt: row.created,
    deletionRequestedAt: row.deleted,
    vanishedAt: row.vanished,
    accrualEndedAt: row.accrual_ended,
    ipv4: row.ipv4,
    ipv6: row.ipv6,
    priceCentsPerMonth: centsFromNumeric(row.price),
    sshPublicKeys: row.ssh_public_keys,
    hostKeys: row.ssh_host_key_fingerprints ?? [],
    failure: row.failure,
    specs: row.vcpus === null ? null : { vcpus: row.vcpus, memoryMb: row.memory_mb, bandwidthGbPerMonth: row.bandwidth_gb_per_month },
    openOperations: row.open_operations,
    suspension: row.suspended === null || row.delete_after === null ? null : { since: row.suspended, deleteAfter: row.delete_after },
    version: BigInt(row.version),
  };
}

export type OperatorsCapsul = {
  id: string;
  email: string;
  size: string;
  state: string;
  host: string | null;
  ipv4: string | null;
  createdAt: Date;
  deletionRequestedAt: Date | null;
  vanishedAt: Date | null;
  accrualEndedAt: Date | null;
};

/** Every capsul (deleted ones too) of one email or ('') of everyone, newest first, at most `limit`. */
export async function newestCapsuls(db: Queryable, filter: { email: string; limit: number }): Promise<OperatorsCapsul[]> {
  const { rows } = await db.query(
    `SELECT id, email, size, state, host, last_seen_ipv4 AS ipv4, created, deleted, vanished, accrual_ended
     FROM vms WHERE ($1 = '' OR email = $1) ORDER BY created DESC, id LIMIT $2`,
    [filter.email, filter.limit],
  );
  return rows.map((row) => ({
    id: row.id,
    email: row.email,
    size: row.size,
    state: row.state,
    host: row.host,
    ipv4: row.ipv4,
    createdAt: row.created,
    deletionRequestedAt: row.deleted,
    vanishedAt: row.vanished,
    accrualEndedAt: row.accrual_ended,
  }));
}

/** Capsuls that vanished from their host and whose charges the account has not ended yet, oldest first, at most `limit`. */
export async function vanishedStillCharged(db: Queryable, limit: number): Promise<{ id: string; accountId: string; host: string }[]> {
  const { rows } = await db.query(
    `SELECT id, account_id, host FROM vms WHERE vanished IS NOT NULL AND accrual_ended IS NULL ORDER BY vanished LIMIT ${Math.trunc(limit)}`,
  );
  return rows.map((row) => ({ id: row.id, accountId: row.account_id, host: row.host }));
}

/** Capsuls requested but not yet placed on a host (nor their deletion asked), oldest first, with the memory their size needs. */
export async function capsulsAwaitingPlacement(
  db: Queryable,
  limit: number,
): Promise<{ id: string; accountId: string; memoryMb: number }[]> {
  const { rows } = await db.query(
    `SELECT v.id, v.account_id, s.memory_mb FROM vms v JOIN vm_sizes s ON s.id = v.size
     WHERE v.host IS NULL AND v.deleted IS NULL AND v.state = 'pending' ORDER BY v.created LIMIT ${Math.trunc(limit)}`,
  );
  return rows.map((row) => ({ id: row.id, accountId: row.account_id, memoryMb: row.memory_mb }));
}

/**
 * Capsuls whose deletion was requested and that no delete operation is under way or done for (a failed
 * one is scheduled again a minute after it failed), oldest request first, with their host (null: never placed).
 */
export async function deletionsToSchedule(
  db: Queryable,
  now: Date,
  limit: number,
): Promise<{ id: string; accountId: string; host: string | null }[]> {
  const { rows } = await db.query(
    `SELECT v.id, v.account_id, v.host FROM vms v
     WHERE v.deleted IS NOT NULL AND v.state <> 'deleted'
       -- a delete under way or done; a failed one is scheduled again after a minute
       AND NOT EXISTS (SELECT 1 FROM operations o WHERE o.vm_id = v.id AND o.kind = 'delete'
                         AND (o.completed IS NULL OR o.outcome <> 'failed' OR o.completed > $1::timestamptz - interval '1 minute'))
     ORDER BY v.deleted LIMIT ${Math.trunc(limit)}`,
    [now.toISOString()],
  );
  return rows.map((row) => ({ id: row.id, accountId: row.account_id, host: row.host }));
}
