// The hub's side of the spoke protocol (src/spoke/protocol.ts): every request carries the host id and
// its token; heartbeats are stored as they come, operations are long-polled, and reports become events
// on the capsul's stream (duplicates and stale reports change nothing). Every body is checked field by
// field first (src/spoke/protocol-check.ts): a malformed request gets 400 and a malformed report its
// own refusal, before anything reaches the database. (The bodies are the protocol's to check, with the
// spoke's own checker; a route schema here would turn a whole batch away for one poison report.)
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type pg from 'pg';
import { Type } from 'typebox';
import type { Clock } from '../core/clock.ts';
import { DomainError } from '../domain/shared/errors.ts';
import { vmDecider, type VmCommand } from '../domain/vm/decider.ts';
import { vmStream } from '../domain/vm/events.ts';
import { alreadyReported } from '../domain/vm/state.ts';
import { handleCommand, handleTogether, type CommandDeps, type Together } from '../ledger/handle.ts';
import type { Hosts } from '../ledger/hosts.ts';
import { openOperationsOfHost, requestedTimesOnHost } from '../read/operations.ts';
import { checkHeartbeat, checkReport, checkReportsRequest, type CheckedReport } from '../spoke/protocol-check.ts';
import { limits, protocolPrefix, type Operation, type OperationKind, type Report, type ReportResult } from '../spoke/protocol.ts';

export type SpokeApiOptions = CommandDeps & { hosts: Hosts; now: Clock; afterReports?: () => void };

declare module 'fastify' {
  interface FastifyRequest {
    /** the spoke's host, set by the spoke API's token check (null before it) */
    hostId: string | null;
  }
}

const pollIntervalMs = 500;
const maxOperationsPerPoll = 50;

const operationsQuery = Type.Object({ waitMs: Type.Optional(Type.Integer({ minimum: 0, maximum: limits.maxLongPollMs })) });

export const spokeApi: FastifyPluginAsyncTypebox<SpokeApiOptions> = async (app, deps) => {
  const { now } = deps;

  app.decorateRequest('hostId', null);
  // Before the body is read: a stranger's request costs no parsing.
  app.addHook('onRequest', async (request, reply) => {
    const hostId = request.headers['x-capsul-host'];
    const match = /^Bearer ([A-Za-z0-9_-]{20,200})$/.exec(request.headers.authorization ?? '');
    if (typeof hostId !== 'string' || !match || !(await deps.hosts.authenticate(hostId, match[1]!))) {
      request.log.warn(
        { host: typeof hostId === 'string' ? hostId.slice(0, 64) : null },
        'spoke request refused: unknown host or wrong token',
      );
      return reply.code(401).send({ error: 'unknown host or wrong token' });
    }
    request.hostId = hostId;
  });

  app.post('/heartbeat', { bodyLimit: limits.maxRequestBytes }, async (request, reply) => {
    const checked = checkHeartbeat(request.body);
    if (!checked.ok) return malformed(request, reply, `malformed heartbeat: ${checked.problem}`);
    const beat = checked.value;
    const hostId = hostOf(request);
    await deps.pool.query(
      `INSERT INTO host_heartbeats (host_id, last_seen, memory_mb, vcpus, vms, agent_version) VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (host_id) DO UPDATE SET last_seen = $2, memory_mb = $3, vcpus = $4, vms = $5, agent_version = $6`,
      [hostId, now().toISOString(), beat.capacity.memoryMb, beat.capacity.vcpus, JSON.stringify(beat.vms), beat.agentVersion],
    );
    await deps.hosts.checkDrift(
      hostId,
      beat.vms.map((vm) => vm.vmId),
    );
    return { serverTime: now().toISOString() };
  });

  // Long polls end when the hub closes, and closing waits for them: a poll whose spoke went away must not
  // query a pool that shutdown has already ended.
  let closing = false;
  const polls = new Set<Promise<unknown>>();
  app.addHook('onClose', async () => {
    closing = true;
    await Promise.allSettled([...polls]);
  });

  app.get('/operations', { schema: { querystring: operationsQuery } }, async (request) => {
    const hostId = hostOf(request);
    const deadline = Date.now() + (request.query.waitMs ?? 0);
    let closed = false;
    request.raw.once('close', () => (closed = true));
    const poll = (async () => {
      while (true) {
        const operations = await pendingOperations(deps.pool, hostId);
        if (operations.length > 0 || Date.now() >= deadline || closed || closing) return { operations };
        await new Promise((resolve) => setTimeout(resolve, Math.min(pollIntervalMs, Math.max(0, deadline - Date.now()))));
        if (closing) return { operations: [] };
      }
    })();
    polls.add(poll);
    try {
      return await poll;
    } finally {
      polls.delete(poll);
    }
  });

  app.post('/reports', { bodyLimit: limits.maxRequestBytes }, async (request, reply) => {
    const envelope = checkReportsRequest(request.body);
    if (!envelope.ok) return malformed(request, reply, `malformed reports: ${envelope.problem}`);
    const hostId = hostOf(request);
    const checked = envelope.value.map(checkReport);
    // When each of this host's capsuls was requested, by the hub's clock. Others are left out: the decider
    // refuses reports about them, and a host learns nothing of another host's capsuls.
    const requestedAt = await requestedTimesOnHost(
      deps.pool,
      hostId,
      checked.flatMap((c) => (c.ok ? [c.value.report.vmId] : [])),
    );
    const results: ReportResult[] = new Array(checked.length);
    const recordable: { index: number; report: Report }[] = [];
    const refuse = (index: number, id: string, vmId: string | undefined, reason: string) => {
      request.log.warn({ host: hostId, report: id, vmId, reason }, 'spoke report refused');
      results[index] = { id, status: 'refused', error: reason };
    };
    for (const [i, check] of checked.entries()) {
      if (!check.ok) {
        refuse(i, envelope.value[i]!.id, undefined, `malformed report: ${check.problem}`);
        continue;
      }
      const { report } = check.value;
      const untimely = timeProblem(check.value, now(), requestedAt);
      if (untimely !== null) refuse(i, report.id, report.vmId, untimely);
      else recordable.push({ index: i, report });
    }
    // One transaction for the batch, so one commit: the reports are acknowledged together once it is
    // durable, and a failed request recorded none of them. Capsul by capsul in id order (each one's
    // reports in the order sent), as handleTogether asks; the answers keep the order sent.
    recordable.sort((a, b) => (a.report.vmId < b.report.vmId ? -1 : a.report.vmId > b.report.vmId ? 1 : a.index - b.index));
    const recorded =
      recordable.length === 0
        ? []
        : await handleTogether(deps, async (together) => {
            const answers: ReportResult[] = [];
            for (const { report } of recordable) answers.push(await recordReport(together, hostId, report, now(), request.log));
            return answers;
          });
    for (const [n, { index }] of recordable.entries()) results[index] = recorded[n]!;
    // A deletion or a failure frees room on the host: capsuls waiting for one may be placed now.
    const freesRoom = recordable.some(
      ({ report }, n) => recorded[n]!.status === 'accepted' && (report.type === 'deleted' || report.type === 'failed'),
    );
    if (freesRoom) deps.afterReports?.();
    return { results };
  });
};

/** The host the onRequest check let in: every route of the spoke API runs after it. */
function hostOf(request: FastifyRequest): string {
  if (request.hostId === null) throw new Error('a spoke API route ran without the host check');
  return request.hostId;
}

/** 400 with one line saying what is wrong; logged with the host, never with the body. */
function malformed(request: FastifyRequest, reply: FastifyReply, problem: string) {
  request.log.warn({ host: request.hostId, reason: problem }, 'spoke request refused');
  return reply.code(400).send({ error: problem });
}

/**
 * Why a report's observation time cannot be believed, or null. From the future (beyond the allowed
 * skew) it would make every later real report stale; from before its capsul was requested it would put
 * the capsul's history out of order (as-of replays, the history page).
 */
function timeProblem({ report, observedAtMs }: CheckedReport, now: Date, requestedAt: Map<string, Date>): string | null {
  const skewSeconds = limits.maxClockSkewMs / 1000;
  if (observedAtMs > now.getTime() + limits.maxClockSkewMs) {
    return `observedAt ${report.observedAt} is ahead of the hub's clock (${now.toISOString()}) by more than the ${skewSeconds} s allowed: check this host's clock`;
  }
  const requested = requestedAt.get(report.vmId);
  if (requested && observedAtMs < requested.getTime() - limits.maxClockSkewMs) {
    return `observedAt ${report.observedAt} is before capsul ${report.vmId} was requested (${requested.toISOString()}, the hub's clock) by more than the ${skewSeconds} s allowed: check this host's clock`;
  }
  return null;
}

/** The operations still open on this host, as the protocol carries them: a create with what the host needs to build it. */
async function pendingOperations(pool: pg.Pool, hostId: string): Promise<Operation[]> {
  return (await openOperationsOfHost(pool, hostId, maxOperationsPerPoll)).map((operation) => ({
    id: operation.id,
    kind: operation.kind as OperationKind,
    vmId: operation.vmId,
    createdAt: operation.createdAt.toISOString(),
    ...(operation.kind === 'create' ? { spec: operation.spec } : {}),
  }));
}

/** One report → one command on the capsul's stream, answered as accepted, duplicate, stale or refused. */
async function recordReport(deps: Together, hostId: string, report: Report, now: Date, log: FastifyRequest['log']): Promise<ReportResult> {
  const observedAt = new Date(report.observedAt);
  const ids = { reportId: report.id, operationId: report.operationId };
  const base = { vmId: report.vmId, host: hostId, observedAt, ...ids };
  const metadata = { now, cause: { by: { kind: 'spoke', id: hostId } } } as const;
  let command: VmCommand;
  switch (report.type) {
    case 'provisioned':
      command = {
        type: 'RecordProvisioned',
        data: { ...base, ipv4: report.ipv4, ipv6: report.ipv6, sshHostKeys: report.sshHostKeys },
        metadata,
      };
      break;
    case 'state':
      command = { type: 'ObserveState', data: { ...base, state: report.state }, metadata };
      break;
    case 'failed':
      command = { type: 'RecordFailure', data: { ...base, error: report.error }, metadata };
      break;
    case 'deleted':
      command = { type: 'ConfirmDeleted', data: base, metadata };
      break;
  }
  try {
    const { events, state } = await handleCommand(deps, vmStream(report.vmId), vmDecider, command);
    if (events.length > 0) return { id: report.id, status: 'accepted' };
    return { id: report.id, status: alreadyReported(state, report.id) ? 'duplicate' : 'stale' };
  } catch (error) {
    if (!(error instanceof DomainError)) throw error;
    log.warn({ host: hostId, vmId: report.vmId, reason: error.message }, 'spoke report refused');
    return { id: report.id, status: 'refused', error: error.message };
  }
}

export const spokeApiPrefix = protocolPrefix;
