// The hub's side of the spoke protocol (src/spoke/protocol.ts): every request carries the host id and
// its token; heartbeats are stored as they come, operations are long-polled, and reports become events
// on the capsul's stream (duplicates and stale reports change nothing).
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type pg from 'pg';
import { DomainError } from '../domain/shared/errors.ts';
import { vmDecider, type VmCommand } from '../domain/vm/decider.ts';
import { vmStream } from '../domain/vm/events.ts';
import { handleCommand, type CommandDeps } from '../ledger/handle.ts';
import type { Hosts } from '../ledger/hosts.ts';
import {
  limits, observedStates, protocolPrefix,
  type Heartbeat, type Operation, type OperationKind, type Report, type ReportResult, type ReportsRequest,
} from '../spoke/protocol.ts';

export type SpokeApiDeps = CommandDeps & { hosts: Hosts; now?: () => Date; afterReports?: () => void };

declare module 'fastify' {
  interface FastifyRequest {
    hostId?: string;
  }
}

const pollIntervalMs = 500;
/** A heartbeat lists every capsul of a host; a batch of reports may carry long errors. */
const bodyLimit = 1024 * 1024;
const maxOperationsPerPoll = 50;

const isoTime = { type: 'string', format: 'date-time', maxLength: 40 } as const;
const reportSchema = {
  type: 'object',
  required: ['id', 'vmId', 'operationId', 'observedAt', 'type'],
  properties: {
    id: { type: 'string', minLength: 8, maxLength: 100 },
    vmId: { type: 'string', pattern: '^capsul-[a-z0-9]{10}$' },
    operationId: { type: ['string', 'null'], maxLength: 100 },
    observedAt: isoTime,
    type: { enum: ['provisioned', 'state', 'failed', 'deleted'] },
    ipv4: { type: ['string', 'null'], maxLength: 15 },
    ipv6: { type: ['string', 'null'], maxLength: 45 },
    sshHostKeys: {
      type: 'array', maxItems: 10,
      items: { type: 'object', required: ['type', 'sha256'], properties: { type: { type: 'string', maxLength: 60 }, sha256: { type: 'string', maxLength: 120 } } },
    },
    state: { enum: observedStates },
    error: { type: 'string', maxLength: limits.maxErrorLength },
  },
} as const;

export async function spokeApi(app: FastifyInstance, deps: SpokeApiDeps): Promise<void> {
  const now = () => deps.now?.() ?? new Date();

  app.addHook('preHandler', async (request: FastifyRequest, reply: FastifyReply) => {
    const hostId = request.headers['x-capsul-host'];
    const match = /^Bearer ([A-Za-z0-9_-]{20,200})$/.exec(request.headers.authorization ?? '');
    if (typeof hostId !== 'string' || !match || !(await deps.hosts.authenticate(hostId, match[1]!))) {
      request.log.warn({ host: typeof hostId === 'string' ? hostId.slice(0, 64) : null }, 'spoke request refused: unknown host or wrong token');
      return reply.code(401).send({ error: 'unknown host or wrong token' });
    }
    request.hostId = hostId;
  });

  app.post('/heartbeat', {
    bodyLimit,
    schema: {
      body: {
        type: 'object',
        required: ['capacity', 'vms', 'agentVersion'],
        properties: {
          capacity: {
            type: 'object', required: ['memoryMb', 'vcpus'],
            properties: { memoryMb: { type: 'integer', minimum: 0 }, vcpus: { type: 'integer', minimum: 0 } },
          },
          vms: {
            type: 'array', maxItems: limits.maxVmsPerHeartbeat,
            items: { type: 'object', required: ['vmId', 'state'], properties: { vmId: { type: 'string', maxLength: 64 }, state: { enum: observedStates } } },
          },
          agentVersion: { type: 'string', maxLength: 100 },
        },
      },
    },
  }, async (request) => {
    const beat = request.body as Heartbeat;
    await deps.pool.query(
      `INSERT INTO host_heartbeats (host_id, last_seen, memory_mb, vcpus, vms, agent_version) VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (host_id) DO UPDATE SET last_seen = $2, memory_mb = $3, vcpus = $4, vms = $5, agent_version = $6`,
      [request.hostId, now().toISOString(), beat.capacity.memoryMb, beat.capacity.vcpus, JSON.stringify(beat.vms), beat.agentVersion],
    );
    await deps.hosts.checkDrift(request.hostId!, beat.vms.map((vm) => vm.vmId));
    return { serverTime: now().toISOString() };
  });

  app.get('/operations', {
    schema: { querystring: { type: 'object', properties: { waitMs: { type: 'integer', minimum: 0, maximum: limits.maxLongPollMs } } } },
  }, async (request) => {
    const waitMs = (request.query as { waitMs?: number }).waitMs ?? 0;
    const deadline = Date.now() + waitMs;
    let closed = false;
    request.raw.once('close', () => (closed = true));
    while (true) {
      const operations = await pendingOperations(deps.pool, request.hostId!);
      if (operations.length > 0 || Date.now() >= deadline || closed) return { operations };
      await new Promise((resolve) => setTimeout(resolve, Math.min(pollIntervalMs, Math.max(0, deadline - Date.now()))));
    }
  });

  app.post('/reports', {
    bodyLimit,
    schema: {
      body: {
        type: 'object', required: ['reports'],
        properties: { reports: { type: 'array', minItems: 1, maxItems: limits.maxReportsPerRequest, items: reportSchema } },
      },
    },
  }, async (request) => {
    const { reports } = request.body as ReportsRequest;
    const results: ReportResult[] = [];
    for (const report of reports) results.push(await recordReport(deps, request.hostId!, report, now(), request.log));
    // A deletion or a failure frees room on the host: capsuls waiting for one may be placed now.
    const freesRoom = reports.some((report, i) => results[i]!.status === 'accepted' && (report.type === 'deleted' || report.type === 'failed'));
    if (freesRoom) deps.afterReports?.();
    return { results };
  });
}

async function pendingOperations(pool: pg.Pool, hostId: string): Promise<Operation[]> {
  const { rows } = await pool.query(
    `SELECT o.id, o.kind, o.vm_id, to_char(o.created AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS created,
            s.memory_mb, s.vcpus, i.template_image_file_name AS image_file, v.ssh_public_keys
     FROM operations o
     JOIN vms v ON v.id = o.vm_id
     LEFT JOIN vm_sizes s ON s.id = v.size
     LEFT JOIN os_images i ON i.id = v.os
     WHERE o.host = $1 AND o.completed IS NULL
     ORDER BY o.created, o.id LIMIT ${maxOperationsPerPoll}`,
    [hostId],
  );
  return rows.map((row) => ({
    id: row.id,
    kind: row.kind as OperationKind,
    vmId: row.vm_id,
    createdAt: row.created,
    ...(row.kind === 'create'
      ? { spec: { memoryMb: row.memory_mb, vcpus: row.vcpus, imageFile: row.image_file, sshPublicKeys: row.ssh_public_keys } }
      : {}),
  }));
}

/** One report → one command on the capsul's stream, answered as accepted, duplicate, stale or refused. */
async function recordReport(
  deps: CommandDeps, hostId: string, report: Report, now: Date, log: FastifyRequest['log'],
): Promise<ReportResult> {
  const observedAt = new Date(report.observedAt);
  const ids = { reportId: report.id, operationId: report.operationId };
  const base = { vmId: report.vmId, host: hostId, observedAt, ...ids };
  let command: VmCommand;
  switch (report.type) {
    case 'provisioned':
      command = { type: 'RecordProvisioned', data: { ...base, ipv4: report.ipv4, ipv6: report.ipv6, sshHostKeys: report.sshHostKeys }, metadata: { now } };
      break;
    case 'state':
      command = { type: 'ObserveState', data: { ...base, state: report.state }, metadata: { now } };
      break;
    case 'failed':
      command = { type: 'RecordFailure', data: { ...base, error: report.error }, metadata: { now } };
      break;
    case 'deleted':
      command = { type: 'ConfirmDeleted', data: base, metadata: { now } };
      break;
  }
  try {
    const { events, state } = await handleCommand(deps, vmStream(report.vmId), vmDecider, command, { by: { kind: 'spoke', id: hostId } });
    if (events.length > 0) return { id: report.id, status: 'accepted' };
    return { id: report.id, status: state.reportIds.has(report.id) ? 'duplicate' : 'stale' };
  } catch (error) {
    if (!(error instanceof DomainError)) throw error;
    log.warn({ host: hostId, vmId: report.vmId, reason: error.message }, 'spoke report refused');
    return { id: report.id, status: 'refused', error: error.message };
  }
}

export const spokeApiPrefix = protocolPrefix;
