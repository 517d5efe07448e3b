// VM hosts: registration with a token shown once and stored hashed, rotation, removal, the list with
// online/offline and capacity, and the spoke's authentication.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { hostDecider } from '../domain/host/decider.ts';
import { hostStream } from '../domain/host/events.ts';
import { systemClock, type Clock } from '../core/clock.ts';
import type { Cause } from '../domain/events.ts';
import { handleCommand, type CommandDeps } from './handle.ts';

/** A host whose last heartbeat is older than this is offline: nothing new is placed on it. */
export const onlineWithinMs = 30_000;

export type HostRow = {
  id: string;
  online: boolean;
  lastSeen: string | null;
  memoryMb: number;
  usedMemoryMb: number;
  freeMemoryMb: number;
  vcpus: number;
  capsuls: number;
};

export const hashToken = (token: string) => createHash('sha256').update(token, 'utf8').digest('hex');
const newToken = () => randomBytes(32).toString('base64url');

export class Hosts {
  /** `now`: the process's clock (src/ledger/services.ts); made alone (a test), the system clock. */
  constructor(private readonly deps: CommandDeps & { now?: Clock }) {}

  private now(): Date {
    return (this.deps.now ?? systemClock)();
  }

  async add(input: { hostId: string; memoryMb: number; vcpus: number; cause: Cause }): Promise<{ token: string }> {
    const token = newToken();
    await handleCommand(this.deps, hostStream(input.hostId), hostDecider, {
      type: 'RegisterHost',
      data: { hostId: input.hostId, memoryMb: input.memoryMb, vcpus: input.vcpus, tokenHash: hashToken(token) },
      metadata: { now: this.now(), cause: input.cause },
    });
    return { token };
  }

  async rotateToken(hostId: string, cause: Cause): Promise<{ token: string }> {
    const token = newToken();
    await handleCommand(this.deps, hostStream(hostId), hostDecider, {
      type: 'RotateHostToken',
      data: { hostId, tokenHash: hashToken(token) },
      metadata: { now: this.now(), cause: cause },
    });
    return { token };
  }

  async remove(hostId: string, cause: Cause): Promise<void> {
    // A vanished capsul counts until its deletion is confirmed: its incident is closed on this host.
    const { rows } = await this.deps.pool.query(`SELECT count(*)::int AS n FROM vms WHERE host = $1 AND state <> 'deleted'`, [hostId]);
    await handleCommand(this.deps, hostStream(hostId), hostDecider, {
      type: 'RemoveHost',
      data: { hostId, capsulCount: rows[0].n },
      metadata: { now: this.now(), cause: cause },
    });
  }

  /** Constant-time check of a spoke's token against the stored hash. */
  async authenticate(hostId: string, token: string): Promise<boolean> {
    const { rows } = await this.deps.pool.query('SELECT token_hash FROM hosts WHERE id = $1 AND removed IS NULL', [hostId]);
    const stored = rows[0]?.token_hash as string | undefined;
    const presented = Buffer.from(hashToken(token), 'hex');
    const expected = Buffer.from(stored ?? '0'.repeat(64), 'hex');
    return timingSafeEqual(presented, expected) && stored !== undefined;
  }

  /**
   * Compares what a host lists with the ledger and records each new disagreement once (and its end).
   * A capsul with a delete operation under way is not missed; one being created is not unexpected; one
   * its host reported vanished is no longer the ledger's on that host, so listed again it is unexpected
   * (unless a delete asked of the host since is under way).
   */
  /** `cause`: who compared (the host's heartbeat, by default; the drift job names itself). */
  async checkDrift(hostId: string, seen: string[], cause: Cause = { by: { kind: 'spoke', id: hostId } }): Promise<void> {
    const { rows: expected } = await this.deps.pool.query(
      `SELECT v.id FROM vms v WHERE v.host = $1 AND v.state IN ('running', 'stopped', 'crashed', 'paused')
         AND NOT EXISTS (SELECT 1 FROM operations o WHERE o.vm_id = v.id AND o.kind = 'delete')`,
      [hostId],
    );
    const { rows: known } = await this.deps.pool.query(
      `SELECT v.id FROM vms v WHERE v.id = ANY($2::text[]) AND v.host = $1 AND v.state <> 'deleted'
         AND (v.state <> 'vanished' OR EXISTS (SELECT 1 FROM operations o WHERE o.vm_id = v.id AND o.kind = 'delete' AND o.completed IS NULL))`,
      [hostId, seen],
    );
    await handleCommand(this.deps, hostStream(hostId), hostDecider, {
      type: 'CheckDrift',
      data: { hostId, seen, expected: expected.map((r) => r.id), known: known.map((r) => r.id) },
      metadata: { now: this.now(), cause: cause },
    });
  }

  /** Open drift incidents (vanished capsuls among them), oldest first. */
  async drift(): Promise<{ host: string; vmId: string; kind: string; detected: string }[]> {
    const { rows } = await this.deps.pool.query(
      `SELECT host, vm_id, kind, to_char(detected AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS detected
       FROM drift WHERE resolved IS NULL ORDER BY detected, host, vm_id`,
    );
    return rows.map((row) => ({ host: row.host, vmId: row.vm_id, kind: row.kind, detected: row.detected }));
  }

  async list(): Promise<HostRow[]> {
    const { rows } = await this.deps.pool.query(
      `SELECT h.id, h.memory_mb, h.vcpus,
              to_char(hb.last_seen AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS last_seen,
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
      [new Date(this.now().getTime() - onlineWithinMs).toISOString()],
    );
    return rows.map((row) => ({
      id: row.id,
      online: row.online,
      lastSeen: row.last_seen,
      memoryMb: row.memory_mb,
      usedMemoryMb: row.used,
      freeMemoryMb: row.memory_mb - row.used,
      vcpus: row.vcpus,
      capsuls: row.capsuls,
    }));
  }
}
